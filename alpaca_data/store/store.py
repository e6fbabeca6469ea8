"""The versioned store: immutable revisions (Parquet + manifest) under a local folder, refs, locking.

Layout:
    <root>/STORE                                  marker with the store format version
    <root>/lock                                   file lock serialising writers
    <root>/tmp/                                   revisions being written (never visible as revisions)
    <root>/datasets/<name>/revisions/<id>/        data.parquet, manifest.json, sidecar tables
    <root>/datasets/<name>/refs/main              id of the dataset's latest revision
    <root>/datasets/<name>/refs/tags/<tag>        id a tag points to
    <root>/meta/<name>/<id>/                      facts learnt after a revision was made (e.g. Hub pushes)

A revision is written in tmp/, every file fsynced, then renamed into place in one step, and only
then is the ref moved. A process killed at any point leaves either no revision or a whole one.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from alpaca_data.durable import atomic_write, fsync_dir, fsync_file, fsync_write, sha256_file
from alpaca_data.errors import UserError
from alpaca_data.records import content_hash
from alpaca_data.schema import SCHEMA_VERSION, validate_manifest
from alpaca_data.store.tables import compute_stats, records_to_table, table_to_records

STORE_FORMAT = 1
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
MANIFEST_HASH_FILE = "manifest.sha256"  # lets fsck notice an edited manifest
DEFAULT_STORE = "alpaca-store"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
HEX_PATTERN = re.compile(r"^[0-9a-f]{4,64}$")
LOCK_TIMEOUT_S = 600


def tool_version() -> str:
    try:
        return metadata.version("alpaca-kit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _test_pause(stage: str) -> None:
    """Lets the crash tests kill a real writer at a chosen point (no effect unless the variable is set)."""
    if os.environ.get("ALPACA_STORE_TEST_PAUSE") == stage:
        import time

        print(f"paused at {stage}", flush=True)
        time.sleep(3600)


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
        return self.path / DATA_FILE

    def sidecar_path(self, name: str) -> Path | None:
        path = self.path / f"{name}.parquet"
        return path if f"{name}.parquet" in self.data["files"] else None


class Store:
    def __init__(self, root: Path):
        self.root = root
        self._lock = FileLock(str(root / "lock"), timeout=LOCK_TIMEOUT_S)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = True) -> "Store":
        root = Path(path or os.environ.get("ALPACA_STORE") or DEFAULT_STORE).expanduser()
        marker = root / "STORE"
        if not marker.exists():
            if root.exists() and root.is_file():
                raise UserError(f"{root}: is a file, not a store folder")
            if root.exists() and any(root.iterdir()) and not (root / "datasets").exists():
                raise UserError(f"{root}: exists and is not an alpaca-kit store (no STORE marker)")
            if not create:
                raise UserError(f"{root}: no store here (set ALPACA_STORE or run `alpaca-data import` first)")
            try:
                for sub in ("datasets", "tmp", "meta"):
                    (root / sub).mkdir(parents=True, exist_ok=True)
                atomic_write(marker, json.dumps({"format": STORE_FORMAT}).encode())
            except OSError as error:
                raise UserError(f"{root}: cannot create store: {error.strerror or error}") from None
        return cls(root)

    def locked(self) -> FileLock:
        return self._lock

    def _acquire(self):
        try:
            return self._lock.acquire()
        except Timeout:
            raise UserError(f"{self.root}: store is locked by another process for over {LOCK_TIMEOUT_S}s") from None

    # ------------------------------------------------------------------ paths

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def revision_dir(self, dataset: str, revision_id: str) -> Path:
        return self.dataset_dir(dataset) / "revisions" / revision_id

    def datasets(self) -> list[str]:
        base = self.root / "datasets"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    def revision_ids(self, dataset: str) -> list[str]:
        base = self.dataset_dir(dataset) / "revisions"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []

    # ------------------------------------------------------------------ refs

    def main_id(self, dataset: str) -> str | None:
        ref = self.dataset_dir(dataset) / "refs" / "main"
        return ref.read_text().strip() if ref.exists() else None

    def tags(self, dataset: str) -> dict[str, str]:
        base = self.dataset_dir(dataset) / "refs" / "tags"
        return {p.name: p.read_text().strip() for p in sorted(base.iterdir())} if base.exists() else {}

    def _set_ref(self, dataset: str, name: str, revision_id: str) -> None:
        ref = self.dataset_dir(dataset) / "refs" / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(ref, (revision_id + "\n").encode())

    def resolve(self, ref: str) -> Manifest:
        """`NAME`, `NAME@main`, `NAME@TAG`, `NAME@<id prefix>`, or a bare id prefix."""
        ref = ref.strip()
        dataset, sep, spec = ref.partition("@")
        if not sep:
            if dataset in self.datasets():
                spec = "main"
            elif HEX_PATTERN.match(dataset):
                return self._resolve_bare_prefix(dataset)
            else:
                raise UserError(f"{ref}: no such dataset in {self.root} (datasets: {', '.join(self.datasets()) or 'none'})")
        if dataset not in self.datasets():
            raise UserError(f"{ref}: no such dataset {dataset!r} in {self.root}")
        if spec == "main":
            revision_id = self.main_id(dataset)
            if revision_id is None:
                raise UserError(f"{ref}: dataset has no main revision")
            return self._load(dataset, revision_id)
        tags = self.tags(dataset)
        if spec in tags:
            return self._load(dataset, tags[spec])
        if HEX_PATTERN.match(spec):
            matches = [rid for rid in self.revision_ids(dataset) if rid.startswith(spec)]
            if len(matches) == 1:
                return self._load(dataset, matches[0])
            if len(matches) > 1:
                raise UserError(f"{ref}: id prefix is ambiguous ({len(matches)} revisions); give more characters")
        raise UserError(f"{ref}: no tag or revision {spec!r} in dataset {dataset!r}")

    def _resolve_bare_prefix(self, prefix: str) -> Manifest:
        matches = [(name, rid) for name in self.datasets() for rid in self.revision_ids(name) if rid.startswith(prefix)]
        if len(matches) == 1:
            return self._load(*matches[0])
        if not matches:
            raise UserError(f"{prefix}: no such dataset or revision in {self.root}")
        raise UserError(f"{prefix}: id prefix is ambiguous ({len(matches)} revisions)")

    def _load(self, dataset: str, revision_id: str) -> Manifest:
        folder = self.revision_dir(dataset, revision_id)
        try:
            data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{dataset}@{revision_id[:12]}: revision is missing from the store (run `alpaca-data fsck`)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{dataset}@{revision_id[:12]}: manifest is corrupt (run `alpaca-data fsck`)") from None
        return Manifest(folder, data)

    def tag(self, ref: str, tag: str, force: bool = False) -> Manifest:
        manifest = self.resolve(ref)
        if tag == "main" or not NAME_PATTERN.match(tag):
            raise UserError(f"{tag!r}: invalid tag name (letters, digits, . _ -; not 'main')", exit_code=2)
        with self._acquire():
            current = self.tags(manifest.dataset).get(tag)
            if current and current != manifest.id and not force:
                raise UserError(f"{manifest.dataset}@{tag}: tag already points to {current[:12]} (use --force to move it)")
            self._set_ref(manifest.dataset, f"tags/{tag}", manifest.id)
        return manifest

    # ------------------------------------------------------------------ reading

    def read_table(self, ref: str | Manifest) -> pa.Table:
        manifest = ref if isinstance(ref, Manifest) else self.resolve(ref)
        return pq.read_table(manifest.data_path)

    def read_records(self, ref: str | Manifest) -> list[dict[str, Any]]:
        return table_to_records(self.read_table(ref))

    def manifest_hash(self, ref: str | Manifest) -> str:
        manifest = ref if isinstance(ref, Manifest) else self.resolve(ref)
        return sha256_file(manifest.path / MANIFEST_FILE)

    def log(self, dataset: str) -> list[Manifest]:
        if dataset not in self.datasets():
            raise UserError(f"{dataset}: no such dataset in {self.root}")
        manifests = [self._load(dataset, rid) for rid in self.revision_ids(dataset)]
        return sorted(manifests, key=lambda m: m.data["created_at"], reverse=True)

    def all_manifests(self) -> list[Manifest]:
        return [m for name in self.datasets() for m in self.log(name)]

    # ------------------------------------------------------------------ writing

    def commit(self, dataset: str, records: list[Mapping[str, Any]], *, message: str = "",
               parents: list[str] | None = None, recipe: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None,
               sidecars: Mapping[str, list[Mapping[str, Any]]] | None = None) -> "CommitResult":
        """Write `records` as a new revision of `dataset` and move its main ref there.

        Identical content (same records, same order) already in the dataset creates nothing new.
        """
        if not NAME_PATTERN.match(dataset):
            raise UserError(f"{dataset!r}: invalid dataset name (letters, digits, . _ -; up to 100)", exit_code=2)
        table = records_to_table(list(records))
        rows = table_to_records(table)  # as they will read back from Parquet: what the id and stats describe
        revision_id = content_hash(rows)
        with self._acquire():
            self._clean_tmp()
            final = self.revision_dir(dataset, revision_id)
            if final.exists():
                moved = self.main_id(dataset) != revision_id
                if moved:
                    self._set_ref(dataset, "main", revision_id)
                return CommitResult(self._load(dataset, revision_id), created=False, moved_main=moved)
            if parents is None:
                main = self.main_id(dataset)
                parents = [main] if main else []
            manifest = self._write_revision(dataset, revision_id, table, rows, message, parents, recipe, extra,
                                           sidecars)
            _test_pause("before-ref")
            self._set_ref(dataset, "main", revision_id)
        return CommitResult(manifest, created=True, moved_main=True)

    def _write_revision(self, dataset, revision_id, table, rows, message, parents, recipe, extra, sidecars) -> Manifest:
        tmp = self.root / "tmp" / f"{revision_id[:12]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        files: dict[str, str] = {}
        pq.write_table(table, tmp / DATA_FILE, compression="zstd")
        for name, rows in (sidecars or {}).items():
            if not NAME_PATTERN.match(name) or name in ("data", "manifest"):
                raise ValueError(f"invalid sidecar name {name!r}")
            pq.write_table(records_to_table(list(rows)) if rows else pa.table({}), tmp / f"{name}.parquet",
                           compression="zstd")
        for path in sorted(tmp.iterdir()):
            fsync_file(path)
            files[path.name] = sha256_file(path)
        _test_pause("after-data")
        recipe = dict(recipe or {})
        recipe.setdefault("command", "unknown")
        recipe["tool_version"] = tool_version()
        data = {
            "id": revision_id,
            "dataset": dataset,
            "parents": list(parents),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "message": message,
            "record_count": table.num_rows,
            "schema_version": SCHEMA_VERSION,
            "columns": table.column_names,
            "recipe": recipe,
            "stats": compute_stats(rows),
            "files": files,
            "extra": dict(extra or {}),
        }
        problems = validate_manifest(data)
        if problems:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ValueError(f"internal error: manifest does not match its schema: {problems[0]}")
        manifest_bytes = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True).encode()
        fsync_write(tmp / MANIFEST_FILE, manifest_bytes)
        fsync_write(tmp / MANIFEST_HASH_FILE, (hashlib.sha256(manifest_bytes).hexdigest() + "\n").encode())
        fsync_dir(tmp)
        final = self.revision_dir(dataset, revision_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        return Manifest(final, data)

    def _clean_tmp(self) -> int:
        """Remove leftovers of writers that died (safe: every writer holds the lock while in tmp/)."""
        tmp = self.root / "tmp"
        stale = list(tmp.iterdir()) if tmp.exists() else []
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    # ------------------------------------------------------------------ metadata learnt later

    def meta_dir(self, manifest: Manifest) -> Path:
        return self.root / "meta" / manifest.dataset / manifest.id

    def write_meta(self, manifest: Manifest, name: str, payload: Mapping[str, Any]) -> None:
        folder = self.meta_dir(manifest)
        with self._acquire():
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / f"{name}.json", json.dumps(payload, indent=2, sort_keys=True).encode())

    def read_meta(self, manifest: Manifest, name: str) -> dict[str, Any] | None:
        path = self.meta_dir(manifest) / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None


@dataclass(frozen=True)
class CommitResult:
    manifest: Manifest
    created: bool
    moved_main: bool

    def __getattr__(self, name: str) -> Any:
        # a commit result reads like the manifest it made (id, data, dataset, path, ...)
        return getattr(self.manifest, name)

