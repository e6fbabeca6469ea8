"""Options derived from a typed config: defaults < TOML < flags, nested sections, validation, help."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
import typer

from alpaca_data.cli_options import build_config, config_command, flat_settings, nested, required, setting
from alpaca_data.cli_runner import run_app
from alpaca_data.errors import UsageError


@dataclass(kw_only=True)
class Sampling:
    temperature: float = setting(1.0, "Sampling temperature.")
    stop: tuple[str, ...] = setting(("\n20",), "Stop strings.")


@dataclass(kw_only=True)
class Job:
    dataset: str = required("Dataset to write.", "-d")
    num: int = setting(10, "How many.", "-n")
    budget: float | None = setting(None, "Spend at most this.")
    fast: bool = setting(False, "Go fast.")
    sampling: Sampling = nested(Sampling)
    internal: int = 3  # not a setting: no option

    def validate(self) -> None:
        if self.num < 1:
            raise UsageError("--num must be at least 1")


def _app(seen: list):
    app = typer.Typer(add_completion=False)

    @app.command()
    @config_command(Job)
    def run(config: Job, name: str = typer.Argument(...)) -> None:
        """Run a job."""
        seen.append((name, config))

    @app.command()
    def other() -> None:
        pass

    return app


def _invoke(args, seen, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_app(_app(seen), "job", ["run", *args])
    return exit_info.value.code, capsys.readouterr()


def test_defaults_toml_and_flags(tmp_path, capsys):
    seen: list = []
    code, _ = _invoke(["x", "-d", "mine"], seen, capsys)
    assert code == 0
    name, job = seen[-1]
    assert name == "x" and job.dataset == "mine" and job.num == 10 and job.budget is None
    assert job.sampling == Sampling() and job.internal == 3 and job.fast is False

    toml = tmp_path / "job.toml"
    toml.write_text(textwrap.dedent("""
        dataset = "from-toml"
        num = 5
        fast = true
        [sampling]
        temperature = 0.2
        stop = ["a", "b"]
    """))
    code, _ = _invoke(["y", "--config", str(toml), "-n", "7", "--no-fast"], seen, capsys)
    assert code == 0
    _, job = seen[-1]
    assert (job.dataset, job.num, job.fast) == ("from-toml", 7, False)  # flags win over the file
    assert job.sampling.temperature == 0.2 and job.sampling.stop == ("a", "b")
    flat = flat_settings(job)
    assert flat["temperature"] == 0.2 and flat["stop"] == ["a", "b"] and "internal" not in flat


def test_missing_unknown_and_invalid_settings_are_one_line(tmp_path, capsys):
    seen: list = []
    code, out = _invoke(["x"], seen, capsys)
    assert code == 2 and "missing option(s): --dataset" in out.err and "Traceback" not in out.err
    code, out = _invoke(["x", "-d", "m", "-n", "0"], seen, capsys)
    assert code == 2 and "--num must be at least 1" in out.err
    bad = tmp_path / "bad.toml"
    bad.write_text("dataset = 'm'\nnumber = 3\n")
    code, out = _invoke(["x", "--config", str(bad)], seen, capsys)
    assert code == 1 and "unknown setting(s): number" in out.err
    code, out = _invoke(["x", "--config", str(tmp_path / "none.toml")], seen, capsys)
    assert code == 1 and "no such file" in out.err
    assert not seen


def test_build_config_and_help_lists_every_setting():
    job = build_config(Job, {"dataset": "d", "stop": ["x"]})
    assert job.sampling.stop == ("x",)
    with pytest.raises(UsageError):
        build_config(Job, {"dataset": "d", "nope": 1})
    code = ("from tests.test_cli_options import _app; from alpaca_data.cli_runner import run_app; "
            "run_app(_app([]), 'job', ['run', '--help'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"COLUMNS": "200",
                         "PATH": "/usr/bin:/bin"}, cwd=__import__("pathlib").Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    for flag in ("--dataset", "--num", "--budget", "--fast", "--no-fast", "--temperature", "--stop", "--config"):
        assert flag in out.stdout
    assert "--internal" not in out.stdout
