"""`alpaca-data view`: a local, read-only web page over the store (see `alpaca_data.view`)."""
from __future__ import annotations

import sys
import time

import typer

from alpaca_data.commands._common import open_store
from alpaca_data.progress import is_quiet, stderr_console


def _say(message: str) -> None:
    if not is_quiet():
        stderr_console.print(message, highlight=False, markup=False)


def view(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; the page "
                                                         "then shows the store to anyone who can reach it)."),
    port: int = typer.Option(8766, "--port", min=0, max=65535, help="Port; 0 picks any free one."),
) -> None:
    """Browse the store in a local web page: datasets and revisions, records (paged, searched, faceted), why a
    filter step dropped records, diffs, length and verb-object pictures, eval annotations. Read-only: the store
    is never written. Every revision a ref points to is indexed before the port opens; Ctrl-C stops."""
    from alpaca_data.view.server import run

    store = open_store(create=False)
    started = time.monotonic()

    def on_listen(url: str) -> None:
        _say(f"serving {url} (ready in {time.monotonic() - started:.1f} s; Ctrl-C stops)")
        print(url, flush=True)

    run(store, host, port, say=_say, on_listen=on_listen)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("view")(view)
