"""Operations over stored revisions: diff, export (streamed), fsck (with --repair)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.durable import atomic_file, sha256_file
from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS, key_of
from alpaca_data.store.encode import encode_table
from alpaca_data.store.manifest import DATA_FILE, MANIFEST_FILE, MANIFEST_HASH_FILE, Manifest, inspect_manifest
from alpaca_data.store.store import Store
from alpaca_data.store.tables import table_to_records

EXPORT_FORMATS = ("json", "jsonl", "parquet")


@dataclass
class Diff:
    """Counts of each kind of change and the first `examples` records of each (in the order of their revision)."""

    a: Manifest
    b: Manifest
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        return dict(self.counts)


def diff_keys(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(record key, digest of the core text) of each row as 64-bit numbers (run in a worker for big revisions)."""
    rows = table.select(list(CORE_FIELDS)).to_pylist()
    keys = np.fromiter((int(key_of(row), 16) for row in rows), dtype=np.uint64, count=len(rows))
    digests = np.fromiter((int.from_bytes(hashlib.blake2b(orjson.dumps([row[name] for name in CORE_FIELDS]),
                                                          digest_size=8).digest(), "little") for row in rows),
                          dtype=np.uint64, count=len(rows))
    return keys, digests


def _first_occurrences(store: Store, manifest: Manifest, pool: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys sorted, position of each key's first record, that record's digest)."""
    parts = list(pool.map(diff_keys, (pa.Table.from_batches([b]) for b in store.iter_batches(manifest))))
    keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, np.uint64)
    digests = np.concatenate([d for _, d in parts]) if parts else np.zeros(0, np.uint64)
    distinct, first = np.unique(keys, return_index=True)
    return distinct, first, digests[first]


def _rows_at(store: Store, manifest: Manifest, positions: list[int]) -> dict[int, dict[str, Any]]:
    wanted, found, offset = sorted(set(positions)), {}, 0
    for batch in store.iter_batches(manifest):
        inside = [p for p in wanted if offset <= p < offset + batch.num_rows]
        if inside:
            rows = table_to_records(batch.take(pa.array([p - offset for p in inside], type=pa.int64())))
            found.update(zip(inside, rows))
        offset += batch.num_rows
        if len(found) == len(wanted):
            break
    return found


def diff(store: Store, ref_a: str, ref_b: str, examples: int = 3) -> Diff:
    """Records keyed by normalised instruction + input (the first record of a key stands for it); 'changed' means
    same key, different core text. Streamed: a revision is held as three numbers per distinct key."""
    from alpaca_data.parallel import OrderedPool, workers_for

    a, b = store.resolve(ref_a), store.resolve(ref_b)
    with OrderedPool(workers_for(a.record_count + b.record_count)) as pool:
        keys_a, first_a, digest_a = _first_occurrences(store, a, pool)
        keys_b, first_b, digest_b = _first_occurrences(store, b, pool)
    in_a = np.isin(keys_b, keys_a, assume_unique=True)
    common, index_a, index_b = np.intersect1d(keys_a, keys_b, assume_unique=True, return_indices=True)
    differs = digest_a[index_a] != digest_b[index_b]
    added = np.sort(first_b[~in_a])
    removed = np.sort(first_a[~np.isin(keys_a, keys_b, assume_unique=True)])
    order = np.argsort(first_b[index_b[differs]])
    changed = list(zip(first_a[index_a[differs]][order][:examples].tolist(),
                       first_b[index_b[differs]][order][:examples].tolist()))
    rows_a = _rows_at(store, a, removed[:examples].tolist() + [pa_ for pa_, _ in changed])
    rows_b = _rows_at(store, b, added[:examples].tolist() + [pb for _, pb in changed])
    return Diff(a, b, added=[rows_b[p] for p in added[:examples].tolist()],
                removed=[rows_a[p] for p in removed[:examples].tolist()],
                changed=[(rows_a[pa_], rows_b[pb]) for pa_, pb in changed],
                counts={"added": len(added), "removed": len(removed), "changed": int(differs.sum()),
                        "unchanged": int(len(common) - differs.sum())})


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


def _jsonl_batches(store: Store, manifest: Manifest, core_only: bool) -> Iterator[tuple[bytes, int]]:
    """The revision as canonical JSON lines, a batch at a time (`store.encode`: the row kernels, or Python for a
    float or list column)."""
    from alpaca_data.store.encode import canonical_json, canonical_lines, has_floats

    for batch in store.iter_batches(manifest):
        if core_only:
            batch = batch.select(list(CORE_FIELDS))
        built = None if has_floats(batch.schema) else canonical_json(batch)
        if built is not None:
            yield built[0].tobytes(), batch.num_rows
            continue
        lines = canonical_lines(table_to_records(batch), has_floats(batch.schema))
        yield b"".join(line + b"\n" for line in lines), batch.num_rows


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
        elif fmt == "jsonl":
            for data, rows in _jsonl_batches(store, manifest, core_only):
                handle.write(data)
                count += rows
                tick(rows)
        else:
            def counted() -> Iterator[dict[str, Any]]:
                nonlocal count
                for record in _records(store, manifest, core_only):
                    count += 1
                    tick()
                    yield record

            write_json_array(handle, counted())
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
        digest, rows = hashlib.sha256(), 0
        try:
            for batch in pq.ParquetFile(folder / DATA_FILE).iter_batches(batch_size=16 * 1024):
                digest.update(encode_table(batch).canonical)  # the writer's own id computation, a batch at a time
                rows += batch.num_rows
        except Exception as error:  # noqa: BLE001 - a corrupt Parquet file is what fsck exists to report
            return [f"{where}: {DATA_FILE} cannot be read ({type(error).__name__})"], data
        if rows != data["record_count"]:
            problems.append(f"{where}: holds {rows} records, manifest says {data['record_count']}")
        elif digest.hexdigest() != revision_id:
            problems.append(f"{where}: records do not hash to the revision id")
    return problems, data
