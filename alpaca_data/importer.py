"""Import record files into the store: validate every record, then commit one revision, or nothing.

JSONL files of plain records take the fast path (`import_chunks`, on every core): chunks are checked and
converted in one pass, and the revision is committed only when every chunk was valid. Any doubt sends the import
to the careful reader: two passes, each holding one batch at a time, the first validating every record and
deciding every column's type (the same `Validator` as `alpaca-data validate`), the second converting and
writing; inputs up to `HOLD_BYTES` keep their records from the first pass. Nothing is written if any record is
invalid, and a file that changes while it is read is refused.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.progress import progress_bar
from alpaca_data.readers import Problem, RecordFile
from alpaca_data.store import CommitResult, Store
from alpaca_data.store.tables import conform_table, records_to_table
from alpaca_data.validate import FileReport, Validator, file_records

BATCH_RECORDS = 16 * 1024
HOLD_BYTES = 64 * 1024**2  # inputs up to this size are read once and held (a few hundred MB of records at most)


@dataclass
class ImportOutcome:
    problems: list[Problem]
    problem_count: int = 0
    result: CommitResult | None = None
    no_input: int = 0  # records that had no `input` field (imported with input "")
    reader: str = "careful"  # or "chunks": the fast path (import_chunks) read every file

    @property
    def ok(self) -> bool:
        return self.result is not None


def import_files(store: Store, paths: list[str], dataset: str, *, message: str = "",
                 field_map: Mapping[str, str] | None = None, strict: bool = False,
                 show_progress: bool = True) -> ImportOutcome:
    """All files become one revision, in the order given."""
    store.check_dataset_name(dataset)
    fast = _import_in_chunks(store, paths, dataset, message=message, field_map=dict(field_map or {}),
                             strict=strict, show_progress=show_progress)
    if fast is not None:
        return fast
    validator = Validator(field_map, strict)
    # Small inputs keep their valid records from the first pass (one read); large ones are read twice so
    # memory stays flat whatever the size.
    held: list[dict[str, Any]] | None = [] if _total_size(paths) <= HOLD_BYTES else None
    on_valid = held.append if held is not None else None
    reports = [validator.check_file(path, on_valid=on_valid, show_progress=show_progress) for path in paths]
    problems = [problem for report in reports for problem in report.problems]
    count = sum(report.problem_count for report in reports)
    if count:
        return ImportOutcome(problems, count)
    schema = validator.types.schema()
    with store.begin(dataset, schema) as writer:
        if held is not None:
            for start in range(0, len(held), BATCH_RECORDS):
                writer.write(records_to_table(held[start:start + BATCH_RECORDS], schema))
        else:
            for report in reports:
                _write_file(writer, report, validator.field_map, schema)
        sources = [(r.path, r.sha256, r.format, r.kind) for r in reports]
        result = _commit(writer, sources, message, validator.field_map, strict)
    return ImportOutcome([], 0, result, no_input=sum(report.no_input for report in reports))


def _commit(writer: Any, sources: list[tuple[str, str, str, str]], message: str, field_map: Mapping[str, str],
            strict: bool) -> CommitResult:
    """sources: (path, sha256, format, kind) of each file read."""
    listed = [{"path": os.path.basename(path), "sha256": sha256, "format": fmt, "kind": kind}
              for path, sha256, fmt, kind in sources]
    recipe = {"command": "import", "options": {"map": dict(field_map), "strict": strict}, "sources": listed}
    names = ", ".join(source["path"] for source in listed)
    return writer.commit(message=message or f"import {names}", recipe=recipe)


def _import_in_chunks(store: Store, paths: list[str], dataset: str, *, message: str, field_map: dict[str, str],
                      strict: bool, show_progress: bool) -> ImportOutcome | None:
    """The fast path (`import_chunks`) for JSONL files of plain records; None when the careful reader must
    decide: another format, or any doubt about any record (it then finds and words every problem).

    One pass checks and converts each chunk; the first chunk's column types are the revision's. Should a later
    chunk need other types (a provenance field that first appears there, ints where the first had floats), a
    second route checks every chunk, merges their types, then converts."""
    from alpaca_data import import_chunks as chunks_module
    from alpaca_data.parallel import OrderedPool

    plan = chunks_module.plan_files(paths, field_map, strict)
    if plan is None:
        return None
    with OrderedPool(chunks_module.workers_for_files(paths), threads=True) as pool:
        try:
            return _import_in_one_pass(store, paths, plan, dataset, pool, message=message, field_map=field_map,
                                       strict=strict, show_progress=show_progress)
        except _ColumnsDiffer:
            return _import_in_two_passes(store, paths, dataset, pool, message=message, field_map=field_map,
                                         strict=strict, show_progress=show_progress)


class _ColumnsDiffer(Exception):
    """A chunk's column types are not the first chunk's."""


def _import_in_one_pass(store: Store, paths: list[str], plan: tuple[list[Any], list[int]], dataset: str, pool: Any,
                        *, message: str, field_map: dict[str, str], strict: bool,
                        show_progress: bool) -> ImportOutcome | None:
    from concurrent.futures import ThreadPoolExecutor

    from alpaca_data import import_chunks as chunks_module
    from alpaca_data.durable import sha256_file

    chunks = [replace(chunk, convert=True) for chunk in plan[0]]
    before = [_identity(path) for path in paths]
    checks, kinds = [], None
    with ExitStack() as stack:
        hasher = stack.enter_context(ThreadPoolExecutor(1))
        hashes = hasher.submit(lambda: [sha256_file(path) for path in paths])  # hashlib lets go of the GIL
        tick = stack.enter_context(progress_bar(f"importing {dataset}", total=sum(plan[1]), enabled=show_progress,
                                                unit="bytes", bar_min=16 * 1024**2))
        writer = None
        for chunk, scan in zip(chunks, pool.map(chunks_module.scan_chunk, chunks)):
            if not scan.ok:
                return _abandon(writer)
            if writer is None:
                kinds = scan.kinds
                writer = stack.enter_context(store.begin(dataset, chunks_module.schema_of(kinds)))
            elif not _fits(scan.kinds, kinds):
                raise _ColumnsDiffer
            table, encoded = scan.rows
            writer.write(conform_table(table, writer.schema), encoded)
            scan.rows = None
            checks.append(scan)
            tick(chunk.end - chunk.start)
        reports = chunks_module.file_reports(paths, hashes.result(), checks, chunks)
        if reports is None or writer is None:
            return _abandon(writer)
        for path, identity in zip(paths, before):
            if _identity(path) != identity:
                raise UserError(f"{path}: the file changed while it was being imported; nothing was written")
        result = _commit(writer, [(r.path, r.sha256, r.format, r.kind) for r in reports], message, field_map,
                         strict)
    return ImportOutcome([], 0, result, no_input=sum(r.no_input for r in reports), reader="chunks")


def _fits(chunk_kinds: Mapping[str, str], kinds: Mapping[str, str]) -> bool:
    """Whether a chunk's rows read back the same in the revision's columns: each of its provenance fields is a
    column of the same kind, or holds only nulls there (a null provenance value is left out of a record)."""
    return all(name in kinds and kind in (kinds[name], "null") for name, kind in chunk_kinds.items())


def _abandon(writer: Any) -> None:
    """Nothing of a revision begun is kept: the careful reader takes over."""
    if writer is not None:
        writer.abort()


def _identity(path: str) -> tuple[int, int, int]:
    """What changes when a file is written to or replaced (the one-pass import reads and hashes it once)."""
    info = os.stat(path)
    return info.st_ino, info.st_size, info.st_mtime_ns


def _import_in_two_passes(store: Store, paths: list[str], dataset: str, pool: Any, *, message: str,
                          field_map: dict[str, str], strict: bool, show_progress: bool) -> ImportOutcome | None:
    from concurrent.futures import ThreadPoolExecutor

    from alpaca_data import import_chunks as chunks_module
    from alpaca_data.durable import sha256_file

    with ThreadPoolExecutor(1) as hasher:
        checked = chunks_module.check_files(paths, field_map, strict, show_progress, pool)
        if checked is None:
            return None
        hashes = hasher.submit(lambda: [sha256_file(path) for path in paths])  # hashlib lets go of the GIL
        converts = [replace(chunk, schema=checked.schema) for chunk in checked.chunks]
        with store.begin(dataset, checked.schema) as writer, \
                progress_bar(f"importing {dataset}", total=checked.total_bytes, enabled=show_progress, unit="bytes",
                             bar_min=16 * 1024**2) as tick:
            for chunk, (table, encoded) in zip(converts, pool.map(chunks_module.convert_chunk, converts)):
                writer.write(table, encoded)
                tick(chunk.end - chunk.start)
            for report, after in zip(checked.reports, hashes.result()):
                if report.sha256 != after:
                    raise UserError(f"{report.path}: the file changed while it was being imported; nothing was "
                                    "written")
            result = _commit(writer, [(r.path, r.sha256, r.format, r.kind) for r in checked.reports], message,
                             field_map, strict)
    return ImportOutcome([], 0, result, no_input=sum(r.no_input for r in checked.reports), reader="chunks")


def _total_size(paths: list[str]) -> int:
    try:
        return sum(os.stat(path).st_size for path in paths)
    except OSError:
        return HOLD_BYTES + 1  # the validator reports the problem; take the streaming path


def _write_file(writer: Any, report: FileReport, field_map: Mapping[str, str], schema) -> None:
    source = RecordFile(report.path)
    again = FileReport(report.path, source.format, "")
    batch: list[dict[str, Any]] = []
    for raw, _ in file_records(source, field_map, again):
        batch.append(raw.value)
        if len(batch) == BATCH_RECORDS:
            writer.write(records_to_table(batch, schema))
            batch = []
    if batch:
        writer.write(records_to_table(batch, schema))
    if source.sha256 != report.sha256 or again.problem_count:
        raise UserError(f"{report.path}: the file changed while it was being imported; nothing was written")
