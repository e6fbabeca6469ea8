"""Put the server together (checkpoint, watermark key, content filter, batch engine) and run it with uvicorn."""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
from dataclasses import dataclass

from alpaca_train.serve.app import DEFAULT_TERMS, ServeState, create_app
from alpaca_train.serve.requests import Limits


@dataclass
class ServeOptions:
    checkpoint: str
    host: str = "127.0.0.1"
    port: int = 8000
    model_name: str | None = None
    api_key: str | None = None
    moderation: str = "local"
    moderation_base_url: str | None = None
    watermark: bool = True
    watermark_key_file: str | None = None
    flags_file: str = "alpaca-flags.jsonl"
    terms: str | None = None
    max_prompt_tokens: int | None = None
    max_tokens: int = 1024
    default_max_tokens: int = 256
    max_concurrent: int = 64
    request_timeout: float = 120.0
    max_batch_size: int = 16
    dtype: str = "auto"
    device: str | None = None
    log_refused_text: bool = False
    header_timeout: float = 10.0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_state(options: ServeOptions) -> ServeState:
    from alpaca_train.moderation import make_moderator, refusal_message
    from alpaca_train.serve.checkpoint import load_checkpoint
    from alpaca_train.serve.engine import BatchEngine
    from alpaca_train.serve.flags import FlagJournal

    moderator = make_moderator(options.moderation, base_url=options.moderation_base_url)
    checkpoint = load_checkpoint(options.checkpoint, name=options.model_name, dtype=options.dtype,
                                 device=options.device)
    detector = config = description = None
    if options.watermark:
        from alpaca_train.watermark import Detector, load_key, watermark_description, watermarking_config

        key, notice = load_key(options.watermark_key_file)
        if notice:
            _say(notice)
        config, description = watermarking_config(key), watermark_description(key)
        detector = Detector(str(checkpoint.path), key)
    context = checkpoint.context_length
    max_prompt = options.max_prompt_tokens or (max(1, context - 1) if context else 2048)
    limits = Limits(max_prompt_tokens=max_prompt, max_tokens=options.max_tokens,
                    default_max_tokens=options.default_max_tokens, max_concurrent=options.max_concurrent,
                    request_timeout=options.request_timeout)
    engine = BatchEngine(checkpoint.model, checkpoint.tokenizer, max_batch_size=options.max_batch_size,
                         watermarking_config=config)
    return ServeState(checkpoint=checkpoint, engine=engine, limits=limits, moderator=moderator,
                      refusal_message=refusal_message, flags=FlagJournal(options.flags_file), detector=detector,
                      watermark={"enabled": True, **description} if options.watermark else {"enabled": False},
                      api_key=options.api_key,
                      terms=options.terms or DEFAULT_TERMS, log_refused_text=options.log_refused_text)


def run_server(options: ServeOptions, listener: socket.socket) -> None:
    import uvicorn

    from alpaca_data.web import server_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    state = build_state(options)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    watermark = f"watermark on (key {state.watermark.get('key_fingerprint')})" if options.watermark else "watermark OFF"
    _say(f"serving {state.checkpoint.name} on http://{shown}:{port} (chat page at /, OpenAI API at /v1); "
         f"content filter {state.moderator.name}; {watermark}; flags -> {options.flags_file}")
    # the connection cap sits well above --max-concurrent, whose excess gets the API's own 429
    config = server_config(create_app(state), header_timeout=options.header_timeout,
                           max_connections=max(512, 4 * options.max_concurrent), log_level="warning",
                           access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        asyncio.run(server.serve(sockets=[listener]))
    except KeyboardInterrupt:
        pass
    finally:
        state.engine.close()
        try:
            asyncio.run(state.moderator.aclose())
        except Exception:  # noqa: BLE001 - closing an HTTP client at exit must not hide how the server ended
            pass
        _say(f"stopped: {sum(state.counts.values())} requests, {sum(state.refusals.values())} refused")
