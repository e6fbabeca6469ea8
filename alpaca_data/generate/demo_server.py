"""A deterministic OpenAI-compatible teacher for demos, tests and benchmarks (stdlib HTTP server).

Answers POST /v1/chat/completions and /v1/completions and GET /v1/models from the project's task bank.
The answer is a pure function of (server seed, request body), so a resumed run gets the same answers.
Faults are injected deterministically per (request body, attempt number), the attempt being how many
times this server has seen that exact body; every injected fault is logged and served at GET /_demo/stats.
Each response carries `X-Demo-Fault` and `X-Demo-Attempt` headers.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl

from alpaca_data.generate.demo_batches import BatchService
from alpaca_data.generate.prompt import NO_INPUT, NUM_TASKS
from alpaca_data.generate.task_bank import all_tasks
from alpaca_data.generate.tokens import TOKEN_PATTERN, count_tokens

DEMO_MODEL = "alpaca-demo-teacher"
_OPEN = re.compile(r"(\d+)\.\s*Instruction:\s*$")


@dataclass
class DemoConfig:
    seed: int = 0
    latency_ms: float = 0.0
    fault_429_rate: float = 0.0
    fault_5xx_rate: float = 0.0
    fault_timeout_rate: float = 0.0
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    retry_after_s: float = 1.0
    timeout_sleep_s: float = 60.0
    output_suffix: str = ""  # appended to every task's output (tests: text that looks like a credential, isn't one)
    batch_seconds: float = 0.0  # Batch API: a batch completes this long after it is created
    batch_faults: tuple[str, ...] = ()  # Batch API: how the first batches end ("expired", "failed"; demo_batches)


def _body_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def _open_index(prompt: str) -> int:
    match = _OPEN.search(prompt.rstrip())
    if match:
        return int(match.group(1))
    numbers = [int(n) for n in re.findall(r"(?m)^(\d+)\.\s*Instruction:", prompt)]
    return (max(numbers) + 1) if numbers else 1


def _apply_stop(text: str, stop: Any) -> tuple[str, bool]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _truncate_tokens(text: str, max_tokens: int) -> str:
    matches = list(TOKEN_PATTERN.finditer(text))
    if len(matches) <= max_tokens:
        return text
    return text[: matches[max_tokens - 1].end()] if max_tokens > 0 else ""


class DemoBrain:
    """Composes answers and decides faults; thread-safe; shared by all handler threads."""

    def __init__(self, config: DemoConfig):
        self.config = config
        self.bank = all_tasks()
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {"requests": 0, "ok": 0, "429": 0, "5xx": 0, "timeout": 0, "malformed": 0,
                                       "truncated": 0}

    # -- faults ---------------------------------------------------------------------------------------
    def next_attempt(self, key: str) -> int:
        with self._lock:
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            self.counts["requests"] += 1
            return attempt

    def fault_for(self, key: str, attempt: int) -> str | None:
        cfg = self.config
        draw = random.Random(f"{cfg.seed}:{key}:{attempt}:fault").random()
        for name, rate in (("429", cfg.fault_429_rate), ("5xx", cfg.fault_5xx_rate),
                           ("timeout", cfg.fault_timeout_rate), ("malformed", cfg.malformed_rate)):
            if draw < rate:
                return name
            draw -= rate
        return None

    def record(self, key: str, attempt: int, fault: str | None, path: str) -> None:
        with self._lock:
            self.counts[fault or "ok"] += 1
            self.events.append({"key": key, "attempt": attempt, "fault": fault or "ok", "path": path})

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"config": asdict(self.config), "counts": dict(self.counts), "events": list(self.events)}

    def batch_line(self, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One line of a batch, answered as the same realtime request would be (the same attempt count and
        faults; a fault is the line's error instead of an HTTP error, a malformed answer has no choices)."""
        chat = url.rstrip("/").endswith("chat/completions")
        key = _body_hash({"path": "chat" if chat else "completions", **body})
        attempt = self.next_attempt(key)
        fault = self.fault_for(key, attempt)
        self.record(key, attempt, fault, f"batch:{url}")
        if fault in ("429", "5xx", "timeout"):
            status = 429 if fault == "429" else 500
            return status, {"error": {"message": f"demo fault {fault}", "type": "server_error"}}
        if fault == "malformed":
            return 200, {"id": f"cmpl-{key}", "object": "chat.completion", "choices": []}
        return 200, self.answer(key, body, chat)

    # -- answers --------------------------------------------------------------------------------------
    def compose(self, key: str, prompt: str, chat: bool) -> str:
        """The continuation of the numbered list from the prompt's open index to task NUM_TASKS."""
        rng = random.Random(f"{self.config.seed}:{key}:answer")
        start = _open_index(prompt)
        count = max(NUM_TASKS - start + 1, 1)
        picks = rng.sample(range(len(self.bank)), min(count, len(self.bank)))
        style = rng.choice(["plain", "plain", "bold", "preamble", "unnumbered", "heading"]) if chat else "raw"
        parts: list[str] = []
        for offset, bank_index in enumerate(picks):
            n = start + offset
            _, variants, input_text, output = self.bank[bank_index]
            output += self.config.output_suffix
            instruction = rng.choice(variants.split("\x1f"))
            shown_input = input_text or rng.choice([NO_INPUT, NO_INPUT, NO_INPUT, "None", "<no input>"])
            if style == "raw":
                head = f" {instruction}" if offset == 0 else f"{n}. Instruction: {instruction}"
                parts.append(f"{head}\n{n}. Input:\n{shown_input}\n{n}. Output:\n{output}\n###\n")
            elif style in ("plain", "preamble"):
                parts.append(f"{n}. Instruction: {instruction}\n{n}. Input:\n{shown_input}\n{n}. Output:\n{output}\n\n###\n")
            elif style == "bold":
                parts.append(f"**{n}. Instruction:** {instruction}\n**{n}. Input:** {shown_input}\n"
                             f"**{n}. Output:**\n{output}\n\n---\n\n")
            elif style == "unnumbered":
                parts.append(f"Instruction: {instruction}\nInput: {shown_input}\nOutput: {output}\n\n\n")
            else:  # heading
                parts.append(f"### Task {n}\n**Instruction:** {instruction}\n**Input:** {shown_input}\n"
                             f"**Output:**\n{output}\n\n")
        text = "".join(parts)
        if style == "preamble":
            text = f"Sure! Here are {count} more tasks in the same format:\n\n{text}\nI hope these tasks are useful!"
        return text

    def answer(self, key: str, body: dict[str, Any], chat: bool, record: bool = True) -> dict[str, Any]:
        if chat:
            messages = body.get("messages") or []
            prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = body.get("prompt") or ""
            prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
            prompt = str(prompt)
        text = self.compose(key, prompt, chat)
        text, _stopped = _apply_stop(text, body.get("stop"))
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if max_tokens and count_tokens(text) > int(max_tokens):
            text, finish = _truncate_tokens(text, int(max_tokens)), "length"
        if self.config.truncate_rate and random.Random(f"{self.config.seed}:{key}:truncate").random() < self.config.truncate_rate:
            fraction = random.Random(f"{self.config.seed}:{key}:cut").uniform(0.3, 0.9)
            text, finish = _truncate_tokens(text, int(count_tokens(text) * fraction)), "length"
            if record:
                with self._lock:
                    self.counts["truncated"] += 1
                    self.events.append({"key": key, "attempt": None, "fault": "truncated", "path": "answer"})
        usage = {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = 1700000000
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                      "logprobs": None}
            return {"id": f"chatcmpl-{key}", "object": "chat.completion", "created": created,
                    "model": body.get("model", DEMO_MODEL), "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return {"id": f"cmpl-{key}", "object": "text_completion", "created": created,
                "model": body.get("model", DEMO_MODEL), "choices": [choice], "usage": usage}


COMPLETION_PATHS = ("/v1/chat/completions", "/v1/completions", "/chat/completions", "/completions")
MODEL_PATHS = ("/v1/models", "/models")


class JSONHandler(BaseHTTPRequestHandler):
    """What the local OpenAI-shaped servers (demo teacher, demo judge) share: quiet logs, JSON responses (a
    client that hangs up is not an error), the model list, and reading a completions request."""

    protocol_version = "HTTP/1.1"
    batches: BatchService | None = None  # the Batch API, when the server serves one

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers)

    def _not_found(self) -> None:
        self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def _models(self, model: str) -> None:
        self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "created": 0,
                                                     "owned_by": "alpaca-kit"}]})

    def _batch_get(self) -> bool:
        """Answer a GET on a Batch API path (demo_batches); False for any other path."""
        path, _, query = self.path.partition("?")
        result = self.batches.handle_get(path.rstrip("/"), dict(parse_qsl(query))) if self.batches else None
        if result is None:
            return False
        status, payload = result
        if isinstance(payload, bytes):
            self._send(status, payload, content_type="application/octet-stream")
        else:
            self._json(status, payload)
        return True

    def _batch_post(self) -> bool:
        """Answer a POST on a Batch API path (its body read only then); False for any other path."""
        path = self.path.split("?")[0].rstrip("/")
        if self.batches is None or path.split("/v1", 1)[-1].split("/")[1:2] not in (["files"], ["batches"]):
            return False
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, payload = self.batches.handle_post(path, self.headers.get("Content-Type") or "", raw)
        self._json(status, payload)
        return True

    def _completion_request(self) -> tuple[str, dict[str, Any]] | None:
        """The route and JSON body of a POST to a completions endpoint; None once a 404 or 400 is answered.
        The body is read first, so a refused request leaves nothing behind on a kept-alive connection."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0].rstrip("/")
        if path not in COMPLETION_PATHS:
            self._not_found()
            return None
        try:
            body = json.loads(raw or b"{}")
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            self._json(400, {"error": {"message": "request body is not a JSON object", "type": "invalid_request"}})
            return None
        return path, body


class _Handler(JSONHandler):
    disable_nagle_algorithm = True  # headers and body go out as separate writes: avoid the 40 ms delayed-ACK stall
    server_version = "alpaca-demo-teacher/1"
    brain: DemoBrain  # set on the subclass

    def do_GET(self) -> None:
        if self.path.rstrip("/") in MODEL_PATHS:
            self._models(DEMO_MODEL)
        elif self.path.startswith("/_demo/stats"):
            self._json(200, {**self.brain.stats(), **self.batches.stats()})
        elif self._batch_get():
            pass
        elif self.path in ("/", "/health"):
            self._json(200, {"status": "ok"})
        else:
            self._not_found()

    def do_POST(self) -> None:
        if self._batch_post():
            return
        request = self._completion_request()
        if request is None:
            return
        path, body = request
        chat = path.endswith("chat/completions")
        brain = self.brain
        key = _body_hash({"path": "chat" if chat else "completions", **body})
        attempt = brain.next_attempt(key)
        fault = brain.fault_for(key, attempt)
        brain.record(key, attempt, fault, path)
        headers = {"X-Demo-Fault": fault or "none", "X-Demo-Attempt": str(attempt)}
        if brain.config.latency_ms:
            time.sleep(brain.config.latency_ms / 1000.0)
        if fault == "429":
            retry = brain.config.retry_after_s
            headers |= {"Retry-After": str(max(int(round(retry)), 0)), "retry-after-ms": str(int(retry * 1000))}
            self._json(429, {"error": {"message": "Rate limit reached (demo fault)", "type": "rate_limit_exceeded"}},
                       headers)
        elif fault == "5xx":
            self._json(503, {"error": {"message": "Service unavailable (demo fault)", "type": "server_error"}},
                       headers)
        elif fault == "timeout":
            time.sleep(brain.config.timeout_sleep_s)
            self._json(504, {"error": {"message": "too late (demo fault)", "type": "timeout"}}, headers)
        elif fault == "malformed":
            answer = json.dumps(brain.answer(key, body, chat, record=False)).encode("utf-8")
            self._send(200, answer[: max(len(answer) // 2, 1)], headers)
        else:
            self._json(200, brain.answer(key, body, chat), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


class LocalServer:
    """An HTTP server on a local port, served from a daemon thread: `with Server(...) as server: server.base_url`."""

    thread_name = "local-server"

    def __init__(self, httpd: ThreadingHTTPServer):
        self.httpd = httpd
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.port}/v1"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class DemoServer(LocalServer):
    """A running demo teacher. `with DemoServer(DemoConfig(...)) as server: server.base_url`."""

    thread_name = "demo-teacher"

    def __init__(self, config: DemoConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or DemoConfig()
        self.brain = DemoBrain(self.config)
        self.batches = BatchService(self.brain.batch_line, self.config.batch_seconds, tuple(self.config.batch_faults))
        handler = type("DemoHandler", (_Handler,), {"brain": self.brain, "batches": self.batches})
        super().__init__(_Server((host, port), handler))
