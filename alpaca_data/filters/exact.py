"""Exact dedup: keep the first record of each group of records with equal normalised fields."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alpaca_data.filters.steps import Step, Verdict
from alpaca_data.records import key_of, normalise_text

DEFAULT_FIELDS: tuple[str, ...] = ("instruction", "input")


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _drop(reason: str, record: Mapping[str, Any], score: float, kept: Mapping[str, Any]) -> Verdict:
    return Verdict(dict(record), reason, score=score, most_similar=_text(kept, "instruction"))


class ExactDuplicates(Step):
    """Keep the first record of each group with equal normalised `fields`.

    With the default fields the group key is ``records.key_of`` (normalised instruction + input).
    """

    name = "exact_dedup"

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS):
        self.fields = tuple(fields)
        if not self.fields:
            raise ValueError("exact dedup needs at least one field")
        self._first: dict[Any, Mapping[str, Any]] = {}

    def _key(self, record: Mapping[str, Any]) -> Any:
        if self.fields == DEFAULT_FIELDS:
            return key_of(record)
        return tuple(normalise_text(_text(record, name)) for name in self.fields)

    def check(self, record: Mapping[str, Any]) -> Verdict:
        group = self._key(record)
        kept = self._first.get(group)
        if kept is None:
            self._first[group] = record
            return Verdict(dict(record))
        return _drop("exact_duplicate", record, 1.0, kept)

    def settings(self) -> dict[str, Any]:
        return {"fields": list(self.fields)}


