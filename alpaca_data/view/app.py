"""The web app of `alpaca-data view`: one static page (HTML, JS, CSS from this package) and a GET-only JSON API.

Every answer passes `alpaca_data.web.Guard` (loopback Host only, security headers, bodies capped); the page is
served with a Content-Security-Policy that allows this server's own script, style, images and API and nothing
else (no inline script, no network URL). Any method other than GET/HEAD is a 405; an unknown route a 404; every
error is one line of JSON `{"error": "..."}`. Static files come from a fixed list, never from a request path.
"""
from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from alpaca_data.errors import UserError
from alpaca_data.view.service import Params, Viewer, ViewError
from alpaca_data.web import Guard

MAX_BODY_BYTES = 1024  # the API takes no body
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATIC = {"/": ("view.html", "text/html; charset=utf-8"), "/view.js": ("view.js", "text/javascript; charset=utf-8"),
          "/view.css": ("view.css", "text/css; charset=utf-8")}
PAGED = {"rev", "offset", "limit"}
ROUTES: dict[str, tuple[str, set[str], tuple[str, ...]]] = {  # path -> (Viewer method, parameters, prefixes)
    "/api/datasets": ("datasets", set(), ()),
    "/api/revision": ("revision", {"rev"}, ()),
    "/api/records": ("records", PAGED | {"q", "sort", "has_input", "length", "script", "verb", "object", "facets"},
                     ("col.",)),
    "/api/record": ("record", {"rev", "pos"}, ()),
    "/api/rejections": ("rejections", PAGED | {"reason"}, ()),
    "/api/diff": ("diff", {"a", "b", "kind", "offset", "limit"}, ()),
    "/api/lengths": ("lengths", {"rev"}, ()),
    "/api/verbs": ("verbs", {"rev", "verbs", "objects", "start"}, ()),
    "/api/eval": ("evaluation", PAGED | {"winner", "category"}, ()),
}


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS, default=str)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", **(headers or {})})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": " ".join(str(message).split())}, status, headers)


def _static(name: str) -> bytes:
    return resources.files("alpaca_data.view").joinpath(f"static/{name}").read_bytes()


def build_app(viewer: Viewer) -> Any:
    files = {path: (_static(name), media) for path, (name, media) in STATIC.items()}

    def params_of(request: Request, allowed: set[str], prefixes: tuple[str, ...]) -> Params:
        return Params(request.query_params.multi_items(), allowed, prefixes)

    def handle(request: Request) -> Response:
        path = request.url.path
        if request.method not in ("GET", "HEAD"):
            return error_response(405, f"{request.method} is not allowed: this viewer is read-only (GET only)",
                                  {"Allow": "GET, HEAD"})
        if path in files:
            body, media = files[path]
            headers = {"Cache-Control": "no-store"}
            if path == "/":
                headers["Content-Security-Policy"] = PAGE_CSP
            return Response(body, media_type=media, headers=headers)
        if path == "/favicon.ico":
            return Response(b"", status_code=204)
        route = ROUTES.get(path)
        if route is None and path != "/api/eval/figure":
            return error_response(404, "no such route")
        try:
            if route is None:
                png = viewer.evaluation_figure(params_of(request, {"rev"}, ()))
                return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})
            method, allowed, prefixes = route
            return json_response(getattr(viewer, method)(params_of(request, allowed, prefixes)))
        except ViewError as error:
            return error_response(error.status, str(error))
        except UserError as error:
            return error_response(422, str(error))

    def answer(request: Request) -> Response:
        try:
            return handle(request)
        except Exception as error:  # noqa: BLE001 - one line to the client, never a traceback
            return error_response(500, f"internal error: {type(error).__name__}")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan, no websockets
            return
        response = await run_in_threadpool(answer, Request(scope, receive))
        await response(scope, receive, send)

    return Guard(app, max_body=MAX_BODY_BYTES, error=error_response)
