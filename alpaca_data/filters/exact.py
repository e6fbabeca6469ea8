"""Exact dedup: keep the first record of each group of records with equal normalised fields."""
from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from alpaca_data.filters.key_table import KeyTable
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
    (`decide_keys`, a row kernel). The state is compact whatever the size: the kept keys in a hash table
    (`KeyTable`), and, without a source to read them again from, each kept instruction as UTF-8 bytes (for
    `most_similar`).
    """

    name = "exact_dedup"

    def __init__(self, fields: Sequence[str] = DEFAULT_FIELDS):
        self.fields = tuple(fields)
        if not self.fields:
            raise ValueError("exact dedup needs at least one field")
        self._table = KeyTable()  # each kept key with its slot: a source position, or a record number
        self._seen = 0  # records decided so far
        self._text = bytearray()  # without a source to read again: the kept instructions, in order, as UTF-8
        self._ends = array("q")  # ... the end of each in _text
        self._kept_records = array("q")  # ... and the record number of each
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
        """The instructions of kept records of earlier batches, by slot: a source position (`instructions_at`)
        or a record number (the held text)."""
        if not slots:
            return {}
        wanted = sorted(set(slots))
        if self.instructions_at is not None:
            return dict(zip(wanted, self.instructions_at(wanted)))
        kept = np.searchsorted(np.frombuffer(self._kept_records, dtype=np.int64), wanted).tolist()
        return {slot: self._text[self._ends[k - 1] if k else 0:self._ends[k]].decode("utf-8", errors="surrogatepass")
                for slot, k in zip(wanted, kept)}

    def decide_keys(self, keys: Sequence[int] | np.ndarray, instructions: Sequence[str] | pa.ChunkedArray,
                    positions: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, Verdict]]:
        """(keep mask, verdicts of the dropped by position) for records with these keys, in order.
        instructions: the records' instructions (a column: only the few read are made Python strings).
        positions: where the records sit in the source, for `instructions_at`."""
        keys = np.asarray(keys, dtype=np.uint64)
        if self.instructions_at is not None:
            slots = np.asarray(positions, dtype=np.int64)  # a kept record is found again in the source
        else:
            slots = np.arange(self._seen, self._seen + len(keys), dtype=np.int64)  # record numbers
        self._seen += len(keys)
        found = self._table.claim(keys, slots)  # the slot of each key's first record, -1 for a first
        keep = found < 0
        dropped = np.flatnonzero(~keep)
        named = found[dropped]
        here = np.searchsorted(slots, named)  # a drop's first record in this very batch: its row here
        in_batch = (here < len(slots)) & (slots[np.minimum(here, len(slots) - 1)] == named)
        texts = _texts_at(instructions, here[in_batch].tolist()
                          + (np.flatnonzero(keep).tolist() if self.instructions_at is None else []))
        earlier = self._earlier_instructions(named[~in_batch].tolist())
        drops: dict[int, Verdict] = {}
        for i, slot, row, inside in zip(dropped.tolist(), named.tolist(), here.tolist(), in_batch.tolist()):
            drops[i] = Verdict({}, "exact_duplicate", score=1.0, most_similar=texts[row] if inside else earlier[slot])
        if self.instructions_at is None:  # the kept instructions are held, for the duplicates of later batches
            for i in np.flatnonzero(keep).tolist():
                self._text += (texts[i] or "").encode("utf-8", errors="surrogatepass")
                self._ends.append(len(self._text))
            self._kept_records.extend(slots[keep].tolist())
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
        return dict(zip(wanted, instructions.take(pa.array(wanted, pa.int64())).to_pylist()))
    return {row: instructions[row] for row in rows}
