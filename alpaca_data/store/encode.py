"""What a revision's id and statistics need from its rows, computed a batch at a time.

The id is the sha256 of the canonical JSON lines of the records as they read back from Parquet
(`records.canonical_bytes`); the statistics need a few numbers per row. Both are computed here per batch, in a
worker or in the writer's own thread, as arrays that can be cut down to the rows a later step keeps
(`EncodedRows.select`) and merged in order by the writer.

Canonical JSON lines and the per-row counts are built from the Arrow columns by `row_kernels` (no Python object
per row). A table with a float or list column is serialised row by row instead: by orjson where it gives the
same bytes as the json module, by the json module for floats (orjson writes 1e-7 where json writes 1e-07).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from alpaca_data.records import CORE_FIELDS, canonical_bytes, normalise_text


def kernels():
    """`store.row_kernels`, imported where rows are first encoded: numba's import and the kernels' load cost
    ~0.5 s and ~120 MB, which commands that encode no rows (sql, log, view) do not pay."""
    from alpaca_data.store import row_kernels

    return row_kernels


def warm_up_in_background() -> threading.Thread:
    """Start loading the row kernels on a thread of its own: numba's first use (~0.6 s, mostly under the GIL)
    then overlaps work that releases it, as hashing a revision's data file before reading it. Join it before
    the kernels' first real use, or not at all."""
    def load() -> None:
        k = kernels()
        k.text_counts(np.zeros(2, np.int32), np.zeros(0, np.uint8), np.zeros(1, np.bool_), np.zeros(1, np.int32),
                      np.zeros(1, np.int32))
        pa.array([""])  # pyarrow's first conversion from Python imports pandas

    thread = threading.Thread(target=load, name="warm-up", daemon=True)
    thread.start()
    return thread


def has_floats(schema: pa.Schema) -> bool:
    return any(pa.types.is_floating(f.type) or (pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type))
               for f in schema)


def canonical_lines(rows: Sequence[Mapping[str, Any]], floats: bool) -> list[bytes]:
    if floats:
        return [canonical_bytes(row) for row in rows]
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    return [dumps(row, option=option) for row in rows]


@dataclass(frozen=True)
class TextView:
    """A string array as numpy views for `row_kernels`: offsets, UTF-8 bytes, validity."""

    offsets: np.ndarray
    data: np.ndarray
    valid: np.ndarray
    array: pa.Array

    @classmethod
    def of(cls, array: pa.Array | pa.ChunkedArray) -> TextView:
        array = one_array(array)
        if pa.types.is_null(array.type):
            array = pa.nulls(len(array), pa.string())
        wide = pa.types.is_large_string(array.type)
        _, offsets, data = array.buffers()
        offsets = np.frombuffer(offsets, np.int64 if wide else np.int32)[array.offset:array.offset + len(array) + 1]
        data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        return cls(offsets, data, _valid(array), array)


def _valid(array: pa.Array) -> np.ndarray:
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    return array.is_valid().to_numpy(zero_copy_only=False)


@dataclass(frozen=True)
class TextCounts:
    words: np.ndarray  # int32 (a text holds under 2**31 characters): len(text.split())
    chars: np.ndarray  # int32


def text_counts(view: TextView) -> TextCounts:
    count = len(view.valid)
    counts = TextCounts(np.empty(count, np.int32), np.empty(count, np.int32))
    kernels().text_counts(view.offsets, view.data, view.valid, counts.words, counts.chars)
    return counts


def word_counts(texts: pa.Array) -> np.ndarray:
    """`len(text.split())` of each row (null: 0)."""
    return text_counts(TextView.of(texts)).words


def _normalised_segments(view: TextView):
    """`normalise_text` of each row as UTF-8 (null: "") for the ASCII rows, written by `row_kernels` as segments
    [starts, ends) of one buffer; and the other rows."""
    sizes = np.diff(view.offsets).astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), dtype=np.uint8)
    ends, odd = starts.copy(), np.zeros(len(view.valid), dtype=bool)
    kernels().write_normalised_ascii(view.offsets, view.data, view.valid, out, ends, odd)
    return out, starts, ends, np.flatnonzero(odd)


def _normalised_in_python(view: TextView, rows: np.ndarray) -> list[bytes]:
    return [normalise_text(text or "").encode("utf-8") for text in view.array.take(rows).to_pylist()]


def normalised_texts(view: TextView) -> list[bytes]:
    """`normalise_text` of each row, as UTF-8 (null: "")."""
    out, starts, ends, odd = _normalised_segments(view)
    buffer = out.tobytes()
    texts = [buffer[start:end] for start, end in zip(starts.tolist(), ends.tolist())]
    for row, text in zip(odd.tolist(), _normalised_in_python(view, odd)):
        texts[row] = text
    return texts


def record_keys(instructions: Sequence[str | None] | pa.Array | pa.ChunkedArray,
                inputs: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> list[str]:
    """`records.key_of` of many records at once: the normalisation by the row kernels, then one sha256 each.
    Each side: texts, or a string column."""
    from hashlib import sha256

    parts = [normalised_texts(TextView.of(texts if isinstance(texts, (pa.Array, pa.ChunkedArray))
                                          else pa.array(texts, pa.string()))) for texts in (instructions, inputs)]
    return [sha256(a + b"\x1f" + b).hexdigest()[:16] for a, b in zip(*parts)]


def normalised_hashes(view: TextView) -> np.ndarray:
    """`text_hashes` of `normalised_texts`, without a Python object per ASCII row."""
    out, starts, ends, odd = _normalised_segments(view)
    hashes = np.empty(len(starts), dtype=np.uint64)
    kernels().hash_segments(out, starts, ends, hashes)
    if len(odd):
        hashes[odd] = text_hashes(_normalised_in_python(view, odd))
    return hashes


def combined_hashes(parts: Sequence[np.ndarray]) -> np.ndarray:
    """One 64-bit identity per row from the hashes of several fields, in order (MurmurHash3's finaliser over
    each step): equal fields give equal results."""
    combined = np.asarray(parts[0], dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts[1:]:
            combined = fmix64(combined * np.uint64(0x9E3779B97F4A7C15) ^ np.asarray(part, dtype=np.uint64))
    return combined


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (wrapping uint64 arithmetic)."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


class FieldHashes:
    """`normalised_hashes` of a batch's text columns, each computed once (statistics and dedup keys both read
    the instruction's). A missing column reads as empty text."""

    def __init__(self, table: pa.Table | pa.RecordBatch):
        self.table = table
        self._done: dict[str, np.ndarray] = {}

    def of(self, name: str) -> np.ndarray:
        if name not in self._done:
            column = self.table.column(name) if name in self.table.column_names else pa.nulls(self.table.num_rows)
            self._done[name] = normalised_hashes(TextView.of(column))
        return self._done[name]


def text_hashes(texts: Sequence[bytes]) -> np.ndarray:
    """A 64-bit hash (MurmurHash64A) of each text: the identity of normalised texts within one run."""
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    hashes = np.empty(len(texts), dtype=np.uint64)
    kernels().hash_segments(np.frombuffer(b"".join(texts), dtype=np.uint8), ends - lengths, ends, hashes)
    return hashes


def canonical_json(table: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """The canonical JSON lines of the rows as they read back (`table_to_records` then `canonical_bytes`) and
    where each ends, built in `row_kernels`; None when a column is of a type the kernels do not write (floats,
    lists: the caller serialises those rows in Python)."""
    count = table.num_rows
    columns = []
    for name in sorted(table.column_names):
        field_type = table.schema.field(name).type
        kind = "string" if pa.types.is_string(field_type) or pa.types.is_large_string(field_type) else \
            "int" if pa.types.is_int64(field_type) else "bool" if pa.types.is_boolean(field_type) else \
            "null" if pa.types.is_null(field_type) else None
        if kind is None:
            return None
        core = name in CORE_FIELDS
        if kind == "null" and not core:
            continue  # every value is null: no row writes it
        columns.append((kind, json.dumps(name, ensure_ascii=False).encode("utf-8") + b":", not core,
                        one_array(table.column(name))))
    sizes = np.full(count, 3, dtype=np.int64)  # { } and the newline
    fields = np.zeros(count, dtype=np.int64)
    prepared = []
    for kind, key, omit_null, array in columns:
        key = np.frombuffer(key, dtype=np.uint8)
        quoted = kind in ("string", "null")
        # an int or a bool as Arrow writes it in text: str(int), true, false, as JSON has them
        view = TextView.of(array if quoted else pc.cast(array, pa.string()))
        arrays = (view.offsets, view.data, view.valid)
        kernels().add_string_sizes(*arrays, len(key), omit_null, quoted, sizes, fields)
        prepared.append((arrays, key, omit_null, quoted))
    sizes += np.maximum(fields - 1, 0)  # the commas
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]) if count else 0, dtype=np.uint8)
    cursor, written = np.empty(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    kernels().open_lines(out, ends - sizes, cursor)
    for arrays, key, omit_null, quoted in prepared:
        kernels().write_strings(*arrays, key, omit_null, quoted, out, cursor, written)
    kernels().close_lines(out, cursor)
    return out, ends


@dataclass
class EncodedRows:
    """Canonical JSON lines of a batch of rows (each ending in a newline) and the per-row numbers of the stats."""

    canonical: bytes | np.ndarray  # uint8 when built by `row_kernels`: no copy
    ends: np.ndarray  # int64: where each row's line ends in `canonical`
    with_input: np.ndarray  # bool
    empty_output: np.ndarray  # bool
    chars: np.ndarray  # int32: characters in the core fields (a revision keeps these per row until commit)
    words: np.ndarray  # int32, one column per core field
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


def encode_table(table: pa.Table | pa.RecordBatch, hashes: FieldHashes | None = None) -> EncodedRows:
    """Canonical lines and statistics of the rows as they read back from Parquet. hashes: the batch's normalised
    text hashes where a caller already has some."""
    from alpaca_data.store.tables import table_to_records

    columns = [table.column(name) for name in CORE_FIELDS]
    built = None if has_floats(table.schema) else canonical_json(table)
    if built is None:
        built = _joined(canonical_lines(table_to_records(table), has_floats(table.schema)))
    return _encoded(*built, *columns, hashes.of("instruction") if hashes is not None else None)


def one_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if not isinstance(column, pa.ChunkedArray):
        return column
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()  # combining one chunk copies it


def encode_lines(lines: list[bytes], instructions: pa.Array, inputs: pa.Array, outputs: pa.Array) -> EncodedRows:
    """The rows' canonical JSON `lines` and their statistics, counted on the core columns."""
    return _encoded(*_joined(lines), instructions, inputs, outputs)


def _joined(lines: list[bytes]) -> tuple[bytes, np.ndarray]:
    """Lines as one buffer, each ending in a newline, and where each ends."""
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) + 1)
    return (b"\n".join(lines) + b"\n" if lines else b""), ends


def _encoded(canonical: bytes | np.ndarray, ends: np.ndarray, instructions: pa.Array, inputs: pa.Array,
             outputs: pa.Array, instruction_hashes: np.ndarray | None = None) -> EncodedRows:
    views = [TextView.of(texts) for texts in (instructions, inputs, outputs)]
    counts = [text_counts(view) for view in views]
    words = np.stack([c.words for c in counts], axis=1) if len(ends) else np.zeros((0, len(CORE_FIELDS)), np.int32)
    chars = sum(c.chars for c in counts) if len(ends) else np.zeros(0, np.int32)
    # `text.strip()` is empty exactly when `text.split()` is
    return EncodedRows(canonical, ends, words[:, 1] > 0, words[:, 2] == 0, chars, words,
                       normalised_hashes(views[0]) if instruction_hashes is None else instruction_hashes)
