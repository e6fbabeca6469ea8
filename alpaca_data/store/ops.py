"""Operations over stored revisions: diff, export, fsck."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow.parquet as pq

from alpaca_data.durable import atomic_write
from alpaca_data.errors import UserError
from alpaca_data.records import CORE_FIELDS, canonical_bytes, content_hash, key_of
from alpaca_data.schema import validate_manifest
from alpaca_data.store.store import DATA_FILE, MANIFEST_FILE, MANIFEST_HASH_FILE, Manifest, Store, sha256_file
from alpaca_data.store.tables import records_to_table, table_to_records

EXPORT_FORMATS = ("json", "jsonl", "parquet")


def dumps_json_array(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Alpaca-style JSON array (one record per line block, UTF-8, non-ASCII kept as is)."""
    return (json.dumps(list(records), ensure_ascii=False, indent=4) + "\n").encode("utf-8")


def dumps_jsonl(records: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(canonical_bytes(record) + b"\n" for record in records)


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


def export(store: Store, ref: str, fmt: str, out: Path, core_only: bool = False) -> tuple[Manifest, int]:
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}", exit_code=2)
    manifest = store.resolve(ref)
    records = store.read_records(manifest)
    if core_only:
        records = [{name: record[name] for name in CORE_FIELDS} for record in records]
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file path with -o")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: no such directory")
    if fmt == "json":
        payload = dumps_json_array(records)
    elif fmt == "jsonl":
        payload = dumps_jsonl(records)
    else:
        import io

        buffer = io.BytesIO()
        pq.write_table(records_to_table(records), buffer, compression="zstd")
        payload = buffer.getvalue()
    atomic_write(out, payload)
    return manifest, len(records)


@dataclass
class FsckReport:
    checked_revisions: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def fsck(store: Store, deep: bool = True) -> FsckReport:
    """Verify every revision's files against the hashes in its manifest, and every ref's target.

    deep: also recompute each revision's id from its records (catches a consistent rewrite of data + manifest).
    """
    report = FsckReport()
    with store.locked():
        leftovers = list((store.root / "tmp").iterdir()) if (store.root / "tmp").exists() else []
        if leftovers:
            report.notes.append(f"{len(leftovers)} interrupted write(s) in tmp/ (never visible; removed by the next write)")
        for dataset in store.datasets():
            for revision_id in store.revision_ids(dataset):
                report.checked_revisions += 1
                report.problems.extend(_check_revision(store, dataset, revision_id, deep))
            refs = {"main": store.main_id(dataset), **{f"tags/{t}": i for t, i in store.tags(dataset).items()}}
            for name, target in refs.items():
                if target is not None and not (store.revision_dir(dataset, target) / MANIFEST_FILE).exists():
                    report.problems.append(f"{dataset}: ref {name} points to missing revision {target[:12]}")
    return report


def _check_revision(store: Store, dataset: str, revision_id: str, deep: bool) -> list[str]:
    folder = store.revision_dir(dataset, revision_id)
    where = f"{dataset}@{revision_id[:12]}"
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{where}: manifest.json is missing"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return [f"{where}: manifest.json is not valid JSON ({error})"]
    hash_file = folder / MANIFEST_HASH_FILE
    if not hash_file.exists():
        return [f"{where}: {MANIFEST_HASH_FILE} is missing"]
    if hash_file.read_text().strip() != sha256_file(folder / MANIFEST_FILE):
        return [f"{where}: manifest.json does not match its hash (edited or corrupt)"]
    problems = [f"{where}: manifest: {p}" for p in validate_manifest(data)]
    if problems:
        return problems
    if data["id"] != revision_id or data["dataset"] != dataset:
        problems.append(f"{where}: manifest names {data['dataset']}@{data['id'][:12]}, not this revision")
    expected = data["files"]
    present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE, MANIFEST_HASH_FILE}
    for name in sorted(set(expected) - present):
        problems.append(f"{where}: {name} is missing")
    for name in sorted(present - set(expected)):
        problems.append(f"{where}: unexpected file {name}")
    for name in sorted(set(expected) & present):
        if sha256_file(folder / name) != expected[name]:
            problems.append(f"{where}: {name} does not match its hash (modified or corrupt)")
    if deep and not problems and DATA_FILE in expected:
        try:
            table = pq.read_table(folder / DATA_FILE)
        except Exception as error:  # a corrupt Parquet file is what fsck exists to report
            return [f"{where}: {DATA_FILE} cannot be read ({type(error).__name__})"]
        if table.num_rows != data["record_count"]:
            problems.append(f"{where}: holds {table.num_rows} records, manifest says {data['record_count']}")
        elif content_hash(table_to_records(table)) != revision_id:
            problems.append(f"{where}: records do not hash to the revision id")
    return problems
