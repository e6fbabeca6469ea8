"""The real `alpaca-data` CLI run in the test's own process: same code path as `python -m alpaca_data`, without
a second of imports per call (for tests that make many small calls)."""
from __future__ import annotations

import pytest

from tests.conftest import CliResult


def run_main(main, args, capsys) -> CliResult:
    """One CLI call through `main` (alpaca_data.cli's or alpaca_train.cli's), its exit code and output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return CliResult(exit_info.value.code or 0, out.out, out.err)


@pytest.fixture(name="cli_here")
def cli_here_fixture(store_path, monkeypatch, capsys):
    from alpaca_data.cli import main

    monkeypatch.setenv("ALPACA_STORE", str(store_path))
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args, env: dict | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        return run_main(main, args, capsys)

    return invoke
