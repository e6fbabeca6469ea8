"""Exact dedup: keep the first record of each group of records with equal normalised fields."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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

    With the default fields the group key is ``records.key_of`` (normalised instruction + input). The keys are
    computed per record (`key_for`, in a worker when streaming) and decided in order (`decide_keys`); only the
    kept instruction of each group is held, for the `most_similar` of its duplicates.
    """

    name = "exact_dedup"

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS):
        self.fields = tuple(fields)
        if not self.fields:
            raise ValueError("exact dedup needs at least one field")
        self._first: dict[str, str] = {}  # group key -> the kept record's instruction

    @staticmethod
    def key_for(record: Mapping[str, Any], fields: tuple[str, ...]) -> str:
        if fields == DEFAULT_FIELDS:
            return key_of(record)
        return "\x1f".join(normalise_text(_text(record, name)) for name in fields)

    def decide_keys(self, keys: Sequence[str], instructions: Sequence[str]) -> tuple[np.ndarray, dict[int, Verdict]]:
        """(keep mask, verdicts of the dropped by position) for records with these keys, in order."""
        keep = np.ones(len(keys), dtype=bool)
        drops: dict[int, Verdict] = {}
        first = self._first
        for i, (key, instruction) in enumerate(zip(keys, instructions)):
            kept = first.get(key)
            if kept is None:
                first[key] = instruction
            else:
                keep[i] = False
                drops[i] = Verdict({}, "exact_duplicate", score=1.0, most_similar=kept)
        return keep, drops

    def check(self, record: Mapping[str, Any]) -> Verdict:
        keep, drops = self.decide_keys([self.key_for(record, self.fields)], [_text(record, "instruction")])
        if keep[0]:
            return Verdict(dict(record))
        return Verdict(dict(record), "exact_duplicate", score=1.0, most_similar=drops[0].most_similar)

    def settings(self) -> dict[str, Any]:
        return {"fields": list(self.fields)}
