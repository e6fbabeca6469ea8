"""Validate record files: read, map field aliases, check every record, collect every problem."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from alpaca_data.progress import progress_bar
from alpaca_data.readers import Problem, RawRecord, read_file
from alpaca_data.records import apply_field_map
from alpaca_data.schema import RecordChecker


@dataclass
class FileReport:
    path: str
    format: str
    sha256: str
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kind: str = "records"  # or "seed-tasks" when self-instruct seed tasks were expanded

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_file(path: str, field_map: Mapping[str, str] | None = None, strict: bool = False,
                  show_progress: bool = True) -> FileReport:
    """Read and check one file. Raises UserError only when the file cannot be read at all."""
    result = read_file(path)
    report = FileReport(path=path, format=result.format, sha256=result.sha256, problems=list(result.problems))
    checker = RecordChecker(strict=strict)
    raws = result.records
    if raws and _looks_like_seed_tasks(raws[0].value):
        raws, seed_problems = expand_seed_tasks(raws, path)
        report.kind = "seed-tasks"
        report.problems.extend(seed_problems)
    mapping = dict(field_map or {})
    with progress_bar(f"validating {path}", total=len(raws), enabled=show_progress and len(raws) > 20000) as tick:
        for raw in raws:
            record = raw.value
            conflicts = []
            if isinstance(record, dict) and mapping:
                conflicts = [target for source, target in mapping.items() if source in record and target in record]
                record = apply_field_map(record, mapping)
            problems = checker.check(record, raw.duplicate_keys)
            for target in conflicts:
                report.problems.append(Problem(path, raw.location, target, "present under both its name and an alias"))
            if problems:
                report.problems.extend(Problem(path, raw.location, p.field, p.reason) for p in problems)
            elif not conflicts:
                report.records.append(record)
            tick()
    report.problems.sort(key=Problem.sort_key)
    if not raws and not report.problems:
        report.problems.append(Problem(path, "", "", "holds no records"))
    return report


def _looks_like_seed_tasks(value: Any) -> bool:
    return isinstance(value, dict) and "instances" in value and "instruction" in value and "output" not in value


def expand_seed_tasks(raws: list[RawRecord], path: str) -> tuple[list[RawRecord], list[Problem]]:
    """Self-instruct seed tasks ({id, name, instruction, instances: [{input, output}]}) → one record per instance."""
    expanded: list[RawRecord] = []
    problems: list[Problem] = []
    for raw in raws:
        task = raw.value
        instances = task.get("instances") if isinstance(task, dict) else None
        if not isinstance(instances, list) or not instances:
            problems.append(Problem(path, raw.location, "instances", "expected a non-empty list of {input, output}"))
            continue
        for number, instance in enumerate(instances):
            if not isinstance(instance, dict):
                problems.append(Problem(path, raw.location, f"instances[{number}]", "expected an object"))
                continue
            record = {"instruction": task.get("instruction"), "input": instance.get("input", ""),
                      "output": instance.get("output"), "source": "seed"}
            if task.get("id") is not None:
                record["seed_id"] = str(task["id"])
            if task.get("name") is not None:
                record["seed_name"] = str(task["name"])
            if "is_classification" in task:
                record["is_classification"] = bool(task["is_classification"])
            expanded.append(RawRecord(record, raw.location, raw.duplicate_keys))
    return expanded, problems
