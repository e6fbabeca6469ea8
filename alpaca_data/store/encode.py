"""What a revision's id and statistics need from its rows, computed a batch at a time.

The id is the sha256 of the canonical JSON lines of the records as they read back from Parquet
(`records.canonical_bytes`); the statistics need a few numbers per row. Both are computed here per batch, in a
worker process or in the writer's own, as arrays that can be cut down to the rows a later step keeps
(`EncodedRows.select`) and merged in order by the writer.

Canonical JSON is written by orjson (10x faster than the json module) where it gives the same bytes: sorted
keys, compact, UTF-8, the same escapes. Floats are the exception (orjson writes 1e-7 where json writes 1e-07),
so a batch with a float column takes the json module.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa

from alpaca_data.records import CORE_FIELDS, canonical_bytes, normalise_text


def has_floats(schema: pa.Schema) -> bool:
    return any(pa.types.is_floating(f.type) or (pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type))
               for f in schema)


def canonical_lines(rows: Sequence[Mapping[str, Any]], floats: bool) -> list[bytes]:
    if floats:
        return [canonical_bytes(row) for row in rows]
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    return [dumps(row, option=option) for row in rows]


def instruction_hash(text: str) -> int:
    """Identity of an instruction for the `duplicate_instructions` statistic."""
    digest = hashlib.blake2b(normalise_text(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _instruction_numbers(text: str) -> tuple[int, int]:
    """(words, instruction_hash) with one split: `normalise_text` inlined for ASCII, the common case."""
    if not text.isascii():
        return len(text.split()), instruction_hash(text)
    words = text.split()
    digest = hashlib.blake2b(" ".join(words).lower().encode("ascii"), digest_size=8).digest()
    return len(words), int.from_bytes(digest, "little")


@dataclass
class EncodedRows:
    """Canonical JSON lines of a batch of rows (each ending in a newline) and the per-row numbers of the stats."""

    canonical: bytes
    ends: np.ndarray  # int64: where each row's line ends in `canonical`
    with_input: np.ndarray  # bool
    empty_output: np.ndarray  # bool
    chars: np.ndarray  # int64: characters in the core fields
    words: np.ndarray  # int64, one column per core field
    instruction_hashes: np.ndarray  # uint64

    def __len__(self) -> int:
        return len(self.ends)

    def select(self, keep: np.ndarray) -> EncodedRows:
        """The rows where `keep` is true, in order."""
        if keep.all():
            return self
        starts = np.concatenate(([0], self.ends[:-1]))
        view = memoryview(self.canonical)
        canonical = b"".join([view[s:e] for s, e in zip(starts[keep].tolist(), self.ends[keep].tolist())])
        ends = np.cumsum(self.ends[keep] - starts[keep])
        return EncodedRows(canonical, ends, self.with_input[keep], self.empty_output[keep], self.chars[keep],
                           self.words[keep], self.instruction_hashes[keep])


def encode_rows(rows: Sequence[Mapping[str, Any]], floats: bool) -> EncodedRows:
    lines = canonical_lines(rows, floats)
    count = len(rows)
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=count) + 1)
    instructions = [row["instruction"] for row in rows]
    inputs = [row["input"] for row in rows]
    outputs = [row["output"] for row in rows]
    numbers = np.array([_instruction_numbers(text) for text in instructions], dtype=np.uint64).reshape(count, 2)
    words = np.empty((count, len(CORE_FIELDS)), dtype=np.int64)
    words[:, 0] = numbers[:, 0]
    words[:, 1] = [len(text.split()) for text in inputs]
    words[:, 2] = [len(text.split()) for text in outputs]
    chars = np.fromiter(map(len, instructions), np.int64, count) + np.fromiter(map(len, inputs), np.int64, count) \
        + np.fromiter(map(len, outputs), np.int64, count)
    with_input = np.array([bool(text.strip()) for text in inputs], dtype=bool)
    empty_output = np.array([not text.strip() for text in outputs], dtype=bool)
    canonical = b"\n".join(lines) + b"\n" if lines else b""
    return EncodedRows(canonical, ends, with_input, empty_output, chars, words, numbers[:, 1].copy())


def encode_table(table: pa.Table | pa.RecordBatch) -> EncodedRows:
    from alpaca_data.store.tables import table_to_records

    return encode_rows(table_to_records(table), has_floats(table.schema))
