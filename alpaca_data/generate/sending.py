"""Sending one group of prompts: rpm/tpm buckets, retries with `backoff_delay`, journalled outcome entries.

Both run loops use it: the self-instruct engine (`generate/engine.py`, groups named by request index) and the
evaluation runner (`eval/requests.py`, groups named by request key and index). Each caller keeps its own
stats; the sender only counts attempts and failed attempts through the hooks it is given.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.generate.config import RequestLimits
from alpaca_data.generate.journal import AsyncJournalWriter, Journal, journal_safe
from alpaca_data.generate.ratelimit import TokenBucket, backoff_delay
from alpaca_data.generate.teachers import TeacherError

UNREACHABLE_AFTER = 3  # requests failing to connect, with none answered, before the run gives up


class Fatal(Exception):
    """The teacher refused for good (a bad key, an unknown model): the run stops instead of retrying."""


class GroupSender:
    """Sends a group of prompts until it is answered or its retries are spent, and journals one entry per
    request (fsynced) before returning them. `ids` name each request in its entry (`{"index": i}`, or
    `{"key": k, "index": i}`); they come right after `"type"`, so the journal lines keep their field order."""

    def __init__(self, teacher: Any, journal: Journal, limits: RequestLimits, *, errors: Counter,
                 on_attempt: Callable[[], None], timestamp: bool = False):
        self.teacher, self.journal, self.limits = teacher, journal, limits
        self.errors, self.on_attempt, self.timestamp = errors, on_attempt, timestamp  # the caller's stats
        self._rpm = TokenBucket(limits.rpm) if limits.rpm else None
        self._tpm = TokenBucket(limits.tpm, capacity=max(limits.tpm / 60.0, 1.0)) if limits.tpm else None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._writer: AsyncJournalWriter | None = None  # made on first use, inside the running loop

    async def send(self, ids: Sequence[dict[str, Any]], prompts: Sequence[Any], *, seed: int,
                   avg_completion: float) -> list[dict[str, Any]]:
        """One entry per prompt: {"type": "answer", ...} or {"type": "failed", ...}; raises `Fatal`."""
        attempts = 0
        errors: list[str] = []
        estimate = sum(len(prompt.text) / 4 + avg_completion for prompt in prompts)  # settled once answered
        while True:
            if self._rpm:
                await self._rpm.acquire(len(prompts))
            if self._tpm:
                await self._tpm.acquire(estimate)
            attempts += 1
            self.on_attempt()
            started = time.monotonic()
            try:
                completions = await self.teacher.complete(list(prompts), seed=seed)
            except TeacherError as error:
                self.errors[error.kind] += 1
                errors.append(error.kind)
                if error.kind == "fatal":
                    raise Fatal(str(error)) from None
                if not error.retryable or attempts > self.limits.max_retries:
                    entries = [{"type": "failed", **id_, "error": error.kind, "message": str(error)[:200],
                                "attempts": attempts, "errors": errors} for id_ in ids]
                    break
                await asyncio.sleep(backoff_delay(attempts - 1, base=self.limits.backoff_base,
                                                  retry_after=error.retry_after))
                continue
            if self._tpm:
                self._tpm.adjust(sum(c.prompt_tokens + c.completion_tokens for c in completions) - estimate)
            latency = round(time.monotonic() - started, 4)
            stamp = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")} if self.timestamp else {}
            entries = [{"type": "answer", **id_, "text": c.text, "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "model": c.model,
                        "attempts": attempts, "errors": errors, "latency_s": latency, **stamp}
                       for id_, c in zip(ids, completions)]
            break
        # what the journal holds (known secrets masked, model text as received) is what the caller uses, so a
        # resumed run, which replays the journal, builds the same records as a run that was never stopped
        entries = [journal_safe(entry) for entry in entries]
        if self._writer is None:
            self._writer = AsyncJournalWriter(self.journal, self._io)
        for entry in entries:  # on disk before it counts
            await self._writer.write(entry)
        return entries

    def close(self) -> None:
        """Waits for the journal thread (every entry written is on disk after this)."""
        self._io.shutdown(wait=True)


def check_reachable(entry: dict[str, Any], *, answered: int, failed: int, what: str) -> None:
    """Fail fast on a wrong endpoint instead of spending every retry of every request on it (`what`: teacher,
    model, the name the error gives it)."""
    if (entry["type"] == "failed" and entry.get("error") == "connection" and answered == 0
            and failed >= UNREACHABLE_AFTER):
        raise UserError(f"cannot reach the {what} ({entry.get('message', 'connection failed')}); "
                        f"{failed} requests failed and none was answered")
