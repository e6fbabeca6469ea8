"""`alpaca-data eval` subcommands (report); filled in by its issue work."""
from __future__ import annotations

import typer


def register(eval_app: typer.Typer) -> None:
    return None
