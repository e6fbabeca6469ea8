"""A chunk of parsed records checked a column at a time in Arrow: the import's fast path for the common case.

`RecordChecker` checks one record at a time in Python (about 9 us a record). Most chunks of a big file are plain:
string core fields and provenance columns of one simple type. `checked_columns` builds the chunk's Arrow columns
and decides, for the whole chunk at once, that every record is valid, with the same column kinds
`ColumnTypes.observe` would learn. It only ever says "all valid" or "not sure"; on "not sure" the caller checks
record by record, so its verdicts are `RecordChecker`'s.

What the caller has already proved about the chunk's raw lines: every line is a JSON object without repeated
keys, NaN or lone surrogates (orjson refuses the last two); and, when it says `clean_text`, that no string
holds a control character (else the string columns are searched here).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alpaca_data.records import CORE_FIELDS
from alpaca_data.schema import RECORD_SCHEMA_FILE, _has_visible, _name_problems, load_schema

_KIND_OF_TYPE = {pa.string(): "string", pa.int64(): "int", pa.float64(): "float", pa.bool_(): "bool",
                 pa.null(): "null"}
_JSON_KINDS = {"string": {"string"}, "integer": {"int"}, "number": {"int", "float"}, "boolean": {"bool"},
               "null": {"null"}}
_SCALAR_KINDS = {"string", "int", "float", "bool", "null"}


@dataclass
class CheckedColumns:
    arrays: dict[str, pa.Array]  # core fields first, then provenance columns in sorted order
    kinds: dict[str, str]  # provenance field -> column kind (store.tables.ColumnTypes)


def _kind_of(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_list(arrow_type):
        inner = _KIND_OF_TYPE.get(arrow_type.value_type)
        return f"list<{inner}>" if inner else None
    return _KIND_OF_TYPE.get(arrow_type)


def _json_kinds(types: Any) -> set[str]:
    kinds: set[str] = set()
    for name in [types] if isinstance(types, str) else types:
        kinds |= _JSON_KINDS.get(name, set())
    return kinds


@lru_cache(maxsize=None)
def _rules() -> tuple[dict[str, tuple[int, int]], dict[str, tuple[frozenset, bool]]] | None:
    """From the record schema: (min length, max length) of each core field, and for each provenance field the
    schema names, (the column kinds it allows, whether its list items may be null). A provenance field whose
    schema says more than a type is left out of the known ones (a chunk holding it is checked record by
    record); a core field that does: None, no chunk is checked here."""
    schema = load_schema(RECORD_SCHEMA_FILE)
    core, known = {}, {}
    for name, spec in schema["properties"].items():
        if name in CORE_FIELDS:
            # the instruction's pattern (\S) is implied by `_has_visible`, which is checked here too
            if spec.get("type") != "string" or set(spec) - {"type", "description", "minLength", "maxLength"} \
                    - ({"pattern"} if name == "instruction" and spec.get("pattern") == "\\S" else set()):
                return None
            core[name] = (spec.get("minLength", 0), spec.get("maxLength", 2**62))
            continue
        if set(spec) - {"type", "description", "items"} or set(spec.get("items", {})) - {"type"}:
            continue
        kinds = _json_kinds(spec["type"]) & _SCALAR_KINDS
        items_null = True
        if "array" in ([spec["type"]] if isinstance(spec["type"], str) else spec["type"]):
            inner = _json_kinds(spec["items"]["type"]) if "items" in spec else set(_SCALAR_KINDS)
            items_null = "null" in inner
            kinds |= {f"list<{kind}>" for kind in inner | {"null"}}  # list<null>: empty lists, or null items
        known[name] = (frozenset(kinds), items_null)
    return core, known


def _only_floats(values: Sequence[Any], is_list: bool) -> bool:
    """Arrow reads [1.5, True] as doubles, and ints in a double column lose their 64-bit range check: a float
    column passes only when it holds floats alone."""
    items = (item for value in values if value is not None for item in value) if is_list else values
    return {type(item) for item in items} <= {float, type(None)}


# `schema._CONTROL_CHARS` for RE2: C0 controls but tab, newline and carriage return; DEL and C1 controls
_CONTROL_CHARS = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x{7f}-\\x{9f}]"


def checked_columns(records: list[dict[str, Any]], *, clean_text: bool) -> CheckedColumns | None:
    """The chunk's columns when every record is surely valid (not strict mode), else None."""
    if not records:
        return None
    rules = _rules()
    if rules is None:
        return None
    core_rules, known = rules
    shapes = Counter(map(tuple, records))
    present: Counter = Counter()
    for names, count in shapes.items():
        for name in names:
            present[name] += count
    if _name_problems(dict.fromkeys(present)):
        return None
    arrays: dict[str, pa.Array] = {}
    try:
        for name in CORE_FIELDS:
            arrays[name] = pa.array([record.get(name) for record in records], pa.string())
        extra = {name: [record.get(name) for record in records] for name in sorted(present.keys() - set(CORE_FIELDS))}
        for name, values in extra.items():
            arrays[name] = pa.array(values)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        return None  # a value Arrow will not put in one column with the others: a type conflict, or worse
    for name in CORE_FIELDS:
        if not _core_column_valid(arrays[name], *core_rules[name], visible=name == "instruction"):
            return None
    kinds = {}
    for name in list(arrays)[len(CORE_FIELDS):]:
        array = arrays[name]
        kind = _kind_of(array.type)
        if kind is None:
            return None
        nulls = present[name] - (len(array) - array.null_count)  # a null written out, not a missing field
        if kind in ("float", "list<float>") and not _only_floats(extra[name], kind != "float"):
            return None
        if name in known:
            allowed, items_null = known[name]
            if kind not in allowed or (nulls and "null" not in allowed):
                return None
            if kind.startswith("list<") and not items_null and pc.list_flatten(array).null_count:
                return None
        kinds[name] = kind
    if not clean_text and any(_has_control_chars(array) for array in arrays.values()):
        return None
    return CheckedColumns(arrays, kinds)


def _has_control_chars(array: pa.Array) -> bool:
    if pa.types.is_list(array.type):
        array = pc.list_flatten(array)
    if not pa.types.is_string(array.type):
        return False
    return pc.any(pc.match_substring_regex(array, _CONTROL_CHARS)).as_py() or False


def _core_column_valid(texts: pa.Array, minimum: int, maximum: int, *, visible: bool) -> bool:
    if texts.null_count:
        return False  # missing, or null
    lengths = pc.utf8_length(texts)
    if pc.min(lengths).as_py() < minimum or pc.max(lengths).as_py() > maximum:
        return False
    if visible:
        # `RecordChecker` asks for a visible character (stricter than the schema's \S): an ASCII one settles most rows
        rest = np.flatnonzero(~pc.match_substring_regex(texts, "[!-~]").to_numpy(zero_copy_only=False))
        if len(rest) and not all(map(_has_visible, texts.take(rest).to_pylist())):
            return False
    return True
