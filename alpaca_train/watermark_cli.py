"""`alpaca-train detect`: is a text watermarked with this server's key? (`alpaca_train.watermark`)

    alpaca-train detect --model CHECKPOINT "some text"
    alpaca-train detect --model CHECKPOINT --file answer.txt --json
    cat answer.txt | alpaca-train detect --model CHECKPOINT -

The verdict is data: the exit code is 0 whether or not the text is watermarked.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from alpaca_data.errors import UsageError, UserError, refuse_missing_model_path


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_command)


def detect_command(
    text: str | None = typer.Argument(None, help="the text to score; - reads it from stdin"),
    model: str = typer.Option(..., "--model", help="the checkpoint folder that generated it (tokenizer and config)"),
    file: Path | None = typer.Option(None, "--file", help="read the text from this file (UTF-8)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    threshold: float | None = typer.Option(None, "--threshold", help="z-score at which the verdict is watermarked "
                                           "(default 4.0)"),
    key_file: str | None = typer.Option(None, "--watermark-key-file",
                                        help="the key file (default: $ALPACA_WATERMARK_KEY, then the server's file)"),
) -> None:
    """Score TEXT for the watermark: scored tokens, green share, z-score, p-value and the verdict."""
    if text is not None and file is not None:
        raise UsageError("give TEXT or --file, not both")
    if text is None and file is None:
        raise UsageError("no text: give TEXT, --file F, or - to read stdin")
    refuse_missing_model_path(model, hub=False)  # checked before importing torch: a typo answers at once
    content = _read_text(text, file)
    if not content.strip():
        raise UserError("no text to score (it is empty)")

    import torch

    from alpaca_train.watermark import Z_THRESHOLD, Detector, load_key

    torch.set_num_threads(1)  # detection is thousands of tiny ops: a thread pool only adds overhead to each
    key, _ = load_key(key_file, create=False)  # detect never makes a key: a new one could detect nothing
    detector = Detector(model, key, threshold=Z_THRESHOLD if threshold is None else threshold)
    result = detector.detect_text(content)
    if as_json:
        typer.echo(json.dumps({**result.as_dict(), "key_fingerprint": key.fingerprint}))
        return
    verdict = "watermarked" if result.watermarked else "not watermarked"
    sign = ">=" if result.watermarked else "<"
    typer.echo(f"scored tokens: {result.scored_tokens}\n"
               f"green share:   {result.green_fraction:.3f} (0.25 expected without the watermark)\n"
               f"z-score:       {result.z_score:.2f}\n"
               f"p-value:       {result.p_value:.3g}\n"
               f"verdict:       {verdict} (z {sign} {result.threshold:g})\n"
               f"key:           {key.fingerprint} ({key.source})")


def _read_text(text: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{file}: not UTF-8 text") from None
        except OSError as error:
            raise UserError(f"{file}: cannot read it ({error.strerror or error})") from None
    if text == "-":
        return sys.stdin.read()
    return text or ""
