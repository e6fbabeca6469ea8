"""The HTTP side of `alpaca-train serve`: OpenAI's endpoints, the chat page and its small API.

Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (both with `stream: true`, as
server-sent events), POST /v1/watermark/detect, GET / (the chat page), GET /api/info, POST /api/flags,
GET /api/stats. With an API key every route but GET / (the page, which then asks for the key) wants
`Authorization: Bearer KEY`. Every request passes `alpaca_data.web.Guard` first: loopback Host only when reached
over loopback, POSTs as `application/json` from no Origin or this server's own, bodies capped at 1 MiB before
and while they are read. Errors are OpenAI-style bodies; nothing a client sends can produce a stack trace.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from alpaca_data.web import BadJSON, Guard, parse_json
from alpaca_train.serve.answers import GenerationFailed, Outcome, released_text
from alpaca_train.serve.checkpoint import Checkpoint
from alpaca_train.serve.engine import BatchEngine, GenerationRequest, Sampling
from alpaca_train.serve.errors import APIError
from alpaca_train.serve.flags import REASONS, FlagJournal
from alpaca_train.serve.requests import Limits, Parsed, parse

log = logging.getLogger("alpaca_train.serve")
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_TERMS = ("This demo is for non-commercial research only. The model can produce answers that are wrong, "
                 "biased or offensive; do not rely on them. Prompts and answers pass a content filter, answers "
                 "carry a watermark, and answers you flag are kept (with your prompt) to improve the training data.")


@dataclass
class ServeState:
    checkpoint: Checkpoint
    engine: BatchEngine
    limits: Limits
    moderator: Any
    refusal_message: Any
    flags: FlagJournal
    detector: Any = None  # a watermark Detector, None with the watermark off
    watermark: dict[str, Any] | None = None  # scheme and key fingerprint (never the key)
    api_key: str | None = None
    terms: str = DEFAULT_TERMS
    log_refused_text: bool = False
    active: int = 0
    counts: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)

    def info(self) -> dict[str, Any]:
        return {"model": self.checkpoint.name, "lineage": public_lineage(self.checkpoint),
                "watermark": self.watermark, "moderation": getattr(self.moderator, "name", "none"),
                "terms": self.terms, "flag_reasons": list(REASONS),
                "limits": {"max_prompt_tokens": self.limits.max_prompt_tokens, "max_tokens": self.limits.max_tokens,
                           "max_concurrent": self.limits.max_concurrent,
                           "request_timeout": self.limits.request_timeout}}


def public_lineage(checkpoint: Checkpoint) -> dict[str, Any]:
    """The checkpoint's lineage as clients see it: folder names, never paths of this machine."""
    summary = dict(checkpoint.summary())
    for key in ("checkpoint", "output_dir", "base_model"):
        value = summary.get(key)
        if isinstance(value, str) and (key != "base_model" or _is_local_path(value)):
            summary[key] = Path(value).name
    return summary


def _is_local_path(value: str) -> bool:
    """A base model given as a folder of this machine (a Hub id such as `org/name` is kept as it is)."""
    return Path(value).is_absolute() or value.startswith(("~", "./", "../", ".\\", "..\\")) or "\\" in value


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = "no such route" if error.status_code == 404 else str(error.detail)
        return APIError(error.status_code, message, headers=dict(error.headers or {})).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = (error.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return APIError(422, f"{where or 'body'}: {first.get('msg', 'invalid value')}", param=where or None).response()

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.error("internal error: %s", type(error).__name__)
        return APIError(500, "internal server error").response()


def create_app(state: ServeState) -> FastAPI:
    app = FastAPI(title=f"alpaca-train serve: {state.checkpoint.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.serve = state
    _error_handlers(app)

    @app.middleware("http")
    async def authorise(request: Request, call_next):
        if state.api_key and not _authorised(request, state.api_key):
            if request.url.path == "/":  # the page itself loads, then asks for the key
                return await call_next(request)
            return APIError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                            code="invalid_api_key").response()
        return await call_next(request)

    # outermost: cross-site writes, oversized and slow bodies are refused before anything else runs
    app.add_middleware(Guard, max_body=MAX_BODY_BYTES,
                       error=lambda status, message: APIError(status, message).response())

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        html = resources.files("alpaca_train.serve").joinpath("static/chat.html").read_text(encoding="utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": "default-src 'self'; script-src 'self' "
                                           "'unsafe-inline'; style-src 'self' 'unsafe-inline'"})

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return state.info()

    @app.get("/api/stats")
    async def stats() -> dict[str, Any]:
        engine = state.engine
        return {"requests": dict(state.counts), "refusals": dict(state.refusals), "active": state.active,
                "waiting": engine.waiting, "batches": engine.batches, "cancelled": engine.cancelled,
                "mean_batch_size": engine.batch_rows / engine.batches if engine.batches else 0.0}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(state)]}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        _check_model(state, name)
        return _model_card(state)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _generate(state, request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _generate(state, request, chat=True)

    @app.post("/v1/watermark/detect")
    async def detect(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise APIError(400, "text: a string is required", param="text")
        if state.detector is None:
            raise APIError(503, "the watermark is off on this server (no key to detect with)")
        return (await asyncio.to_thread(state.detector.detect_text, text)).as_dict()

    @app.post("/api/flags")
    async def flag(request: Request) -> dict[str, Any]:
        return await _flag(state, await _json_body(request))

    return app


def _authorised(request: Request, key: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def _model_card(state: ServeState) -> dict[str, Any]:
    return {"id": state.checkpoint.name, "object": "model", "created": int(state.checkpoint.path.stat().st_mtime),
            "owned_by": "alpaca-kit", "lineage": public_lineage(state.checkpoint), "watermark": state.watermark}


def _check_model(state: ServeState, name: str) -> None:
    if name != state.checkpoint.name:
        raise APIError(404, f"model {name!r} is not served here (this server serves {state.checkpoint.name!r})",
                       param="model", code="model_not_found")


async def _json_body(request: Request) -> Any:
    raw = await request.body()  # the Guard stops reading past MAX_BODY_BYTES (a 413)
    try:
        return parse_json(raw)
    except BadJSON as error:
        raise APIError(400, str(error)) from None


async def _moderate_prompt(state: ServeState, parsed: Parsed, where: str) -> None:
    from alpaca_train.moderation import ModerationUnavailable

    try:
        verdict = await state.moderator.check(parsed.moderated_text)
    except ModerationUnavailable as error:
        raise APIError(503, f"the content filter is unavailable, so nothing is generated: {error}") from None
    if verdict.flagged:
        state.refusals[f"prompt:{verdict.category}"] += 1
        shown = f" text={parsed.moderated_text!r}" if state.log_refused_text else ""
        log.warning("refused a prompt: category %s (%s)%s", verdict.category, state.moderator.name, shown)
        raise APIError(400, state.refusal_message(verdict, "prompt"), param=where, code="content_filter")


class _Slot:
    """One of the server's --max-concurrent places, given back exactly once however the request ends."""

    def __init__(self, state: ServeState):
        self.state, self.held = state, True
        state.active += 1

    def release(self, generation: GenerationRequest | None = None) -> None:
        if generation is not None:
            generation.cancel()  # no-op for a finished answer; stops one nobody will read
        if self.held:
            self.held = False
            self.state.active -= 1


async def _generate(state: ServeState, request: Request, *, chat: bool):
    body = await _json_body(request)
    parsed = parse(body, chat=chat, limits=state.limits, render=state.checkpoint.chat_prompt)
    _check_model(state, parsed.model)
    state.counts["chat" if chat else "completions"] += 1
    if state.active >= state.limits.max_concurrent:
        raise APIError(429, f"this server takes {state.limits.max_concurrent} requests at a time; retry shortly",
                       headers={"Retry-After": "1"})
    slot = _Slot(state)
    try:
        await _moderate_prompt(state, parsed, "messages" if chat else "prompt")
        tokenizer, checkpoint = state.checkpoint.tokenizer, state.checkpoint
        prompt_ids = checkpoint.prompt_prefix + tokenizer(parsed.prompt, add_special_tokens=False)["input_ids"]
        if not prompt_ids:  # an empty prompt: start from the start-of-text token, as OpenAI's models do
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            if start is None:
                raise APIError(400, "prompt: an empty prompt is not supported by this model", param="prompt")
            prompt_ids = [start]
        if len(prompt_ids) > state.limits.max_prompt_tokens:
            raise APIError(413, f"the prompt has {len(prompt_ids)} tokens; this server takes at most "
                                f"{state.limits.max_prompt_tokens}", param="messages" if chat else "prompt",
                           code="context_length_exceeded")
        generation = GenerationRequest(prompt_ids=prompt_ids, max_tokens=parsed.max_tokens,
                                       sampling=Sampling(parsed.temperature, parsed.top_p), stop=parsed.stop,
                                       deadline=time.monotonic() + state.limits.request_timeout,
                                       loop=asyncio.get_running_loop())
        try:
            state.engine.submit(generation)
        except RuntimeError:
            raise APIError(503, "the server is shutting down") from None
    except BaseException:
        slot.release()
        raise
    answer = released_text(generation, state.moderator, state.refusal_message)
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    if parsed.stream:
        # The background task runs however the response ends, even when the client left before the first
        # byte (then the generator below never starts, and its own clean-up never runs).
        return StreamingResponse(_stream(state, answer, parsed, ident, len(prompt_ids), chat, slot),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
                                 background=BackgroundTask(slot.release, generation))
    try:
        outcome = await _collect(answer)
    except GenerationFailed as error:
        raise APIError(503, str(error)) from None
    finally:
        slot.release(generation)
    _note_answer_refusal(state, outcome)
    return _whole(state, parsed, ident, outcome, len(prompt_ids), chat)


async def _collect(answer) -> Outcome:
    async for piece in answer:
        if isinstance(piece, Outcome):
            return piece
    raise GenerationFailed("the answer ended without an outcome")


def _note_answer_refusal(state: ServeState, outcome: Outcome) -> None:
    if outcome.refusal:
        state.refusals[f"answer:{outcome.refusal['category']}"] += 1
        shown = f" text={outcome.text!r}" if state.log_refused_text else ""
        log.warning("cut an answer: category %s (%s)%s", outcome.refusal["category"], state.moderator.name, shown)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _whole(state: ServeState, parsed: Parsed, ident: str, outcome: Outcome, prompt_tokens: int, chat: bool):
    choice: dict[str, Any] = {"index": 0, "finish_reason": outcome.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": outcome.text}
    else:
        choice.update(text=outcome.text, logprobs=None)
    if outcome.refusal:
        choice["content_filter"] = {"category": outcome.refusal["category"], "message": outcome.refusal["message"]}
    return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": state.checkpoint.name, "choices": [choice],
            "usage": _usage(prompt_tokens, outcome.completion_tokens)}


async def _stream(state: ServeState, answer, parsed: Parsed, ident: str, prompt_tokens: int, chat: bool,
                  slot: _Slot):
    created = int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(delta: str | None, finish: str | None = None, extra: dict | None = None) -> str:
        if chat:
            choice: dict[str, Any] = {"index": 0, "delta": {} if delta is None else {"content": delta},
                                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
        choice.update(extra or {})
        payload = {"id": ident, "object": kind, "created": created, "model": state.checkpoint.name,
                   "choices": [choice]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    try:
        if chat:
            first = json.loads(chunk("")[6:])
            first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
            yield f"data: {json.dumps(first)}\n\n"
        try:
            async for piece in answer:
                if isinstance(piece, Outcome):
                    _note_answer_refusal(state, piece)
                    extra = {"content_filter": {"category": piece.refusal["category"],
                                                "message": piece.refusal["message"]}} if piece.refusal else None
                    yield chunk(None, piece.finish_reason, extra)
                    if parsed.include_usage:
                        usage = {"id": ident, "object": kind, "created": created, "model": state.checkpoint.name,
                                 "choices": [], "usage": _usage(prompt_tokens, piece.completion_tokens)}
                        yield f"data: {json.dumps(usage)}\n\n"
                    break
                yield chunk(piece)
        except GenerationFailed as error:
            yield f"data: {json.dumps(APIError(503, str(error)).body())}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        await answer.aclose()
        slot.release()


async def _flag(state: ServeState, body: Any) -> dict[str, Any]:
    from alpaca_train.moderation import ModerationUnavailable
    from alpaca_train.serve.prompting import PromptError, split_chat

    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    answer, reason = body.get("answer"), body.get("reason")
    if not isinstance(answer, str) or not answer.strip():
        raise APIError(400, "answer: the flagged answer is required", param="answer")
    if reason not in REASONS:
        raise APIError(422, f"reason: expected one of {', '.join(REASONS)}", param="reason")
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > 2000:
        raise APIError(422, "comment: a string of at most 2000 characters", param="comment")
    try:
        instruction, input_text = split_chat(body.get("messages") or [])
    except (PromptError, AttributeError) as error:
        raise APIError(400, f"{error}", param="messages") from None
    try:
        moderation = (await state.moderator.check(answer)).as_dict()
    except ModerationUnavailable:
        moderation = None  # the flag matters more than its scores: keep it without them
    z = None
    if state.detector is not None:
        z = (await asyncio.to_thread(state.detector.detect_text, answer)).z_score
    record = await asyncio.to_thread(state.flags.append, {
        "instruction": instruction, "input": input_text, "answer": answer, "reason": reason, "comment": comment,
        "model": state.checkpoint.name, "lineage": state.checkpoint.summary(), "moderation": moderation,
        "watermark_z": z, "watermark": state.watermark})
    state.counts["flags"] += 1
    return {"flag_id": record["flag_id"], "flagged_at": record["flagged_at"]}
