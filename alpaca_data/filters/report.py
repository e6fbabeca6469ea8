"""What a drop rule returns, and the rows of a revision's `rejections` table.

Shared by the heuristic rules, dedup, the ROUGE-L filter and generation, so that every step's
`rejections` table has the same columns (`REJECTION_SCHEMA`), even when it holds no rows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from alpaca_data.records import key_of

TEXT_FIELDS: tuple[str, ...] = ("instruction", "input", "output")


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Drop:
    """What a drop rule returns when it fires: the reason code and a short human detail."""

    reason: str
    detail: str | None = None


def make_rejection(reason: str, record: Mapping[str, Any], index: int, *, score: float | None = None,
                   most_similar: str | None = None, key: str | None = None) -> dict[str, Any]:
    """One row of a rejections file (shared by heuristic, dedup and ROUGE filters). key: the record's `key_of`,
    when the caller computed it (for many records at once)."""
    return {
        "reason": reason,
        "action": "drop",
        "key": key if key is not None else key_of(record),
        "instruction": _text(record, "instruction"),
        "input": _text(record, "input"),
        "output": _text(record, "output"),
        "score": score,
        "most_similar": most_similar,
        "index": index,
    }


# The columns of every `rejections` table; generation adds the request a task came from.
REJECTION_SCHEMA = pa.schema([
    ("reason", pa.string()), ("action", pa.string()), ("key", pa.string()), ("instruction", pa.string()),
    ("input", pa.string()), ("output", pa.string()), ("score", pa.float64()), ("most_similar", pa.string()),
    ("index", pa.int64()), ("request_id", pa.string()),
])


def rejections_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Rejection rows as a table that carries its columns even with no rows."""
    return pa.Table.from_pylist([dict(row) for row in rows], schema=REJECTION_SCHEMA)


def rejections_of(reasons: Sequence[str], records: Sequence[Mapping[str, Any]], indices: Sequence[int], *,
                  keys: Sequence[str] | None = None, scores: Sequence[float | None] | None = None,
                  most_similar: Sequence[str | None] | None = None) -> pa.Table:
    """Many rejections at once, built a column at a time: the table `rejections_table` makes of their
    `make_rejection` rows, without a dict per row (a filter at 1M drops 200K records)."""
    texts = {name: pa.array([_text(record, name) for record in records], pa.string()) for name in TEXT_FIELDS}
    return _rejections(pa.array(reasons, pa.string()), texts, indices,
                       keys if keys is not None else [key_of(record) for record in records], scores, most_similar)


def rejections_of_rows(reason: str, table: pa.Table, indices: Sequence[int], keys: Sequence[str]) -> pa.Table:
    """`rejections_of` for rows of `table` dropped as they are, their text taken from its string columns (a null
    or missing field: "")."""
    count = table.num_rows
    texts = {name: pc.fill_null(table.column(name), "").cast(pa.string()) if name in table.column_names
             else pa.array([""] * count, pa.string()) for name in TEXT_FIELDS}
    return _rejections(pa.array([reason] * count, pa.string()), texts, indices, keys)


def _rejections(reasons: pa.Array, texts: Mapping[str, pa.Array | pa.ChunkedArray], indices: Sequence[int],
                keys: Sequence[str], scores: Sequence[float | None] | None = None,
                most_similar: Sequence[str | None] | None = None) -> pa.Table:
    count = len(reasons)
    columns = {
        "reason": reasons,
        "action": pa.array(["drop"] * count, pa.string()),
        "key": pa.array(keys, pa.string()),
        **texts,
        "score": pa.array(scores, pa.float64()) if scores is not None else pa.nulls(count, pa.float64()),
        "most_similar": pa.array(most_similar, pa.string()) if most_similar is not None else pa.nulls(count, pa.string()),
        "index": pa.array(indices, pa.int64()),
        "request_id": pa.nulls(count, pa.string()),
    }
    return pa.table(columns, schema=REJECTION_SCHEMA)
