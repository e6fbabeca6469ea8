"""Run SQL over store revisions with DuckDB (in-process, reading Parquet directly; no server).

Views: `records` (the selected revision), `rejections` (its rejection report, when it has one),
and table `revisions` (one row per revision in the store).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from alpaca_data.errors import UserError
from alpaca_data.resources import resource_dir
from alpaca_data.store import Manifest, Store

ANALYSES_DIR = Path(os.environ.get("ALPACA_ANALYSES") or resource_dir("analyses"))


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

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


def _revisions_table(store: Store) -> pa.Table:
    rows = []
    for manifest in store.all_manifests():
        data = manifest.data
        rows.append({
            "id": data["id"], "dataset": data["dataset"], "parents": data["parents"],
            "created_at": data["created_at"], "message": data.get("message", ""),
            "record_count": data["record_count"], "command": data["recipe"].get("command"),
            "is_main": store.main_id(manifest.dataset) == manifest.id,
            "manifest": json.dumps(data, ensure_ascii=False),
        })
    schema = pa.schema([("id", pa.string()), ("dataset", pa.string()), ("parents", pa.list_(pa.string())),
                        ("created_at", pa.string()), ("message", pa.string()), ("record_count", pa.int64()),
                        ("command", pa.string()), ("is_main", pa.bool_()), ("manifest", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def connect(store: Store, ref: str | None = None) -> tuple[duckdb.DuckDBPyConnection, Manifest | None]:
    connection = duckdb.connect(":memory:")
    revisions = _revisions_table(store)
    connection.register("revisions_arrow", revisions)
    connection.execute("CREATE TABLE revisions AS SELECT * FROM revisions_arrow")
    connection.unregister("revisions_arrow")
    manifest = store.resolve(ref) if ref else None
    if manifest is not None:
        connection.execute(f"CREATE VIEW records AS SELECT * FROM read_parquet({_quote(manifest.data_path)})")
        rejections = manifest.sidecar_path("rejections")
        if rejections is not None:
            connection.execute(f"CREATE VIEW rejections AS SELECT * FROM read_parquet({_quote(rejections)})")
    return connection, manifest


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def run_sql(store: Store, query: str, ref: str | None = None) -> QueryResult:
    connection, manifest = connect(store, ref)
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
    return QueryResult(columns, rows)
