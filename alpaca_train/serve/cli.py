"""`alpaca-train serve CHECKPOINT` and `alpaca-train flags export`."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import typer

from alpaca_data.errors import UsageError, UserError, refuse_missing_model_path

DEFAULT_FLAGS_FILE = "alpaca-flags.jsonl"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    flags_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Answers users flagged in the demo.")
    flags_app.command("export")(export)
    app.add_typer(flags_app, name="flags")


def serve(
    checkpoint: str = typer.Argument(..., help="a folder made by alpaca-train (or any causal LM folder)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, "--port", help="0: any free port"),
    model_name: str | None = typer.Option(None, "--model-name", help="the model id clients use (default: folder name)"),
    api_key_env: str | None = typer.Option(None, "--api-key-env", help="env var holding a bearer key every route needs"),
    moderation: str = typer.Option("local", "--moderation", help="content filter: local, openai[:MODEL] or none"),
    moderation_base_url: str | None = typer.Option(None, "--moderation-base-url",
                                                   help="OpenAI-compatible moderation endpoint (openai backend)"),
    watermark: str = typer.Option("on", "--watermark", help="on (every generated token) or off"),
    watermark_key_file: str | None = typer.Option(None, "--watermark-key-file",
                                                  help="secret key file (default $ALPACA_WATERMARK_KEY)"),
    flags_file: str = typer.Option(DEFAULT_FLAGS_FILE, "--flags-file", help="where flags are journalled"),
    terms_file: str | None = typer.Option(None, "--terms-file", help="text of the notice users must accept"),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens",
                                                 help="longest prompt (default: the model's context - 1)"),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="most tokens a request may ask for"),
    default_max_tokens: int = typer.Option(256, "--default-max-tokens", help="max_tokens when a request gives none"),
    max_concurrent: int = typer.Option(64, "--max-concurrent", help="requests in progress at most (then 429)"),
    request_timeout: float = typer.Option(120.0, "--request-timeout",
                                          help="seconds per request: waiting longer is a 503, generating longer cuts"),
    max_batch_size: int = typer.Option(16, "--max-batch-size", help="requests generated together"),
    header_timeout: float = typer.Option(10.0, "--header-timeout",
                                         help="seconds a client has to send its request headers (then disconnected)"),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16"),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: cuda when present)"),
    log_refused_text: bool = typer.Option(False, "--log-refused-text",
                                          help="log the text of refused prompts/answers (off: category only)"),
) -> None:
    """Serve CHECKPOINT with OpenAI's API and a web chat (content filter and watermark on by default)."""
    # the checkpoint first (before torch is imported or the port bound): a typo is named at once, busy port or not
    refuse_missing_model_path(checkpoint, kind="checkpoint", hub=False)
    from alpaca_train.serve.server import ServeOptions, run_server

    if watermark not in ("on", "off"):
        raise UsageError(f"--watermark {watermark!r}: expected on or off")
    for name, value in (("--max-tokens", max_tokens), ("--default-max-tokens", default_max_tokens),
                        ("--max-concurrent", max_concurrent), ("--max-batch-size", max_batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1")
    if request_timeout <= 0:
        raise UsageError("--request-timeout must be positive")
    if header_timeout <= 0:
        raise UsageError("--header-timeout must be positive")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise UsageError(f"--api-key-env {api_key_env}: that environment variable is not set")
    terms = None
    if terms_file:
        try:
            terms = Path(terms_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise UserError(f"{terms_file}: cannot read the terms ({error.strerror or error})") from None
    options = ServeOptions(checkpoint=checkpoint, host=host, port=port, model_name=model_name, api_key=api_key,
                           moderation=moderation, moderation_base_url=moderation_base_url,
                           watermark=watermark == "on", watermark_key_file=watermark_key_file, flags_file=flags_file,
                           terms=terms, max_prompt_tokens=max_prompt_tokens, max_tokens=max_tokens,
                           default_max_tokens=min(default_max_tokens, max_tokens), max_concurrent=max_concurrent,
                           request_timeout=request_timeout, max_batch_size=max_batch_size, dtype=dtype, device=device,
                           log_refused_text=log_refused_text, header_timeout=header_timeout)
    try:
        listener = socket.create_server((host, port))
    except OSError as error:
        raise UserError(f"{host}:{port}: cannot listen ({error.strerror or error})") from None
    run_server(options, listener)


def export(
    dataset: str = typer.Option(..., "--dataset", "-d", help="dataset to commit the flags to"),
    flags_file: str = typer.Option(DEFAULT_FLAGS_FILE, "--flags-file", help="the server's flags journal"),
    store: str | None = typer.Option(None, "--store", envvar="ALPACA_STORE", help="store folder (default ./alpaca-store)"),
    message: str = typer.Option("", "--message", "-m"),
) -> None:
    """Commit every flag so far as a revision of DATASET (query it with `alpaca-data sql`)."""
    from alpaca_train.serve.flags import FlagJournal, export_flags

    result = export_flags(FlagJournal(flags_file), dataset, store_path=store, message=message)
    count = result.manifest.record_count
    print(f"{dataset}@{result.short_id}: {count} flag{'s' if count != 1 else ''}"
          f"{'' if result.created else ' (unchanged: already committed)'}", file=sys.stdout)
