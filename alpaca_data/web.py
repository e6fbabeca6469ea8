"""The one small web helper of the project's pages and APIs (`alpaca-train serve`, `alpaca-data eval rate`).

- `Guard`, an ASGI middleware, in front of each app:
  * a request that reached this machine over loopback must name a loopback `Host` (a page of another site
    cannot reach the server by DNS rebinding);
  * a state-changing request (POST, PUT, PATCH, DELETE) must be `Content-Type: application/json` (415), and
    when it carries an `Origin` (browsers always send one on such requests) that origin must be the server's
    own, the one the `Host` header names (403); with no `Origin` (curl, scripts, SDKs) it is accepted;
  * a body is capped before it is read: over the cap by `Content-Length` is a 413 at once, and a body that
    grows past the cap while it streams in (chunked too) stops being read there; the whole body must arrive
    within `body_timeout` seconds (408). Both close the connection.
- `parse_json`: JSON of a request body, refusing (as `BadJSON`, a 400) what would break the code after it:
  nesting deeper than 64 levels and lone surrogates (`"\\ud800"`), which no UTF-8 text can hold.
- `server_config`: the uvicorn settings both servers run with: keep-alive timeout, a header read timeout (a
  client that has not sent its request headers within `header_timeout` seconds is disconnected; uvicorn has
  none of its own), a 16 KiB cap on the request line and headers, and a connection cap (`limit_concurrency`:
  past it, uvicorn answers 503 at once instead of holding the request).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_JSON_DEPTH = 64
HEADER_TIMEOUT = 10.0  # seconds from connection (or the end of the last answer) to complete request headers
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection stays open
BODY_TIMEOUT = 30.0  # seconds for a whole request body to arrive
MAX_HEADER_BYTES = 16 * 1024  # request line + headers
MAX_CONNECTIONS = 512  # open connections (or requests in progress) before uvicorn answers 503
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "cache-control": "no-store",
                    "content-security-policy": "default-src 'none'; frame-ancestors 'none'"}  # unless set
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_LOOPBACK_NAMES = ("localhost", "::1")

ErrorResponse = Callable[[int, str], Response]


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body over {_size(limit)}", headers={"Connection": "close"})


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"the request body did not arrive within {seconds:g} s", headers={"Connection": "close"})


class BadJSON(ValueError):
    """A body `parse_json` refuses; the message is one line for the client."""


def _body_error(error: BaseException) -> BodyTooLarge | BodyTimeout | None:
    """The body refusal an exception is, or holds as the only kind of error in a group."""
    while isinstance(error, BaseExceptionGroup):
        matched, rest = error.split((BodyTooLarge, BodyTimeout))
        if matched is None or rest is not None:
            return None
        error = matched.exceptions[0]
    return error if isinstance(error, (BodyTooLarge, BodyTimeout)) else None


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON of a request body; `BadJSON` for what is not JSON, nested too deeply or holds a lone surrogate."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise BadJSON(f"the JSON is nested deeper than {max_depth} levels") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        raise BadJSON("the request body is not valid JSON") from None
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                raise BadJSON("the JSON holds a lone surrogate (\\ud800-\\udfff), which is not text")
        elif isinstance(item, (list, dict)):
            if depth > max_depth:
                raise BadJSON(f"the JSON is nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return value


def _host_and_port(authority: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        return (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.endswith(".localhost") or host.startswith("127.")


def refusal(scope: Scope, headers: Headers) -> tuple[int, str] | None:
    """Why a request is refused before the app sees it (status, message), or None."""
    scheme = scope.get("scheme", "http")
    host_header = headers.get("host", "")
    host = _host_and_port(host_header, scheme)
    local = (scope.get("server") or ("", None))[0] or ""
    if _is_loopback(local) and (host is None or not _is_loopback(host[0])):
        return 403, f"this server answers to its loopback address only, not to Host {host_header[:100]!r}"
    if scope["method"] not in WRITE_METHODS:
        return None
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if origin != "null" else None
        given = _host_and_port(parts.netloc, parts.scheme) if parts and parts.scheme in ("http", "https") else None
        if given is None or host is None or given != host or parts.scheme != scheme:
            return 403, f"cross-site request refused: Origin {origin[:100]!r} is not this server"
    if headers.get("sec-fetch-site") == "cross-site":
        return 403, "cross-site request refused"
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return 415, "Content-Type must be application/json"
    return None


class Guard:
    """ASGI middleware: the checks above, refusals rendered by `error(status, message)` (each server's style)."""

    def __init__(self, app: ASGIApp, *, max_body: int, error: ErrorResponse, body_timeout: float = BODY_TIMEOUT):
        self.app, self.max_body, self.error, self.body_timeout = app, max_body, error, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refused = refusal(scope, headers)
        length = headers.get("content-length")
        if refused is None and length is not None:
            if not length.isdigit():
                refused = 400, "Content-Length is not a number"
            elif int(length) > self.max_body:
                refused = 413, f"request body over {_size(self.max_body)}"
        if refused is not None:
            return await self._refuse(scope, receive, send, *refused)

        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        received, complete, started = 0, not chunked and int(length or 0) == 0, False
        deadline = time.monotonic() + self.body_timeout
        close = False

        async def capped_receive() -> Message:
            nonlocal received, complete, close
            if complete:  # the body is in: what follows is a disconnect, however long it takes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                close = True
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    close = True
                    raise BodyTooLarge(self.max_body)
                complete = not message.get("more_body", False)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                response_headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in response_headers:
                        response_headers[name] = value
                if close or not complete:  # unread body left on the wire: never reuse this connection
                    response_headers["connection"] = "close"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except BaseException as error:  # one the app had no handler for (or wrapped in a group: BaseHTTPMiddleware)
            refused = _body_error(error)
            if started or refused is None:
                raise
            await self._refuse(scope, receive, send, refused.status_code, refused.detail)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        response = self.error(status, message)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers["connection"] = "close"
        await response(scope, receive, send)


# ---------------------------------------------------------------------------- uvicorn


def server_config(app: Any, *, header_timeout: float = HEADER_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                  **options: Any):
    """A uvicorn.Config with the settings above (more uvicorn options as keywords)."""
    import uvicorn

    options.setdefault("timeout_keep_alive", KEEP_ALIVE_TIMEOUT)
    config = uvicorn.Config(app, http=_protocol(header_timeout), h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                            limit_concurrency=max_connections, **options)
    return config


def _protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a header read timeout: from the moment a connection opens, or from the first
    byte of a further request on a kept-alive one, a client has `header_timeout` seconds to send a complete
    request line and headers (sending them a byte at a time does not extend it); then the connection is closed.
    An idle kept-alive connection is uvicorn's own `timeout_keep_alive`."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio's own signature
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._header_timer is None and self._between_requests():
                self._header_timer = self.loop.call_later(header_timeout, self._header_timeout)
            super().data_received(data)

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's headers are in: its body has a time limit of its own
                self._disarm_header_timer()

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11Protocol
