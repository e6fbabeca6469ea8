"""A rich Live display of a generation run on a terminal, plain progress lines otherwise (alpaca_data.progress);
nothing with --quiet."""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alpaca_data.generate.engine import Stats
from alpaca_data.progress import LineProgress, fmt_duration, progress_mode


def _fmt_eta(seconds: float | None) -> str:
    return fmt_duration(seconds)


def render(stats: Stats, target: int, title: str = "generate") -> Group:
    elapsed = max(stats.elapsed, 1e-6)
    network_time = (stats.elapsed if stats.network_started is None
                    else max(1e-6, stats.elapsed - (stats.network_started - stats.started)))
    rps = stats.network_answers / network_time if stats.network_answers else 0.0
    eta = None
    if stats.kept and stats.kept < target and stats.network_answers:
        kept_per_s = stats.kept / elapsed
        eta = (target - stats.kept) / kept_per_s if kept_per_s else None
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("kept", f"{stats.kept} / {target}")
    table.add_row("requests", f"{stats.requests_answered} answered, {stats.requests_failed} failed, "
                              f"{stats.in_flight} in flight, {stats.replayed} from journal")
    table.add_row("rate", f"{rps:.1f} req/s   ETA {_fmt_eta(eta)}")
    table.add_row("parsed", f"{stats.parsed} tasks" + (
        f"; parse failures: {_counts(stats.parse_failures)}" if stats.parse_failures else ""))
    if stats.dropped:
        table.add_row("dropped", _counts(stats.dropped))
    if stats.errors:
        table.add_row("retried", _counts(stats.errors))
    table.add_row("tokens", f"{stats.prompt_tokens:,} in / {stats.completion_tokens:,} out   "
                            f"cost ${stats.cost_usd:.4f}")
    if stats.batch_status:
        table.add_row("batch", stats.batch_status)
    return Group(Text(f"{title} [{stats.status}]", style="bold cyan"), table)


def _counts(counter: Any) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())


class Progress:
    """`quiet`: nothing at all. Otherwise the Live table on a terminal (or on `console` when given), plain lines
    (`generate ...: 40/100 tasks kept, 1.2/s, ETA 50s; ...`) every ALPACA_PROGRESS_INTERVAL seconds when not."""

    def __init__(self, target: int, quiet: bool = False, console: Console | None = None, title: str = "generate"):
        self.target, self.quiet, self.title = target, quiet, title
        self.mode = None if quiet else ("bar" if console is not None else progress_mode())
        self.console = console or Console(stderr=True)
        self._live: Live | None = None
        self._lines: LineProgress | None = None

    def __enter__(self) -> Progress:
        if self.mode == "bar":
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        elif self.mode == "lines":
            self._lines = LineProgress(self.title, self.target, unit="tasks kept")
        return self

    def update(self, stats: Stats) -> None:
        if self._live is not None:
            self._live.update(render(stats, self.target, self.title))
        elif self._lines is not None:
            note = f"{stats.requests_answered} requests answered, {stats.requests_failed} failed"
            if stats.cost_usd:
                note += f", ${stats.cost_usd:.4f}"
            if stats.batch_status:
                note += f"; {stats.batch_status}"
            self._lines.update(min(stats.kept, self.target), self.target, note)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        if self._lines is not None:
            if exc[0] is None:
                self._lines.close()
            self._lines = None
