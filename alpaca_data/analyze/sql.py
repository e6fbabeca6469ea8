"""Run SQL over store revisions with DuckDB (in-process, scanning the verified Parquet files in place; no server).

Views: `records` (the selected revision), `rejections` (its rejection report, when it has one),
and table `revisions` (one row per intact revision in the store; damaged ones are reported, not listed).

The store is read-only to queries, and DuckDB itself enforces it: the files behind the views are verified
against their hashes and handed to DuckDB as Arrow datasets (scanned in place by Arrow, never copied into
DuckDB's memory), then the connection is closed to the outside world: `enable_external_access=false` (no file is
read or written by path: no read_parquet('<path>'), ATTACH, COPY, EXPORT, INSTALL or LOAD), no extension is
installed or loaded automatically, and `lock_configuration=true` (no SET, RESET or PRAGMA can undo any of it). So
a statement of any shape (EXPLAIN ANALYZE COPY included) reads only the views and writes nothing. Statements
that are not queries are also refused before anything runs, with a plainer message. Results go to a file only
with `sql -o FILE`, which refuses paths inside the store.

Tried and rejected: the store's files in `allowed_paths` (then `COPY ... TO` with `USE_TMP_FILE false` and
`ATTACH ... (READ_WRITE)` can write them); a read-only fsspec file system registered with DuckDB (reads failed
now and then under DuckDB's threads: "don't know what type"). The cost of Arrow: on 1M real records (186 MB of
Parquet) a scan peaks at 400-450 MB where DuckDB's own reader of the file took 190-290 MB.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pa_dataset

from alpaca_data.errors import UserError
from alpaca_data.resources import resource_dir
from alpaca_data.store import Manifest, Store

ANALYSES_DIR = Path(os.environ.get("ALPACA_ANALYSES") or resource_dir("analyses"))
READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# Set when the connection opens: nothing is installed or loaded behind the user's back (no download, no
# ~/.duckdb/extensions). enable_external_access and lock_configuration follow once the views are registered.
CONNECT_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
READ_ONLY_HINT = ("`sql` is read-only and opens no file by path: query the `records` view (the --rev revision, "
                  "verified against its hashes), `rejections` and `revisions`; write results with -o FILE")


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)  # e.g. damaged revisions left out of `revisions`

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


def list_analyses() -> dict[str, Path]:
    return {path.stem: path for path in sorted(ANALYSES_DIR.glob("*.sql"))} if ANALYSES_DIR.exists() else {}


def analysis_sql(name: str) -> str:
    path = Path(name)
    if path.suffix == ".sql" and path.exists():
        return path.read_text(encoding="utf-8")
    analyses = list_analyses()
    if name not in analyses:
        raise UserError(f"--analysis {name!r}: no such analysis (have: {', '.join(analyses) or 'none'})", exit_code=2)
    return analyses[name].read_text(encoding="utf-8")


def check_read_only(query: str) -> None:
    """Refuse (before running anything) every statement that is not a query."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise UserError(f"SQL error: {str(error).strip().splitlines()[0]}") from None
    if not statements:
        raise UserError("SQL: no statement given", exit_code=2)
    for statement in statements:
        if statement.type not in READ_ONLY_STATEMENTS:
            kind = statement.type.name
            raise UserError(f"SQL: {kind} statements are not allowed: the store is read-only to queries "
                            "(SELECT only; write results with `alpaca-data sql ... -o FILE`)", exit_code=2)


def _revisions_table(store: Store) -> tuple[pa.Table, list[str]]:
    manifests, damaged = store.all_manifests()
    mains: dict[str, str | None] = {}
    notes = [reason for _, reason in damaged]
    for name in store.datasets():
        try:
            mains[name] = store.main_id(name)
        except UserError as error:
            mains[name] = None
            notes.append(str(error))
    rows = []
    for manifest in manifests:
        data = manifest.data
        rows.append({
            "id": data["id"], "dataset": data["dataset"], "parents": data["parents"],
            "created_at": data["created_at"], "message": data.get("message", ""),
            "record_count": data["record_count"], "command": data["recipe"].get("command"),
            "is_main": mains.get(manifest.dataset) == manifest.id,
            "manifest": json.dumps(data, ensure_ascii=False),
        })
    schema = pa.schema([("id", pa.string()), ("dataset", pa.string()), ("parents", pa.list_(pa.string())),
                        ("created_at", pa.string()), ("message", pa.string()), ("record_count", pa.int64()),
                        ("command", pa.string()), ("is_main", pa.bool_()), ("manifest", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema), notes


def connect(store: Store, ref: str | None = None) -> tuple[duckdb.DuckDBPyConnection, Manifest | None, list[str]]:
    """A DuckDB connection with the views registered and every way out of it closed (see the module doc)."""
    manifest = store.resolve(ref) if ref else None
    connection = duckdb.connect(":memory:", config=dict(CONNECT_CONFIG))
    try:
        revisions, notes = _revisions_table(store)
        connection.register("revisions_arrow", revisions)
        connection.execute("CREATE TABLE revisions AS SELECT * FROM revisions_arrow")
        connection.unregister("revisions_arrow")
        if manifest is not None:
            # Verified here (manifest.data_path checks the sha256), then scanned by Arrow, not opened by DuckDB.
            connection.register("records", _arrow_dataset(manifest.data_path))
            rejections = manifest.sidecar_path("rejections")
            if rejections is not None:
                connection.register("rejections", _arrow_dataset(rejections))
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except BaseException:
        connection.close()
        raise
    return connection, manifest, notes


def _arrow_dataset(path: Path) -> pa_dataset.Dataset:
    """The Parquet file as an Arrow dataset of one fragment per row group: Arrow reads a few fragments ahead,
    not the whole file's row groups at once (about a third less peak memory on a 1M-record scan)."""
    whole = pa_dataset.dataset(path, format="parquet")
    fragments = [part for fragment in whole.get_fragments() for part in fragment.split_by_row_group()]
    return pa_dataset.FileSystemDataset(fragments, whole.schema, whole.format, whole.filesystem)


def run_sql(store: Store, query: str, ref: str | None = None) -> QueryResult:
    check_read_only(query)
    connection, manifest, notes = connect(store, ref)
    try:
        cursor = connection.execute(query)
        columns = [column[0] for column in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
    except (duckdb.PermissionException, duckdb.InvalidInputException) as error:
        message = str(error).strip().splitlines()[0]
        if isinstance(error, duckdb.PermissionException) or "configuration has been locked" in message:
            raise UserError(f"SQL: {_without_kind(message)} ({READ_ONLY_HINT})", exit_code=2) from None
        raise UserError(f"SQL error: {message}") from None
    except duckdb.Error as error:
        message = str(error).strip().splitlines()[0]
        if isinstance(error, duckdb.CatalogException) and " extension" in message:
            raise UserError(f"SQL error: {message} (`sql` installs and loads no extension)", exit_code=2) from None
        if manifest is None and ("records" in message or "rejections" in message) and "not exist" in message:
            message += " (select a revision with --rev NAME@main)"
        elif manifest is not None and "rejections" in message and "not exist" in message:
            message += f" ({manifest.dataset}@{manifest.short_id} has no rejection report)"
        raise UserError(f"SQL error: {message}") from None
    finally:
        connection.close()
    return QueryResult(columns, rows, notes)


def _without_kind(message: str) -> str:
    """DuckDB's message without its "Permission Error: " / "Invalid Input Error: " prefix."""
    return re.sub(r"\A[A-Za-z ]+ Error: ", "", message)
