"""One resumable request runner for evaluation: model outputs (`eval generate`) and LLM judging (`eval judge`).

The self-instruct engine (`alpaca_data.generate.engine`) parses and filters answers in index order until N
tasks are kept; evaluation instead needs exactly one answer per known request. This runner sends a fixed list
of requests with the same machinery: bounded concurrency, `TokenBucket` rate limits, retries with
`backoff_delay`, a cost cap that reserves each request's worst case (`prompt_token_bound` + `max_tokens`) before
sending it, and the fsynced, redacted `Journal`. Each request has a stable `key`, so `--resume` sends only the
requests that have no answer in the journal yet (failed ones are sent again).

Run folder: `<store>/runs/<dataset>/<run-id>/` with `config.json` (the settings that fix the answers: their
hash names the run), `journal.jsonl` and `run.json` (status), as for `generate`.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from alpaca_data.cli_options import flat_settings, setting
from alpaca_data.durable import write_json
from alpaca_data.errors import UsageError, UserError
from alpaca_data.generate.batching import BatchItem, BatchSender
from alpaca_data.generate.config import Decoding, RequestLimits, TeacherSettings
from alpaca_data.generate.journal import Journal
from alpaca_data.generate.pricing import Price, add_spend, load_price_table, price_for
from alpaca_data.generate.prompt import request_seed
from alpaca_data.generate.sending import Fatal, GroupSender, check_reachable
from alpaca_data.generate.teachers import HFTeacher, OpenAITeacher, Prompt, parse_teacher_spec
from alpaca_data.generate.tokens import prompt_token_bound
from alpaca_data.secrets import redact


@dataclass(frozen=True)
class Request:
    key: str  # stable across runs: how a resumed run matches a journalled answer to its request
    prompt: Prompt


@dataclass
class RunnerStats:
    total: int
    answered: int = 0        # requests with an answer (journal replay included)
    failed: int = 0          # requests that failed after every retry (sent again on --resume)
    replayed: int = 0        # answers taken from the journal instead of the network
    sent: int = 0            # requests sent in this session (a retry is not a new request)
    attempts: int = 0        # HTTP attempts in this session, retries included
    in_flight: int = 0
    errors: Counter = field(default_factory=Counter)  # failed attempts by kind
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    spent: dict[str, dict[str, float]] = field(default_factory=dict)  # by price: realtime | batch
    batch_status: str = ""   # the open batches, while a batch run waits
    cancelled: list[str] | None = None  # --batch-cancel: the batches cancelled
    status: str = "running"  # done | budget_exhausted | request_limit | incomplete
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class RequestRunner:
    """Sends `requests` (in fixed groups of the teacher's batch size) until each has an outcome."""

    def __init__(self, teacher: Any, journal: Journal, limits: RequestLimits, *, max_tokens: int,
                 price: Price | None = None, seed: int = 0, replay: Mapping[str, dict[str, Any]] | None = None,
                 on_tick: Callable[[RunnerStats], None] | None = None, run_id: str = "run"):
        self.teacher, self.journal, self.limits, self.max_tokens = teacher, journal, limits, max_tokens
        self.price, self.seed, self.on_tick = price, seed, on_tick
        self.replay = dict(replay or {})
        self.batch = max(1, int(getattr(teacher, "batch_size", 1)))
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.stats = RunnerStats(total=0)
        self._avg_completion = float(max_tokens)
        self._reserved: dict[asyncio.Task, float] = {}
        self._sender = GroupSender(teacher, journal, limits, errors=self.stats.errors,
                                   on_attempt=self._count_attempt, timestamp=True)
        self._batcher: BatchSender | None = None
        if limits.batching.batch:  # a wave of every request still to send, through the Batch API
            self._batcher = BatchSender(teacher, journal, limits, run_id=run_id, realtime=self._sender,
                                        errors=self.stats.errors, timestamp=True,
                                        on_status=lambda note: setattr(self.stats, "batch_status", note))

    # ------------------------------------------------------------------ bookkeeping
    def _count_attempt(self) -> None:
        self.stats.attempts += 1

    def _account(self, entry: dict[str, Any]) -> None:
        if entry.get("type") != "answer":
            self.stats.failed += 1
            return
        self.stats.answered += 1
        prompt_tokens, completion_tokens, cost = add_spend(self.stats.spent, self.price, entry)
        self.stats.prompt_tokens += prompt_tokens
        self.stats.completion_tokens += completion_tokens
        self.stats.cost_usd += cost
        self._avg_completion += (completion_tokens - self._avg_completion) / self.stats.answered

    def _worst_case(self, group: list[tuple[int, Request]]) -> float:
        if self.price is None:
            return 0.0
        batch = self._batcher is not None and self.limits.batching.batch_retry == "batch"  # else a retry may be realtime
        return sum(self.price.cost(prompt_token_bound(r.prompt.text, r.prompt.messages()), self.max_tokens,
                                   batch=batch) for _, r in group)

    # ------------------------------------------------------------------ one group
    async def _send(self, group: list[tuple[int, Request]]) -> list[dict[str, Any]]:
        entries = await self._sender.send([{"key": r.key, "index": i} for i, r in group],
                                          [r.prompt for _, r in group], seed=request_seed(self.seed, group[0][0]),
                                          avg_completion=self._avg_completion)
        return entries  # as journalled: known secrets masked, model text as received (GroupSender)

    async def _send_wave(self, groups: list[list[tuple[int, Request]]]) -> list[dict[str, Any]]:
        items = [BatchItem({"key": r.key, "index": i}, r.prompt, request_seed(self.seed, group[0][0]))
                 for group in groups for i, r in group]
        return await self._batcher.send(items)

    async def _recover(self, keys: set[str]) -> None:
        """Batch mode, resumed: what the batches a killed run left open answered counts as journalled."""
        for entry in await self._batcher.recover():
            if entry.get("key") in keys and self.outcomes.get(entry["key"], {}).get("type") != "answer":
                self.outcomes[entry["key"]] = entry
                self._account(entry)
                self.stats.replayed += 1

    # ------------------------------------------------------------------ the loop
    async def run(self, requests: Sequence[Request]) -> dict[str, dict[str, Any]]:
        """Outcomes by request key: {"type": "answer", "text", ...} or {"type": "failed", "error", ...}."""
        keys = [r.key for r in requests]
        if len(set(keys)) != len(keys):
            raise ValueError("request keys must be unique")
        stats = self.stats
        stats.total = len(requests)
        for key in keys:
            if self.replay.get(key, {}).get("type") == "answer":
                self.outcomes[key] = self.replay[key]
                self._account(self.replay[key])  # money already spent counts against the budget
                stats.replayed += 1
        if self._batcher is not None:
            await self._recover(set(keys))
        indexed = list(enumerate(requests))
        groups = [indexed[start:start + self.batch] for start in range(0, len(indexed), self.batch)]
        pending = [g for g in groups if any(r.key not in self.outcomes for _, r in g)]
        tasks: dict[asyncio.Task, list[tuple[int, Request]]] = {}
        stop: str | None = None
        ticker = asyncio.create_task(self._tick()) if self.on_tick else None
        try:
            while pending or tasks:
                wave: list[list[tuple[int, Request]]] = []
                wave_reserved = 0.0
                room = (lambda: not tasks) if self._batcher else (
                    lambda: len(tasks) * self.batch < self.limits.concurrency)
                while pending and stop is None and room():
                    group = pending[0]
                    if self.limits.max_requests is not None and stats.sent + len(group) > self.limits.max_requests:
                        stop = "request_limit"
                        break
                    worst = self._worst_case(group)
                    if self.limits.max_cost is not None and (
                            stats.cost_usd + sum(self._reserved.values()) + wave_reserved + worst > self.limits.max_cost):
                        if not tasks and not wave:
                            stop = "budget_exhausted"
                        break  # wait for the groups in flight to settle what they really cost
                    pending.pop(0)
                    stats.sent += len(group)
                    if self._batcher is not None:  # into the wave, sent below
                        wave.append(group)
                        wave_reserved += worst
                        continue
                    task = asyncio.create_task(self._send(group))
                    tasks[task] = group
                    self._reserved[task] = worst
                if wave:
                    task = asyncio.create_task(self._send_wave(wave))
                    tasks[task] = [pair for group in wave for pair in group]
                    self._reserved[task] = wave_reserved
                stats.in_flight = len(tasks) * self.batch
                if not tasks:
                    break
                finished, _ = await asyncio.wait(list(tasks), return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    tasks.pop(task)
                    self._reserved.pop(task, None)
                    try:
                        entries = task.result()
                    except Fatal as error:
                        raise UserError(f"the model refused the request: {error}") from None
                    for entry in entries:
                        if self.outcomes.get(entry["key"], {}).get("type") == "answer":
                            continue  # answered before (a group is sent whole when one of it is missing)
                        self.outcomes[entry["key"]] = entry
                        self._account(entry)
                        check_reachable(entry, answered=self.stats.answered, failed=self.stats.failed,
                                        what="model")
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            stats.in_flight = 0
            if ticker:
                ticker.cancel()
            self._sender.close()
        missing = sum(1 for key in keys if self.outcomes.get(key, {}).get("type") != "answer")
        stats.status = "done" if not missing else (stop or "incomplete")
        if self.on_tick:
            self.on_tick(stats)
        return self.outcomes

    async def _tick(self) -> None:
        while True:
            self.on_tick(self.stats)
            await asyncio.sleep(0.25)


# ---------------------------------------------------------------------------------------------- settings
@dataclass(kw_only=True)
class ModelSpecSettings(TeacherSettings):
    """TeacherSettings whose spec is given, and checked, under the command's own flag (FLAG: --model, --judge)."""

    FLAG: ClassVar[str] = "--teacher"

    def validate(self) -> None:
        check_spec(self.spec, self.FLAG)
        super().validate()


@dataclass(kw_only=True)
class GreedyDecoding(Decoding):
    """Evaluation decoding: greedy by default, no stop strings (a model ends its answer with EOS)."""

    temperature: float = setting(0.0, "Sampling temperature (0: greedy, the most likely answer).")
    stop: tuple[str, ...] = setting((), "Stop strings (repeatable; none by default).")


@dataclass(kw_only=True)
class RunOptions:
    """What every eval run has: request seeds, what becomes of failed requests, resuming, the message."""

    seed: int = setting(0, "Request seeds (matter only when sampling).")
    allow_failed: bool = setting(False, "Commit even when requests failed after every retry (they are left out); "
                                        "by default nothing is committed and --resume sends them again.")
    resume: bool = setting(False, "Continue the newest unfinished run with these settings.")
    run_dir: str | None = setting(None, "Run folder (default <store>/runs/<dataset>/<run-id>).")
    message: str = setting("", "Revision message.", "-m")


def stopped_uncommitted(stats: RunnerStats, run: RunOptions) -> bool:
    """Whether a run ended without a revision: stopped by a limit, or requests failed and --allow-failed is off."""
    return stats.status in ("budget_exhausted", "request_limit", "batches_cancelled") or (stats.status == "incomplete"
                                                                     and not run.allow_failed)


def recipe_options(cfg: Any, endpoint_host: str | None) -> dict[str, Any]:
    """The settings a revision's recipe records: not how the run was resumed, and of --base-url the host only (a
    URL may carry credentials)."""
    options = {k: v for k, v in flat_settings(cfg).items() if k not in ("resume", "run_dir", "message")}
    if options.get("base_url"):
        options["base_url"] = endpoint_host
    return options


# ---------------------------------------------------------------------------------------------- teachers
def check_spec(spec: str, flag: str) -> None:
    """parse_teacher_spec's check, naming the command's own flag (--model, --judge) instead of --teacher."""
    try:
        parse_teacher_spec(spec or "")
    except UsageError:
        raise UsageError(f"{flag} {spec!r}: expected openai:MODEL, hf:PATH or demo") from None


def make_teacher(settings: TeacherSettings, decoding: Decoding, *, timeout: float, prompt_format=None,
                 role: str = "model"):
    """The teacher for a spec (`openai:MODEL`, `hf:PATH`, `demo`) and the demo server it started, if any.

    `demo` starts the demo teacher, or for role "judge" the offline demo judge (eval/demo_judge.py): the demo
    teacher only writes self-instruct text, so none of its verdicts would parse."""
    kind, target = parse_teacher_spec(settings.spec)
    if kind == "hf":
        return HFTeacher(target, api=settings.api, decoding=decoding, batch_size=settings.request_batch_size,
                         spec=settings.spec, prompt_format=prompt_format), None
    base_url, demo_server = settings.base_url, None
    if kind == "demo" and role == "judge":
        from alpaca_data.eval.demo_judge import DEMO_JUDGE_MODEL, DemoJudgeServer

        target = DEMO_JUDGE_MODEL if settings.spec.strip() == "demo" else target
        if not base_url:
            demo_server = DemoJudgeServer().start()
            base_url = demo_server.base_url
    elif kind == "demo" and not base_url:
        from alpaca_data.generate.demo_server import DemoServer

        demo_server = DemoServer().start()
        base_url = demo_server.base_url
    api_key = None if kind == "openai" else (os.environ.get("OPENAI_API_KEY") or "demo")
    teacher = OpenAITeacher(target, api=settings.api, base_url=base_url, api_key=api_key, timeout=timeout,
                            decoding=decoding, send_seed=settings.send_seed, spec=settings.spec, kind=kind)
    return teacher, demo_server


def price_of(spec: str, limits: RequestLimits) -> Price | None:
    """The price of an HTTP model (None for an in-process one); --max-cost needs one."""
    kind, model = parse_teacher_spec(spec)
    if kind == "hf" and (limits.batching.batch or limits.batching.batch_cancel):
        raise UsageError("--batch: needs an HTTP model (openai:MODEL or demo); an hf: model runs in-process")
    if kind == "hf":
        return None
    price = price_for(model, load_price_table(limits.price_table))
    if limits.max_cost is not None and price is None:
        raise UsageError(f"--max-cost: no price known for model {model!r}; give one with --price-table")
    return price


# ---------------------------------------------------------------------------------------------- run folder
@dataclass
class RunFolder:
    path: Path
    resuming: bool
    digest: str
    state: dict[str, Any]

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.jsonl"

    def replay(self) -> dict[str, dict[str, Any]]:
        """The first journalled answer of each request key (failed requests are sent again)."""
        if not self.resuming:
            return {}
        journal = Journal(self.journal_path)
        answers: dict[str, dict[str, Any]] = {}
        for entry in journal.entries():
            if entry.get("type") == "answer" and isinstance(entry.get("key"), str):
                answers.setdefault(entry["key"], entry)
        return answers

    def mark(self, status: str, **fields: Any) -> None:
        self.state.update(status=status, **fields)
        write_json(self.path / "run.json", self.state)


def open_run(runs_root: Path, config: dict[str, Any], *, resume: bool, run_dir: str | None) -> RunFolder:
    """The run folder for these settings: a new one, or with --resume the newest unfinished one that shares
    them (or --run-dir)."""
    from alpaca_data.generate.run import config_hash, prepare_run_dir  # here: run.py pulls in the filters

    digest = config_hash(config)
    path, existing = prepare_run_dir(runs_root, config, digest, resume=resume, run_dir=run_dir)
    path.mkdir(parents=True, exist_ok=True)
    if not existing:
        write_json(path / "config.json", config)
    folder = RunFolder(path, existing, digest, {"config_hash": digest, "status": "running"})
    folder.mark("running")
    return folder


def run_requests(folder: RunFolder, teacher: Any, requests: Sequence[Request], limits: RequestLimits, *,
                 max_tokens: int, price: Price | None, seed: int, progress: Any = None,
                 demo_server: Any = None) -> tuple[dict[str, dict[str, Any]], RunnerStats]:
    """Send every request without a journalled answer; the run folder says how it ended if it fails."""
    journal = Journal.open(folder.journal_path)
    replay = folder.replay()
    journal.event("resume" if folder.resuming else "start", replayable=len(replay))
    if any(entry.get("type") == "batch_file" for entry in journal.entries(on_damage=None)):
        limits.batching.batch = True  # a batch run resumes in batch mode: its open batches are taken up
    if limits.batching.batch_cancel:
        from alpaca_data.generate.batching import cancel_run_batches

        journal.close()
        try:
            cancelled = cancel_run_batches(teacher, folder.path, limits)
        finally:
            if demo_server is not None:
                demo_server.stop()
        folder.mark("batches_cancelled")
        return {}, RunnerStats(total=0, status="batches_cancelled", cancelled=cancelled)
    runner = RequestRunner(teacher, journal, limits, max_tokens=max_tokens, price=price, seed=seed, replay=replay,
                           on_tick=progress.update if progress is not None else None, run_id=folder.path.name)

    async def _main() -> dict[str, dict[str, Any]]:
        try:
            return await runner.run(requests)
        finally:
            await teacher.aclose()

    try:
        outcomes = asyncio.run(_main())
    except BaseException as error:  # --resume continues it
        folder.mark("interrupted" if isinstance(error, KeyboardInterrupt) else "failed", error=redact(str(error))[:300])
        raise
    finally:
        journal.close()
        if demo_server is not None:
            demo_server.stop()
    folder.mark(runner.stats.status, answered=runner.stats.answered, total=runner.stats.total)
    return outcomes, runner.stats


def record_commit(folder: RunFolder, revision_id: str) -> None:
    folder.mark("committed", revision=revision_id)
    journal = Journal.open(folder.journal_path)
    journal.event("committed", revision=revision_id)
    journal.close()


# ---------------------------------------------------------------------------------------------- progress
class RequestProgress:
    """Progress of a request run on stderr (answered of total, failures, cost): a rich bar on a terminal, plain
    lines every ALPACA_PROGRESS_INTERVAL seconds otherwise; off when quiet (alpaca_data.progress)."""

    def __init__(self, title: str, total: int, enabled: bool = True):
        from alpaca_data.progress import StatusProgress

        self.title, self.total = title, total
        self._status = StatusProgress(title, total or None, unit="items", enabled=enabled)

    def __enter__(self) -> RequestProgress:
        self._status.__enter__()
        return self

    def update(self, stats: RunnerStats) -> None:
        parts = [f"{stats.in_flight} in flight"] + ([f"{stats.failed} failed"] if stats.failed else []) + (
            [f"${stats.cost_usd:.4f}"] if stats.cost_usd else [])
        note = ", ".join(parts)
        if stats.errors:
            note += ", retried: " + ", ".join(f"{k} {v}" for k, v in stats.errors.most_common())
        if stats.batch_status:
            note += "; " + stats.batch_status
        self._status.update(stats.answered, stats.total or self.total, note)

    def __exit__(self, *exc: object) -> None:
        self._status.__exit__(*exc)
