"""The journal of `eval rate`: every judgment and undo is one fsynced JSON line, written before the API
answers, so a killed server loses nothing a rater saw accepted. Replaying it gives each rater's judgments;
the annotations revision is committed from it, and a restarted server resumes from it.

One journal per comparison: `<store>/runs/eval-rate/<annotations dataset>/<id_1[:16]>-vs-<id_2[:16]>.jsonl`.
Lines:
  {"type": "start"|"resume", "time": ..., "pid": ..., "identity": {"output_1": ID, "output_2": ID, "seed": S,
   "limit": N | null}, "placements": "secret" (start only; absent in journals made before placements were secret)}
  {"type": "judgment", "time": ..., "pid": ..., "rater": R, "item": KEY, "choice": "left"|"right"|"tie",
   "order": "12"|"21", "preference": 0|1|2, "at": ISO time}
  {"type": "undo", "time": ..., "pid": ..., "rater": R, "item": KEY}
  {"type": "claim", "time": ..., "pid": ..., "rater": R}  (a typed name taken by one browser, with no --raters)
A torn last line (a kill during a write) is cut off when the journal is opened (`Journal.open`).

Beside it, `<...>.secret` (mode 0600) holds a random key made when the journal starts: left/right placements and
rater tokens are keyed by it, so neither can be computed from what a rater knows; it is never sent. A journal
made before it existed keeps its seed-based placements (its key, made on first resume, serves the tokens only).
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from alpaca_data.errors import UserError
from alpaca_data.generate.journal import Journal, read_journal

CHOICES = ("left", "right", "tie")
SECRET_PLACEMENTS = "secret"


@dataclass(frozen=True)
class Judgment:
    rater: str
    item: str
    choice: str  # as clicked: left / right / tie
    order: str  # "12": output_1 was on the left
    preference: int  # canonical: 1 = output_1 better, 2 = output_2 better, 0 = tie
    at: str  # ISO time the judgment was made


def canonical_preference(choice: str, order: str) -> int:
    """What a left/right/tie click means for output_1 and output_2, given which one was on the left."""
    if choice == "tie":
        return 0
    left_is_1 = order == "12"
    return 1 if (choice == "left") == left_is_1 else 2


def journal_path(store_root: Path, dataset: str, revision_id_1: str, revision_id_2: str) -> Path:
    return store_root / "runs" / "eval-rate" / dataset / f"{revision_id_1[:16]}-vs-{revision_id_2[:16]}.jsonl"


def secret_path(journal: Path) -> Path:
    return journal.with_suffix(".secret")


@dataclass
class Resumed:
    """What an opened journal holds: judgments by rater, the names claimed by browsers, and the key."""

    judgments: dict[str, dict[str, Judgment]]
    claimed: list[str] = field(default_factory=list)
    key: bytes | None = None  # None when opened read-only (committing needs no key)
    secret_placements: bool = True  # False: a journal made before placements were keyed (seed-based)


def _write_key(path: Path) -> bytes:
    """A fresh random key, written owner-only (0600) and fsynced, replacing any earlier one atomically."""
    key = secrets.token_bytes(32)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, key.hex().encode() + b"\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
    return key


def _read_key(path: Path) -> bytes | None:
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot read the rating key ({error})") from None


def claimed_names(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(e["rater"] for e in entries if e.get("type") == "claim" and isinstance(e.get("rater"), str)))


def replay(entries: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Judgment]]:
    """Each rater's standing judgments by item, in the order they were made (so the last one is undone first)."""
    by_rater: dict[str, dict[str, Judgment]] = {}
    for entry in entries:
        kind, rater, item = entry.get("type"), entry.get("rater"), entry.get("item")
        if kind == "judgment":
            by_rater.setdefault(rater, {})[item] = Judgment(rater, item, entry["choice"], entry["order"],
                                                            int(entry["preference"]), entry.get("at") or "")
        elif kind == "undo":
            by_rater.get(rater, {}).pop(item, None)
    return by_rater


def started_identity(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    for entry in entries:
        if entry.get("type") in ("start", "resume") and isinstance(entry.get("identity"), dict):
            return entry["identity"]
    return None


def _secret_placements(entries: list[Mapping[str, Any]]) -> bool:
    if not entries:
        return True  # a new journal
    start = next((e for e in entries if e.get("type") in ("start", "resume")), None)
    return start is not None and start.get("placements") == SECRET_PLACEMENTS


class RatingJournal:
    """The journal of one comparison, held by one process at a time (a second server on it is refused)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = FileLock(str(path.with_name(path.name + ".lock")), timeout=0)
        self._journal: Journal | None = None

    @property
    def secret_path(self) -> Path:
        return secret_path(self.path)

    def open(self, identity: Mapping[str, Any], append: bool = True) -> Resumed:
        """Take the journal, check it belongs to the same comparison, and return what it holds (`append=False`:
        read only, for committing without serving). A new journal gets a new key; a resumed one keeps its own."""
        if not append and not self.path.exists():
            return Resumed({})  # nothing journalled: leave no folder or lock file behind
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise UserError(f"{self.path}: another `eval rate` process is using this comparison (stop it, or commit "
                            f"through its POST /api/commit)") from None
        try:
            entries = list(read_journal(self.path))
            before = started_identity(entries)
            if before is not None and dict(before) != dict(identity):
                changed = ", ".join(f"{k} {before.get(k)!r}" for k in sorted(identity) if before.get(k) != identity[k])
                raise UserError(f"{self.path}: this comparison was started with {changed}; use the same settings "
                                f"or another --dataset")
            resumed = Resumed(replay(entries), claimed_names(entries), None, _secret_placements(entries))
            if append:
                resumed.key = self._key(fresh=not entries, secret_placements=resumed.secret_placements)
                self._journal = Journal.open(self.path)
                if entries:
                    self._journal.event("resume", identity=dict(identity))
                else:
                    self._journal.event("start", identity=dict(identity), placements=SECRET_PLACEMENTS)
        except BaseException:
            self.close()
            raise
        return resumed

    def _key(self, *, fresh: bool, secret_placements: bool) -> bytes:
        if fresh:  # a new comparison: a new key, whatever an earlier (deleted) journal left beside it
            return _write_key(self.secret_path)
        key = _read_key(self.secret_path)
        if key is not None:
            return key
        if secret_placements:
            raise UserError(f"{self.secret_path}: the key of this rating journal is missing, so its left/right "
                            f"placements cannot be restored; put it back, or rate into another --dataset")
        return _write_key(self.secret_path)  # an older journal: placements stay seed-based, the key is for tokens

    def read(self) -> dict[str, dict[str, Judgment]]:
        return replay(read_journal(self.path))

    def record_judgment(self, judgment: Judgment) -> None:
        self._require().event("judgment", rater=judgment.rater, item=judgment.item, choice=judgment.choice,
                              order=judgment.order, preference=judgment.preference, at=judgment.at)

    def record_undo(self, rater: str, item: str) -> None:
        self._require().event("undo", rater=rater, item=item)

    def record_claim(self, rater: str) -> None:
        self._require().event("claim", rater=rater)

    def _require(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("the rating journal is not open")
        return self._journal

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock.is_locked:
            self._lock.release()
