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

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from xxhash import xxh3_64_intdigest

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
    """Identity of an instruction for the `duplicate_instructions` statistic (counted within one run: xxh3 is
    fast, and nothing keeps these numbers)."""
    return xxh3_64_intdigest(normalise_text(text).encode("utf-8"))


def _python_rows(texts: pa.Array, valid: bool) -> np.ndarray:
    """Rows whose words Arrow's ASCII splitting would not count as `str.split()` does: non-ASCII text, and
    the separators \\x1c-\\x1f that Python splits on and Arrow does not (tab, newline, \\v, \\f, \\r and space
    are whitespace to both; valid text holds no control character)."""
    odd = pc.invert(pc.string_is_ascii(texts))
    if not valid:
        odd = pc.or_(odd, pc.match_substring_regex(texts, "[\\x1c-\\x1f]"))
    return odd.to_numpy(zero_copy_only=False)


def _split(texts: pa.Array) -> pa.ListArray:
    """The words of each row (ASCII rows: as `str.split()`); trimmed first so no row has empty pieces but ""."""
    return pc.ascii_split_whitespace(pc.ascii_trim_whitespace(texts))


def word_counts(texts: pa.Array, *, valid: bool = False) -> np.ndarray:
    """`len(text.split())` of each row (null: 0)."""
    texts = pc.fill_null(texts, "")
    return _word_counts(texts, _split(texts), _python_rows(texts, valid))


def _word_counts(texts: pa.Array, words: pa.ListArray, python_rows: np.ndarray) -> np.ndarray:
    counts = pc.list_value_length(words).to_numpy(zero_copy_only=False).astype(np.int64)
    counts -= pc.equal(pc.list_element(words, 0), "").to_numpy(zero_copy_only=False)  # "" splits to [""]
    rows = np.flatnonzero(python_rows)
    if len(rows):
        counts[rows] = [len(text.split()) for text in texts.take(rows).to_pylist()]
    return counts


def normalised_texts(texts: pa.Array, *, valid: bool = False) -> list[bytes]:
    """`records.normalise_text` of each row as UTF-8 (null: ""): in Arrow for ASCII rows (NFKC leaves ASCII as
    it is, and casefold is lower there), in Python for the others."""
    texts = pc.fill_null(texts, "") if texts.null_count else texts
    return _normalised(texts, _split(texts), _python_rows(texts, valid))


def _normalised(texts: pa.Array, words: pa.ListArray, python_rows: np.ndarray) -> list[bytes]:
    normalised = pc.ascii_lower(pc.binary_join(words, " ")).cast(pa.binary()).to_pylist()
    rows = np.flatnonzero(python_rows)
    for row, text in zip(rows.tolist(), texts.take(rows).to_pylist()):
        normalised[row] = normalise_text(text).encode("utf-8")
    return normalised


def hashes_of(texts: list[bytes]) -> np.ndarray:
    return np.fromiter(map(xxh3_64_intdigest, texts), dtype=np.uint64, count=len(texts))


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
        # the kept rows as runs of consecutive rows: one slice per run, not per row
        edges = np.flatnonzero(np.diff(np.concatenate(([False], keep, [False])).astype(np.int8)))
        first, last = edges[::2], edges[1::2] - 1
        view = memoryview(self.canonical)
        canonical = b"".join([view[s:e] for s, e in zip(starts[first].tolist(), self.ends[last].tolist())])
        ends = np.cumsum(self.ends[keep] - starts[keep])
        return EncodedRows(canonical, ends, self.with_input[keep], self.empty_output[keep], self.chars[keep],
                           self.words[keep], self.instruction_hashes[keep])


def encode_rows(rows: Sequence[Mapping[str, Any]], floats: bool) -> EncodedRows:
    columns = [pa.array([row[name] for row in rows], pa.string()) for name in CORE_FIELDS]
    return encode_lines(canonical_lines(rows, floats), *columns)


def encode_table(table: pa.Table | pa.RecordBatch) -> EncodedRows:
    from alpaca_data.store.tables import table_to_records

    columns = [one_array(table.column(name)) for name in CORE_FIELDS]
    return encode_lines(canonical_lines(table_to_records(table), has_floats(table.schema)), *columns)


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def encode_lines(lines: list[bytes], instructions: pa.Array, inputs: pa.Array, outputs: pa.Array, *,
                 valid: bool = False) -> EncodedRows:
    """The rows' canonical JSON `lines` and their statistics, counted on the core columns in Arrow.
    valid: the rows passed `RecordChecker`, so no text holds a control character."""
    count = len(lines)
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=count) + 1)
    words = np.empty((count, len(CORE_FIELDS)), dtype=np.int64)
    chars = np.zeros(count, dtype=np.int64)
    columns = (instructions, inputs, outputs)
    python_rows = [_python_rows(texts, valid) for texts in columns]
    split = [_split(texts) for texts in columns]
    for i, texts in enumerate(columns):
        words[:, i] = _word_counts(texts, split[i], python_rows[i])
        chars += pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    canonical = b"\n".join(lines) + b"\n" if lines else b""
    # `text.strip()` is empty exactly when `text.split()` is
    return EncodedRows(canonical, ends, words[:, 1] > 0, words[:, 2] == 0, chars, words,
                       hashes_of(_normalised(instructions, split[0], python_rows[0])))
