"""Run SQL over store revisions with DuckDB (in-process, reading Parquet directly; no server).

Views: `records` (the selected revision), `rejections` (its rejection report, when it has one),
and table `revisions` (one row per intact revision in the store; damaged ones are reported, not listed).

The store is read-only to queries: DuckDB parses the text into statements and only queries run (SELECT and
its forms: WITH, FROM-first, DESCRIBE, SUMMARIZE, SHOW, EXPLAIN). COPY, ATTACH, CREATE, INSERT, SET, PRAGMA,
LOAD, EXPORT and the rest are refused before anything runs; results go to a file with `sql -o FILE`, which
refuses paths inside the store. The files behind the views are verified against their hashes first.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from alpaca_data.errors import UserError
from alpaca_data.resources import resource_dir
from alpaca_data.store import Manifest, Store

ANALYSES_DIR = Path(os.environ.get("ALPACA_ANALYSES") or resource_dir("analyses"))
READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


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
    manifest = store.resolve(ref) if ref else None
    connection = duckdb.connect(":memory:")
    revisions, notes = _revisions_table(store)
    connection.register("revisions_arrow", revisions)
    connection.execute("CREATE TABLE revisions AS SELECT * FROM revisions_arrow")
    connection.unregister("revisions_arrow")
    if manifest is not None:
        connection.execute(f"CREATE VIEW records AS SELECT * FROM read_parquet({_quote(manifest.data_path)})")
        rejections = manifest.sidecar_path("rejections")
        if rejections is not None:
            connection.execute(f"CREATE VIEW rejections AS SELECT * FROM read_parquet({_quote(rejections)})")
    return connection, manifest, notes


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def run_sql(store: Store, query: str, ref: str | None = None) -> QueryResult:
    check_read_only(query)
    connection, manifest, notes = connect(store, ref)
    try:
        cursor = connection.execute(query)
        columns = [column[0] for column in cursor.description] if cursor.description else []
        rows = cursor.fetchall() if cursor.description else []
    except duckdb.Error as error:
        message = str(error).strip().splitlines()[0]
        if manifest is None and ("records" in message or "rejections" in message) and "not exist" in message:
            message += " (select a revision with --rev NAME@main)"
        elif manifest is not None and "rejections" in message and "not exist" in message:
            message += f" ({manifest.dataset}@{manifest.short_id} has no rejection report)"
        raise UserError(f"SQL error: {message}") from None
    finally:
        connection.close()
    return QueryResult(columns, rows, notes)
