"""Import record files into the store: validate everything first, then write one revision."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from alpaca_data.readers import Problem
from alpaca_data.store import CommitResult, Store
from alpaca_data.validate import validate_file


@dataclass
class ImportOutcome:
    problems: list[Problem]
    result: CommitResult | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


def import_files(store: Store, paths: list[str], dataset: str, *, message: str = "",
                 field_map: Mapping[str, str] | None = None, strict: bool = False,
                 show_progress: bool = True) -> ImportOutcome:
    """All files become one revision, in the order given. Nothing is written if any record is invalid."""
    records, problems, sources = [], [], []
    for path in paths:
        report = validate_file(path, field_map, strict=strict, show_progress=show_progress)
        problems.extend(report.problems)
        records.extend(report.records)
        sources.append({"path": os.path.basename(path), "sha256": report.sha256, "format": report.format,
                        "kind": report.kind})
    if problems:
        return ImportOutcome(problems)
    recipe = {"command": "import", "options": {"map": dict(field_map or {}), "strict": strict},
              "sources": sources}
    names = ", ".join(source["path"] for source in sources)
    result = store.commit(dataset, records, message=message or f"import {names}", recipe=recipe)
    return ImportOutcome([], result)
