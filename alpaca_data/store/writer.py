"""Writing one revision: records stream into a private folder under `tmp/`, then one rename makes it visible
and the ref moves.

The folder is `tmp/<pid>-<random>`; a writer killed at any point leaves only such a folder, which the next
writer removes once that process is gone. The id (sha256 of the canonical record stream), the statistics and
the file hashes are computed while the batches are written, so memory stays flat whatever the size.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import queue
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.durable import fsync_dir, fsync_file, fsync_write, sha256_file
from alpaca_data.schema import SCHEMA_VERSION, validate_manifest
from alpaca_data.secrets import redact, redact_value
from alpaca_data.store.encode import EncodedRows, encode_table
from alpaca_data.store.manifest import DATA_FILE, MANIFEST_FILE, MANIFEST_HASH_FILE, Manifest, manifest_bytes
from alpaca_data.store.refs import NAME_PATTERN
from alpaca_data.store.tables import RevisionStats

if TYPE_CHECKING:
    from alpaca_data.store.store import Store

ROW_GROUP_SIZE = 32 * 1024  # at most; a write of fewer rows (an import chunk, a filtered batch) is one row group
PENDING_WRITES = 2  # batches queued for the writing thread: memory for two, and the caller never waits on one
CHECK_MAIN = object()  # commit(expected_main=...) default: no concurrent-update check


@dataclass(frozen=True)
class CommitResult:
    """The revision a commit made or found, and what happened to `main`."""

    manifest: Manifest
    created: bool  # False: identical content was already stored
    moved_main: bool
    main_moved_since: str | None = None  # set when main moved after the step read it, so main was left alone

    # The revision's identity, for callers that print or chain it; everything else is on `manifest`.
    id = property(lambda self: self.manifest.id)
    short_id = property(lambda self: self.manifest.short_id)
    dataset = property(lambda self: self.manifest.dataset)


def tool_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("alpaca-kit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class RevisionWriter:
    """`write(table)` batch after batch, then `commit(...)`; `abort()` (or an exception) leaves nothing."""

    def __init__(self, store: Store, dataset: str, schema: pa.Schema):
        self.store, self.dataset, self.schema = store, dataset, schema
        self.folder = store.root / "tmp" / f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(parents=True)
        self._writer = pq.ParquetWriter(self.folder / DATA_FILE, schema, compression="zstd")
        self._digest = hashlib.sha256()
        self.stats = RevisionStats()
        self.rows = 0
        self._sidecars: dict[str, pq.ParquetWriter] = {}
        # Parquet encoding and the id's hash run on a thread of their own (both outside the GIL), in order, so the
        # caller goes on preparing the next batch: at 1M records they are ~2 s of the main thread's work.
        self._pending: queue.Queue = queue.Queue(maxsize=PENDING_WRITES)
        self._failure: BaseException | None = None
        self._stopping = False
        self._drainer = threading.Thread(target=self._drain, name="revision-writer", daemon=True)
        self._drainer.start()

    def write(self, table: pa.Table | pa.RecordBatch, encoded: EncodedRows | None = None) -> None:
        """Append rows. `encoded`: their `encode_table` result when a worker computed it already."""
        self._raise_failure()
        if table.schema != self.schema:
            table = table.cast(self.schema)
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        if encoded is None:
            encoded = encode_table(table)  # exactly what reads back from the file: what the id describes
        if len(encoded) != table.num_rows:
            raise ValueError(f"internal error: {len(encoded)} encoded rows for {table.num_rows} rows")
        self._pending.put((table, encoded.canonical))
        self.stats.add(encoded)
        self.rows += table.num_rows

    def _drain(self) -> None:
        while (item := self._pending.get()) is not None:
            if self._failure is None and not self._stopping:
                try:
                    self._writer.write_table(item[0], row_group_size=ROW_GROUP_SIZE)
                    self._digest.update(item[1])
                except BaseException as error:  # noqa: BLE001 - handed to the caller's next write or commit
                    self._failure = error

    def _finish_writes(self) -> None:
        if self._drainer.is_alive():
            self._pending.put(None)
            self._drainer.join()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def sidecar(self, name: str, schema: pa.Schema) -> pq.ParquetWriter:
        """A sidecar table written as it goes (e.g. a filter's rejections), part of the revision at commit."""
        if not NAME_PATTERN.fullmatch(name) or name in ("data", "manifest") or name in self._sidecars:
            raise ValueError(f"invalid sidecar name {name!r}")
        self._sidecars[name] = pq.ParquetWriter(self.folder / f"{name}.parquet", schema, compression="zstd")
        return self._sidecars[name]

    def _close_all(self) -> None:
        for writer in (self._writer, *self._sidecars.values()):
            writer.close()

    def abort(self) -> None:
        self._stopping = True
        self._finish_writes()
        try:
            self._close_all()
        except Exception:  # noqa: BLE001 - the folder goes anyway
            pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> RevisionWriter:
        return self

    def __exit__(self, kind, *_: object) -> None:
        if kind is not None and self.folder.exists():
            self.abort()
        else:  # committed (the thread is done), or left without a commit: nothing more gets written
            self._stopping = True
            self._finish_writes()

    def commit(self, *, message: str = "", parents: list[str] | None = None, recipe: Mapping[str, Any] | None = None,
               extra: Mapping[str, Any] | None = None, sidecars: Mapping[str, pa.Table] | None = None,
               expected_main: Any = CHECK_MAIN, force: bool = False) -> CommitResult:
        """Make the revision visible and move `main` to it.

        expected_main: the `main` id the step read (None: the dataset was empty). When `main` has moved since,
        the revision is stored but `main` is left where it is (unless `force`), and the result says so.
        """
        self._finish_writes()
        self._raise_failure()
        for name, table in (sidecars or {}).items():
            self.sidecar(name, table.schema).write_table(table)
        self._close_all()
        revision_id = self._digest.hexdigest()
        files = {}
        for path in sorted(self.folder.iterdir()):
            fsync_file(path)
            files[path.name] = sha256_file(path)
        self.store.stage("after-data")
        with self.store.lock():
            self.store.clean_tmp()
            final = self.store.revision_dir(self.dataset, revision_id)
            main = self.store.main_id(self.dataset)
            if final.exists():
                shutil.rmtree(self.folder, ignore_errors=True)
                manifest, created = self.store.load(self.dataset, revision_id), False
            else:
                if parents is None:
                    parents = [main] if main else []
                manifest = self._publish(revision_id, final, message, parents, recipe, extra, files)
                created = True
            conflict = expected_main is not CHECK_MAIN and main not in (expected_main, revision_id)
            moved = main != revision_id and (force or not conflict)
            if moved:
                self.store.stage("before-ref")
                self.store.set_ref(self.dataset, "main", revision_id)
        return CommitResult(manifest, created, moved, main if conflict and not force else None)

    def _publish(self, revision_id: str, final: Path, message: str, parents: list[str],
                 recipe: Mapping[str, Any] | None, extra: Mapping[str, Any] | None, files: dict[str, str]) -> Manifest:
        recipe = dict(recipe or {})
        recipe.setdefault("command", "unknown")
        recipe["tool_version"] = tool_version()
        data = {
            "id": revision_id,
            "dataset": self.dataset,
            "parents": list(parents),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "message": redact(message),
            "record_count": self.rows,
            "schema_version": SCHEMA_VERSION,
            "columns": self.schema.names,
            "recipe": redact_value(recipe),
            "stats": self.stats.result(),
            "files": files,
            "extra": redact_value(dict(extra or {})),
        }
        problems = validate_manifest(data)
        if problems:
            raise ValueError(f"internal error: manifest does not match its schema: {problems[0]}")
        raw = manifest_bytes(data)
        fsync_write(self.folder / MANIFEST_FILE, raw)
        fsync_write(self.folder / MANIFEST_HASH_FILE, (hashlib.sha256(raw).hexdigest() + "\n").encode())
        fsync_dir(self.folder)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.folder, final)
        fsync_dir(final.parent)
        return Manifest(final, data)
