"""The one journal type: append-only JSON Lines, fsync per write, read by `\\n` only, torn last line cut on open,
secrets redacted on write. Generation runs, eval request runs, rating sessions and the demo server's flags use it.

Reading splits on b"\\n" and nothing else: an answer holding U+2028, U+0085 or a form feed stays one line (and
those characters are written escaped, so a reader that splits on every Unicode line break agrees). A last line
without its newline is a write cut short by a crash: readers skip it and `Journal.open` cuts it off before
appending. A damaged line in the middle is reported (`on_damage`, one line naming file and line) and skipped.

Redaction (`journal_safe`): known secret values (the keys in the environment, values registered at run time)
are masked in every string. Credential *shapes* (`Bearer …`, `sk-…`, `hf_…`) are masked only in the fields
that carry headers, URLs and error bodies (`SHAPED_FIELDS`), never in model or user text: "basic cooking
skills", "bearer bonds", "sk-learn" and "hf_hub" are data, and a resumed run replays them exactly.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alpaca_data.secrets import redact, redact_known

# Fields whose strings (at any depth) are headers, URLs or error bodies: credential shapes are masked there.
SHAPED_FIELDS = frozenset({"error", "errors", "message", "detail", "headers", "url", "base_url", "endpoint"})
# Line breaks other than "\n" that JSON leaves raw with ensure_ascii=False: written escaped.
_RAW_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def journal_safe(value: Any, *, shaped: bool = False) -> Any:
    """`value` as it may be written: known secrets masked everywhere, credential shapes only under
    `SHAPED_FIELDS`. Keys are kept as they are (they are field names, not data)."""
    if isinstance(value, str):
        return redact(value) if shaped else redact_known(value)
    if isinstance(value, dict):
        return {key: journal_safe(item, shaped=shaped or key in SHAPED_FIELDS) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(journal_safe(item, shaped=shaped) for item in value)
    return value


def encode_line(entry: dict[str, Any]) -> bytes:
    """One journal line (redacted, newline-terminated, no raw line break but the final `\\n`)."""
    text = json.dumps(journal_safe(entry), ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in _RAW_BREAKS.items():
        if raw in text:  # only ever inside a JSON string, where the escape means the same character
            text = text.replace(raw, escaped)
    return text.encode("utf-8") + b"\n"


def report_damage(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def read_journal(path: Path, on_damage: Callable[[str], None] | None = report_damage) -> Iterator[dict[str, Any]]:
    """The complete entries of a journal, split on `\\n` only. A torn last line (no newline) is skipped quietly;
    a line in the middle that is not a JSON object is reported through `on_damage` ("FILE:LINE: ...") and
    skipped, so the entries around it are still read."""
    path = Path(path)
    if not path.exists():
        return
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break  # torn by a crash mid-write (or being written right now)
            try:
                entry = json.loads(raw)
            except ValueError as error:  # UnicodeDecodeError included
                if on_damage is not None:
                    reason = "not valid UTF-8" if isinstance(error, UnicodeDecodeError) else "not JSON"
                    on_damage(f"{path}:{number}: {reason}; line skipped")
                continue
            if isinstance(entry, dict):
                yield entry
            elif on_damage is not None:
                on_damage(f"{path}:{number}: not a JSON object; line skipped")


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self._handle = None

    @classmethod
    def open(cls, path: Path, fsync: bool = True) -> Journal:
        journal = cls(path, fsync)
        journal.path.parent.mkdir(parents=True, exist_ok=True)
        if journal.path.exists():
            data = journal.path.read_bytes()
            if data and not data.endswith(b"\n"):
                with journal.path.open("r+b") as handle:  # drop the torn line left by a crash
                    handle.truncate(data.rfind(b"\n") + 1)
        journal._handle = journal.path.open("ab")
        return journal

    def entries(self, on_damage: Callable[[str], None] | None = report_damage) -> list[dict[str, Any]]:
        return list(read_journal(self.path, on_damage))

    def append(self, entry: dict[str, Any]) -> None:
        self.append_many([entry])

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """Write entries (redacted: `journal_safe`), then one flush + fsync for all of them (group commit)."""
        self._handle.write(b"".join(encode_line(entry) for entry in entries))
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    def event(self, kind: str, **fields: Any) -> None:
        self.append({"type": kind, "time": round(time.time(), 3), "pid": os.getpid(), **fields})

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
