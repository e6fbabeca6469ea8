"""Flags from the demo: written durably the moment they are made, exported as a dataset revision.

The journal is JSON Lines, one flag per line, appended and fsynced before the page is told it was saved;
a torn last line (power cut mid-write) is skipped on reading. `export_flags` turns the journal into an
Alpaca-format revision in the alpaca-data store (instruction / input as the model saw them, output = the
flagged answer, the rest as provenance columns), so `alpaca-data sql`, `filter` and `push` work on it.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError

REASONS = ("incorrect", "harmful", "unhelpful", "offensive", "other")


class FlagJournal:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def append(self, flag: Mapping[str, Any]) -> dict[str, Any]:
        record = {"flag_id": uuid.uuid4().hex[:16], "flagged_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  **flag}
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return record

    def read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise UserError(f"{self.path}: no flags file (the server writes it when the first answer is flagged)") \
                from None
        flags = []
        for number, line in enumerate(lines, start=1):
            try:
                flags.append(json.loads(line))
            except ValueError:
                if number != len(lines):  # only a torn last line is expected; anything else is damage
                    raise UserError(f"{self.path}: line {number} is not JSON") from None
        return flags


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


def export_flags(journal: FlagJournal, dataset: str, *, store_path: str | None = None, message: str = "") -> Any:
    from alpaca_data.store import Store

    flags = journal.read()
    if not flags:
        raise UserError(f"{journal.path}: holds no flags yet")
    store = Store.open(store_path)
    store.check_dataset_name(dataset)
    return store.commit(dataset, [flag_record(f) for f in flags],
                        message=message or f"{len(flags)} flags from {journal.path.name}",
                        recipe={"command": "alpaca-train flags export", "source": journal.path.name,
                                "flags": len(flags)})
