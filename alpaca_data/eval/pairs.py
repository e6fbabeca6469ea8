"""Two outputs revisions matched item by item (by instruction and input), for judging or rating."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.records import key_of
from alpaca_data.store import Store


@dataclass(frozen=True)
class Pair:
    key: str  # record key of (instruction, input): the same task in both revisions
    item_id: str | None
    instruction: str
    input: str
    output_1: str
    output_2: str
    category: str | None


@dataclass(frozen=True)
class Comparison:
    manifest_1: Any
    manifest_2: Any
    generator_1: str
    generator_2: str
    pairs: list[Pair]
    only_1: int  # items answered by one side only (left out)
    only_2: int


def _generator(manifest: Any, records: list[dict[str, Any]]) -> str:
    names = {r.get("generator") for r in records if r.get("generator")}
    if len(names) == 1:
        return names.pop()
    recipe = manifest.data.get("recipe") or {}
    return str(recipe.get("generator") or manifest.dataset)


def compare(store: Store, ref_1: str, ref_2: str, limit: int | None = None) -> Comparison:
    """Items both revisions answer, in the order of the first; the first answer wins for repeated tasks."""
    manifest_1, manifest_2 = store.resolve(ref_1), store.resolve(ref_2)
    records_1, records_2 = store.read_records(manifest_1), store.read_records(manifest_2)
    by_key_2: dict[str, dict[str, Any]] = {}
    for record in records_2:
        by_key_2.setdefault(key_of(record), record)
    pairs, seen = [], set()
    for record in records_1:
        key = key_of(record)
        other = by_key_2.get(key)
        if other is None or key in seen:
            continue
        seen.add(key)
        pairs.append(Pair(key, record.get("item_id") or other.get("item_id"), record["instruction"],
                          record.get("input") or "", record.get("output") or "", other.get("output") or "",
                          record.get("category") or other.get("category")))
    if not pairs:
        raise UserError(f"{ref_1} and {ref_2} share no instruction: nothing to compare")
    keys_1 = {key_of(r) for r in records_1}
    only_1 = len(keys_1 - set(by_key_2))
    only_2 = len(set(by_key_2) - keys_1)
    if limit is not None:
        pairs = pairs[:limit]
    return Comparison(manifest_1, manifest_2, _generator(manifest_1, records_1), _generator(manifest_2, records_2),
                      pairs, only_1, only_2)
