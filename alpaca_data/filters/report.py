"""Outcomes of filtering: what one rule says about a record, rejection rows and the report of a pass.

Shared by the heuristic rules, dedup, the ROUGE-L filter and generation, so that every step's
`rejections` table has the same columns.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alpaca_data.records import key_of

TEXT_FIELDS: tuple[str, ...] = ("instruction", "input", "output")


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Outcomes and reports


@dataclass(frozen=True)
class Drop:
    """What a drop rule returns when it fires: the reason code and a short human detail."""

    reason: str
    detail: str | None = None


@dataclass
class RuleOutcome:
    """The result of running a RuleSet on one record."""

    record: dict[str, Any]  # a copy, normalised where a normalising rule fired
    dropped_by: str | None = None
    normalised_by: list[str] = field(default_factory=list)
    detail: str | None = None  # why the drop rule fired (e.g. the blacklisted word)

    @property
    def kept(self) -> bool:
        return self.dropped_by is None


def make_rejection(reason: str, record: Mapping[str, Any], index: int, *, score: float | None = None,
                   most_similar: str | None = None) -> dict[str, Any]:
    """One row of a rejections file (shared by heuristic, dedup and ROUGE filters)."""
    return {
        "reason": reason,
        "action": "drop",
        "key": key_of(record),
        "instruction": _text(record, "instruction"),
        "input": _text(record, "input"),
        "output": _text(record, "output"),
        "score": score,
        "most_similar": most_similar,
        "index": index,
    }


@dataclass
class FilterReport:
    """Kept records (in input order), one rejection row per dropped record, and counts."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # reason -> records dropped
    normalised: dict[str, int] = field(default_factory=dict)  # rule -> records normalised
    kept_indices: list[int] = field(default_factory=list)  # input position of each kept record

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.rejections)

    @property
    def dropped(self) -> int:
        return len(self.rejections)


# --------------------------------------------------------------------------------------------
# Rule base classes
