"""`eval import`: published evaluation files as revisions, in the layouts of `alpaca_data.eval.annotations`.

The kind is read from the records:
- annotations (AlpacaEval's `*.annotations.json`, or people's judgments in the same fields): instruction,
  output_1, generator_1, output_2, generator_2, annotator, preference -> an annotations revision;
- outputs (AlpacaEval's model outputs: instruction, output, generator, dataset; Self-Instruct's predictions:
  prompt, instruction, input, response, target) -> an outputs revision.

Every record is checked before anything is written: a bad file is one line naming the file, the record and
the field, and the store is left as it was.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.eval.annotations import annotation_record, commit_rows, output_record
from alpaca_data.progress import track
from alpaca_data.readers import Problem, RecordFile
from alpaca_data.store import CommitResult, Store

ANNOTATION_MARKERS = ("output_1", "output_2", "preference")
# fields of the source files that the record layouts carry (under another name for some); the rest is listed
# in the recipe as dropped, so nothing disappears silently
ANNOTATION_SOURCE_FIELDS = {"instruction", "input", "output_1", "generator_1", "output_2", "generator_2",
                            "annotator", "preference", "dataset", "category", "item_id", "order", "raw_completion",
                            "raw", "created_at"}
OUTPUT_SOURCE_FIELDS = {"instruction", "input", "output", "response", "generator", "dataset", "category", "item_id"}


@dataclass(frozen=True)
class EvalImport:
    kind: str  # "annotations" | "outputs"
    result: CommitResult
    rows: int
    generators: list[str]


class _Bad(Exception):
    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def _text(record: dict[str, Any], field: str, *, required: bool = True, empty_ok: bool = True) -> str | None:
    value = record.get(field)
    if value is None:
        if required:
            raise _Bad(field, "missing" if field not in record else "is null; expected a string")
        return None
    if not isinstance(value, str):
        raise _Bad(field, f"expected a string, got {type(value).__name__}")
    if not empty_ok and not value.strip():
        raise _Bad(field, "is empty")
    return value


def _preference(record: dict[str, Any]) -> float | None:
    if "preference" not in record:
        raise _Bad("preference", "missing (use null for an item without a verdict)")
    value = record["preference"]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad("preference", f"expected a number or null, got {type(value).__name__}")
    if math.isnan(value):  # pandas' way of saying "no verdict"
        return None
    if value != 0 and not 1 <= value <= 2:
        raise _Bad("preference", f"{value} is not 0 (draw), a value in [1, 2] or null")
    return float(value)


def _raw_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _item_id(record: dict[str, Any]) -> str | None:
    value = record.get("item_id", record.get("id"))
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def _annotation_row(record: dict[str, Any]) -> dict[str, Any]:
    order = _text(record, "order", required=False)
    if order is not None and order not in ("12", "21"):
        raise _Bad("order", f"{order!r} is not '12' or '21'")
    return annotation_record(
        instruction=_text(record, "instruction", empty_ok=False), input=_text(record, "input", required=False),
        output_1=_text(record, "output_1"), generator_1=_text(record, "generator_1", empty_ok=False),
        output_2=_text(record, "output_2"), generator_2=_text(record, "generator_2", empty_ok=False),
        annotator=_text(record, "annotator", empty_ok=False), preference=_preference(record),
        item_id=_item_id(record),
        category=_text(record, "dataset", required=False) or _text(record, "category", required=False),
        order=order, raw=_raw_text(record.get("raw_completion", record.get("raw"))),
        created_at=_text(record, "created_at", required=False))


def _output_row(record: dict[str, Any], index: int, generator: str | None, default_generator: str,
                alpaca_eval: bool) -> dict[str, Any]:
    answer_field = "output" if "output" in record else "response"
    name = generator or _text(record, "generator", required=False) or default_generator
    return output_record(
        instruction=_text(record, "instruction", empty_ok=False), input=_text(record, "input", required=False),
        output=_text(record, answer_field), generator=name,
        # AlpacaEval's files are the 805 instructions in a fixed order: the index names the item
        item_id=str(index) if alpaca_eval else _item_id(record),
        category=_text(record, "dataset", required=False) or _text(record, "category", required=False))


def _read(path: str) -> tuple[RecordFile, list[tuple[str, dict[str, Any]]]]:
    source = RecordFile(path)
    records: list[tuple[str, dict[str, Any]]] = []
    for item in source:
        if isinstance(item, Problem):
            raise UserError(f"{item}; nothing was written")
        if not isinstance(item.value, dict):
            raise UserError(f"{path}:{item.location}: expected a JSON object, got {type(item.value).__name__}; "
                            "nothing was written")
        if item.duplicate_keys:
            raise UserError(f"{path}:{item.location}: {item.duplicate_keys[0]}: duplicate key; nothing was written")
        records.append((item.location, item.value))
    if not records:
        raise UserError(f"{path}: no records")
    return source, records


def _outputs_format(first: dict[str, Any]) -> str:
    if "dataset" in first:
        return "alpaca_eval"
    return "self_instruct" if "response" in first else "outputs"


def detect_kind(path: str, first: dict[str, Any]) -> str:
    if all(field in first for field in ANNOTATION_MARKERS):
        return "annotations"
    if "instruction" in first and ("output" in first or "response" in first):
        return "outputs"
    raise UserError(f"{path}: neither an annotations file (instruction, output_1, output_2, preference, ...) nor an "
                    f"outputs file (instruction, output or response); first record has: {', '.join(sorted(first))}")


def import_eval_file(store: Store, path: str, dataset: str, *, message: str = "", generator: str | None = None,
                     show_progress: bool = True) -> EvalImport:
    """Check every record of `path`, then commit them as one annotations or outputs revision of `dataset`.

    generator: the outputs' generator name (overrides the file's; default: the file's `generator` field, else
    the file name's stem). Not used for annotations, whose generator_1 / generator_2 come from the file."""
    store.check_dataset_name(dataset)
    source, records = _read(path)
    kind = detect_kind(path, records[0][1])
    known = ANNOTATION_SOURCE_FIELDS if kind == "annotations" else OUTPUT_SOURCE_FIELDS
    alpaca_eval = kind == "outputs" and "dataset" in records[0][1]
    stem = Path(path).name.split(".")[0]
    rows = []
    for index, (location, record) in enumerate(track(records, f"checking {os.path.basename(path)}",
                                                     enabled=show_progress)):
        try:
            rows.append(_annotation_row(record) if kind == "annotations"
                        else _output_row(record, index, generator, stem, alpaca_eval))
        except _Bad as bad:
            raise UserError(f"{path}:{location}: {bad.field}: {bad.reason}; nothing was written") from None
    dropped = sorted({field for _, record in records for field in record} - known)
    name = os.path.basename(path)
    recipe: dict[str, Any] = {"command": "eval import", "kind": kind,
                              "sources": [{"path": name, "sha256": source.sha256, "format": source.format,
                                           "kind": kind}],
                              "dropped_fields": dropped}
    if kind == "annotations":
        generators = sorted({row["generator_1"] for row in rows} | {row["generator_2"] for row in rows})
        # no outputs revision exists for a published file: the report shows these links as unknown
        recipe.update(output_1=None, output_2=None,
                      annotators=dict(sorted(Counter(row["annotator"] for row in rows).items())))
    else:
        generators = sorted({row["generator"] for row in rows})
        recipe.update(generator=generators[0] if len(generators) == 1 else None,
                      set={"file": name, "format": _outputs_format(records[0][1])},
                      # a published file says which model answered, nothing about the checkpoint
                      model={"spec": generators[0] if len(generators) == 1 else None, "path": None, "lineage": None},
                      decoding=None, options={"generator": generator})
    result = commit_rows(store, dataset, rows, message=message or f"eval import {name}", recipe=recipe)
    return EvalImport(kind, result, len(rows), generators)
