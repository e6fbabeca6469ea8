"""The versioned store: immutable revisions (Parquet + manifest) under a local folder, refs, locking.

Layout:
    <root>/STORE                                  marker with the store format version
    <root>/lock                                   file lock serialising the moment a revision becomes visible
    <root>/tmp/<pid>-<random>/                    a revision being written (never visible as a revision)
    <root>/datasets/<name>/revisions/<id>/        data.parquet, manifest.json, manifest.sha256, sidecar tables
    <root>/datasets/<name>/refs/main              id of the dataset's latest revision
    <root>/datasets/<name>/refs/tags/<tag>        id a tag points to
    <root>/meta/<name>/<id>/                      facts learnt after a revision was made (e.g. Hub pushes)

A revision is written in tmp/, every file fsynced, then renamed into place in one step, and only then is
the ref moved (`store.writer`). A process killed at any point leaves either no revision or a whole one.
Every read verifies the bytes it uses (`store.manifest`) and every ref (`store.refs`).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from alpaca_data.durable import atomic_write, pid_alive, write_json
from alpaca_data.errors import UserError
from alpaca_data.store import refs as refs_module
from alpaca_data.store.manifest import DATA_FILE, MANIFEST_FILE, DamagedRevision, Manifest, damaged, read_manifest
from alpaca_data.store.refs import ID_PREFIX, NAME_PATTERN, REVISION_ID, RefState
from alpaca_data.store.tables import records_to_table, table_to_records
from alpaca_data.store.writer import CHECK_MAIN, CommitResult, RevisionWriter

STORE_FORMAT = 1
DEFAULT_STORE = "alpaca-store"
LOCK_TIMEOUT_S = 600
LOCK_TIMEOUT_ENV = "ALPACA_LOCK_TIMEOUT"
READ_BATCH_ROWS = 16 * 1024

__all__ = ["CHECK_MAIN", "CommitResult", "Manifest", "Store"]


def _no_hook(stage: str) -> None:
    return None


class Store:
    # Called at the named points of a write ("before-commit", "after-data", "before-ref"); tests replace it
    # to stop a real writer there (kill it, or race it against another writer).
    stage_hook: Callable[[str], None] = staticmethod(_no_hook)

    def __init__(self, root: Path):
        self.root = root
        self.lock_timeout = _lock_timeout()
        self._lock = FileLock(str(root / "lock"), timeout=self.lock_timeout)

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, create: bool = True) -> Store:
        root = Path(path or os.environ.get("ALPACA_STORE") or DEFAULT_STORE).expanduser()
        marker = root / "STORE"
        if not marker.exists():
            if root.exists() and not root.is_dir():
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

    def stage(self, name: str) -> None:
        type(self).stage_hook(name)

    def lock(self, what: str = "write to") -> FileLock:
        """The store's lock, or one line when another process holds it for too long."""
        try:
            self._lock.acquire()
        except Timeout:
            raise UserError(f"{self.root}: cannot {what} the store: another process has held its lock for over "
                            f"{self.lock_timeout:g}s (is a command still running? wait longer with "
                            f"${LOCK_TIMEOUT_ENV}=SECONDS)") from None
        return _Held(self._lock)

    @staticmethod
    def check_dataset_name(name: str) -> None:
        if not NAME_PATTERN.fullmatch(name or ""):
            raise UserError(f"{name!r}: invalid dataset name (letters, digits, . _ -; up to 100; no paths)",
                            exit_code=2)

    # ------------------------------------------------------------------ paths

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def revision_dir(self, dataset: str, revision_id: str) -> Path:
        return self.dataset_dir(dataset) / "revisions" / revision_id

    def datasets(self) -> list[str]:
        base = self.root / "datasets"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name)) \
            if base.exists() else []

    def revision_ids(self, dataset: str) -> list[str]:
        base = self.dataset_dir(dataset) / "revisions"
        return sorted(p.name for p in base.iterdir() if REVISION_ID.fullmatch(p.name)) if base.exists() else []

    # ------------------------------------------------------------------ refs

    def ref_states(self, dataset: str) -> list[RefState]:
        return refs_module.ref_states(self.dataset_dir(dataset))

    def main_id(self, dataset: str) -> str | None:
        """The id `main` points to (None for a dataset without one); a damaged ref is refused with a hint."""
        state = refs_module.read_ref_file(self.dataset_dir(dataset) / "refs" / "main", "main",
                                          self.dataset_dir(dataset) / "revisions")
        if state.problem:
            raise refs_module.damaged_ref(dataset, state)
        return state.target

    def tags(self, dataset: str) -> dict[str, str]:
        """Intact tags (damaged ones are left to `fsck`, and refused when named)."""
        return {s.name.removeprefix("tags/"): s.target for s in self.ref_states(dataset)
                if s.name.startswith("tags/") and not s.problem}

    def set_ref(self, dataset: str, name: str, revision_id: str) -> None:
        refs_module.write_ref(self.dataset_dir(dataset), name, revision_id)

    def resolve(self, ref: str) -> Manifest:
        """`NAME`, `NAME@main`, `NAME@TAG`, `NAME@<id prefix>`, or a bare id prefix."""
        ref = ref.strip()
        dataset, sep, spec = ref.partition("@")
        if not sep:
            if dataset in self.datasets():
                spec = "main"
            elif ID_PREFIX.fullmatch(dataset):
                return self._resolve_bare_prefix(dataset)
            else:
                raise UserError(f"{ref}: no such dataset in {self.root} (datasets: {', '.join(self.datasets()) or 'none'})")
        if not NAME_PATTERN.fullmatch(dataset) or dataset not in self.datasets():
            raise UserError(f"{ref}: no such dataset {dataset!r} in {self.root}")
        if spec == "main":
            revision_id = self.main_id(dataset)
            if revision_id is None:
                raise UserError(f"{ref}: dataset has no main revision")
            return self.load(dataset, revision_id)
        tag = next((s for s in self.ref_states(dataset) if s.name == f"tags/{spec}"), None)
        if tag is not None:
            if tag.problem:
                raise refs_module.damaged_ref(dataset, tag)
            return self.load(dataset, tag.target)
        if ID_PREFIX.fullmatch(spec):
            matches = [rid for rid in self.revision_ids(dataset) if rid.startswith(spec)]
            if len(matches) == 1:
                return self.load(dataset, matches[0])
            if len(matches) > 1:
                raise UserError(f"{ref}: id prefix is ambiguous ({len(matches)} revisions); give more characters")
        raise UserError(f"{ref}: no tag or revision {spec!r} in dataset {dataset!r}")

    def _resolve_bare_prefix(self, prefix: str) -> Manifest:
        matches = [(name, rid) for name in self.datasets() for rid in self.revision_ids(name) if rid.startswith(prefix)]
        if len(matches) == 1:
            return self.load(*matches[0])
        if not matches:
            raise UserError(f"{prefix}: no such dataset or revision in {self.root}")
        raise UserError(f"{prefix}: id prefix is ambiguous ({len(matches)} revisions)")

    def load(self, dataset: str, revision_id: str) -> Manifest:
        folder = self.revision_dir(dataset, revision_id)
        if not folder.is_dir():
            raise damaged(dataset, revision_id, "the revision is missing from the store")
        return read_manifest(folder, dataset, revision_id)

    def tag(self, ref: str, tag: str, force: bool = False) -> Manifest:
        refs_module.check_tag_name(tag)
        manifest = self.resolve(ref)
        with self.lock():
            state = next((s for s in self.ref_states(manifest.dataset) if s.name == f"tags/{tag}"), None)
            if state is not None and not force and state.target != manifest.id:
                where = f"{manifest.dataset}@{tag}"
                held = f"points to {state.target[:12]}" if not state.problem else state.problem
                raise UserError(f"{where}: tag already exists and {held} (use --force to move it)")
            self.set_ref(manifest.dataset, f"tags/{tag}", manifest.id)
        return manifest

    # ------------------------------------------------------------------ reading (verified)

    def _manifest(self, ref: str | Manifest) -> Manifest:
        return ref if isinstance(ref, Manifest) else self.resolve(ref)

    def read_table(self, ref: str | Manifest) -> pa.Table:
        manifest = self._manifest(ref)
        return _read_verified(manifest, DATA_FILE, pq.read_table)

    def read_records(self, ref: str | Manifest) -> list[dict[str, Any]]:
        return table_to_records(self.read_table(ref))

    def data_schema(self, ref: str | Manifest) -> pa.Schema:
        """The Arrow schema of a revision's records."""
        manifest = self._manifest(ref)
        return _read_verified(manifest, DATA_FILE, pq.ParquetFile).schema_arrow

    def iter_batches(self, ref: str | Manifest, rows: int | None = None) -> Iterator[pa.RecordBatch]:
        """The records in order, a batch at a time (memory stays flat for any size)."""
        rows = rows or READ_BATCH_ROWS
        manifest = self._manifest(ref)
        parquet = _read_verified(manifest, DATA_FILE, pq.ParquetFile)
        try:
            yield from parquet.iter_batches(batch_size=rows)
        except (pa.ArrowException, OSError):
            raise damaged(manifest.dataset, manifest.id, "data.parquet cannot be read") from None

    def manifest_hash(self, ref: str | Manifest) -> str:
        from alpaca_data.durable import sha256_file

        return sha256_file(self._manifest(ref).path / MANIFEST_FILE)

    def scan(self, dataset: str) -> tuple[list[Manifest], list[tuple[str, str]]]:
        """Intact revisions of a dataset (newest first) and the damaged ones as (id, what is wrong)."""
        if dataset not in self.datasets():
            raise UserError(f"{dataset}: no such dataset in {self.root}")
        intact, broken = [], []
        for revision_id in self.revision_ids(dataset):
            try:
                intact.append(self.load(dataset, revision_id))
            except DamagedRevision as error:
                broken.append((revision_id, str(error)))
        return sorted(intact, key=lambda m: m.data["created_at"], reverse=True), broken

    def log(self, dataset: str) -> list[Manifest]:
        return self.scan(dataset)[0]

    def all_manifests(self) -> tuple[list[Manifest], list[tuple[str, str]]]:
        """Every intact revision in the store, and the damaged ones (each reported alone)."""
        intact, broken = [], []
        for name in self.datasets():
            ok, bad = self.scan(name)
            intact.extend(ok)
            broken.extend(bad)
        return intact, broken

    # ------------------------------------------------------------------ writing

    def begin(self, dataset: str, schema: pa.Schema) -> RevisionWriter:
        """A writer for a revision streamed in batches (see `store.writer`)."""
        self.check_dataset_name(dataset)
        return RevisionWriter(self, dataset, schema)

    def commit(self, dataset: str, records: list[Mapping[str, Any]], *, message: str = "",
               parents: list[str] | None = None, recipe: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None, sidecars: Mapping[str, pa.Table] | None = None,
               expected_main: Any = CHECK_MAIN, force: bool = False) -> CommitResult:
        """Write `records` as a new revision of `dataset` and move its main ref there.

        Identical content (same records, same order) already in the dataset creates nothing new.
        """
        self.check_dataset_name(dataset)
        table = records_to_table(list(records))
        self.stage("before-commit")
        with self.begin(dataset, table.schema) as writer:
            writer.write(table)
            return writer.commit(message=message, parents=parents, recipe=recipe, extra=extra, sidecars=sidecars,
                                 expected_main=expected_main, force=force)

    def stale_tmp(self) -> list[Path]:
        """Folders in tmp/ of writers that died (a live writer's folder starts with its pid)."""
        tmp = self.root / "tmp"
        return [path for path in (tmp.iterdir() if tmp.exists() else []) if not _writer_alive(path.name)]

    def clean_tmp(self) -> int:
        stale = self.stale_tmp()
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    # ------------------------------------------------------------------ metadata learnt later

    def meta_dir(self, manifest: Manifest) -> Path:
        return self.root / "meta" / manifest.dataset / manifest.id

    def write_meta(self, manifest: Manifest, name: str, payload: Mapping[str, Any]) -> None:
        folder = self.meta_dir(manifest)
        with self.lock():
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / f"{name}.json", dict(payload))

    def read_meta(self, manifest: Manifest, name: str) -> dict[str, Any] | None:
        path = self.meta_dir(manifest) / f"{name}.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise UserError(f"{path}: is damaged (not JSON); remove it to forget what it recorded") from None


class _Held:
    """Context manager releasing a lock acquired by `Store.lock`."""

    def __init__(self, lock: FileLock):
        self._lock = lock

    def __enter__(self) -> FileLock:
        return self._lock

    def __exit__(self, *_: object) -> None:
        self._lock.release()


def _lock_timeout() -> float:
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    try:
        return float(raw) if raw else LOCK_TIMEOUT_S
    except ValueError:
        raise UserError(f"${LOCK_TIMEOUT_ENV}={raw!r}: expected a number of seconds", exit_code=2) from None


def _writer_alive(folder_name: str) -> bool:
    pid = folder_name.split("-", 1)[0]
    return pid.isdigit() and pid_alive(int(pid))


def _read_verified(manifest: Manifest, name: str, read: Callable[[Path], Any]) -> Any:
    path = manifest.verified(name)  # the bytes match the manifest's hash before anything parses them
    try:
        return read(path)
    except (pa.ArrowException, OSError):
        raise damaged(manifest.dataset, manifest.id, f"{name} cannot be read") from None
