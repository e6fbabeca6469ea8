"""The run journal: one JSON line per answered (or finally failed) request, fsynced before use.

Line types:
  {"type": "start"|"resume", "time": ..., "pid": ...}
  {"type": "answer", "index": i, "text": ..., "finish_reason": ..., "prompt_tokens": ..,
   "completion_tokens": .., "attempts": n, "latency_s": ..}
  {"type": "failed", "index": i, "error": kind, "message": ..., "attempts": n}
A kill -9 can leave a torn last line; `Journal.open` cuts it off before appending. Secrets never go in.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alpaca_data.secrets import redact_value


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Complete lines only; a torn final line (no newline, or not JSON) is ignored."""
    if not path.exists():
        return
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield entry


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        self._handle = None

    @classmethod
    def open(cls, path: Path, fsync: bool = True) -> Journal:
        journal = cls(path, fsync)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with path.open("r+b") as handle:  # drop the torn line left by a crash
                    handle.truncate(data.rfind(b"\n") + 1)
        journal._handle = path.open("ab")
        return journal

    def entries(self) -> list[dict[str, Any]]:
        return list(read_journal(self.path))

    def append(self, entry: dict[str, Any]) -> None:
        self.append_many([entry])

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """Write entries, then one flush + fsync for all of them (group commit)."""
        data = b"".join(json.dumps(redact_value(e), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                        + b"\n" for e in entries)  # a server may echo a key back in an answer or error
        self._handle.write(data)
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    def event(self, kind: str, **fields: Any) -> None:
        self.append({"type": kind, "time": round(time.time(), 3), "pid": os.getpid(), **fields})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
