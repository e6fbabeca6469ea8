"""Records <-> Arrow: the column types a revision's records need (decided once, for validation and import
alike), conversion in batches, and the statistics of a revision accumulated batch by batch."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS

_INT64 = (-(2**63), 2**63 - 1)
_KIND_TYPES = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
               "null": pa.null()}


_KIND_OF_TYPE = {type(None): "null", bool: "bool", int: "int", float: "float", str: "string"}


def _scalar_kind(value: Any) -> str | None:
    return _KIND_OF_TYPE.get(type(value))


def _merge(a: str, b: str) -> str | None:
    """The kind a column holding both kinds has, or None when they cannot share a column."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    if a.startswith("list<") and b.startswith("list<"):
        inner = _merge(a[5:-1], b[5:-1])
        return f"list<{inner}>" if inner else None
    return None


def _describe(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "a boolean", "string": "a string",
            "null": "null"}.get(kind, "a list" if kind.startswith("list<") else kind)


def value_kind(value: Any) -> tuple[str | None, str | None]:
    """(kind, problem) of one provenance value: a scalar or a flat list of scalars, ints within 64 bits."""
    if isinstance(value, list):
        inner = "null"
        for item in value:
            kind = _scalar_kind(item)
            if kind is None:
                return None, "provenance lists hold scalars only, not nested lists or objects"
            if kind == "int" and not _INT64[0] <= item <= _INT64[1]:
                return None, f"integer {item} does not fit in 64 bits"
            merged = _merge(inner, kind)
            if merged is None:
                return None, f"a list mixes {_describe(inner)} and {_describe(kind)}"
            inner = merged
        return f"list<{inner}>", None
    kind = _scalar_kind(value)
    if kind is None:
        return None, "provenance fields are scalars or flat lists"
    if kind == "int" and not _INT64[0] <= value <= _INT64[1]:
        return None, f"integer {value} does not fit in 64 bits"
    return kind, None


class ColumnTypes:
    """The Parquet column type of every field, learnt record by record.

    `observe` returns (field, reason) for each value that cannot share its column with the values seen
    before (a string where earlier records had numbers, an integer beyond 64 bits, ...): the validator
    reports these, so a file that validates always imports.
    """

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.first_seen: dict[str, str] = {}  # field -> location of the record that fixed its kind

    def observe(self, record: Mapping[str, Any], location: str = "") -> list[tuple[str, str]]:
        problems = []
        for name, value in record.items():
            if name in CORE_FIELDS:
                continue
            kind, problem = value_kind(value)
            if problem:
                problems.append((name, problem))
                continue
            known = self.kinds.get(name)
            if known is None:
                self.kinds[name] = kind
                self.first_seen[name] = location
                continue
            merged = _merge(known, kind)
            if merged is None:
                where = f" in {self.first_seen[name]}" if self.first_seen.get(name) else " in earlier records"
                problems.append((name, f"is {_describe(kind)} here but {_describe(known)}{where}; "
                                       "a field holds one type in every record"))
            elif merged != known:
                self.kinds[name] = merged
        return problems

    def merge_kind(self, name: str, kind: str) -> bool:
        """Fold in a kind learnt elsewhere (another chunk of the file); False when the two cannot share a column."""
        known = self.kinds.get(name)
        merged = kind if known is None else _merge(known, kind)
        if merged is None:
            return False
        self.kinds[name] = merged
        return True

    def schema(self) -> pa.Schema:
        """Core fields first (always strings), provenance columns after, in sorted order."""
        fields = [pa.field(name, pa.string()) for name in CORE_FIELDS]
        for name in sorted(self.kinds):
            kind = self.kinds[name]
            arrow = pa.list_(_KIND_TYPES[kind[5:-1]]) if kind.startswith("list<") else _KIND_TYPES[kind]
            fields.append(pa.field(name, arrow))
        return pa.schema(fields)


def schema_for(records: Iterable[Mapping[str, Any]]) -> pa.Schema:
    types = ColumnTypes()
    for number, record in enumerate(records, start=1):
        problems = types.observe(record, f"record {number}")
        if problems:
            name, reason = problems[0]
            raise UserError(f"record {number}: {name}: {reason}")
    return types.schema()


def records_to_table(records: list[Mapping[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    schema = schema if schema is not None else schema_for(records)
    arrays = []
    for field in schema:
        values = [record.get(field.name) for record in records]
        if field.name in CORE_FIELDS:
            values = ["" if value is None else value for value in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` in `schema`'s columns: a column it lacks is all nulls, a null-typed one takes the schema's type."""
    if table.schema == schema:
        return table
    return pa.Table.from_arrays([table.column(field.name).cast(field.type) if field.name in table.column_names
                                 else pa.nulls(table.num_rows, field.type) for field in schema], schema=schema)


def table_to_records(table: pa.Table | pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows as dicts; provenance columns that are null for a row are left out of that row."""
    rows = table.to_pylist()
    extra = [name for name in table.schema.names if name not in CORE_FIELDS]
    if extra:
        for row in rows:
            for name in extra:
                if row[name] is None:
                    del row[name]
    return rows


def _distinct(values: np.ndarray) -> int:
    """len(np.unique(values)) by sorting: numpy 2's hash-based unique is 15x slower on a million uint64s."""
    if not len(values):
        return 0
    ordered = np.sort(values)
    return 1 + int(np.count_nonzero(ordered[1:] != ordered[:-1]))


def _summary(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    return {"mean": round(float(values.mean()), 3), "median": float(np.median(values)),
            "p95": round(float(np.percentile(values, 95)), 2), "max": int(values.max())}


class RevisionStats:
    """The `stats` of a revision's manifest, accumulated batch by batch from `store.encode.EncodedRows`
    (a few numbers per record: flat memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.with_input = 0
        self.empty_output = 0
        self.chars_total = 0
        self._words: list[np.ndarray] = []
        self._instruction_hashes: list[np.ndarray] = []

    def add(self, encoded) -> None:
        self.count += len(encoded)
        self.with_input += int(encoded.with_input.sum())
        self.empty_output += int(encoded.empty_output.sum())
        self.chars_total += int(encoded.chars.sum())
        self._words.append(encoded.words)
        self._instruction_hashes.append(encoded.instruction_hashes)

    def result(self) -> dict[str, Any]:
        words = np.concatenate(self._words) if self._words else np.zeros((0, len(CORE_FIELDS)), dtype=np.int64)
        hashes = np.concatenate(self._instruction_hashes) if self._instruction_hashes else np.zeros(0, np.uint64)
        distinct = _distinct(hashes)
        return {
            "record_count": self.count,
            "with_input": self.with_input,
            "with_input_share": round(self.with_input / self.count, 4) if self.count else 0.0,
            "empty_output": self.empty_output,
            "duplicate_instructions": self.count - distinct,
            "words": {name: _summary(words[:, i]) for i, name in enumerate(CORE_FIELDS)},
            "chars_total": self.chars_total,
        }
