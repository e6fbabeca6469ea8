"""Import of JSONL files in byte ranges, on every core: the fast path of `importer.import_files`.

A JSONL file is cut at line ends into chunks of about `CHUNK_BYTES`. A first pass checks each chunk
(`check_chunk`: parse, the same `RecordChecker` and column types as `alpaca-data validate`), a second converts it
(`convert_chunk`: an Arrow table in the revision's schema plus its canonical JSON and statistics). Both run on
workers (`parallel.OrderedPool`: threads for an import, processes for `validate`), or in this thread for a small
file.

The fast path is optimistic: the first doubt about a chunk (a problem, a line orjson will not read, a type
conflict) sends the whole import back to the careful reader (`validate.Validator`), which finds every problem and
words it with its line and column. So the fast path never has to explain an error, and a valid file gives the
same records, the same schema and the same revision id either way.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import orjson
import pyarrow as pa

from alpaca_data.column_check import checked_columns
from alpaca_data.readers import _DECODER, BOM, _raw
from alpaca_data.records import apply_field_map
from alpaca_data.schema import RecordChecker
from alpaca_data.store.encode import EncodedRows, encode_table
from alpaca_data.store.tables import ColumnTypes, records_to_table

CHUNK_BYTES = 8 * 1024**2  # ~16K records: one row group of the revision
_SPACE_BEFORE_COLON = re.compile(rb'"\s+:')
# Every way a character `schema.RecordChecker` refuses in text (C0/C1 controls but tab, newline and carriage
# return; lone surrogates) can appear in a line orjson reads: raw DEL or C1 bytes, or an escape. A line without
# any of these is clean; one with (a false alarm, such as an escaped backslash before "b") is scanned in full.
_MAYBE_BAD_TEXT = re.compile(rb'\x7f|\xc2[\x80-\x9f]|\\(?:[bf]|u00[0189][0-9a-fA-F]|u007[fF]|u[dD][89a-fA-F])')


@dataclass(frozen=True)
class Chunk:
    path: str
    start: int
    end: int
    field_map: tuple[tuple[str, str], ...] = ()
    strict: bool = False
    schema: pa.Schema | None = None  # set for the convert pass
    convert: bool = False  # scan_chunk: convert too, to the chunk's own column types


@dataclass
class ChunkCheck:
    ok: bool
    records: int = 0
    no_input: int = 0
    kinds: dict[str, str] = field(default_factory=dict)  # field -> column kind (store.tables.ColumnTypes)
    rows: tuple[pa.Table, EncodedRows] | None = None  # scan_chunk with `convert`: the chunk's rows


def chunk_ranges(path: str, size: int, chunk_bytes: int | None = None) -> list[tuple[int, int]]:
    """Byte ranges covering the file, each ending just after a newline (or at the end of the file)."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    ranges, start = [], 0
    with open(path, "rb") as handle:
        while start < size:
            end = min(start + chunk_bytes, size)
            if end < size:
                handle.seek(end)
                tail = handle.readline()  # up to and including the next newline
                end += len(tail)
            ranges.append((start, end))
            start = end
    return ranges


def _read(chunk: Chunk) -> bytes:
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        data = handle.read(chunk.end - chunk.start)
    if chunk.start == 0 and data.startswith(BOM):
        data = data[len(BOM):]
    return data


def _lines(chunk: Chunk) -> list[bytes]:
    return _read(chunk).split(b"\n")


class _Doubt(Exception):
    """Something the fast path does not decide: the careful reader takes over."""


def _parse(line: bytes) -> tuple[Any, tuple[str, ...]]:
    """A line's value and its repeated keys, decided as the careful reader does (`readers._jsonl`)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise _Doubt from None  # malformed, NaN, a huge number, invalid UTF-8: the careful reader words it
    # Every key is followed by `":` when no space comes before the colon; counting them finds repeated keys
    # (orjson keeps the last silently). Any other line (a `":` inside a string, nesting) is read again carefully.
    if isinstance(value, dict) and (line.count(b'":') != len(value) or (
            (b" :" in line or b"\t:" in line or b"\r:" in line) and _SPACE_BEFORE_COLON.search(line))):
        raw = _raw(_DECODER.decode(line.decode("utf-8", errors="surrogateescape")), "")
        return raw.value, raw.duplicate_keys
    return value, ()


def _clean_text(line: bytes) -> bool:
    """No character `_MAYBE_BAD_TEXT` looks for; the substring tests first, as the regex scans slowly."""
    if b"\x7f" in line or b"\\b" in line or b"\\f" in line:
        return False
    return not ((b"\xc2" in line or b"\\u" in line) and _MAYBE_BAD_TEXT.search(line))


def _no_control_chars(data: bytes) -> bool:
    r"""Whether no string of a chunk orjson has read can hold a character `RecordChecker` refuses in text: no
    escape that could write one (\b, \f, \u00..), no raw DEL and no UTF-8 lead byte of a C1 character (orjson
    refuses raw control bytes in strings, and lone surrogates). A false alarm (an escaped backslash before a b,
    as code has) costs a search of the decoded text (`column_check`), not a wrong verdict."""
    return not (b"\x7f" in data or b"\\b" in data or b"\\f" in data or b"\xc2" in data or b"\\u00" in data)


def _records(chunk: Chunk, checked: bool = False):
    """(record with aliases applied and input defaulted, had no input, text is clean) for each line.
    checked: pass 1 found every line valid, so repeated keys and odd characters need no second look."""
    mapping = dict(chunk.field_map)
    loads = orjson.loads
    for line in _lines(chunk):
        if not line.strip():
            continue
        if checked:
            value, repeated = loads(line), ()
        else:
            value, repeated = _parse(line)
        if repeated or not isinstance(value, dict):
            raise _Doubt
        if mapping:
            if any(source in value and target in value for source, target in mapping.items()):
                raise _Doubt
            value = apply_field_map(value, mapping)
        no_input = "input" not in value
        if no_input:
            value["input"] = ""
        yield value, no_input, checked or _clean_text(line)


_checkers: dict[bool, RecordChecker] = {}


def check_chunk(chunk: Chunk) -> ChunkCheck:
    """Pass 1: is every record of the chunk valid, and what column types do they need?"""
    checker = _checkers.get(chunk.strict) or _checkers.setdefault(chunk.strict, RecordChecker(strict=chunk.strict))
    types = ColumnTypes()
    result = ChunkCheck(ok=False)
    try:
        for record, no_input, clean_text in _records(chunk):
            if checker.check(record, clean_text=clean_text) or types.observe(record):
                return result
            result.records += 1
            result.no_input += no_input
    except _Doubt:
        return result
    result.ok, result.kinds = True, types.kinds
    return result


def convert_chunk(chunk: Chunk) -> tuple[pa.Table, EncodedRows]:
    """Pass 2: the chunk's records as rows of the revision (its schema), with their canonical JSON and stats."""
    records = [record for record, _, _ in _records(chunk, checked=True)]
    table = records_to_table(records, chunk.schema)
    return table, encode_table(table)  # what reads back: an int in a float column as a float, no null provenance


def scan_chunk(chunk: Chunk) -> ChunkCheck:
    """Check a chunk and, with `chunk.convert`, convert it in the same pass to its own column types
    (`ChunkCheck.rows`). Plain chunks are checked a column at a time (`column_check`); any other is checked
    record by record (`check_chunk`) and converted as `convert_chunk` does: the same verdicts either way."""
    fast = None if chunk.strict else _plain_records(chunk)
    columns = checked_columns(fast[0], clean_text=fast[2]) if fast else None
    if columns is None:
        check = check_chunk(chunk)
        if check.ok and chunk.convert:
            check.rows = convert_chunk(replace(chunk, schema=schema_of(check.kinds)))
        return check
    records, no_input, _ = fast
    check = ChunkCheck(ok=True, records=len(records), no_input=no_input, kinds=columns.kinds)
    if chunk.convert:
        table = pa.Table.from_arrays(list(columns.arrays.values()), schema=schema_of(columns.kinds))
        encoded = encode_table(table)  # what reads back: an int in a float column as a float, no null provenance
        check.rows = (table, encoded)
    return check


def schema_of(kinds: Mapping[str, str]) -> pa.Schema:
    types = ColumnTypes()
    types.kinds.update(kinds)
    return types.schema()


def _plain_records(chunk: Chunk) -> tuple[list[dict[str, Any]], int, bool] | None:
    """The chunk's records (aliases applied, input defaulted), how many had no input and whether the raw text
    proves that no string holds a control character, when every line is a JSON object without repeated keys
    (and without NaN or a lone surrogate, which orjson refuses); else None."""
    data = _read(chunk)
    lines = [line for line in data.split(b"\n") if line.strip()]
    loads = orjson.loads
    try:
        records = [loads(line) for line in lines]
    except orjson.JSONDecodeError:
        return None
    if not all(type(record) is dict for record in records):
        return None
    # Every key is followed by `":` when no whitespace comes before a colon: a chunk with as many `":` as its
    # objects have keys has no key twice in an object. Otherwise (`":` in text, as code has) `_parse` decides
    # line by line, for the lines in doubt.
    if data.count(b'":') != sum(map(len, records)) or _SPACE_BEFORE_COLON.search(data):
        for line, record in zip(lines, records):
            if (line.count(b'":') != len(record) or _SPACE_BEFORE_COLON.search(line)) and _parse(line)[1]:
                return None
    mapping = dict(chunk.field_map)
    if mapping:
        if any(source in record and target in record for record in records
               for source, target in mapping.items()):
            return None
        records = [apply_field_map(record, mapping) for record in records]
    no_input = 0
    for record in records:
        if "input" not in record:
            record["input"] = ""
            no_input += 1
    return records, no_input, _no_control_chars(data)


def merged_kinds(checks: list[ChunkCheck], types: ColumnTypes) -> bool:
    """Fold the chunks' column kinds into `types` in file order; False when two chunks disagree."""
    for check in checks:
        for name, kind in check.kinds.items():
            if not types.merge_kind(name, kind):
                return False
    return True


def is_plain_jsonl(path: str) -> bool:
    """Whether the careful reader reads this file as one record per line (not a wrapper object whose list holds
    the records, not self-instruct seed tasks that it expands, not JSON or CSV): what the fast path reads."""
    from alpaca_data.readers import RawRecord, RecordFile
    from alpaca_data.validate import _looks_like_seed_tasks

    source = RecordFile(path)
    if source.format != "jsonl" or source.empty:
        return False
    first = next(iter(source), None)
    return isinstance(first, RawRecord) and first.location.startswith("line ") and isinstance(first.value, dict) \
        and not _looks_like_seed_tasks(first.value)


def chunk_plan(path: str, size: int, field_map: Mapping[str, str], strict: bool) -> list[Chunk]:
    pairs = tuple(sorted(field_map.items()))
    return [Chunk(path, start, end, pairs, strict) for start, end in chunk_ranges(path, size)]


APPROX_RECORD_BYTES = 512  # to tell a big file from a small one before counting its records


def workers_for_files(paths: list[str]) -> int:
    from alpaca_data.parallel import workers_for

    try:
        return workers_for(sum(os.stat(path).st_size for path in paths) // APPROX_RECORD_BYTES)
    except OSError:
        return 1


@dataclass
class CheckedFiles:
    reports: list[Any]  # validate.FileReport of each file, all valid
    chunks: list[Chunk]
    schema: pa.Schema
    total_bytes: int


def plan_files(paths: list[str], field_map: Mapping[str, str], strict: bool) -> tuple[list[Chunk], list[int]] | None:
    """The chunks of every file and the files' sizes; None when a file is not plain JSONL records."""
    from alpaca_data.errors import UserError

    try:
        if not all(is_plain_jsonl(path) for path in paths):
            return None
        sizes = [os.stat(path).st_size for path in paths]
    except (UserError, OSError):
        return None  # the careful reader says what is wrong
    return [chunk for path, size in zip(paths, sizes) for chunk in chunk_plan(path, size, field_map, strict)], sizes


def file_reports(paths: list[str], digests: list[str], checks: list[ChunkCheck], chunks: list[Chunk]) -> list | None:
    """validate.FileReport of each file from its chunks' checks; None when a file holds no records."""
    from alpaca_data.validate import FileReport

    reports = []
    for path, digest in zip(paths, digests):
        mine = [check for check, chunk in zip(checks, chunks) if chunk.path == path]
        report = FileReport(path, "jsonl", digest, valid=sum(c.records for c in mine),
                            no_input=sum(c.no_input for c in mine))
        if not report.valid:
            return None  # "holds no records": the careful reader's words
        reports.append(report)
    return reports


def check_files(paths: list[str], field_map: Mapping[str, str], strict: bool, show_progress: bool,
                pool: Any) -> CheckedFiles | None:
    """Pass 1 over every file in chunks on `pool` (a `parallel.OrderedPool`): the files' reports when every
    record of every file is valid, None at the first doubt (the careful reader then reports)."""
    from alpaca_data.durable import sha256_file
    from alpaca_data.progress import progress_bar

    plan = plan_files(paths, field_map, strict)
    if plan is None:
        return None
    chunks, sizes = plan
    checks: list[ChunkCheck] = []
    with ThreadPoolExecutor(1) as hasher, \
            progress_bar(f"validating {', '.join(paths)}", total=sum(sizes), enabled=show_progress, unit="bytes",
                         bar_min=16 * 1024**2) as tick:
        hashes = hasher.submit(lambda: [sha256_file(path) for path in paths])  # hashlib lets go of the GIL
        for chunk, check in zip(chunks, pool.map(scan_chunk, chunks)):
            if not check.ok:
                return None
            checks.append(check)
            tick(chunk.end - chunk.start)
        digests = hashes.result()
    types = ColumnTypes()
    if not merged_kinds(checks, types):
        return None
    reports = file_reports(paths, digests, checks, chunks)
    return None if reports is None else CheckedFiles(reports, chunks, types.schema(), sum(sizes))
