"""Progress bars on stderr (stdout stays clean for ids and machine-readable output)."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Sized
from typing import Callable, Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Yield `tick(n=1)`. Shows a rich bar on a terminal unless quiet or disabled."""
    if not enabled or _quiet or not sys.stderr.isatty():
        yield lambda n=1: None
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=stderr_console, transient=True)
    with progress:
        task = progress.add_task(description, total=total)
        batch = [0]

        def tick(n: int = 1) -> None:
            batch[0] += n
            if batch[0] >= 512:  # rich refreshes are not free: update in batches
                progress.advance(task, batch[0])
                batch[0] = 0

        yield tick
        progress.advance(task, batch[0])


T = TypeVar("T")
TRACK_MIN_ITEMS = 2000  # shorter passes finish before a bar is worth drawing


def track(items: Iterable[T], description: str, enabled: bool = True) -> Iterator[T]:
    """Iterate `items` with a progress bar for passes of TRACK_MIN_ITEMS or more."""
    if not isinstance(items, Sized):
        items = list(items)
    with progress_bar(description, total=len(items), enabled=enabled and len(items) >= TRACK_MIN_ITEMS) as tick:
        for item in items:
            yield item
            tick()
