"""What the commands that send requests (generate, eval generate, eval judge) say when a run ends early."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer

STOPPED_EXIT = 3  # stopped cleanly (budget, --max-requests): nothing committed, --resume continues


@contextmanager
def resumable_on_interrupt(what: str) -> Iterator[None]:
    """Ctrl-C: one line saying that `what` (answers, verdicts) is journalled and how to continue; exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"interrupted: {what} so far are journalled; run the same command with --resume to continue",
              file=sys.stderr)
        raise typer.Exit(130) from None


def exit_uncommitted(result: Any, limits: Any, *, done: str, total: int) -> NoReturn:
    """An eval run that committed nothing: why (budget, --max-requests, failed requests), how far it got
    (`stats.answered` of `total`, `done` naming them), and how to continue."""
    stats = result.stats
    if result.status == "batches_cancelled":
        print(f"cancelled {len(stats.cancelled)} open batches of run {result.run_dir.name}"
              + (f": {', '.join(stats.cancelled)}" if stats.cancelled else "")
              + "; --resume collects what they answered and sends the rest again")
        raise typer.Exit(0)
    if result.status == "budget_exhausted":
        why = f"budget reached (${stats.cost_usd:.4f} of ${limits.max_cost})"
    elif result.status == "request_limit":
        why = f"--max-requests {limits.max_requests} reached"
    else:
        why = f"{stats.failed} requests failed ({dict(stats.errors)})"
    print(f"{why}: {stats.answered} of {total} {done}; nothing committed. Continue with "
          f"--resume (run folder {result.run_dir})", file=sys.stderr)
    raise typer.Exit(STOPPED_EXIT if result.status != "incomplete" else 1)
