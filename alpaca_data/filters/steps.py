"""The one filter step protocol (datatrove's shape): a step sees a record and keeps it (perhaps normalised) or
drops it with a named reason; a `Pipeline` runs its steps in order and counts and times every step.

Every way of filtering uses it: `alpaca-data filter` and `dedup` run a whole revision through a pipeline
(`Pipeline.run`), and generation checks each new task as it arrives (`Pipeline.check`). A step that keeps
state across records (ROUGE-L novelty, near-duplicate and semantic dedup: greedy, in record order) may
override `check_all` to work in batches, but must decide exactly as calling `check` on each record in turn.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alpaca_data.filters.report import make_rejection
from alpaca_data.progress import track


@dataclass(frozen=True)
class Verdict:
    """What a step (or a whole pipeline) says about one record."""

    record: dict[str, Any]  # the record as it leaves the step: a normalised copy, or the record itself
    reason: str | None = None  # None: kept; else the drop reason (a rule name, "rouge_too_similar", ...)
    score: float | None = None  # the similarity behind a drop (or, for a keep, the best score seen)
    most_similar: str | None = None  # the kept instruction a dropped record was too similar to
    normalised_by: tuple[str, ...] = ()
    detail: str | None = None  # a short human reason (e.g. the blacklisted word)

    @property
    def kept(self) -> bool:
        return self.reason is None


class Step:
    """One filter step. Subclasses set `name` and implement `check`."""

    name: str = "step"
    stateless: bool = False  # True: a verdict depends on the record alone (filters.stream runs it in workers)

    def check(self, record: Mapping[str, Any]) -> Verdict:
        raise NotImplementedError

    def check_all(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Verdict]:
        return [self.check(record) for record in track(records, self.name, enabled=progress)]

    def settings(self) -> dict[str, Any]:
        """What configures this step, for the revision's recipe."""
        return {}


@dataclass
class StepStats:
    name: str
    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> records
    normalised: Counter = field(default_factory=Counter)  # rule -> records
    seconds: float = 0.0

    def add(self, verdict: Verdict) -> None:
        self.seen += 1
        self.normalised.update(verdict.normalised_by)
        if verdict.kept:
            self.kept += 1
        else:
            self.dropped[verdict.reason] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seen": self.seen, "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "normalised": dict(sorted(self.normalised.items())), "seconds": round(self.seconds, 3)}


@dataclass
class PipelineResult:
    """Kept records (input order) with their input positions, one rejection row per dropped record, stats."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    kept_indices: list[int] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    steps: list[StepStats] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Drop reason -> records, over every step."""
        return _summed(stats.dropped for stats in self.steps)

    @property
    def normalised(self) -> dict[str, int]:
        """Normalising rule -> records, over every step."""
        return _summed(stats.normalised for stats in self.steps)

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.rejections)


class Pipeline:
    def __init__(self, steps: Sequence[Step]):
        self.steps = list(steps)
        self.stats = [StepStats(step.name) for step in self.steps]

    def check(self, record: Mapping[str, Any]) -> Verdict:
        """One record through every step, stopping at the first drop."""
        current: Mapping[str, Any] = record
        normalised: list[str] = []
        for step, stats in zip(self.steps, self.stats):
            started = time.perf_counter()
            verdict = step.check(current)
            stats.seconds += time.perf_counter() - started
            stats.add(verdict)
            normalised.extend(verdict.normalised_by)
            if not verdict.kept:
                return _with_normalised(verdict, normalised)
            current = verdict.record
        return Verdict(dict(current), normalised_by=tuple(normalised))

    def run(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> PipelineResult:
        """Every record through every step (step by step, over the survivors of the step before)."""
        survivors = [dict(record) if not isinstance(record, dict) else record for record in records]
        positions = list(range(len(survivors)))
        rejected: list[tuple[int, dict[str, Any]]] = []
        for step, stats in zip(self.steps, self.stats):
            started = time.perf_counter()
            verdicts = step.check_all(survivors, progress=progress)
            stats.seconds += time.perf_counter() - started
            next_survivors, next_positions = [], []
            for position, verdict in zip(positions, verdicts):
                stats.add(verdict)
                if verdict.kept:
                    next_survivors.append(verdict.record)
                    next_positions.append(position)
                else:
                    rejected.append((position, make_rejection(verdict.reason, verdict.record, position,
                                                              score=verdict.score,
                                                              most_similar=verdict.most_similar)))
            survivors, positions = next_survivors, next_positions
        rejected.sort(key=lambda item: item[0])
        return PipelineResult(kept=survivors, kept_indices=positions, rejections=[row for _, row in rejected],
                              steps=self.stats)

    def summary(self) -> dict[str, Any]:
        """Per-step counts and timings, for a manifest."""
        return {"steps": [stats.as_dict() for stats in self.stats]}


def _summed(counters) -> dict[str, int]:
    total: Counter = Counter()
    for counter in counters:
        total.update(counter)
    return dict(sorted(total.items()))


def _with_normalised(verdict: Verdict, normalised: list[str]) -> Verdict:
    if tuple(normalised) == verdict.normalised_by:
        return verdict
    return Verdict(verdict.record, verdict.reason, verdict.score, verdict.most_similar, tuple(normalised),
                   verdict.detail)
