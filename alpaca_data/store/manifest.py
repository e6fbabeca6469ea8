"""A revision's manifest, loaded only when it is intact, and its files read only when they match their hashes.

Every read of a revision goes through here: the manifest must match `manifest.sha256` and its schema, and a
data or sidecar file is used only after its sha256 equals the one the manifest records (checked once per
process for an unchanged file). Damage is reported as one line naming the revision and `fsck`, for that
revision alone.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.durable import sha256_file
from alpaca_data.errors import UserError
from alpaca_data.schema import validate_manifest

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_HASH_FILE = "manifest.sha256"  # lets every reader notice an edited or damaged manifest


class DamagedRevision(UserError):
    """A revision whose files do not match their hashes (or are missing, or unreadable)."""


def where(dataset: str, revision_id: str) -> str:
    return f"{dataset}@{revision_id[:12]}"


def damaged(dataset: str, revision_id: str, what: str) -> DamagedRevision:
    return DamagedRevision(f"{where(dataset, revision_id)}: {what}; the revision is damaged (run `alpaca-data fsck`)")


@dataclass(frozen=True)
class Manifest:
    path: Path  # the revision folder
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def dataset(self) -> str:
        return self.data["dataset"]

    @property
    def parents(self) -> list[str]:
        return list(self.data["parents"])

    @property
    def record_count(self) -> int:
        return int(self.data["record_count"])

    @property
    def data_path(self) -> Path:
        """The records' Parquet file, verified against its hash."""
        return self.verified(DATA_FILE)

    def has_sidecar(self, name: str) -> bool:
        return f"{name}.parquet" in self.data["files"]

    def sidecar_path(self, name: str) -> Path | None:
        """A sidecar table's file (e.g. `rejections`), verified; None when the revision has none."""
        return self.verified(f"{name}.parquet") if self.has_sidecar(name) else None

    def verified(self, name: str) -> Path:
        expected = self.data["files"].get(name)
        if expected is None:
            raise damaged(self.dataset, self.id, f"{name} is not one of its files")
        path = self.path / name
        try:
            stat = path.stat()
        except OSError:
            raise damaged(self.dataset, self.id, f"{name} is missing") from None
        key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if _VERIFIED.get(key) != expected:
            if sha256_file(path) != expected:
                raise damaged(self.dataset, self.id, f"{name} does not match its hash (corrupt or modified)")
            _VERIFIED[key] = expected
        return path


_VERIFIED: dict[tuple[str, int, int, int], str] = {}  # files already hashed in this process, by identity


def read_manifest(folder: Path, dataset: str, revision_id: str) -> Manifest:
    """The revision's manifest, or DamagedRevision saying what is wrong with it."""
    data, problem = inspect_manifest(folder, dataset, revision_id)
    if problem:
        raise damaged(dataset, revision_id, problem)
    return Manifest(folder, data)


def inspect_manifest(folder: Path, dataset: str, revision_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest data, None) when intact, else (None, what is wrong)."""
    try:
        raw = (folder / MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        return None, f"{MANIFEST_FILE} is missing"
    except OSError as error:
        return None, f"{MANIFEST_FILE} cannot be read ({error.strerror or error})"
    try:
        recorded = (folder / MANIFEST_HASH_FILE).read_bytes().decode("ascii").strip()
    except FileNotFoundError:
        return None, f"{MANIFEST_HASH_FILE} is missing"
    except (OSError, UnicodeDecodeError):
        return None, f"{MANIFEST_HASH_FILE} cannot be read"
    if hashlib.sha256(raw).hexdigest() != recorded:
        return None, f"{MANIFEST_FILE} does not match its hash (edited or corrupt)"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, f"{MANIFEST_FILE} is not valid JSON"
    if not isinstance(data, dict):
        return None, f"{MANIFEST_FILE} is not a JSON object"
    problems = validate_manifest(data)
    if problems:
        return None, f"{MANIFEST_FILE}: {problems[0]}"
    if data["id"] != revision_id or data["dataset"] != dataset:
        return None, f"{MANIFEST_FILE} names {data['dataset']}@{str(data['id'])[:12]}, not this revision"
    return data, None


def manifest_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True).encode()
