"""The run journal of `generate` and the eval request runs: one JSON line per answered (or finally failed)
request, fsynced before use. The journal type itself is `alpaca_data.journal` (shared with ratings and flags).

Line types:
  {"type": "start"|"resume", "time": ..., "pid": ...}
  {"type": "answer", "index": i, "text": ..., "finish_reason": ..., "prompt_tokens": ..,
   "completion_tokens": .., "attempts": n, "latency_s": ..}
  {"type": "failed", "index": i, "error": kind, "message": ..., "attempts": n}
A kill -9 can leave a torn last line; `Journal.open` cuts it off before appending. Answer text is journalled
as received, known secret values masked (`journal_safe`): a resumed run replays exactly what a clean run used.
"""
from __future__ import annotations

from typing import Any

from alpaca_data.journal import Journal, journal_safe, read_journal

__all__ = ["AsyncJournalWriter", "Journal", "answered_indices", "journal_safe", "read_journal"]


def answered_indices(entries: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The answer journalled for each request index (the first one wins; a duplicate would be a bug).

    Failed requests are left out on purpose: a resumed run sends them again (after an outage or a fixed
    `--base-url`), and since a prompt depends only on (seed, index) the result is the clean run's."""
    outcomes: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("type") == "answer" and isinstance(entry.get("index"), int):
            outcomes.setdefault(entry["index"], entry)
    return outcomes


class AsyncJournalWriter:
    """Group commit from asyncio: `await writer.write(entry)` returns once the entry is on disk; entries
    that arrive while an fsync is running share the next one. One writer thread, so lines keep their order."""

    def __init__(self, journal: Journal, executor):
        self.journal, self.executor = journal, executor
        self._pending: list[tuple[dict[str, Any], Any]] = []
        self._task = None

    async def write(self, entry: dict[str, Any]) -> None:
        import asyncio

        future = asyncio.get_running_loop().create_future()
        self._pending.append((entry, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self.executor, self.journal.append_many, [e for e, _ in batch])
            except BaseException as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                raise
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
