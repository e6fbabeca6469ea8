"""A real OpenAI-compatible server on 127.0.0.1 for the evaluation tests (stdlib HTTP server in a thread).

As a judge (a prompt holding `<output_1>` and `<output_2>`), it follows a known, position-biased rule:
- either output contains GARBAGE: an answer with no verdict line (unparseable), echoing the request's
  Authorization header (a key must never be stored or shown);
- exactly one output contains QUALITY: it prefers that one, wherever it is shown;
- otherwise: it prefers the output shown first (position bias).
Any other prompt is answered as a model would: "Answer: " and the prompt's first words.

Usage tokens are reported (words of prompt and answer), so cost accounting works. `fail_status` makes every
POST fail with that HTTP status, `fail_after = K` every POST after the K-th; `received` keeps each request body in arrival order; `models` is what
GET /v1/models lists (entries may carry a `lineage`).

`cli_in_process` runs the real CLI (`alpaca_data.cli.main`) in the test's process, sparing the eval tests an
interpreter start-up per call.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import CliResult

QUALITY = "[[carefully checked]]"
GARBAGE = "<<unjudgeable>>"
JUDGE_MODEL = "judge-biased"
_OUTPUT = re.compile(r"<output_([12])>\n(.*?)\n</output_\1>", re.DOTALL)


def verdict_text(prompt: str, authorization: str) -> str:
    outputs = dict(_OUTPUT.findall(prompt))
    first, second = outputs.get("1", ""), outputs.get("2", "")
    if GARBAGE in first or GARBAGE in second:
        return f"I would rather not say. (request came with {authorization})"
    if (QUALITY in first) != (QUALITY in second):
        return "One answer was checked with care.\nPreferred: " + ("1" if QUALITY in first else "2")
    return "The first answer reads better to me.\nPreferred: 1"


def words(text: str) -> int:
    return len(re.findall(r"\w+|[^\w\s]", text))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": self.server.owner.models})
        else:
            self._json(404, {"error": {"message": "no route", "type": "not_found"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        chat = self.path.rstrip("/").endswith("chat/completions")
        with owner.lock:
            owner.received.append({"path": self.path, **body})
            status = owner.fail_status
            if owner.fail_after is not None and len(owner.received) > owner.fail_after:
                status = 503
        if status:
            self._json(status, {"error": {"message": "judge unavailable (test)", "type": "server_error"}})
            return
        prompt = ("\n".join(m["content"] for m in body.get("messages", [])) if chat else str(body.get("prompt", "")))
        if "<output_1>" in prompt:
            text = verdict_text(prompt, self.headers.get("Authorization", ""))
        else:
            text = "Answer: " + " ".join(prompt.split()[:8])
        usage = {"prompt_tokens": words(prompt), "completion_tokens": words(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": "stop"}
            kind = "text_completion"
        self._json(200, {"id": f"x-{len(owner.received)}", "object": kind, "created": 0,
                         "model": body.get("model", JUDGE_MODEL), "choices": [choice], "usage": usage})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: JudgeServer


class JudgeServer:
    """`with JudgeServer() as server: server.base_url`."""

    def __init__(self, models: list[dict[str, Any]] | None = None):
        self.models = models or [{"id": JUDGE_MODEL, "object": "model", "created": 0, "owned_by": "tests"}]
        self.received: list[dict[str, Any]] = []
        self.fail_status: int | None = None
        self.fail_after: int | None = None  # answer this many requests, then fail every one with 503
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def cli_in_process(store_path, monkeypatch, capsys):
    """`invoke(*args, env=None) -> CliResult` on the store at `store_path` (pytest's monkeypatch and capsys)."""
    from alpaca_data.cli import main

    monkeypatch.setenv("ALPACA_STORE", str(store_path))

    def invoke(*args: str, env: dict | None = None) -> CliResult:
        capsys.readouterr()
        with monkeypatch.context() as scoped, pytest.raises(SystemExit) as exited:
            for name, value in (env or {}).items():  # for this call only, as a subprocess's env would be
                scoped.setenv(name, value)
            main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return CliResult(exited.value.code or 0, captured.out, captured.err)

    return invoke
