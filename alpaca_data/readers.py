"""Reading record files (JSON array, JSONL, Parquet, CSV) as a stream, with precise locations.

`RecordFile(path)` checks what can be checked up front (a regular file, not too large, not UTF-16, ...) and
raises UserError when the file cannot be read at all; iterating it yields `RawRecord`s and `Problem`s one at
a time, so memory stays flat whatever the file size, and computes the file's sha256 on the way.
Problems inside the data never raise: they carry the location (record number, line, column) so that a
caller can report every problem in one pass.
"""
from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS
from alpaca_data.schema import json_type

MAX_FILE_BYTES = 8 * 1024**3  # beyond this a single file is more likely a mistake than a dataset
MAX_ELEMENT_CHARS = 64 * 1024**2  # one JSON array element larger than this is malformed, not a record
CHUNK = 1 << 20
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Problem:
    """One problem in an input file, printed as `path:location: field: reason`."""

    path: str
    location: str  # "record 3", "line 7", "line 2 col 15", or "" for the whole file
    field: str  # "" when the problem is not about one field
    reason: str

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


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs)


def _raw(value: Any, location: str) -> RawRecord:
    if isinstance(value, _DuplicateKeysDict):
        return RawRecord(dict(value), location, value.duplicate_keys)
    return RawRecord(value, location)


class _HashingReader(io.RawIOBase):
    """A raw binary stream that feeds every byte it reads to a sha256."""

    def __init__(self, handle: io.RawIOBase):
        self._handle = handle
        self.digest = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._handle.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
            self.count += count
        return count or 0


def _check_readable(path: Path, label: str) -> int:
    """The file's size; one line when it is not a regular file we can read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise UserError(f"{label}: is a broken symbolic link") from None
        raise UserError(f"{label}: no such file") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(f"{label}: symbolic link loop") from None
        raise UserError(f"{label}: cannot read: {error.strerror or error}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{label}: is a directory, expected a JSON, JSONL, Parquet or CSV file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode) or \
            stat.S_ISBLK(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file"
        raise UserError(f"{label}: is {kind}, not a regular file; save the records to a file first")
    if info.st_size > MAX_FILE_BYTES:
        raise UserError(f"{label}: file is {info.st_size / 1024**3:.1f} GiB, larger than the 8 GiB limit")
    if not os.access(path, os.R_OK):
        raise UserError(f"{label}: cannot read: permission denied")
    return info.st_size


def _encoding_problem(head: bytes) -> str | None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (len(head) >= 4 and (
            head[1:4:2] == b"\x00\x00" or head[0:3:2] == b"\x00\x00")):
        if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            return "is UTF-32 encoded; convert it to UTF-8 (e.g. `iconv -f UTF-32 -t UTF-8`)"
        return "is UTF-16 encoded; convert it to UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8`)"
    return None


def detect_format(path: Path, head: bytes) -> str:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")) or head.startswith(b"PAR1"):
        return "parquet"
    if suffix.endswith(".csv"):
        return "csv"
    if suffix.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    first = head.lstrip(BOM + b" \t\r\n")[:1]
    if first == b"{":
        return "jsonl"  # one object per line, whatever the extension says (a wrapped or spread object is told apart)
    return "json"


class RecordFile:
    """One input file, read as a stream of `RawRecord`s and `Problem`s (iterate it once per pass)."""

    def __init__(self, path: str):
        self.path = path
        self._path = Path(path)
        self.size = _check_readable(self._path, path)
        with open(self._path, "rb") as handle:
            head = handle.read(4096)
        problem = _encoding_problem(head)
        if problem:
            raise UserError(f"{path}: {problem}")
        self.format = detect_format(self._path, head[:64])
        self.empty = not head.strip(BOM + b" \t\r\n")
        self.sha256: str | None = None  # known once a pass has read the whole file
        self._reader: _HashingReader | None = None

    @property
    def bytes_read(self) -> int:
        return self._reader.count if self._reader is not None else 0

    def __iter__(self) -> Iterator[RawRecord | Problem]:
        if self.empty:
            self.sha256 = hashlib.sha256(self._path.read_bytes()).hexdigest()
            yield Problem(self.path, "", "", "file is empty")
            return
        if self.format == "parquet":
            yield from self._parquet()
            return
        with open(self._path, "rb", buffering=0) as raw:
            hashing = self._reader = _HashingReader(raw)
            stream = io.BufferedReader(hashing, CHUNK)
            if self.format == "jsonl":
                yield from self._jsonl(stream)
            elif self.format == "csv":
                yield from self._csv(stream)
            else:
                yield from self._json_array(stream)
            while stream.read(CHUNK):  # hash whatever a reader stopped short of
                pass
            self.sha256 = hashing.digest.hexdigest()

    # -------------------------------------------------------------------------------------- formats

    def _jsonl(self, stream: io.BufferedReader) -> Iterator[RawRecord | Problem]:
        first_bad: Problem | None = None
        good = 0
        for number, line in enumerate(stream, start=1):
            if number == 1 and line.startswith(BOM):
                line = line[3:]
            if not line.strip():
                continue
            try:
                value = _DECODER.decode(line.decode("utf-8", errors="surrogateescape"))
            except json.JSONDecodeError as error:
                problem = Problem(self.path, f"line {number} col {error.colno}", "", f"malformed JSON: {error.msg}")
                if good == 0 and first_bad is None and number == 1 and self._path.suffix.lower() not in (".jsonl", ".ndjson"):
                    first_bad = problem  # perhaps one object spread over lines: decided below
                    break
                yield problem
                continue
            except RecursionError:
                yield Problem(self.path, f"line {number}", "", "JSON is nested too deeply")
                continue
            good += 1
            if good == 1 and self._is_wrapper(value):
                for index, item in enumerate(next(v for v in value.values() if isinstance(v, list)), start=1):
                    yield _raw(item, f"record {index}")
                continue
            yield _raw(value, f"line {number}")
        if first_bad is not None:
            yield from self._whole_object(stream, first_bad)

    def _is_wrapper(self, value: Any) -> bool:
        """{"data": [...]} (one list, no record fields) in a file not named .jsonl: a few datasets wrap the list."""
        if not isinstance(value, dict) or self._path.suffix.lower() in (".jsonl", ".ndjson"):
            return False
        return sum(isinstance(item, list) for item in value.values()) == 1 and not set(value) & set(CORE_FIELDS)

    def _whole_object(self, stream: io.BufferedReader, first_bad: Problem) -> Iterator[RawRecord | Problem]:
        """A file starting with `{` whose first line is not a whole object: a wrapper ({"data": [...]}) or a
        single record spread over several lines."""
        text = self._path.read_bytes().removeprefix(BOM).decode("utf-8", errors="surrogateescape")
        try:
            value = json.loads(text, object_pairs_hook=_object_pairs)
        except json.JSONDecodeError as error:
            yield Problem(self.path, f"line {error.lineno} col {error.colno}", "", f"malformed JSON: {error.msg}")
            return
        if self._is_wrapper(value):
            for index, item in enumerate(next(v for v in value.values() if isinstance(v, list)), start=1):
                yield _raw(item, f"record {index}")
            return
        yield Problem(self.path, "", "", "holds one JSON object spread over several lines; expected a JSON array of "
                                         "records ([{...}, ...]) or JSONL (one object per line)")

    def _json_array(self, stream: io.BufferedReader) -> Iterator[RawRecord | Problem]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape")
        try:
            yield from _ArrayParser(self.path, text)
        finally:
            text.detach()  # a collected wrapper would close `stream`, which is still hashed to its end

    def _csv(self, stream: io.BufferedReader) -> Iterator[RawRecord | Problem]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        try:
            for row in reader:
                if None in row:
                    yield Problem(self.path, f"line {reader.line_num}", "", "more cells than headers")
                    row.pop(None)
                yield RawRecord(dict(row), f"line {reader.line_num}")
        except csv.Error as error:
            yield Problem(self.path, f"line {reader.line_num}", "", f"malformed CSV: {error}")
        finally:
            text.detach()

    def _parquet(self) -> Iterator[RawRecord | Problem]:
        import pyarrow.lib
        import pyarrow.parquet as pq

        from alpaca_data.durable import sha256_file

        self.sha256 = sha256_file(self._path)
        index = 0
        try:
            for batch in pq.ParquetFile(self._path).iter_batches(batch_size=16 * 1024):
                for row in batch.to_pylist():
                    index += 1
                    yield RawRecord(row, f"record {index}")
        except (pyarrow.lib.ArrowException, OSError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            yield Problem(self.path, "", "", f"not a readable Parquet file: {first_line}")


class _ArrayParser:
    """Elements of a top-level JSON array, decoded one at a time from a text stream (bounded memory)."""

    def __init__(self, path: str, text: io.TextIOBase):
        self.path, self.text = path, text
        self.buffer, self.pos, self.eof = "", 0, False
        self.line_base = 1  # line number of buffer[0]

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.text.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.line_base += self.buffer.count("\n", 0, self.pos)
        self.buffer = self.buffer[self.pos:] + chunk
        self.pos = 0
        return True

    def _skip_space(self) -> str:
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self._more():
                return ""

    def _where(self, pos: int) -> str:
        line = self.line_base + self.buffer.count("\n", 0, pos)
        col = pos - (self.buffer.rfind("\n", 0, pos) + 1) + 1
        return f"line {line} col {col}"

    def _problem(self, pos: int, message: str) -> Problem:
        return Problem(self.path, self._where(pos), "", f"malformed JSON: {message}")

    def __iter__(self) -> Iterator[RawRecord | Problem]:
        first = self._skip_space()
        if first != "[":
            if first == "":
                yield Problem(self.path, "", "", "file is empty")
                return
            yield self._not_an_array()
            return
        self.pos += 1
        index = 0
        if self._skip_space() == "]":
            self.pos += 1
            yield from self._trailing()
            return
        while True:
            if self._skip_space() == "":
                yield self._problem(self.pos, "Expecting value (the array is not closed)")
                return
            while True:
                try:
                    value, end = _DECODER.raw_decode(self.buffer, self.pos)
                except json.JSONDecodeError as error:
                    if (len(self.buffer) - self.pos) < MAX_ELEMENT_CHARS and self._more():
                        continue
                    yield self._problem(error.pos, error.msg)
                    return
                except RecursionError:
                    yield Problem(self.path, self._where(self.pos), "", "JSON is nested too deeply")
                    return
                if end == len(self.buffer) and self._more():
                    continue  # the element might go on in the next chunk (a number cut in two)
                break
            index += 1
            yield _raw(value, f"record {index}")
            self.pos = end
            separator = self._skip_space()
            if separator == ",":
                self.pos += 1
            elif separator == "]":
                self.pos += 1
                yield from self._trailing()
                return
            else:
                yield self._problem(self.pos, "Expecting ',' delimiter" if separator else
                                    "Expecting ']' (the array is not closed)")
                return

    def _trailing(self) -> Iterator[Problem]:
        if self._skip_space() != "":
            yield self._problem(self.pos, "Extra data after the array")

    def _not_an_array(self) -> Problem:
        try:
            value, _ = _DECODER.raw_decode(self.buffer, self.pos)
        except json.JSONDecodeError as error:
            return self._problem(error.pos, error.msg)
        return Problem(self.path, "", "", f"expected a JSON array of records, got {json_type(value)}")
