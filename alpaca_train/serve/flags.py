"""Flags from the demo: written durably the moment they are made, exported as a dataset revision.

The flags file is the project's one journal type (`alpaca_data.journal`): one flag per JSON line, appended and
fsynced before the page is told it was saved, known secret values masked (credential-shaped words in the
answer or prompt are kept: they are data). It is read by `\n` only, so an answer holding U+2028 stays one flag;
a torn last line (power cut mid-write) is skipped, and a damaged line in the middle is reported (file and line)
while every other flag is still exported. `export_flags` turns the journal into an Alpaca-format revision in the
alpaca-data store (instruction / input as the model saw them, output = the flagged answer, the rest as
provenance columns), so `alpaca-data sql`, `filter` and `push` work on it.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.journal import Journal, journal_safe, read_journal, report_damage

REASONS = ("incorrect", "harmful", "unhelpful", "offensive", "other")


class FlagJournal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._journal: Journal | None = None  # opened on the first flag (cutting a torn last line off)

    def append(self, flag: Mapping[str, Any]) -> dict[str, Any]:
        """Journal one flag (on disk when this returns); the record as written."""
        record = journal_safe({"flag_id": uuid.uuid4().hex[:16],
                               "flagged_at": datetime.now(UTC).isoformat(timespec="seconds"), **flag})
        with self._lock:
            if self._journal is None:
                self._journal = Journal.open(self.path)
            self._journal.append(record)
        return record

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def read(self, on_damage: Callable[[str], None] | None = report_damage) -> list[dict[str, Any]]:
        """Every complete flag; damaged lines in the middle go to `on_damage` ("FILE:LINE: ...") and are skipped."""
        if not self.path.exists():
            raise UserError(f"{self.path}: no flags file (the server writes it when the first answer is flagged)")
        return list(read_journal(self.path, on_damage))


def flag_record(flag: Mapping[str, Any]) -> dict[str, Any]:
    """A journal entry as an Alpaca record with scalar provenance columns."""
    lineage = flag.get("lineage") or {}
    dataset = lineage.get("dataset") or {}
    return {"instruction": flag.get("instruction", ""), "input": flag.get("input", ""),
            "output": flag.get("answer", ""), "flag_id": flag.get("flag_id"), "reason": flag.get("reason"),
            "comment": flag.get("comment") or None, "model": flag.get("model"),
            "checkpoint": lineage.get("checkpoint"), "trained_on": dataset.get("ref"),
            "trained_on_revision": dataset.get("revision_id"),
            "moderation": json.dumps(flag.get("moderation"), sort_keys=True) if flag.get("moderation") else None,
            "moderation_flagged": (flag.get("moderation") or {}).get("flagged"),
            "watermark_z": flag.get("watermark_z"), "flagged_at": flag.get("flagged_at")}


def export_flags(journal: FlagJournal, dataset: str, *, store_path: str | None = None, message: str = "",
                 on_damage: Callable[[str], None] | None = report_damage) -> Any:
    from alpaca_data.store import Store

    flags = journal.read(on_damage)
    if not flags:
        raise UserError(f"{journal.path}: holds no flags yet")
    store = Store.open(store_path)
    store.check_dataset_name(dataset)
    return store.commit(dataset, [flag_record(f) for f in flags],
                        message=message or f"{len(flags)} flags from {journal.path.name}",
                        recipe={"command": "alpaca-train flags export", "source": journal.path.name,
                                "flags": len(flags)})
