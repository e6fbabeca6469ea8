"""The two evaluation record layouts and the recipe keys that chain them (eval result -> outputs -> model
-> training data). Every evaluation command writes through these functions.

Outputs revision (one model's answers on a set): core fields instruction / input / output, plus
    generator (str), item_id (str), category (str | None), decoding (JSON text | None).
  recipe: {"command": "eval generate" | "eval import", "generator": G, "set": {...},
           "model": {"spec": SPEC, "path": PATH | None, "lineage": {...} | None}, "decoding": {...} | None}
  where model.lineage is the checkpoint's `alpaca_lineage.json` subset (`dataset`, `base_model`,
  `output_dir`) for an alpaca-train checkpoint.

Annotations revision (pairwise judgments; AlpacaEval's convention: output_1 is the baseline, output_2 the
model being evaluated, and `win_rate` is output_2's):
    instruction, input, output (always ""), output_1, generator_1, output_2, generator_2, annotator (str),
    preference (float | None: 1 = output_1 better, 2 = output_2 better, 0 = draw; fractional values in
    [1, 2] allowed; None = no verdict, excluded), item_id (str | None), category (str | None),
    order (str | None: "12" when output_1 was shown first / on the left, "21" otherwise),
    raw (str | None: the judge's raw answer), created_at (str | None, ISO time).
  recipe: {"command": "eval judge" | "eval rate" | "eval import",
           "output_1": {"dataset": NAME, "revision_id": ID, "generator": G} | None,
           "output_2": {...} | None, ...command-specific details}
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alpaca_data.store import CommitResult, Store

ANNOTATION_FIELDS = ("instruction", "input", "output", "output_1", "generator_1", "output_2", "generator_2",
                     "annotator", "preference", "item_id", "category", "order", "raw", "created_at")
OUTPUT_FIELDS = ("instruction", "input", "output", "generator", "item_id", "category", "decoding")


def annotation_record(**fields: Any) -> dict[str, Any]:
    """One annotation row with every column present (missing ones None; `output` is always "")."""
    row = {name: fields.get(name) for name in ANNOTATION_FIELDS}
    row["output"] = ""
    row["input"] = row["input"] or ""
    preference = row["preference"]
    row["preference"] = None if preference is None else float(preference)
    unknown = set(fields) - set(ANNOTATION_FIELDS)
    if unknown:
        raise ValueError(f"unknown annotation fields: {sorted(unknown)}")
    return row


def output_record(**fields: Any) -> dict[str, Any]:
    row = {name: fields.get(name) for name in OUTPUT_FIELDS}
    row["input"] = row["input"] or ""
    row["output"] = row["output"] or ""
    unknown = set(fields) - set(OUTPUT_FIELDS)
    if unknown:
        raise ValueError(f"unknown output fields: {sorted(unknown)}")
    return row


def revision_ref(manifest: Any, generator: str | None = None) -> dict[str, Any]:
    """How a recipe names the revision it was made from."""
    return {"dataset": manifest.dataset, "revision_id": manifest.id, "generator": generator}


def commit_rows(store: Store, dataset: str, rows: Iterable[Mapping[str, Any]], *, message: str,
                recipe: Mapping[str, Any]) -> CommitResult:
    """Commit evaluation rows as one revision (atomic: all rows or nothing)."""
    return store.commit(dataset, list(rows), message=message, recipe=dict(recipe))
