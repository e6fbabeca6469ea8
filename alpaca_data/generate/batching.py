"""Batch mode, a transport: a wave of requests goes out as OpenAI Batch API files instead of one HTTP call each.

The caller (the self-instruct engine, the eval runner) decides which requests a wave holds and processes the
answers exactly as in realtime mode; only how they are sent and awaited differs. A wave is split into parts that
respect the provider's limits (`--batch-max-requests`, `--batch-max-bytes`); each part is one uploaded JSONL file
(`{"custom_id", "method", "url", "body"}` per line, the body realtime would send) and one batch.

Kill-safety rests on the run journal (one fsync per entry, before the run waits):
  {"type": "batch_file", "part": P, "file_id": F, "ids": [...], "url": ...}   after the upload
  {"type": "batch", "part": P, "batch_id": B}                                  after the batch is created
  {"type": "answer", ..., "via": "batch", "batch_id": B}                       each answer, as realtime journals it
  {"type": "batch_end", "part": P, "batch_id": B, "status": ..., "answered": n, "failed": m}
Every batch carries the run id and its part name in its metadata. On --resume, `recover` takes up each part
without a `batch_end`: a part whose batch id was never journalled (killed between creating it and journalling
it) is found in the provider's batch list by its metadata and adopted, else created then; so no part is ever
submitted twice. What the open batches answered is journalled and used; requests they did not answer are left
to the caller, which sends them again like any request without an answer.

Failed lines and the requests of an expired, failed or cancelled batch are counted (`errors`) and sent again,
in a new batch or realtime (`--batch-retry`), up to `--max-retries` rounds.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alpaca_data.errors import UsageError, UserError
from alpaca_data.generate.config import RequestLimits
from alpaca_data.generate.journal import AsyncJournalWriter, Journal, journal_safe
from alpaca_data.generate.ratelimit import backoff_delay
from alpaca_data.generate.sending import Fatal, GroupSender
from alpaca_data.generate.teachers import TeacherError, status_error

FINAL = ("completed", "expired", "failed", "cancelled")
CRASH_ENV = "ALPACA_BATCH_CRASH_AT"  # tests: SIGKILL this process at a named point (batch_file, batch_created)


@dataclass(frozen=True)
class BatchItem:
    id: dict[str, Any]  # {"index": i} or {"key": k, "index": i}, as GroupSender names a request
    prompt: Any
    seed: int


@dataclass
class _Part:
    name: str
    ids: list[dict[str, Any]]
    file_id: str | None = None
    batch_id: str | None = None
    created: float = 0.0
    status: str = "validating"
    counts: str = ""


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def refuse_batch(teacher: Any) -> None:
    """--batch needs a teacher that speaks the OpenAI API over HTTP."""
    if not hasattr(teacher, "request_body"):
        raise UsageError("--batch: needs an HTTP teacher (openai:MODEL or demo); an hf: model runs in-process")


def open_parts(entries: Sequence[dict[str, Any]]) -> list[_Part]:
    """The parts a journal uploaded that have no `batch_end` yet (in upload order)."""
    parts: dict[str, _Part] = {}
    for entry in entries:
        kind, name = entry.get("type"), entry.get("part")
        if kind == "batch_file":
            parts[name] = _Part(name, list(entry.get("ids") or []), file_id=entry.get("file_id"),
                                created=float(entry.get("time") or 0))
        elif kind == "batch" and name in parts:
            parts[name].batch_id = entry.get("batch_id")
        elif kind == "batch_end":
            parts.pop(name, None)
    return list(parts.values())


class BatchSender:
    """Sends waves of requests through the Batch API of `teacher` (an OpenAITeacher) and journals every step."""

    def __init__(self, teacher: Any, journal: Journal, limits: RequestLimits, *, run_id: str, realtime: GroupSender,
                 errors: Counter, timestamp: bool = False, on_status: Callable[[str], None] | None = None):
        refuse_batch(teacher)
        self.teacher, self.journal, self.limits, self.settings = teacher, journal, limits, limits.batching
        self.run_id, self.realtime, self.errors, self.timestamp = run_id, realtime, errors, timestamp
        self.on_status = on_status or (lambda note: None)
        self.client = teacher.client
        self._writer: AsyncJournalWriter | None = None
        entries = journal.entries(on_damage=None)
        self._parts_made = sum(1 for e in entries if e.get("type") == "batch_file")
        self._answered = {json.dumps(_name(e), sort_keys=True) for e in entries if e.get("type") == "answer"}
        self._open = open_parts(entries)
        self.batches_created = 0  # in this session
        self.avg_completion = float(getattr(getattr(teacher, "decoding", None), "max_tokens", 1024) or 1024)

    # ------------------------------------------------------------------ journal
    async def _write(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry = journal_safe(entry)
        if self._writer is None:
            self._writer = AsyncJournalWriter(self.journal, self.realtime._io)  # one writer thread for both
        await self._writer.write(entry)
        return entry

    # ------------------------------------------------------------------ API calls
    async def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One Batch API call, retried on transient errors (rate limits, 5xx, lost connections) with backoff."""
        import openai

        attempt = 0
        while True:
            try:
                return await method(*args, **kwargs)
            except openai.APIStatusError as error:
                failure = status_error(error.status_code, str(error)[:200], error.response.headers)
            except openai.APIConnectionError as error:  # timeouts included
                failure = TeacherError("connection", str(error)[:200] or "connection failed", retryable=True)
            if failure.kind == "fatal":
                raise Fatal(f"{what}: {failure}")
            self.errors[f"batch_api_{failure.kind}"] += 1
            if not failure.retryable or attempt >= self.limits.max_retries:
                raise UserError(f"the Batch API failed ({what}: {failure}); the run is journalled: run the same "
                                f"command with --resume to continue") from None
            await asyncio.sleep(backoff_delay(attempt, base=self.limits.backoff_base, retry_after=failure.retry_after))
            attempt += 1

    # ------------------------------------------------------------------ one wave
    async def send(self, items: Sequence[BatchItem]) -> list[dict[str, Any]]:
        """An outcome entry per item (journalled): answers, or `failed` once every retry round is spent."""
        outcomes: dict[int, dict[str, Any]] = {}
        errors: dict[int, list[str]] = {i: [] for i in range(len(items))}
        remaining = list(range(len(items)))
        rounds = 0
        while remaining:
            rounds += 1
            if rounds > 1 and self.settings.batch_retry == "realtime":
                await self._realtime([(i, items[i]) for i in remaining], outcomes)
                break
            if rounds > self.limits.max_retries + 1:
                for i in remaining:
                    outcomes[i] = await self._write({"type": "failed", **items[i].id, "error": errors[i][-1],
                                                     "message": "batch line failed", "attempts": rounds - 1,
                                                     "errors": errors[i], "via": "batch"})
                break
            parts = await self._submit([items[i] for i in remaining])
            got, failures = await self._await(parts, rounds)
            by_name = {json.dumps(items[i].id, sort_keys=True): i for i in remaining}
            for key, entry in got.items():
                outcomes[by_name[key]] = entry
            for key, kind in failures.items():
                errors[by_name[key]].append(kind)
            remaining = [i for i in remaining if i not in outcomes]
        return [outcomes[i] for i in range(len(items))]

    async def _realtime(self, pending: list[tuple[int, BatchItem]], outcomes: dict[int, dict[str, Any]]) -> None:
        """The rest of a wave, realtime (`--batch-retry realtime`), `--concurrency` at a time."""
        gate = asyncio.Semaphore(self.limits.concurrency)

        async def one(position: int, item: BatchItem) -> None:
            async with gate:
                entries = await self.realtime.send([item.id], [item.prompt], seed=item.seed,
                                                   avg_completion=self.avg_completion)
            outcomes[position] = entries[0]

        await asyncio.gather(*(one(position, item) for position, item in pending))

    def _chunks(self, items: Sequence[BatchItem]) -> list[list[tuple[BatchItem, str, bytes]]]:
        """The wave as batch files: (item, url, JSONL line) each, split at the request and byte limits."""
        chunks: list[list[tuple[BatchItem, str, bytes]]] = [[]]
        size = 0
        for item in items:
            url, body = self.teacher.request_body(item.prompt, item.seed)
            encoded = _line(len(chunks[-1]), url, body)
            if chunks[-1] and (len(chunks[-1]) >= self.settings.batch_max_requests
                               or size + len(encoded) > self.settings.batch_max_bytes):
                chunks.append([])
                size, encoded = 0, _line(0, url, body)
            if len(encoded) > self.settings.batch_max_bytes:
                raise UsageError(f"--batch-max-bytes {self.settings.batch_max_bytes}: one request takes "
                                 f"{len(encoded)} bytes")
            chunks[-1].append((item, url, encoded))
            size += len(encoded)
        return chunks

    async def _submit(self, items: Sequence[BatchItem]) -> list[_Part]:
        """Upload and create the batches of a wave, split to respect the provider's limits."""
        chunks = self._chunks(items)
        parts = []
        for chunk in chunks:
            self._parts_made += 1
            name = f"{self.run_id}:{self._parts_made:05d}"
            data = b"".join(line for _, _, line in chunk)
            url = chunk[0][1]
            self._keep(name, data)
            uploaded = await self._call("upload", self.client.files.create,
                                        file=(f"{name.replace(':', '-')}.jsonl", data, "application/jsonl"),
                                        purpose="batch")
            part = _Part(name, [item.id for item, _, _ in chunk], file_id=uploaded.id, created=time.time())
            await self._write({"type": "batch_file", "part": name, "file_id": uploaded.id, "url": url,
                               "requests": len(chunk), "bytes": len(data), "time": round(part.created, 3),
                               "ids": part.ids})
            _crash_point("batch_file")
            await self._create(part, url)
            parts.append(part)
        return parts

    def _keep(self, name: str, data: bytes) -> None:
        """A copy of the batch file in the run folder (`batches/NNNNN.jsonl`): what was sent, in the format
        `vllm run-batch` reads."""
        from alpaca_data.durable import atomic_file

        folder = self.journal.path.parent / "batches"
        folder.mkdir(exist_ok=True)
        with atomic_file(folder / f"{name.rsplit(':', 1)[-1]}.jsonl") as handle:
            handle.write(data)

    async def _create(self, part: _Part, url: str) -> None:
        batch = await self._call("create", self.client.batches.create, input_file_id=part.file_id, endpoint=url,
                                 completion_window=self.settings.batch_window,
                                 metadata={"alpaca_run": self.run_id, "alpaca_part": part.name})
        self.batches_created += 1
        _crash_point("batch_created")
        part.batch_id, part.status = batch.id, batch.status
        await self._write({"type": "batch", "part": part.name, "batch_id": batch.id})

    # ------------------------------------------------------------------ waiting
    async def _await(self, parts: list[_Part], attempt: int) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Poll until every part's batch is final; journal its answers. Answers and failure kinds by request."""
        answers: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        delay, waiting = self.settings.batch_poll, list(parts)
        while waiting:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.settings.batch_poll_max)
            for part in list(waiting):
                batch = await self._call("retrieve", self.client.batches.retrieve, part.batch_id)
                part.status = batch.status
                counts = batch.request_counts
                part.counts = f"{counts.completed + counts.failed}/{counts.total}" if counts else ""
                if batch.status in FINAL:
                    got, failed = await self._collect(part, batch, attempt)
                    answers.update(got)
                    failures.update(failed)
                    waiting.remove(part)
            self._report(waiting, delay)
        return answers, failures

    def _report(self, waiting: list[_Part], delay: float) -> None:
        if not waiting:
            self.on_status("")
            return
        shown = ", ".join(f"{p.batch_id} {p.status} {p.counts}".rstrip() for p in waiting[:3])
        more = f" (+{len(waiting) - 3} more)" if len(waiting) > 3 else ""
        self.on_status(f"batches: {shown}{more}; next check in {delay:.0f}s")

    async def _content(self, file_id: str | None) -> list[dict[str, Any]]:
        if not file_id:
            return []
        response = await self._call("download", self.client.files.content, file_id)
        rows = []
        for raw in response.content.split(b"\n"):
            if raw.strip():
                try:
                    rows.append(json.loads(raw))
                except ValueError:
                    continue  # a damaged line: its request is sent again
        return rows

    async def _collect(self, part: _Part, batch: Any, attempt: int) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        rows = await self._content(batch.output_file_id) + await self._content(batch.error_file_id)
        by_custom = {row.get("custom_id"): row for row in rows if isinstance(row, dict)}
        answers: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        stamp = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")} if self.timestamp else {}
        for position, id_ in enumerate(part.ids):
            key = json.dumps(id_, sort_keys=True)
            row = by_custom.get(f"r{position}")
            kind = self._line_failure(row, batch.status)
            if kind is None:
                try:
                    completion = self.teacher.completion_from_body(row["response"]["body"], _NoPrompt)
                except TeacherError as error:
                    kind = error.kind
            if kind is not None:
                failures[key] = kind
                self.errors[kind] += 1
                continue
            if key in self._answered:
                continue  # journalled before a kill: used as it was
            entry = await self._write({
                "type": "answer", **id_, "text": completion.text, "finish_reason": completion.finish_reason,
                "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                "model": completion.model, "attempts": attempt, "errors": [], "via": "batch",
                "batch_id": part.batch_id, **stamp})
            self._answered.add(key)
            answers[key] = entry
        await self._write({"type": "batch_end", "part": part.name, "batch_id": part.batch_id, "status": batch.status,
                           "answered": len(answers), "failed": len(failures)})
        return answers, failures

    @staticmethod
    def _line_failure(row: dict[str, Any] | None, status: str) -> str | None:
        """Why a line has no usable answer (an error kind), or None."""
        if row is None:
            return f"batch_{status}" if status != "completed" else "batch_missing"
        response = row.get("response") or {}
        if row.get("error") or not isinstance(response, dict):
            code = (row.get("error") or {}).get("code") if isinstance(row.get("error"), dict) else None
            return "batch_expired" if code == "batch_expired" else "batch_line_error"
        code = response.get("status_code")
        if code != 200:
            return status_error(int(code or 500), "batch line").kind
        return None

    # ------------------------------------------------------------------ resume
    async def recover(self) -> list[dict[str, Any]]:
        """Take up the parts a killed run left open (see the module docstring); their answers, journalled."""
        if not self._open:
            return []
        unjournalled = [part for part in self._open if part.batch_id is None]
        if unjournalled:
            await self._reconcile(unjournalled)
        answers, _ = await self._await(self._open, attempt=1)
        self._open = []
        return list(answers.values())

    async def _reconcile(self, parts: list[_Part]) -> None:
        """Parts uploaded whose batch id is not journalled: find each batch by its metadata (newest first, back to
        an hour before the part's upload), adopt it, or create it when it was never made."""
        wanted = {part.name: part for part in parts}
        oldest = min(part.created for part in parts) - 3600
        listing = self.client.batches.list(limit=100)
        async for batch in listing:
            metadata = batch.metadata or {}
            part = wanted.get(metadata.get("alpaca_part")) if metadata.get("alpaca_run") == self.run_id else None
            if part is not None and part.batch_id is None:
                part.batch_id, part.status = batch.id, batch.status
                await self._write({"type": "batch", "part": part.name, "batch_id": batch.id, "adopted": True})
            if batch.created_at < oldest or all(p.batch_id for p in parts):
                break
        for part in parts:
            if part.batch_id is None:
                url = next((e.get("url") for e in self.journal.entries(on_damage=None)
                            if e.get("type") == "batch_file" and e.get("part") == part.name), None)
                await self._create(part, url or self.teacher.request_body(_NoPrompt, None)[0])

    async def cancel_open(self) -> list[str]:
        """Cancel this run's open batches (`--batch-cancel`); the ids cancelled."""
        if any(part.batch_id is None for part in self._open):
            await self._reconcile([part for part in self._open if part.batch_id is None])
        cancelled = []
        for part in self._open:
            batch = await self._call("cancel", self.client.batches.cancel, part.batch_id)
            cancelled.append(f"{batch.id} ({batch.status})")
        return cancelled


class _NoPrompt:
    """No prompt at hand: token counts come from the answer's usage (every OpenAI-compatible server sends it)."""

    text = ""

    @staticmethod
    def messages() -> list[dict[str, str]]:
        return []


def _line(position: int, url: str, body: dict[str, Any]) -> bytes:
    return (json.dumps({"custom_id": f"r{position}", "method": "POST", "url": url, "body": body},
                       ensure_ascii=False) + "\n").encode()


def _name(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("key", "index") if k in entry}


def status_line(note: str) -> None:
    if note:
        print(note, file=sys.stderr, flush=True)


def cancel_run_batches(teacher: Any, run_dir: Any, limits: RequestLimits) -> list[str]:
    """Cancel the open batches journalled in `run_dir` (the run's id is the folder's name); the ids cancelled. The
    journal keeps them open: --resume later collects what they answered and sends the rest again."""
    from pathlib import Path

    journal = Journal.open(Path(run_dir) / "journal.jsonl")
    realtime = GroupSender(teacher, journal, limits, errors=Counter(), on_attempt=lambda: None)

    async def main() -> list[str]:
        try:
            return await BatchSender(teacher, journal, limits, run_id=Path(run_dir).name, realtime=realtime,
                                     errors=Counter()).cancel_open()
        finally:
            await teacher.aclose()

    try:
        cancelled = asyncio.run(main())
        journal.event("batch_cancel", batches=cancelled)
        return cancelled
    finally:
        realtime.close()
        journal.close()
