"""The generation run loop: bounded concurrency, rate limits, retries, in-order processing, budget.

Determinism under concurrency and across kill/resume rests on three rules:
1. request i's prompt is a pure function of (seed, i) (and, with machine demos, of tasks kept from
   requests <= i - lag - 1, which are fixed before request i is built);
2. answers are journalled (fsynced) as they arrive but *processed* (parsed, filtered, kept) strictly in
   request-index order; out-of-order arrivals wait in a buffer;
3. the kept list stops at exactly N in index order, so requests issued beyond what was needed never
   change the result. On resume the journal is replayed through the same in-order path, and only
   indices without a journalled outcome are sent.
With --batch the same loop sends waves instead of single groups (generate/batching.py): one wave in flight at a
time, sized by the keep rate so far, its answers processed by the same in-order path.
"""
from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.filters.report import make_rejection
from alpaca_data.filters.steps import Pipeline
from alpaca_data.generate.batching import BatchItem, BatchSender
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.journal import Journal
from alpaca_data.generate.parse import parse_response
from alpaca_data.generate.pricing import Price, add_spend
from alpaca_data.generate.prompt import Prompt, SeedTask, build_prompt, request_seed
from alpaca_data.generate.sending import Fatal, GroupSender, check_reachable
from alpaca_data.generate.tokens import prompt_token_bound


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    requests_sent: int = 0           # HTTP attempts made in this process (retries included)
    requests_answered: int = 0       # request indices with an answer (journal replay included)
    requests_failed: int = 0         # request indices that failed after all retries
    replayed: int = 0                # outcomes taken from the journal instead of the network
    finish_length: int = 0           # answers cut by the token limit (finish_reason == "length")
    in_flight: int = 0
    processed: int = 0
    parsed: int = 0
    kept: int = 0
    errors: Counter = field(default_factory=Counter)          # failed attempts by kind
    parse_failures: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)         # heuristic rule names and rouge reasons
    normalised: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    spent: dict[str, dict[str, float]] = field(default_factory=dict)  # by price: realtime | batch
    batch_status: str = ""           # the open batches, while a batch run waits
    status: str = "running"
    network_started: float | None = None
    network_answers: int = 0
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Engine:
    def __init__(self, cfg: GenerateConfig, seeds: list[SeedTask], teacher: Any, journal: Journal,
                 filters: Pipeline, price: Price | None, replay: dict[int, dict[str, Any]] | None = None,
                 request_id_prefix: str = "req", on_tick: Callable[[Stats], None] | None = None, run_id: str = ""):
        self.s, self.limits, self.seeds, self.teacher, self.journal = cfg, cfg.limits, seeds, teacher, journal
        self.request_id_prefix, self.generator = request_id_prefix, cfg.teacher.spec
        self.filters, self.price = filters, price  # rules, then ROUGE-L novelty (pool: seeds + kept so far)
        self.outcomes: dict[int, dict[str, Any]] = dict(replay or {})
        self.stats = Stats()
        self.kept: list[dict[str, Any]] = []
        self._kept_index: list[int] = []     # request index of each kept record (sorted)
        self._buffer: dict[int, dict[str, Any]] = {}
        self.rejections: list[dict[str, Any]] = []  # one row per dropped task (the revision's `rejections` table)
        self._next_issue = 0
        self._next_process = 0
        self._tasks: dict[asyncio.Task, range] = {}
        self._reserved: dict[asyncio.Task, float] = {}  # worst-case cost of each group in flight (--max-cost)
        self._next_reservation = 0.0
        self._stop_issuing: str | None = None
        self._sender = GroupSender(teacher, journal, cfg.limits, errors=self.stats.errors,
                                   on_attempt=self._count_attempt)
        self._avg_completion = float(getattr(getattr(teacher, "decoding", None), "max_tokens", 1024) or 1024)
        self.on_tick = on_tick
        self.max_requests = cfg.limits.max_requests or (4 * cfg.num + 16)
        self.batch = max(1, int(getattr(teacher, "batch_size", 1)))
        self._batcher: BatchSender | None = None
        self._wave: list[range] = []  # batch mode: the groups of the wave being formed
        self._wave_reserved = 0.0
        if cfg.limits.batching.batch:
            self._batcher = BatchSender(teacher, journal, cfg.limits, run_id=run_id or request_id_prefix,
                                        realtime=self._sender, errors=self.stats.errors, on_status=self._batch_status)
        for entry in self.outcomes.values():  # money already spent counts against the budget
            self._account(entry)

    # ------------------------------------------------------------------ bookkeeping
    def _count_attempt(self) -> None:
        self.stats.requests_sent += 1

    def _batch_status(self, note: str) -> None:
        self.stats.batch_status = note

    def _account(self, entry: dict[str, Any]) -> None:
        if entry.get("type") != "answer":
            self.stats.requests_failed += 1
            return
        self.stats.requests_answered += 1
        if entry.get("finish_reason") == "length":
            self.stats.finish_length += 1
        pt, ct, cost = add_spend(self.stats.spent, self.price, entry)
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        self.stats.cost_usd += cost
        n = self.stats.requests_answered
        self._avg_completion += (ct - self._avg_completion) / n if n else 0

    def _done(self) -> bool:
        return len(self.kept) >= self.s.num

    def _prompt(self, index: int) -> Prompt:
        pool: list[dict[str, Any]] = []
        if self.s.machine_demos:
            cut = bisect.bisect_left(self._kept_index, index - self.s.machine_lag)
            pool = self.kept[:cut]
        return build_prompt(index, self.s.seed, self.seeds, self.s.num_prompt_instructions,
                            machine_pool=pool, machine_demos=self.s.machine_demos)

    def _can_issue(self) -> bool:
        if self._stop_issuing or self._done():
            return False
        group = self._group(self._next_issue)
        if all(index in self.outcomes for index in group):
            return True  # replayed from the journal: costs nothing
        if group.start >= self.max_requests:
            return False
        if self._batcher is not None:
            return self._wave_room(group)
        if len(self._tasks) * self.batch >= self.limits.concurrency:
            return False
        if self.s.machine_demos and self._next_process < group[-1] - self.s.machine_lag:
            return False  # its prompts depend on answers not processed yet
        if not self._fits_budget(group):
            return False
        pending = len(self._tasks) * self.batch + len(self._buffer)
        processed = self.stats.processed
        if processed == 0:
            return pending < self.limits.concurrency
        rate = len(self.kept) / processed
        if rate > 0 and len(self.kept) + rate * pending >= self.s.num:
            return False  # enough on the way to reach N (if they keep as well as so far)
        return True

    def _wave_room(self, group: range) -> bool:
        """Batch mode: whether `group` joins the wave being formed. One wave at a time; the first holds enough
        requests for N at --batch-first-wave tasks kept per request, later ones what the keep rate so far says
        N needs, plus a fifth (each extra wave waits a batch's latency; requests past N never change the data)."""
        if self._tasks:
            return False
        if self.s.machine_demos and self._next_process < group[-1] - self.s.machine_lag:
            return False  # its prompts depend on answers not processed yet: the next wave
        if not self._fits_budget(group):
            return False
        pending = len(self._wave) * self.batch + len(self._buffer)
        processed, kept = self.stats.processed, len(self.kept)
        if processed == 0 or kept == 0:
            return pending < math.ceil(self.s.num / self.limits.batching.batch_first_wave)
        return pending < (self.s.num - kept) * processed / kept * 1.2 + 1

    def _worst_case_cost(self, group: range) -> float:
        """The most a group can cost: a bound on its prompt tokens plus `max_tokens` answered, at the price."""
        if self.price is None:
            return 0.0
        max_tokens = self.s.decoding.max_tokens
        batch = self._batcher is not None and self.limits.batching.batch_retry == "batch"  # else a retry may be realtime
        return sum(self.price.cost(prompt_token_bound(prompt.text, prompt.messages()), max_tokens, batch=batch)
                   for prompt in map(self._prompt, group))

    def _fits_budget(self, group: range) -> bool:
        """Spend never crosses --max-cost: a group is sent only when its worst case fits beside what is spent
        and what the groups in flight may still cost. When nothing is in flight and it does not fit, stop."""
        if self.limits.max_cost is None:
            return True
        self._next_reservation = self._worst_case_cost(group)  # kept for the group about to be sent
        reserved = sum(self._reserved.values()) + self._wave_reserved
        if self.stats.cost_usd + reserved + self._next_reservation <= self.limits.max_cost:
            return True
        if not self._tasks and not self._wave:
            self._stop_issuing = "budget_exhausted"
        return False

    # ------------------------------------------------------------------ processing (index order)
    def _process_ready(self) -> None:
        while self._next_process in self._buffer and not self._done():
            entry = self._buffer.pop(self._next_process)
            self._process(self._next_process, entry)
            self._next_process += 1
        if self._done():
            self._buffer.clear()

    def _process(self, index: int, entry: dict[str, Any]) -> None:
        stats = self.stats
        stats.processed += 1
        if entry.get("type") != "answer":
            return
        prompt = self._prompt(index)
        result = parse_response(entry.get("text"), entry.get("finish_reason"), open_index=prompt.num_demos + 1)
        stats.parse_failures.update(result.failures)
        stats.normalised.update(result.normalised)
        stats.parsed += len(result.tasks)
        for position, task in enumerate(result.tasks):
            if self._done():
                break
            where = (index, position)
            verdict = self.filters.check(task)
            stats.normalised.update(verdict.normalised_by)
            if not verdict.kept:
                self._reject(verdict.reason, verdict.record, where, score=verdict.score,
                             most_similar=verdict.most_similar)
                continue
            record = verdict.record
            self.kept.append({
                "instruction": record["instruction"], "input": record.get("input") or "",
                "output": record["output"],
                "request_id": f"{self.request_id_prefix}-{index:06d}-{position:02d}",
                "prompt_seeds": list(prompt.seed_ids),
                "rouge_max": round(float(verdict.score or 0.0), 6),
                "rouge_most_similar": verdict.most_similar or "",
                "generator": self.generator,
            })
            self._kept_index.append(index)
            stats.kept = len(self.kept)

    def _reject(self, reason: str, record: dict[str, Any], where: tuple[int, int], *, score: float | None = None,
                most_similar: str | None = None) -> None:
        index, position = where
        self.stats.dropped[reason] += 1
        row = make_rejection(reason, record, index, score=score, most_similar=most_similar)
        row["request_id"] = f"{self.request_id_prefix}-{index:06d}-{position:02d}"
        self.rejections.append(row)

    # ------------------------------------------------------------------ one request group
    def _group(self, index: int) -> range:
        """The requests sent together with `index`: a fixed run of `batch` consecutive indices (one, for an
        HTTP teacher), so a group's answers never depend on timing."""
        start = index - index % self.batch
        return range(start, start + self.batch)

    async def _send_wave(self, groups: list[range]) -> list[dict[str, Any]]:
        items = [BatchItem({"index": index}, self._prompt(index), request_seed(self.s.seed, group.start))
                 for group in groups for index in group]
        return await self._batcher.send(items)

    def _issue(self, group: range) -> None:
        """Send a group (realtime), or add it to the wave being formed (batch)."""
        if self._batcher is not None:
            self._wave.append(group)
            self._wave_reserved += self._next_reservation if self.limits.max_cost is not None else 0.0
            return
        task = asyncio.create_task(self._send(group))
        self._tasks[task] = group
        if self.limits.max_cost is not None:
            self._reserved[task] = self._next_reservation

    def _send_formed_wave(self) -> None:
        if not self._wave:
            return
        task = asyncio.create_task(self._send_wave(self._wave))
        self._tasks[task] = range(self._wave[0].start, self._wave[-1].stop)
        self._reserved[task] = self._wave_reserved
        self._wave, self._wave_reserved = [], 0.0

    async def _recover(self) -> None:
        """Batch mode, resumed: what the batches a killed run left open answered counts as journalled."""
        for entry in await self._batcher.recover():
            if entry["index"] not in self.outcomes:
                self.outcomes[entry["index"]] = entry
                self._account(entry)

    async def _send(self, group: range) -> list[dict[str, Any]]:
        prompts = [self._prompt(index) for index in group]
        return await self._sender.send([{"index": index} for index in group], prompts,
                                       seed=request_seed(self.s.seed, group.start),
                                       avg_completion=self._avg_completion)

    # ------------------------------------------------------------------ the loop
    async def run(self) -> Stats:
        stats = self.stats
        ticker = asyncio.create_task(self._tick()) if self.on_tick else None
        try:
            if self._batcher is not None:
                await self._recover()
            while True:
                while self._can_issue():
                    group = self._group(self._next_issue)
                    self._next_issue = group.stop
                    if all(index in self.outcomes for index in group):
                        stats.replayed += len(group)
                        for index in group:
                            self._buffer[index] = self.outcomes[index]
                        self._process_ready()
                        continue
                    if stats.network_started is None:
                        stats.network_started = time.monotonic()
                    self._issue(group)
                self._send_formed_wave()
                stats.in_flight = len(self._tasks)
                self._process_ready()
                if self._done() or not self._tasks:
                    if not self._done() and self._can_issue():
                        continue
                    break
                finished, _ = await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    self._tasks.pop(task)
                    self._reserved.pop(task, None)  # what it really cost is accounted below
                    try:
                        entries = task.result()
                    except Fatal as error:
                        raise UserError(f"teacher refused the request: {error}") from None
                    for entry in entries:
                        self.outcomes[entry["index"]] = entry
                        self._account(entry)
                        check_reachable(entry, answered=self.stats.requests_answered, failed=self.stats.requests_failed,
                                        what="teacher")
                        stats.network_answers += 1
                        self._buffer[entry["index"]] = entry
                # back to the top: refill the free slots first, then process (keeps the pipe full)
        finally:
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            stats.in_flight = 0
            stats.finished = time.monotonic()
            if ticker:
                ticker.cancel()
            self._sender.close()
        if self._done():
            stats.status = "done"
        elif self._stop_issuing:
            stats.status = self._stop_issuing
        else:
            stats.status = "request_limit"
        if self.on_tick:
            self.on_tick(stats)
        return stats

    async def _tick(self) -> None:
        while True:
            self.stats.in_flight = len(self._tasks)
            self.on_tick(self.stats)
            await asyncio.sleep(0.25)
