"""Record validation: the JSON Schema in `schemas/`, plus checks JSON Schema cannot express.

Every problem in a record is reported (not just the first), each naming its field.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import fastjsonschema
import jsonschema

from alpaca_data.records import CORE_FIELDS, KNOWN_ALIASES
from alpaca_data.resources import resource_dir

SCHEMA_VERSION = 1
SCHEMA_DIR = resource_dir("schemas")
RECORD_SCHEMA_FILE = "alpaca-record.schema.json"
MANIFEST_SCHEMA_FILE = "revision-manifest.schema.json"

# C0 controls other than tab / newline / carriage return, DEL and C1 controls break tokenisers and viewers.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Invalid UTF-8 bytes survive decoding as lone surrogates (surrogateescape); JSON "\ud800" escapes too.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    path = SCHEMA_DIR / name
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@lru_cache(maxsize=None)
def fast_validator_for(name: str):
    """The schema compiled to Python (fastjsonschema): decides validity; jsonschema explains failures."""
    return fastjsonschema.compile(load_schema(name))


@lru_cache(maxsize=None)
def validator_for(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


class RecordChecker:
    """Checks one record at a time against the record schema and the extra rules.

    strict: unknown (provenance) fields and empty outputs are errors too.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.validator = validator_for(RECORD_SCHEMA_FILE)
        self.fast = fast_validator_for(RECORD_SCHEMA_FILE)
        self.known_fields = set(load_schema(RECORD_SCHEMA_FILE)["properties"])
        self._good_names: set[tuple[str, ...]] = set()

    def check(self, record: Any, duplicate_keys: tuple[str, ...] = (), *, clean_text: bool = False) \
            -> list[FieldProblem]:
        """clean_text: the caller has proved that no string in the record holds a control character, a lone
        surrogate or NaN (`import_chunks` does, from the raw JSON line), so that scan is skipped."""
        if not isinstance(record, dict):
            return [FieldProblem("", f"expected a record object, got {json_type(record)}")]
        problems = [FieldProblem(key, "key appears more than once in the object") for key in duplicate_keys]
        names = tuple(record)
        if names not in self._good_names:
            found = _name_problems(record)
            if found:
                problems.extend(found)
            elif len(self._good_names) < 4096:  # records of one file mostly share their field names
                self._good_names.add(names)
        try:
            self.fast(record)  # the same schema, compiled: fast on the common (valid) case
        except fastjsonschema.JsonSchemaException as error:
            problems.extend(self._schema_problems(record) or [FieldProblem("", error.message)])
        else:
            if not _has_visible(record["instruction"]):
                problems.append(FieldProblem("instruction", "has no visible characters (only whitespace or "
                                                            "invisible characters such as U+200B)"))
        if not clean_text:
            problems.extend(self._text_problems(record))
        if self.strict:
            problems.extend(self._strict_problems(record))
        return problems

    def _schema_problems(self, record: Mapping[str, Any]) -> list[FieldProblem]:
        problems = []
        for error in sorted(self.validator.iter_errors(record), key=lambda e: list(e.absolute_path)):
            field = str(error.absolute_path[0]) if error.absolute_path else ""
            problems.extend(p for p in _explain(error, field, record) if p not in problems)
        return problems

    def _text_problems(self, record: Mapping[str, Any]) -> list[FieldProblem]:
        problems = []
        for name, value in record.items():
            for text in _strings_in(value):
                match = _BAD_CHARS.search(text)  # one scan per string; which kind is decided only on a hit
                if match is None:
                    continue
                if _LONE_SURROGATE.search(text):
                    problems.append(FieldProblem(name, "contains invalid UTF-8 (undecodable bytes or lone surrogates)"))
                else:
                    problems.append(FieldProblem(
                        name, f"contains control character U+{ord(match.group()):04X} at offset {match.start()}"))
                break
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(FieldProblem(name, "NaN/Infinity is not valid JSON"))
            elif isinstance(value, list) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
                problems.append(FieldProblem(name, "NaN/Infinity is not valid JSON"))
        return problems

    def _strict_problems(self, record: Mapping[str, Any]) -> list[FieldProblem]:
        problems = [FieldProblem(name, "unknown field (strict mode; map it with --map or drop it)")
                    for name in record if name not in self.known_fields]
        output = record.get("output")
        if isinstance(output, str) and not output.strip():
            problems.append(FieldProblem("output", "is empty (strict mode)"))
        return problems


_ASCII_VISIBLE = re.compile(r"[!-~]")
# Letters that render as nothing (Hangul fillers, Braille blank, combining grapheme joiner, ...).
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u17b4\u17b5\u180e")


def _has_visible(text: str) -> bool:
    if _ASCII_VISIBLE.search(text):
        return True
    return any(unicodedata.category(c)[0] not in "ZC" and unicodedata.category(c) != "Mn"
               and c not in _INVISIBLE_LETTERS for c in text)


def _name_problems(record: Mapping[str, Any]) -> list[FieldProblem]:
    problems = []
    for name in record:
        if not name.strip():
            problems.append(FieldProblem(repr(name), "field name is empty"))
        elif "\x00" in name or _CONTROL_CHARS.search(name):
            problems.append(FieldProblem(repr(name), "field name contains a NUL or control character"))
    return problems


def _strings_in(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item


def _explain(error: jsonschema.ValidationError, field: str, record: Mapping[str, Any]) -> list[FieldProblem]:
    """Turn a jsonschema error into short field-level reasons a person can act on."""
    instance = error.instance
    kind = error.validator
    if kind == "required":
        return [FieldProblem(name, "is missing (required)" + _alias_hint(name, record))
                for name in error.validator_value if name not in record]
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        hint = ' (use "" for none)' if field == "input" and instance is None else ""
        return [FieldProblem(field, f"expected {expected}, got {json_type(instance)}{hint}")]
    if kind in ("minLength", "pattern") and field == "instruction":
        return [FieldProblem(field, "must not be empty")]
    if kind == "maxLength":
        return [FieldProblem(field, f"is {len(instance):,} characters, over the {error.validator_value:,} limit")]
    if kind == "oneOf" and field not in CORE_FIELDS:
        return [FieldProblem(field, f"provenance field must be a scalar or a flat list, got {json_type(instance)}"
                             + (" with nested values" if isinstance(instance, list) else ""))]
    if kind == "type" or not field:
        return [FieldProblem(field, error.message)]
    return [FieldProblem(field, error.message.splitlines()[0][:200])]


def _alias_hint(name: str, record: Mapping[str, Any]) -> str:
    aliases = [source for source, target in KNOWN_ALIASES.items() if target == name and source in record]
    return f"; the record has {aliases[0]!r}: add --map {aliases[0]}={name}" if aliases else ""


def validate_manifest(manifest: Mapping[str, Any]) -> list[str]:
    validator = validator_for(MANIFEST_SCHEMA_FILE)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message.splitlines()[0][:200]}"
            for e in validator.iter_errors(manifest)]


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN/Infinity"
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
