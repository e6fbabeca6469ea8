"""A local stand-in for OpenAI's moderation endpoint, for tests (stdlib HTTP server on 127.0.0.1, port 0).

    with moderation_server() as server:
        moderator = make_moderator("openai", base_url=server.base_url)   # base_url ends in /v1
        ...
        server.requests        # every `input` received, in order (a str or a list of str, as sent)

Endpoint: POST /v1/moderations (also /moderations), body {"model": str, "input": str | list[str]}; the answer
has OpenAI's shape: {"id", "model", "results": [{"flagged", "categories": {all 13 categories: bool},
"category_scores": {all 13: float}, "category_applied_input_types": {...}}]}, one result per input.

The rule (deterministic, case-insensitive, whole words or phrases):

    violence                  kill, murder, stab
    violence/graphic          gore, dismember
    harassment                idiot, moron, loser
    harassment/threatening    "hunt you down"
    hate                      vermin, subhuman
    self-harm                 suicide
    sexual                    porn, nude
    illicit                   meth, counterfeit

A category's score is 0.55 + 0.15 per extra hit (capped at 0.99) when any of its words occur, else 0.001;
it is flagged when its score is at least 0.5. So "kill kill idiot" flags violence (0.70) then harassment (0.55),
and "How do I bake bread?" flags nothing. Other categories (hate/threatening, illicit/violent,
self-harm/intent, self-harm/instructions, sexual/minors) are never flagged.

Faults, for fail-closed tests (arguments of `moderation_server`, also settable on the running server):
    fail_status=500   every POST answers that status; the error body echoes the request's Authorization
                      header, as a careless upstream might, so tests can check that messages are redacted
    malformed=True    200 with a body that has no `results`
    delay_s=2.0       sleep before answering (for timeouts)
Each request's Authorization header is kept in `server.authorizations`.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
              "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
              "violence/graphic")
RULES: dict[str, tuple[str, ...]] = {
    "violence": ("kill", "murder", "stab"),
    "violence/graphic": ("gore", "dismember"),
    "harassment": ("idiot", "moron", "loser"),
    "harassment/threatening": ("hunt you down",),
    "hate": ("vermin", "subhuman"),
    "self-harm": ("suicide",),
    "sexual": ("porn", "nude"),
    "illicit": ("meth", "counterfeit"),
}
_PATTERNS = {category: re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
             for category, words in RULES.items()}
FLAG_AT = 0.5


def moderate(text: str) -> dict[str, Any]:
    """The result the server gives for one input (the rule above)."""
    scores = {category: 0.001 for category in CATEGORIES}
    for category, pattern in _PATTERNS.items():
        hits = len(pattern.findall(text))
        if hits:
            scores[category] = round(min(0.99, 0.55 + 0.15 * (hits - 1)), 4)
    flags = {category: score >= FLAG_AT for category, score in scores.items()}
    return {"flagged": any(flags.values()), "categories": flags, "category_scores": scores,
            "category_applied_input_types": {category: ["text"] for category in CATEGORIES}}


@dataclass
class ModerationServerState:
    fail_status: int | None = None
    malformed: bool = False
    delay_s: float = 0.0
    requests: list[Any] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    state: ModerationServerState  # set on the subclass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, obj: Any) -> None:
        payload = json.dumps(obj).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.split("?")[0].rstrip("/") not in ("/v1/moderations", "/moderations"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            self._json(400, {"error": {"message": "request body is not a JSON object", "type": "invalid_request"}})
            return
        state = self.state
        authorization = self.headers.get("Authorization")
        with state.lock:
            state.requests.append(body.get("input"))
            state.bodies.append(body)
            state.authorizations.append(authorization)
        if state.delay_s:
            time.sleep(state.delay_s)
        if state.fail_status is not None:
            self._json(state.fail_status, {"error": {"message": f"moderation failed (request had Authorization: "
                                                                f"{authorization})", "type": "server_error"}})
            return
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
            self._json(400, {"error": {"message": "input must be a string or a list of strings",
                                       "type": "invalid_request_error"}})
            return
        model = body.get("model") or "omni-moderation-latest"
        if state.malformed:
            self._json(200, {"id": "modr-malformed", "model": model})
            return
        self._json(200, {"id": f"modr-{len(state.requests)}", "model": model,
                         "results": [moderate(item) for item in inputs]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ModerationServer:
    """A running fake moderation endpoint; see the module docstring for its rule and faults."""

    def __init__(self, state: ModerationServerState):
        self.state = state
        self.httpd = _Server(("127.0.0.1", 0), type("ModerationHandler", (_Handler,), {"state": state}))
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="moderation-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def requests(self) -> list[Any]:
        return self.state.requests

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return self.state.bodies

    @property
    def authorizations(self) -> list[str | None]:
        return self.state.authorizations

    # faults can be switched while the server runs (e.g. the filter goes down mid-conversation)
    @property
    def fail_status(self) -> int | None:
        return self.state.fail_status

    @fail_status.setter
    def fail_status(self, value: int | None) -> None:
        self.state.fail_status = value

    @property
    def malformed(self) -> bool:
        return self.state.malformed

    @malformed.setter
    def malformed(self, value: bool) -> None:
        self.state.malformed = value

    def start(self) -> ModerationServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def moderation_server(fail_status: int | None = None, *, malformed: bool = False,
                      delay_s: float = 0.0) -> Iterator[ModerationServer]:
    server = ModerationServer(ModerationServerState(fail_status=fail_status, malformed=malformed,
                                                    delay_s=delay_s)).start()
    try:
        yield server
    finally:
        server.stop()
