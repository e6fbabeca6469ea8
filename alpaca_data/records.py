"""The Alpaca record: core fields, aliases, the record key and canonical serialisation.

A record is a plain dict. The three core fields are always strings; anything else
(source, generator, seeds, filter scores) is provenance kept beside the text.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any, Iterable, Mapping

CORE_FIELDS: tuple[str, ...] = ("instruction", "input", "output")

# Real variants seen in the wild; applied only when the user asks (--map) or by `alias_map_for`.
KNOWN_ALIASES: dict[str, str] = {"response": "output"}



def normalise_text(text: str) -> str:
    """Normal form used for keys and exact dedup: NFKC, case-folded, whitespace collapsed."""
    if not text.isascii():  # ASCII is already NFKC: skip the costly normalisation for most text
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.split()).casefold()  # str.split() splits on the same Unicode whitespace as \s+


def record_key(instruction: str, input_text: str = "") -> str:
    """Stable identity of a task: the hash of its normalised instruction and input."""
    payload = normalise_text(instruction) + "\x1f" + normalise_text(input_text)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def key_of(record: Mapping[str, Any]) -> str:
    return record_key(record.get("instruction") or "", record.get("input") or "")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """One record as canonical JSON: sorted keys, no whitespace, UTF-8, NaN refused."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    # numpy / arrow scalars and arrays that come back from Parquet
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def content_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """Revision id: sha256 of the canonical record stream (order matters)."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(canonical_bytes(record))
        digest.update(b"\n")
    return digest.hexdigest()


def parse_field_map(pairs: Iterable[str]) -> dict[str, str]:
    """Parse `--map response=output` options into {source_field: target_field}."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"--map {pair!r}: expected SOURCE=TARGET, e.g. response=output")
        mapping[source.strip()] = target.strip()
    return mapping


def apply_field_map(record: dict[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    if not mapping:
        return record
    renamed: dict[str, Any] = {}
    for name, value in record.items():
        renamed[mapping.get(name, name)] = value
    return renamed
