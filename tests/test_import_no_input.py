"""Records without `input` import as input "" and the import says how many (issue 20, item 7): many instruction
datasets omit the field for no-input tasks. `--map` works as before. The real CLI, in this process."""
from __future__ import annotations

import json

import pytest

from tests.conftest import CliResult
from tests.inprocess_cli import run_main


@pytest.fixture(name="run")
def run_fixture(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALPACA_STORE", str(tmp_path / "store"))

    def invoke(*args) -> CliResult:
        from alpaca_data.cli import main

        return run_main(main, args, capsys)

    return invoke


def test_missing_input_imports_as_empty_and_is_counted(run, tmp_path):
    records = [{"instruction": f"Name a prime number above {i}.", "output": str(i)} for i in range(12)]
    records += [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}]
    path = tmp_path / "no-input.json"
    path.write_text(json.dumps(records), encoding="utf-8")

    checked = run("validate", path, "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["files"][0]["no_input"] == 12

    done = run("import", path, "-d", "ni")
    assert done.returncode == 0, done.stderr
    assert "12 records had no input field: imported with input ''" in done.stderr.splitlines()
    rows = json.loads(run("sql", "SELECT input, count(*) AS n FROM records GROUP BY 1 ORDER BY 1", "--rev", "ni@main",
                          "-f", "json").stdout)
    assert rows == [{"input": "", "n": 12}, {"input": "2 and 3", "n": 1}]

    with_input = tmp_path / "with-input.json"
    with_input.write_text(json.dumps(records[-1:]), encoding="utf-8")
    plain = run("import", with_input, "-d", "wi")
    assert plain.returncode == 0 and "no input field" not in plain.stderr


def test_map_is_unaffected(run, tmp_path):
    path = tmp_path / "mapped.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Translate to French.", "context": "cat", "response": "chat"},
        {"prompt": "Say hello.", "response": "Hello."}]) + "\n", encoding="utf-8")
    done = run("import", path, "-d", "mapped", "--map", "prompt=instruction", "--map", "response=output",
               "--map", "context=input")
    assert done.returncode == 0, done.stderr
    assert "1 record had no input field: imported with input ''" in done.stderr.splitlines()
    rows = json.loads(run("sql", "SELECT instruction, input, output FROM records ORDER BY 1", "--rev", "mapped@main",
                          "-f", "json").stdout)
    assert rows == [{"instruction": "Say hello.", "input": "", "output": "Hello."},
                    {"instruction": "Translate to French.", "input": "cat", "output": "chat"}]
