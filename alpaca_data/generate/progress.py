"""A rich Live display of a generation run (disabled with --quiet)."""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alpaca_data.generate.engine import Stats


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


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
    return Group(Text(f"{title} [{stats.status}]", style="bold cyan"), table)


def _counts(counter: Any) -> str:
    return ", ".join(f"{name} {count}" for name, count in counter.most_common())


class Progress:
    def __init__(self, target: int, quiet: bool = False, console: Console | None = None, title: str = "generate"):
        self.target, self.quiet, self.title = target, quiet, title
        self.console = console or Console(stderr=True)
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if not self.quiet:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def update(self, stats: Stats) -> None:
        if self._live is not None:
            self._live.update(render(stats, self.target, self.title))

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
