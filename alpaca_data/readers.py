"""Reading record files (JSON array, JSONL, Parquet, CSV) with precise locations.

Readers never raise for problems inside the data: they yield `Problem`s with the location
(record number, line, column) so that a caller can report every problem in one pass.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS
from alpaca_data.schema import json_type

MAX_FILE_BYTES = 8 * 1024**3  # beyond this a single file is more likely a mistake than a dataset


@dataclass(frozen=True)
class Problem:
    """One problem in an input file, printed as `path:location: field: reason`."""

    path: str
    location: str  # "record 3", "line 7", "line 2 col 15", or "" for the whole file
    field: str  # "" when the problem is not about one field
    reason: str

    def sort_key(self) -> tuple[str, int]:
        """Problems are reported in file order."""
        digits = self.location.split()[1] if self.location.count(" ") >= 1 else "0"
        return (self.path, int(digits) if digits.isdigit() else 0)

    def __str__(self) -> str:
        parts = [self.path + (f":{self.location}" if self.location else "")]
        if self.field:
            parts.append(self.field)
        parts.append(self.reason)
        return ": ".join(parts)


@dataclass
class RawRecord:
    """A parsed record before validation, with where it came from."""

    value: Any
    location: str
    duplicate_keys: tuple[str, ...] = ()


@dataclass
class ReadResult:
    path: str
    format: str
    sha256: str
    records: list[RawRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _DuplicateKeysDict(dict):
    """A JSON object that had repeated keys (the last value won, as in json.loads)."""

    duplicate_keys: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = []
        for key, _ in pairs:
            if key in seen and key not in repeated:
                repeated.append(key)
            seen.add(key)
        obj = _DuplicateKeysDict(obj)
        obj.duplicate_keys = tuple(repeated)
    return obj


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object_pairs)


def detect_format(path: Path, head: bytes) -> str:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")):
        return "parquet"
    if suffix.endswith(".csv"):
        return "csv"
    if suffix.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first == b"[":
        return "json"
    if first == b"{":
        # a single object per line is JSONL, whatever the extension says
        return "jsonl"
    return "json"


def _unwrap(value: Any) -> tuple[Any, tuple[str, ...]]:
    if isinstance(value, _DuplicateKeysDict):
        return dict(value), value.duplicate_keys
    return value, ()


def _decode_utf8(data: bytes) -> str:
    """Decode, keeping invalid bytes as lone surrogates: the record check then names the record and field."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", errors="surrogateescape")


def read_file(path_str: str) -> ReadResult:
    """Read a record file. Raises UserError only when the file cannot be read at all."""
    path = Path(path_str)
    if not path.exists():
        raise UserError(f"{path_str}: no such file")
    if path.is_dir():
        raise UserError(f"{path_str}: is a directory, expected a JSON, JSONL, Parquet or CSV file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"{path_str}: file is {size / 1024**3:.1f} GiB, larger than the 8 GiB limit")
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path_str}: cannot read: {error.strerror or error}") from None
    sha = hashlib.sha256(data).hexdigest()
    fmt = detect_format(path, data[:64])
    result = ReadResult(path=path_str, format=fmt, sha256=sha)
    if not data.strip():
        result.problems.append(Problem(path_str, "", "", "file is empty"))
        return result
    if fmt == "parquet":
        _read_parquet(path, result)
    elif fmt == "csv":
        _read_csv(data, result)
    elif fmt == "jsonl":
        _read_jsonl(data, result)
    else:
        _read_json_array(data, result)
    return result


def _read_json_array(data: bytes, result: ReadResult) -> None:
    text = _decode_utf8(data)
    try:
        value = _loads(text)
    except json.JSONDecodeError as error:
        result.problems.append(
            Problem(result.path, f"line {error.lineno} col {error.colno}", "", f"malformed JSON: {error.msg}"))
        return
    except RecursionError:
        result.problems.append(Problem(result.path, "", "", "JSON is nested too deeply"))
        return
    if isinstance(value, dict):
        # A few datasets wrap the list: {"data": [...]} / {"train": [...]}
        lists = [key for key, item in value.items() if isinstance(item, list)]
        if len(lists) == 1 and not set(value) & set(CORE_FIELDS):
            value = value[lists[0]]
        else:
            result.problems.append(Problem(
                result.path, "", "", "expected a JSON array of records (or JSONL), got a single object"))
            return
    if not isinstance(value, list):
        result.problems.append(
            Problem(result.path, "", "", f"expected a JSON array of records, got {json_type(value)}"))
        return
    for index, item in enumerate(value, start=1):
        item, duplicates = _unwrap(item)
        result.records.append(RawRecord(item, f"record {index}", duplicates))


def _read_jsonl(data: bytes, result: ReadResult) -> None:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        line = raw_line.decode("utf-8", errors="surrogateescape")
        try:
            value = _loads(line)
        except json.JSONDecodeError as error:
            result.problems.append(
                Problem(result.path, f"line {number} col {error.colno}", "", f"malformed JSON: {error.msg}"))
            continue
        except RecursionError:
            result.problems.append(Problem(result.path, f"line {number}", "", "JSON is nested too deeply"))
            continue
        value, duplicates = _unwrap(value)
        result.records.append(RawRecord(value, f"line {number}", duplicates))


def _read_parquet(path: Path, result: ReadResult) -> None:
    import pyarrow.lib
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pyarrow.lib.ArrowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        result.problems.append(Problem(result.path, "", "", f"not a readable Parquet file: {first_line}"))
        return
    for index, row in enumerate(table.to_pylist(), start=1):
        result.records.append(RawRecord(row, f"record {index}"))


def _read_csv(data: bytes, result: ReadResult) -> None:
    text = _decode_utf8(data)
    reader = csv.DictReader(text.splitlines(keepends=True))
    try:
        for row in reader:
            if None in row:
                result.problems.append(Problem(result.path, f"line {reader.line_num}", "", "more cells than headers"))
                row.pop(None)
            result.records.append(RawRecord(dict(row), f"line {reader.line_num}"))
    except csv.Error as error:
        result.problems.append(Problem(result.path, f"line {reader.line_num}", "", f"malformed CSV: {error}"))
