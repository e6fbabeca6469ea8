"""One CLI style for `alpaca-data` and `alpaca-train` (issue 20, item 5): --version, a bare command prints help
and succeeds, plain help at 80 columns (whole flag names, --flag/--no-flag, plain defaults), and printed commands
never wrapped. The real CLIs, run in this process."""
from __future__ import annotations

import json
import re

import pytest

from tests.conftest import CliResult
from tests.inprocess_cli import run_main


@pytest.fixture(name="run")
def run_fixture(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ALPACA_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("COLUMNS", "80")

    def invoke(prog: str, *args: str) -> CliResult:
        if prog == "alpaca-data":
            from alpaca_data.cli import main
        else:
            from alpaca_train.cli import main
        return run_main(main, args, capsys)

    return invoke


@pytest.mark.parametrize("prog", ["alpaca-data", "alpaca-train"])
def test_version(run, prog):
    from importlib.metadata import version

    done = run(prog, "--version")
    assert done.returncode == 0 and done.stdout == f"{prog} {version('alpaca-kit')}\n" and not done.stderr


@pytest.mark.parametrize("args", [("alpaca-data",), ("alpaca-train",), ("alpaca-data", "eval"),
                                  ("alpaca-train", "flags")])
def test_no_arguments_prints_help_and_succeeds(run, args):
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ") and "Commands:" in done.stdout and not done.stderr


def _assert_plain_help(text: str) -> None:
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text and "<bool>" not in text and "[default: (" not in text and "╭" not in text


def test_help_at_80_columns_is_plain_and_whole(run):
    judge = run("alpaca-data", "eval", "judge", "--help")
    assert judge.returncode == 0
    _assert_plain_help(judge.stdout)
    assert "--request-batch-size <int>" in judge.stdout
    assert "--send-seed / --no-send-seed" in judge.stdout
    assert re.search(r"servers that refuse one\)\.\s+\[default: True\]", judge.stdout)
    assert "[default: both]" in judge.stdout

    train = run("alpaca-train", "train", "--help")
    assert train.returncode == 0
    _assert_plain_help(train.stdout)
    assert "[default: 512]" in train.stdout and "--gradient-checkpointing / --no-gradient-checkpointing" in train.stdout

    top = run("alpaca-train", "--help")
    _assert_plain_help(top.stdout)
    assert "`train` is the default command" in " ".join(top.stdout.split())
    assert "--version" in top.stdout
    data_top = run("alpaca-data", "--help")
    _assert_plain_help(data_top.stdout)
    assert "--version" in data_top.stdout


def test_printed_commands_are_not_wrapped_at_80_columns(run, tmp_path, monkeypatch):
    from alpaca_data.progress import stderr_console

    monkeypatch.setattr(stderr_console, "width", 80)
    records = [{"instruction": f"Name a colour number {i % 3}.", "input": "", "output": "Blue."} for i in range(6)]
    path = tmp_path / "dups.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    name = "a-dataset-with-a-rather-long-name-for-the-hint"
    assert run("alpaca-data", "import", path, "-d", name).returncode == 0
    done = run("alpaca-data", "dedup", name, "--method", "exact")
    assert done.returncode == 0, done.stderr
    hint = [line for line in done.stderr.splitlines() if line.startswith("rejections: alpaca-data sql")]
    assert len(hint) == 1 and re.search(rf"--rev {name}@[0-9a-f]{{12}}$", hint[0]), done.stderr


def test_each_command_loads_only_its_module_and_the_table_says_which():
    """`alpaca-data CMD` imports the one module that registers CMD: the table must name every command of every
    module, and a command line's subcommand is found past the global options."""
    import typer

    from alpaca_data.cli import command_named, make_app
    from alpaca_data.commands import COMMANDS, MODULE_NAMES, modules_for

    for name in MODULE_NAMES:
        app = typer.Typer()
        app.callback()(lambda: None)
        module, = modules_for(next(command for command, owner in COMMANDS.items() if owner == name))
        module.register(app)
        assert set(typer.main.get_command(app).commands) == {c for c, owner in COMMANDS.items() if owner == name}
    everything = set(typer.main.get_command(make_app()).commands)
    assert everything == set(COMMANDS) and set(typer.main.get_command(make_app("filter")).commands) == \
        {"filter", "dedup", "rules"}
    assert command_named(["--store", "filter", "-q", "dedup", "x"]) == "dedup"
    assert command_named(["--store=s", "--quiet", "sql", "--help"]) == "sql"
    assert command_named(["--help"]) is None and command_named([]) is None


def test_a_mistyped_command_is_told_among_all_of_them(run):
    done = run("alpaca-data", "-q", "fliter")
    assert done.returncode == 2 and "No such command 'fliter'" in done.stderr and "filter" in done.stderr
    assert run("alpaca-data", "--store", "x", "rules", "--json").returncode == 0
