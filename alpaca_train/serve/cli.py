"""`alpaca-train serve` and `alpaca-train flags`."""
from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
