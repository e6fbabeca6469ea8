"""`sql` is locked down by DuckDB itself, whatever the statement's shape: no file is written or opened by path, no
setting changes, no extension is installed or loaded; revisions are read only through the verified views."""
from __future__ import annotations

import duckdb
import pytest

from alpaca_data.analyze.sql import connect
from alpaca_data.store import Store
from tests.conftest import SEEDS, snapshot
from tests.inprocess_cli import cli_here_fixture  # noqa: F401 (the `cli_here` fixture)


def _one_line(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _revision(store_path):
    return next((store_path / "datasets" / "s" / "revisions").iterdir())


def test_explain_analyze_copy_writes_nothing_anywhere(cli, cli_here, store_path, tmp_path):
    """The attack of issue 19: EXPLAIN ANALYZE runs the COPY inside it (the statement check lets EXPLAIN through)."""
    cli_here("import", SEEDS, "-d", "s")
    main = store_path / "datasets" / "s" / "refs" / "main"
    before = snapshot(store_path)
    outside = tmp_path / "elsewhere.csv"
    for target, run in ((main, cli), (outside, cli_here), (_revision(store_path) / "x.parquet", cli_here)):
        statement = f"EXPLAIN ANALYZE COPY (SELECT 'x' AS id) TO '{target}' (FORMAT csv, HEADER false)"
        _one_line(run("sql", statement, "--rev", "s"), "read-only", "`records`")
    assert snapshot(store_path) == before and not outside.exists()


def test_the_connection_itself_refuses_every_way_out(cli_here, store_path, tmp_path):
    """Straight to DuckDB, past the statement check: the settings alone stop writes, reads by path and SETs."""
    cli_here("import", SEEDS, "-d", "s")
    store = Store.open(store_path)
    revision = _revision(store_path)
    before = snapshot(store_path)
    connection, _, _ = connect(store, "s@main")
    try:
        assert connection.execute("SELECT count(*) FROM records").fetchone() == (175,)
        # the revision is scanned in place, not copied into DuckDB's memory
        assert [r[0] for r in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()] == ["revisions"]
        hostile = [
            f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'",
            f"COPY (SELECT 1 AS x) TO '{revision / 'data.parquet'}' (FORMAT parquet)",
            f"EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{tmp_path / 'out2.csv'}'",
            f"ATTACH '{tmp_path / 'evil.db'}' AS evil",
            f"EXPORT DATABASE '{tmp_path / 'dump'}'",
            f"SELECT * FROM read_parquet('{revision / 'data.parquet'}')",
            f"SELECT * FROM '{revision / 'data.parquet'}'",
            "SELECT * FROM read_text('/etc/hostname')",
            "SELECT * FROM glob('/*')",
            "SET enable_external_access = true",
            "RESET enable_external_access",
            "SET lock_configuration = false",
            "SET autoinstall_known_extensions = true",
            f"SET profiling_output = '{tmp_path / 'profile.txt'}'",
            "PRAGMA enable_profiling",
            "INSTALL sqlite",
            "LOAD sqlite",
        ]
        for statement in hostile:
            with pytest.raises(duckdb.Error):
                connection.execute(statement).fetchall()
        settings = dict(connection.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
            "'autoinstall_known_extensions', 'autoload_known_extensions')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                            "autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
    finally:
        connection.close()
    assert snapshot(store_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_a_revision_file_read_by_path_is_refused_and_names_the_records_view(cli_here, store_path):
    cli = cli_here
    cli("import", SEEDS, "-d", "s")
    cli("import", SEEDS, "-d", "t")
    data = _revision(store_path) / "data.parquet"
    for query in (f"SELECT count(*) FROM read_parquet('{data}')", f"SELECT * FROM '{data}' LIMIT 1"):
        _one_line(cli("sql", query), "`records` view")  # intact: still refused (no way around the hash check)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    data.write_bytes(bytes(raw))
    for rev in ((), ("--rev", "t@main")):  # a good revision selected does not open the door to another file
        result = cli("sql", f"SELECT instruction FROM read_parquet('{data}')", *rev)
        _one_line(result, "`records` view")
        assert result.stdout == ""


def test_no_extension_is_installed_or_loaded(cli_here, tmp_path):
    cli = cli_here
    cli("import", SEEDS, "-d", "s")
    home = tmp_path / "home"
    home.mkdir()
    for query in (f"SELECT * FROM sqlite_scan('{tmp_path / 'x.db'}', 't')", "INSTALL sqlite", "LOAD sqlite"):
        result = cli("sql", query, "--rev", "s", env={"HOME": str(home)})
        _one_line(result)
    assert list(home.iterdir()) == []  # no ~/.duckdb/extensions, nothing downloaded
