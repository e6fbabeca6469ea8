"""Validate record files: stream, map field aliases, check every record, collect every problem.

One code path decides what may be imported: `Validator` checks each record against the schema and the extra
rules and learns every field's column type (`store.tables.ColumnTypes`), so a file that validates is a file
that imports, and a value that could not be stored (a string in a numeric field, an integer beyond 64 bits)
is a validation problem with its location.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from alpaca_data.progress import progress_bar
from alpaca_data.readers import Problem, RawRecord, RecordFile
from alpaca_data.records import apply_field_map
from alpaca_data.schema import RecordChecker
from alpaca_data.store.tables import ColumnTypes

KEPT_PROBLEMS = 10_000  # problems held in memory per file (all are counted)


@dataclass
class FileReport:
    path: str
    format: str
    sha256: str
    valid: int = 0  # records that passed
    problems: list[Problem] = field(default_factory=list)  # the first KEPT_PROBLEMS
    problem_count: int = 0
    kind: str = "records"  # or "seed-tasks" when self-instruct seed tasks were expanded
    no_input: int = 0  # records without an `input` field, read as input "" (no-input tasks often omit it)

    @property
    def ok(self) -> bool:
        return not self.problem_count

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append(problem)


def _looks_like_seed_tasks(value: Any) -> bool:
    return isinstance(value, dict) and "instances" in value and "instruction" in value and "output" not in value


def expand_seed_task(raw: RawRecord, path: str) -> Iterator[RawRecord | Problem]:
    """A self-instruct seed task ({id, name, instruction, instances: [{input, output}]}) → one record per instance."""
    task = raw.value
    instances = task.get("instances") if isinstance(task, dict) else None
    if not isinstance(instances, list) or not instances:
        yield Problem(path, raw.location, "instances", "expected a non-empty list of {input, output}")
        return
    for number, instance in enumerate(instances):
        if not isinstance(instance, dict):
            yield Problem(path, raw.location, f"instances[{number}]", "expected an object")
            continue
        record = {"instruction": task.get("instruction"), "input": instance.get("input", ""),
                  "output": instance.get("output"), "source": "seed"}
        if task.get("id") is not None:
            record["seed_id"] = str(task["id"])
        if task.get("name") is not None:
            record["seed_name"] = str(task["name"])
        if "is_classification" in task:
            record["is_classification"] = bool(task["is_classification"])
        yield RawRecord(record, raw.location, raw.duplicate_keys)


def file_records(source: RecordFile, field_map: Mapping[str, str], report: FileReport) \
        -> Iterator[tuple[RawRecord, list[str]]]:
    """(record with aliases applied, fields given under both names) for each record of a file; problems of
    the file itself go to `report`."""
    mapping = dict(field_map)
    seeds: bool | None = None
    for item in source:
        if isinstance(item, Problem):
            report.add(item)
            continue
        if seeds is None:
            seeds = _looks_like_seed_tasks(item.value)
            report.kind = "seed-tasks" if seeds else "records"
        expanded = expand_seed_task(item, source.path) if seeds else (item,)
        for raw in expanded:
            if isinstance(raw, Problem):
                report.add(raw)
                continue
            conflicts: list[str] = []
            if isinstance(raw.value, dict) and mapping:
                conflicts = [target for source_name, target in mapping.items()
                             if source_name in raw.value and target in raw.value]
                raw = RawRecord(apply_field_map(raw.value, mapping), raw.location, raw.duplicate_keys)
            if isinstance(raw.value, dict) and "input" not in raw.value:  # the schema's "may be empty"
                raw = RawRecord({**raw.value, "input": ""}, raw.location, raw.duplicate_keys)
                report.no_input += 1
            yield raw, conflicts


class Validator:
    """Checks files record by record and learns the column types of everything it accepts (across files)."""

    def __init__(self, field_map: Mapping[str, str] | None = None, strict: bool = False):
        self.field_map = dict(field_map or {})
        self.checker = RecordChecker(strict=strict)
        self.types = ColumnTypes()

    def check_file(self, path: str, on_valid: Callable[[dict[str, Any]], None] | None = None,
                   show_progress: bool = True) -> FileReport:
        """Raises UserError only when the file cannot be read at all."""
        source = RecordFile(path)
        report = FileReport(path=path, format=source.format, sha256="")
        with progress_bar(f"validating {path}", total=source.size, enabled=show_progress, unit="bytes",
                          bar_min=16 * 1024**2) as tick:  # a bar for big files; plain lines for long reads
            seen = count = 0
            for raw, conflicts in file_records(source, self.field_map, report):
                count += 1
                problems = [Problem(path, raw.location, p.field, p.reason)
                            for p in self.checker.check(raw.value, raw.duplicate_keys)]
                problems += [Problem(path, raw.location, target, "present under both its name and an alias")
                             for target in conflicts]
                if not problems:
                    problems = [Problem(path, raw.location, name, reason)
                                for name, reason in self.types.observe(raw.value, f"{path}:{raw.location}")]
                for problem in problems:
                    report.add(problem)
                if not problems:
                    report.valid += 1
                    if on_valid is not None:
                        on_valid(raw.value)
                if show_progress and (count & 1023) == 0:
                    tick(source.bytes_read - seen)
                    seen = source.bytes_read
        report.sha256 = source.sha256 or ""
        if not report.valid and not report.problem_count:
            report.add(Problem(path, "", "", "holds no records"))
        return report


def validate_files(paths: list[str], field_map: Mapping[str, str] | None = None, strict: bool = False,
                   show_progress: bool = True) -> list[FileReport]:
    """Every file's report: read in chunks on every core when they are JSONL files of valid records
    (`import_chunks`), else (or at the first doubt) by the careful reader, which words every problem."""
    from alpaca_data import import_chunks
    from alpaca_data.parallel import OrderedPool

    with OrderedPool(import_chunks.workers_for_files(paths)) as pool:
        checked = import_chunks.check_files(paths, dict(field_map or {}), strict, show_progress, pool)
    if checked is not None:
        return checked.reports
    validator = Validator(field_map, strict)
    return [validator.check_file(path, show_progress=show_progress) for path in paths]


def validate_file(path: str, field_map: Mapping[str, str] | None = None, strict: bool = False,
                  show_progress: bool = True) -> FileReport:
    return Validator(field_map, strict).check_file(path, show_progress=show_progress)


def load_valid_records(path: str, field_map: Mapping[str, str] | None = None) -> tuple[FileReport, list[dict]]:
    """A small file's valid records in memory (seed files, training files), with its report."""
    records: list[dict[str, Any]] = []
    report = Validator(field_map).check_file(path, on_valid=records.append, show_progress=False)
    return report, records
