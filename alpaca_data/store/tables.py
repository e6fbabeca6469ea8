"""Records <-> Arrow tables, the canonical record stream, and summary stats."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa

from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS, normalise_text


def records_to_table(records: list[Mapping[str, Any]]) -> pa.Table:
    """Core fields first (always strings), provenance columns after, in sorted order."""
    extra = sorted({name for record in records for name in record} - set(CORE_FIELDS))
    arrays, names = [], []
    for name in (*CORE_FIELDS, *extra):
        values = [record.get(name) for record in records]
        if name in CORE_FIELDS:
            values = ["" if value is None else value for value in values]
            arrays.append(pa.array(values, type=pa.string()))
        else:
            try:
                arrays.append(pa.array(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                raise UserError(f"field {name!r}: values of mixed types cannot share a column ({error})") from None
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def table_to_records(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts; provenance columns that are null for a row are left out of that row."""
    rows = table.to_pylist()
    extra = [name for name in table.column_names if name not in CORE_FIELDS]
    if extra:
        for row in rows:
            for name in extra:
                if row[name] is None:
                    del row[name]
    return rows


def word_count(text: str) -> int:
    return len(text.split())


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0}
    array = np.asarray(values)
    return {"mean": round(float(array.mean()), 3), "median": float(np.median(array)),
            "p95": round(float(np.percentile(array, 95)), 2), "max": int(array.max())}


def compute_stats(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    records = list(records)
    words = {name: [word_count(record[name]) for record in records] for name in CORE_FIELDS}
    with_input = sum(1 for record in records if record["input"].strip())
    normalised = [normalise_text(record["instruction"]) for record in records]
    return {
        "record_count": len(records),
        "with_input": with_input,
        "with_input_share": round(with_input / len(records), 4) if records else 0.0,
        "empty_output": sum(1 for record in records if not record["output"].strip()),
        "duplicate_instructions": len(normalised) - len(set(normalised)),
        "words": {name: _summary(values) for name, values in words.items()},
        "chars_total": sum(len(record[name]) for record in records for name in CORE_FIELDS),
    }

