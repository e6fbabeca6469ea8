"""Refs: `main` and tags, each a file holding the 64-hex id of a revision of its own dataset.

A ref is followed only when it holds exactly that; anything else (a path, binary garbage, an id that is not a
revision of the dataset) is damage, reported with how to repair it, never a way out of the dataset.
Temporary files of an interrupted ref write are hidden names, never listed as tags, and removed by the next
write (`durable.atomic_write`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from alpaca_data.durable import atomic_write, is_temp_name
from alpaca_data.errors import UserError

REVISION_ID = re.compile(r"\A[0-9a-f]{64}\Z")
ID_PREFIX = re.compile(r"\A[0-9a-f]{4,64}\Z")
NAME_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
MAX_REF_BYTES = 200


class DamagedRef(UserError):
    pass


@dataclass(frozen=True)
class RefState:
    """What a ref file holds: the id (when valid) or what is wrong with it."""

    name: str  # "main" or "tags/<tag>"
    target: str | None
    problem: str | None = None


def read_ref_file(path: Path, name: str, revisions_dir: Path) -> RefState:
    try:
        raw = path.read_bytes()[: MAX_REF_BYTES + 1]
    except FileNotFoundError:
        return RefState(name, None)
    except OSError as error:
        return RefState(name, None, f"cannot be read ({error.strerror or error})")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return RefState(name, None, "holds binary data, not a revision id")
    if len(raw) > MAX_REF_BYTES or not REVISION_ID.fullmatch(text):
        shown = text[:40] + ("…" if len(text) > 40 else "")
        return RefState(name, None, f"holds {shown!r}, not a 64-hex revision id")
    if not (revisions_dir / text).is_dir():
        return RefState(name, text, f"points to {text[:12]}, which is not a revision of this dataset")
    return RefState(name, text)


def ref_states(dataset_dir: Path) -> list[RefState]:
    """main and every tag of a dataset, valid or not (hidden temporary files are not refs)."""
    revisions = dataset_dir / "revisions"
    refs = dataset_dir / "refs"
    states = [read_ref_file(refs / "main", "main", revisions)] if (refs / "main").exists() else []
    tags_dir = refs / "tags"
    if tags_dir.is_dir():
        for path in sorted(tags_dir.iterdir()):
            if not is_temp_name(path.name):
                states.append(read_ref_file(path, f"tags/{path.name}", revisions))
    return states


def repair_hint(dataset: str, name: str) -> str:
    if name == "main":
        return f"run `alpaca-data fsck --repair` to reset it to the newest intact revision of {dataset}"
    tag = name.removeprefix("tags/")
    return f"move it with `alpaca-data tag {dataset}@<id> {tag} --force`, or `alpaca-data fsck --repair` removes it"


def damaged_ref(dataset: str, state: RefState) -> DamagedRef:
    return DamagedRef(f"{dataset}: ref {state.name} {state.problem}; {repair_hint(dataset, state.name)}")


def write_ref(dataset_dir: Path, name: str, revision_id: str) -> None:
    if not REVISION_ID.fullmatch(revision_id):
        raise ValueError(f"not a revision id: {revision_id!r}")
    path = dataset_dir / "refs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (revision_id + "\n").encode())


def check_tag_name(tag: str) -> None:
    if tag == "main" or not NAME_PATTERN.fullmatch(tag):
        raise UserError(f"{tag!r}: invalid tag name (letters, digits, . _ -; not 'main')", exit_code=2)
    if ID_PREFIX.fullmatch(tag):
        raise UserError(f"{tag!r}: a tag may not look like a revision id or id prefix (it would hide the revision "
                        "it names); add a letter outside a-f, e.g. v{tag}", exit_code=2)
