"""Exact dedup: keep the first record of each group of records with equal normalised fields."""
from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from alpaca_data.filters.steps import Step, Verdict
from alpaca_data.records import normalise_text
from alpaca_data.store.encode import FieldHashes, combined_hashes, text_hashes
from alpaca_data.store.tables import table_to_records

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

    The group key is a 64-bit hash of the normalised fields (`store.encode.combined_hashes`). Keys are computed per
    record (`key_for`) or per batch in Arrow (`keys_for_table`, in a worker when streaming) and decided in order
    (`decide_keys`, vectorised). The state is compact whatever
    the size: the kept keys as a sorted array, and each kept instruction as UTF-8 bytes (for `most_similar`).
    """

    name = "exact_dedup"

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS):
        self.fields = tuple(fields)
        if not self.fields:
            raise ValueError("exact dedup needs at least one field")
        self._keys = np.zeros(0, dtype=np.uint64)  # kept keys, sorted
        self._slots = np.zeros(0, dtype=np.int64)  # for each kept key: its instruction's slot, or its position
        self._text = bytearray()
        self._ends = array("q")  # end offset of each slot's instruction in _text
        # Set by a caller that can read kept records again (filters.stream: the source revision): kept
        # instructions are then looked up by position when a duplicate needs one, and never held.
        self.instructions_at: Callable[[list[int]], list[str]] | None = None

    @staticmethod
    def key_for(record: Mapping[str, Any], fields: tuple[str, ...]) -> int:
        parts = text_hashes([normalise_text(_text(record, name)).encode("utf-8") for name in fields])
        return int(combined_hashes([part[None] for part in parts])[0])

    @staticmethod
    def keys_for_table(table: pa.Table, fields: tuple[str, ...], hashes: FieldHashes | None = None) -> np.ndarray:
        """`key_for` of every row of `table`, the text fields normalised by `store.row_kernels` (`hashes`: the
        batch's, when its caller computes some of them anyway)."""
        if not all(name not in table.column_names or pa.types.is_string(table.schema.field(name).type)
                   for name in fields):  # a number or list field: as `_text` writes it
            return np.fromiter((ExactDuplicates.key_for(row, fields) for row in table_to_records(table)),
                               dtype=np.uint64, count=table.num_rows)
        hashes = hashes if hashes is not None else FieldHashes(table)
        return combined_hashes([hashes.of(name) for name in fields])

    def _earlier_instructions(self, slots: list[int]) -> dict[int, str]:
        """The instructions of kept records by slot (held text) or position (`instructions_at`)."""
        if not slots:
            return {}
        if self.instructions_at is not None:
            wanted = sorted(set(slots))
            return dict(zip(wanted, self.instructions_at(wanted)))
        return {slot: self._text[self._ends[slot - 1] if slot else 0:self._ends[slot]].decode(
            "utf-8", errors="surrogatepass") for slot in slots}

    def decide_keys(self, keys: Sequence[int] | np.ndarray, instructions: Sequence[str] | pa.ChunkedArray,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, Verdict]]:
        """(keep mask, verdicts of the dropped by position) for records with these keys, in order.
        instructions: the records' instructions (a column: only the few read are made Python strings).
        positions: where the records sit in the source, for `instructions_at`."""
        keys = np.asarray(keys, dtype=np.uint64)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        at = np.searchsorted(self._keys, distinct)
        known = at < len(self._keys)
        known[known] = self._keys[at[known]] == distinct[known]
        keep = np.zeros(len(keys), dtype=bool)
        keep[first[~known]] = True
        dropped = np.flatnonzero(~keep).tolist()
        looked_up = self._earlier_instructions([int(self._slots[at[inverse[i]]]) for i in dropped
                                                if known[inverse[i]]])
        new = np.sort(first[~known])  # in record order
        texts = _texts_at(instructions, sorted({int(first[inverse[i]]) for i in dropped if not known[inverse[i]]})
                          + (new.tolist() if self.instructions_at is None else []))
        drops: dict[int, Verdict] = {}
        for i in dropped:
            group = inverse[i]
            kept = looked_up[int(self._slots[at[group]])] if known[group] else texts[int(first[group])]
            drops[i] = Verdict({}, "exact_duplicate", score=1.0, most_similar=kept)
        if self.instructions_at is not None:
            slots = np.asarray(positions, dtype=np.int64)[new]
        else:
            slots = np.arange(len(self._ends), len(self._ends) + len(new), dtype=np.int64)
            for i in new.tolist():
                self._text += texts[i].encode("utf-8", errors="surrogatepass")
                self._ends.append(len(self._text))
        order = np.argsort(keys[new])
        at_new = np.searchsorted(self._keys, keys[new][order])  # a merge: O(kept) per batch, not a sort
        self._keys = np.insert(self._keys, at_new, keys[new][order])
        self._slots = np.insert(self._slots, at_new, slots[order])
        return keep, drops

    def check(self, record: Mapping[str, Any]) -> Verdict:
        keep, drops = self.decide_keys([self.key_for(record, self.fields)], [_text(record, "instruction")])
        if keep[0]:
            return Verdict(dict(record))
        return Verdict(dict(record), "exact_duplicate", score=1.0, most_similar=drops[0].most_similar)

    def check_all(self, records: Sequence[Mapping[str, Any]], progress: bool = True) -> list[Verdict]:
        keep, drops = self.decide_keys([self.key_for(r, self.fields) for r in records],
                                       [_text(r, "instruction") for r in records])
        return [Verdict(dict(r)) if keep[i] else Verdict(dict(r), "exact_duplicate", score=1.0,
                                                          most_similar=drops[i].most_similar)
                for i, r in enumerate(records)]

    def settings(self) -> dict[str, Any]:
        return {"fields": list(self.fields)}


def _texts_at(instructions: Sequence[str] | pa.ChunkedArray, rows: list[int]) -> dict[int, str]:
    """The instructions at `rows` as Python objects."""
    if isinstance(instructions, (pa.Array, pa.ChunkedArray)):
        wanted = sorted(set(rows))
        return dict(zip(wanted, instructions.take(wanted).to_pylist()))
    return {row: instructions[row] for row in rows}
