"""Progress on stderr (stdout stays clean for ids and machine-readable output).

One rule for every long command: on a terminal, rich bars; when stderr is not a terminal (a log, CI, a pipe),
a plain line at most every ALPACA_PROGRESS_INTERVAL seconds (10 by default), e.g.
`eval generate: 40/252 items, 0.8/s, ETA 4m25s`. `--quiet` silences both.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Sized
from typing import Callable, Iterator, TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

stderr_console = Console(stderr=True)

_quiet = False
DEFAULT_INTERVAL = 10.0
INTERVAL_ENV = "ALPACA_PROGRESS_INTERVAL"


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def progress_interval() -> float:
    """Seconds between two plain progress lines (ALPACA_PROGRESS_INTERVAL, 10 by default)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_mode(enabled: bool = True) -> str | None:
    """"bar" on a terminal, "lines" otherwise, None when quiet or disabled."""
    if not enabled or _quiet:
        return None
    return "bar" if stderr_is_terminal() else "lines"


def fmt_duration(seconds: float | None) -> str:
    """4m25s, 1h02m, 12s; "-" when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "-"
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _fmt_amount(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e6:.1f}"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _fmt_rate(rate: float, unit: str) -> str:
    if unit == "bytes":
        return f"{rate / 1e6:.1f} MB/s"
    if rate and rate < 0.1:
        return f"{1 / rate:.1f} s/{_singular(unit.split()[0])}"
    return f"{rate:.1f}/s"


def _singular(unit: str) -> str:
    return unit[:-1] if unit.endswith("s") and len(unit) > 1 else unit


class LineProgress:
    """Plain progress lines on stderr, at most one per `interval` seconds (the first after one interval, so
    short work stays silent), and a closing line when any was written: done/total, rate, ETA."""

    def __init__(self, description: str, total: int | float | None = None, unit: str = "items",
                 interval: float | None = None, stream: TextIO | None = None):
        self.description, self.total, self.unit = description, total, unit
        self.interval = progress_interval() if interval is None else interval
        self.stream = stream
        self.started = self._last = time.monotonic()
        self.first_done: float | None = None  # work already done when we started (a resumed run): not in the rate
        self.done: float = 0
        self.note = ""
        self.lines = 0

    def _rate(self, now: float) -> float:
        elapsed = now - self.started
        return (self.done - (self.first_done or 0)) / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None, final: bool = False) -> str:
        now = time.monotonic() if now is None else now
        unit = "MB" if self.unit == "bytes" else self.unit
        total = f"/{_fmt_amount(self.total, self.unit)}" if self.total else ""
        text = f"{self.description}: {_fmt_amount(self.done, self.unit)}{total} {unit}"
        rate = self._rate(now)
        if final:
            text += f" in {fmt_duration(now - self.started)}"
        else:
            text += f", {_fmt_rate(rate, self.unit)}"
            if self.total:
                left = max(0.0, self.total - self.done)
                text += f", ETA {fmt_duration(left / rate) if rate > 0 else '-'}"
        return text + (f"; {self.note}" if self.note else "")

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        print(text, file=stream, flush=True)
        self.lines += 1

    def update(self, done: float, total: float | None = None, note: str | None = None) -> None:
        if self.first_done is None:
            self.first_done = done
        self.done = done
        if total:
            self.total = total
        if note is not None:
            self.note = note
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line(now))

    def advance(self, n: float = 1) -> None:
        if self.first_done is None:
            self.first_done = 0
        self.update(self.done + n)

    def close(self) -> None:
        """The closing line, only when progress lines were written (short work stays silent)."""
        if self.lines:
            self._write(self.line(final=True))
            self.lines = 0


@contextlib.contextmanager
def progress_bar(description: str, total: int | float | None, enabled: bool = True, unit: str = "items",
                 bar_min: float = 0) -> Iterator[Callable[[int], None]]:
    """Yield `tick(n=1)`: a rich bar on a terminal (for totals of `bar_min` or more), plain lines otherwise
    (every ALPACA_PROGRESS_INTERVAL seconds, so short passes print nothing); nothing when quiet or disabled."""
    mode = progress_mode(enabled)
    if mode == "lines":
        lines = LineProgress(description, total, unit=unit)
        lines.first_done = 0
        try:
            yield lines.advance
        finally:
            lines.close()
        return
    if mode is None or (total or 0) < bar_min:
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


def track(items: Iterable[T], description: str, enabled: bool = True, unit: str = "items") -> Iterator[T]:
    """Iterate `items` with progress (a bar on a terminal for passes of TRACK_MIN_ITEMS or more)."""
    if not isinstance(items, Sized):
        items = list(items)
    with progress_bar(description, total=len(items), enabled=enabled, unit=unit, bar_min=TRACK_MIN_ITEMS) as tick:
        for item in items:
            yield item
            tick()


class StatusProgress:
    """Progress of work that reports a running count (requests answered, steps, tasks kept): a rich bar on a
    terminal, plain lines otherwise. `update(done, total, note)`; use as a context manager."""

    def __init__(self, description: str, total: int | None = None, unit: str = "items", enabled: bool = True,
                 transient: bool = False):
        self.description, self.total, self.unit, self.transient = description, total, unit, transient
        self.mode = progress_mode(enabled)
        self._bar: Progress | None = None
        self._task = None
        self._lines: LineProgress | None = None

    def __enter__(self) -> StatusProgress:
        if self.mode == "bar":
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=stderr_console, transient=self.transient)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total or None, note="")
        elif self.mode == "lines":
            self._lines = LineProgress(self.description, self.total, unit=self.unit)
        return self

    def update(self, done: float, total: float | None = None, note: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total or self.total or None, note=note)
        elif self._lines is not None:
            self._lines.update(done, total or self.total, note)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
        if self._lines is not None:
            if exc[0] is None:
                self._lines.close()
            self._lines = None


@contextlib.contextmanager
def heartbeat(description: str, enabled: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """For one long step with no count (loading a checkpoint, one big upload): when stderr is not a terminal,
    `description: 20s elapsed` every ALPACA_PROGRESS_INTERVAL seconds until it ends; nothing otherwise."""
    import threading

    if (stream is None and progress_mode(enabled) != "lines") or (stream is not None and (_quiet or not enabled)):
        yield
        return
    interval, started, stop = max(progress_interval(), 0.01), time.monotonic(), threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            print(f"{description}: {fmt_duration(time.monotonic() - started)} elapsed", file=stream or sys.stderr,
                  flush=True)

    thread = threading.Thread(target=beat, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
