"""Import record files into the store: validate everything first, then stream one revision.

Two passes over the files, each holding one batch at a time: the first validates every record and decides
every column's type (the same `Validator` as `alpaca-data validate`), the second converts and writes. Nothing
is written if any record is invalid, and a file that changes between the passes is refused. Inputs up to
`HOLD_BYTES` keep their records from the first pass instead of being read again.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.readers import Problem, RecordFile
from alpaca_data.store import CommitResult, Store
from alpaca_data.store.tables import records_to_table
from alpaca_data.validate import FileReport, Validator, file_records

BATCH_RECORDS = 16 * 1024
HOLD_BYTES = 64 * 1024**2  # inputs up to this size are read once and held (a few hundred MB of records at most)


@dataclass
class ImportOutcome:
    problems: list[Problem]
    problem_count: int = 0
    result: CommitResult | None = None
    no_input: int = 0  # records that had no `input` field (imported with input "")

    @property
    def ok(self) -> bool:
        return self.result is not None


def import_files(store: Store, paths: list[str], dataset: str, *, message: str = "",
                 field_map: Mapping[str, str] | None = None, strict: bool = False,
                 show_progress: bool = True) -> ImportOutcome:
    """All files become one revision, in the order given."""
    store.check_dataset_name(dataset)
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
        sources = [{"path": os.path.basename(r.path), "sha256": r.sha256, "format": r.format, "kind": r.kind}
                   for r in reports]
        recipe = {"command": "import", "options": {"map": validator.field_map, "strict": strict},
                  "sources": sources}
        names = ", ".join(source["path"] for source in sources)
        result = writer.commit(message=message or f"import {names}", recipe=recipe)
    return ImportOutcome([], 0, result, no_input=sum(report.no_input for report in reports))


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
