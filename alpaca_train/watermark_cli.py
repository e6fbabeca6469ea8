"""`alpaca-train detect`: filled in by the watermark work."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
