"""Operations over stored revisions: diff, export (streamed), fsck (with --repair)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.durable import atomic_file, sha256_file
from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS, canonical_bytes, content_hash, key_of
from alpaca_data.store.manifest import DATA_FILE, MANIFEST_FILE, MANIFEST_HASH_FILE, Manifest, inspect_manifest
from alpaca_data.store.store import Store
from alpaca_data.store.tables import table_to_records

EXPORT_FORMATS = ("json", "jsonl", "parquet")


@dataclass
class Diff:
    a: Manifest
    b: Manifest
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    unchanged: int = 0

    def summary(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "unchanged": self.unchanged}


def _by_key(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    keyed: dict[str, dict[str, Any]] = {}
    for record in records:
        keyed.setdefault(key_of(record), record)  # first occurrence stands for a duplicated key
    return keyed


def diff(store: Store, ref_a: str, ref_b: str) -> Diff:
    """Records keyed by normalised instruction + input; 'changed' means same key, different core text."""
    a, b = store.resolve(ref_a), store.resolve(ref_b)
    old, new = _by_key(store.read_records(a)), _by_key(store.read_records(b))
    result = Diff(a, b)
    for key, record in new.items():
        before = old.get(key)
        if before is None:
            result.added.append(record)
        elif any(before[name] != record[name] for name in CORE_FIELDS):
            result.changed.append((before, record))
        else:
            result.unchanged += 1
    result.removed = [record for key, record in old.items() if key not in new]
    return result


# ---------------------------------------------------------------------------------------------- export


def write_json_array(handle: BinaryIO, records: Iterable[Mapping[str, Any]]) -> None:
    """Alpaca's JSON array layout (`json.dumps(records, indent=4, ensure_ascii=False)`), written record by
    record: the bytes equal the one-shot dump, without holding the list."""
    first = True
    for record in records:
        item = json.dumps(record, ensure_ascii=False, indent=4).replace("\n", "\n    ")
        handle.write((("[\n    " if first else ",\n    ") + item).encode("utf-8"))
        first = False
    handle.write(b"[]\n" if first else b"\n]\n")


def write_jsonl(handle: BinaryIO, records: Iterable[Mapping[str, Any]]) -> None:
    for record in records:
        handle.write(canonical_bytes(record) + b"\n")


def _records(store: Store, manifest: Manifest, core_only: bool) -> Iterator[dict[str, Any]]:
    for batch in store.iter_batches(manifest):
        for record in table_to_records(batch):
            yield {name: record[name] for name in CORE_FIELDS} if core_only else record


def export(store: Store, ref: str, fmt: str, out: Path, core_only: bool = False,
           progress: bool = True) -> tuple[Manifest, int]:
    """Write a revision to a file, streamed (memory stays flat), replacing the file only when complete."""
    from alpaca_data.progress import TRACK_MIN_ITEMS, progress_bar

    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}", exit_code=2)
    manifest = store.resolve(ref)
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file path with -o")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such directory")
    if out.resolve().is_relative_to(store.root.resolve()):
        raise UserError(f"{out}: is inside the store ({store.root}); export to a path outside it")
    count = 0
    with atomic_file(out) as handle, progress_bar(f"export {manifest.dataset}@{manifest.short_id}",
                                                  manifest.record_count, enabled=progress, unit="records",
                                                  bar_min=TRACK_MIN_ITEMS * 50) as tick:
        if fmt == "parquet":
            writer = None
            for batch in store.iter_batches(manifest):
                if core_only:
                    batch = batch.select(list(CORE_FIELDS))
                if writer is None:
                    writer = pq.ParquetWriter(handle, batch.schema, compression="zstd")
                writer.write_batch(batch)
                count += batch.num_rows
                tick(batch.num_rows)
            if writer is None:  # no rows: still a file with the revision's columns
                schema = pq.read_schema(manifest.data_path)
                if core_only:
                    schema = pa.schema([schema.field(name) for name in CORE_FIELDS])
                writer = pq.ParquetWriter(handle, schema, compression="zstd")
            writer.close()
        else:
            def counted() -> Iterator[dict[str, Any]]:
                nonlocal count
                for record in _records(store, manifest, core_only):
                    count += 1
                    tick()
                    yield record

            (write_json_array if fmt == "json" else write_jsonl)(handle, counted())
    return manifest, count


# ------------------------------------------------------------------------------------------------ fsck


@dataclass
class FsckReport:
    checked_revisions: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def fsck(store: Store, deep: bool = True, repair: bool = False) -> FsckReport:
    """Verify every revision's files against the hashes in its manifest, and every ref.

    deep: also recompute each revision's id from its records (catches a consistent rewrite of data + manifest).
    repair: point a damaged `main` at the dataset's newest intact revision, remove damaged tags, and clean up
    what interrupted writers left in tmp/. Damaged revisions are reported, never deleted.
    """
    report = FsckReport()
    with store.lock("check"):
        stale = store.stale_tmp()
        if stale and repair:
            store.clean_tmp()
            report.repairs.append(f"removed {len(stale)} interrupted write(s) from tmp/")
        elif stale:
            report.notes.append(f"{len(stale)} interrupted write(s) in tmp/ (never visible; removed by the next write)")
        for dataset in store.datasets():
            intact: list[dict[str, Any]] = []
            for revision_id in store.revision_ids(dataset):
                report.checked_revisions += 1
                problems, data = _check_revision(store, dataset, revision_id, deep)
                report.problems.extend(problems)
                if not problems and data is not None:
                    intact.append(data)
            for state in store.ref_states(dataset):
                if state.problem is None:
                    continue
                if not repair:
                    report.problems.append(f"{dataset}: ref {state.name} {state.problem}")
                    continue
                report.repairs.append(_repair_ref(store, dataset, state, intact))
    return report


def _repair_ref(store: Store, dataset: str, state, intact: list[dict[str, Any]]) -> str:
    path = store.dataset_dir(dataset) / "refs" / state.name
    if state.name == "main" and intact:
        newest = max(intact, key=lambda data: data["created_at"])
        store.set_ref(dataset, "main", newest["id"])
        return f"{dataset}: ref main {state.problem}; reset to the newest intact revision {newest['id'][:12]}"
    path.unlink()
    return f"{dataset}: ref {state.name} {state.problem}; removed"


def _check_revision(store: Store, dataset: str, revision_id: str, deep: bool) -> tuple[list[str], dict | None]:
    folder = store.revision_dir(dataset, revision_id)
    where = f"{dataset}@{revision_id[:12]}"
    data, problem = inspect_manifest(folder, dataset, revision_id)
    if problem:
        return [f"{where}: {problem}"], None
    problems = []
    expected = data["files"]
    present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE, MANIFEST_HASH_FILE}
    for name in sorted(set(expected) - present):
        problems.append(f"{where}: {name} is missing")
    for name in sorted(present - set(expected)):
        problems.append(f"{where}: unexpected file {name}")
    for name in sorted(set(expected) & present):
        if sha256_file(folder / name) != expected[name]:
            problems.append(f"{where}: {name} does not match its hash (modified or corrupt)")
    if deep and not problems:
        try:
            table = pq.read_table(folder / DATA_FILE)
        except Exception as error:  # noqa: BLE001 - a corrupt Parquet file is what fsck exists to report
            return [f"{where}: {DATA_FILE} cannot be read ({type(error).__name__})"], data
        if table.num_rows != data["record_count"]:
            problems.append(f"{where}: holds {table.num_rows} records, manifest says {data['record_count']}")
        elif content_hash(table_to_records(table)) != revision_id:
            problems.append(f"{where}: records do not hash to the revision id")
    return problems, data
