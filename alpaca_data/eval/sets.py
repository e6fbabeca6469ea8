"""Evaluation sets: the items a model answers in `eval generate`.

- `user-oriented`: Self-Instruct's 252 user-oriented tasks, every instance an item
  (item_id `<task id>#<instance index>`, category = the task's `motivation_app`);
- `alpaca-eval`: AlpacaEval's 805 instructions (item_id = index, category = its `dataset` field);
- a path to an Alpaca-format file (JSON, JSONL, Parquet, CSV; self-instruct task files expanded), or a store
  ref (`name@main`). Only `instruction` is needed: references' `output` and AlpacaEval's missing `input`
  are fine.

The data folder of the built-in sets is `--eval-data DIR`, else `$ALPACA_EVAL_DATA`, else the checkout's
`../shared/data/eval`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.durable import sha256_file
from alpaca_data.errors import UserError

USER_ORIENTED = "user-oriented"
ALPACA_EVAL = "alpaca-eval"
BUILT_IN = {
    USER_ORIENTED: ("user_oriented_instructions.jsonl",
                    "Self-Instruct's user-oriented evaluation set (github.com/yizhongw/self-instruct, "
                    "human_eval/user_oriented_instructions.jsonl)"),
    ALPACA_EVAL: ("alpaca_eval/text_davinci_003.json",
                  "AlpacaEval's 805 instructions (github.com/tatsu-lab/alpaca_eval, the text_davinci_003 model "
                  "outputs file)"),
}
CHECKOUT_EVAL_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eval"


@dataclass(frozen=True)
class EvalItem:
    item_id: str
    instruction: str
    input: str
    category: str | None


@dataclass(frozen=True)
class EvalSet:
    name: str
    items: list[EvalItem]
    source: dict[str, Any]  # how a recipe names the set: {name, kind, path|dataset, sha256|revision_id, items}


def eval_data_dir(explicit: str | None = None) -> Path:
    chosen = explicit or os.environ.get("ALPACA_EVAL_DATA")
    return Path(chosen).expanduser() if chosen else CHECKOUT_EVAL_DATA


def load_eval_set(spec: str, *, eval_data: str | None = None, store: Any = None, limit: int | None = None) -> EvalSet:
    """The set named by `spec` (first `limit` items). Raises UserError, in one line, for anything unusable."""
    if limit is not None and limit < 1:
        raise UserError("--limit must be at least 1", exit_code=2)
    if spec in BUILT_IN:
        found = _built_in(spec, eval_data_dir(eval_data))
    elif Path(spec).expanduser().exists():
        found = _from_file(Path(spec).expanduser())
    elif store is not None and ("@" in spec or spec in store.datasets()):
        found = _from_store(spec, store)
    else:
        raise UserError(f"--set {spec!r}: not a built-in set ({', '.join(BUILT_IN)}), an existing file or a "
                        f"store ref (NAME@main)")
    if not found.items:
        raise UserError(f"--set {spec}: holds no items")
    ids = [item.item_id for item in found.items]
    if len(set(ids)) != len(ids):
        raise UserError(f"--set {spec}: item ids are not unique")
    items = found.items[:limit] if limit else found.items
    return EvalSet(found.name, items, {**found.source, "items": len(items), "limit": limit})


def _built_in(name: str, folder: Path) -> EvalSet:
    relative, origin = BUILT_IN[name]
    path = folder / relative
    if not path.is_file():
        raise UserError(f"--set {name}: {path} not found; it is {origin}. Point --eval-data (or $ALPACA_EVAL_DATA) "
                        f"at the folder holding {relative}")
    source = {"name": name, "kind": "built-in", "path": str(path), "sha256": sha256_file(path)}
    if name == USER_ORIENTED:
        return EvalSet(name, _user_oriented(path), source)
    records = _file_records(path)
    items = [EvalItem(str(i), r["instruction"], "", r.get("dataset")) for i, r in enumerate(records)]
    return EvalSet(name, items, source)


def _user_oriented(path: Path) -> list[EvalItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
            for index, instance in enumerate(task["instances"]):
                items.append(EvalItem(f"{task['id']}#{index}", task["instruction"], instance.get("input") or "",
                                      task.get("motivation_app")))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{path}:{number}: not a user-oriented task ({{id, instruction, instances}})") from None
    return items


def _file_records(path: Path) -> list[dict[str, Any]]:
    """Records of any Alpaca-format file, read leniently: only a non-empty instruction is needed."""
    from alpaca_data.readers import RecordFile
    from alpaca_data.validate import FileReport, file_records

    source = RecordFile(str(path))
    report = FileReport(path=str(path), format=source.format, sha256="")
    records = []
    for raw, _ in file_records(source, {}, report):
        value = raw.value
        instruction = value.get("instruction") if isinstance(value, dict) else None
        if not isinstance(instruction, str) or not instruction.strip():
            raise UserError(f"{path}:{raw.location}: instruction: expected a non-empty string")
        if not isinstance(value.get("input") or "", str):
            raise UserError(f"{path}:{raw.location}: input: expected a string")
        records.append(value)
    if report.problems:
        raise UserError(str(report.problems[0]))
    return records


def _item_ids(records: list[dict[str, Any]]) -> list[str]:
    """The records' own `item_id`s when every record has a distinct one, else their positions."""
    own = [r.get("item_id") for r in records]
    if all(isinstance(i, (str, int)) for i in own) and len(set(map(str, own))) == len(own):
        return [str(i) for i in own]
    return [str(i) for i in range(len(records))]


def _items(records: list[dict[str, Any]]) -> list[EvalItem]:
    return [EvalItem(item_id, r["instruction"], r.get("input") or "",
                     r.get("category") if r.get("category") is not None else r.get("dataset"))
            for item_id, r in zip(_item_ids(records), records)]


def _from_file(path: Path) -> EvalSet:
    if not path.is_file():
        raise UserError(f"--set {path}: not a file")
    source = {"name": path.name, "kind": "file", "path": str(path), "sha256": sha256_file(path)}
    return EvalSet(path.name, _items(_file_records(path)), source)


def _from_store(ref: str, store: Any) -> EvalSet:
    manifest = store.resolve(ref)
    source = {"name": ref, "kind": "store", "dataset": manifest.dataset, "revision_id": manifest.id}
    return EvalSet(ref, _items(store.read_records(manifest)), source)
