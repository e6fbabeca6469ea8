"""Shared bits for CLI commands: opening the store, printing tables and JSON."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from alpaca_data.errors import UsageError
from alpaca_data.records import parse_field_map
from alpaca_data.store import Store

# Piped output is not cut to 80 columns: tables stay readable in logs and CI.
stdout_console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def open_store(create: bool = True) -> Store:
    return Store.open(create=create)


def field_map_option(pairs: list[str] | None) -> dict[str, str]:
    try:
        return parse_field_map(pairs or [])
    except ValueError as error:
        raise UsageError(str(error)) from None


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    """Values are data, never markup: `[/]` or `array[i]` print as they are."""
    table = Table(title=Text(title) if title else None, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(Text(str(column)), overflow="fold")
    for row in rows:
        table.add_row(*(Text("" if value is None else str(value)) for value in row))
    stdout_console.print(table)


def shorten(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
