"""TOML settings (`--config FILE`) have the types their flags have: a bad value is one line per key, naming the file
and the key, exit 1, nothing run, no traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from alpaca_data.cli_options import _options, load_toml
from alpaca_data.errors import UserError
from alpaca_data.eval.judge import JudgeConfig
from alpaca_data.eval.outputs import EvalGenerateConfig
from alpaca_data.generate.config import GenerateConfig
from alpaca_train.trainer import TrainConfig
from tests.conftest import ROOT, SEEDS
from tests.inprocess_cli import cli_here_fixture  # noqa: F401 (the `cli_here` fixture)

CONFIGS = [GenerateConfig, EvalGenerateConfig, JudgeConfig, TrainConfig]


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()


def test_generate_refuses_each_mistyped_key_in_one_line(cli_here, store_path, tmp_path):
    config = tmp_path / "gen.toml"
    config.write_text('max_tokens = "512"\ntemperature = "hot"\nnum = 5\n[decoding]\nstop = ["a", 3]\n')
    result = cli_here("generate", "--config", config, "--seeds", SEEDS, "--teacher", "demo", "-d", "x")
    assert result.returncode == 1
    lines = _error_lines(result.stderr)
    assert len(lines) == 3, lines
    for line, key in zip(lines, ('max_tokens = "512": expected an integer', 'temperature = "hot": expected a number',
                                 'decoding.stop = ["a", 3]: expected a list of strings')):
        assert line.startswith(f"error: --config {config}: ") and line.endswith(key), line
    assert not store_path.exists() or not list(store_path.rglob("runs/*"))


def test_train_refuses_a_mistyped_key_before_loading_anything(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('data = "x@main"\nmodel = "m"\nout = "o"\nepochs = "3"\n')
    result = subprocess.run([sys.executable, "-m", "alpaca_train", "train", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert _error_lines(result.stderr) == [f'error: --config {config}: epochs = "3": expected an integer']
    assert not (tmp_path / "o").exists()


def test_good_values_pass_and_ints_are_numbers(tmp_path):
    config = tmp_path / "ok.toml"
    config.write_text('temperature = 1\nmax_tokens = 256\nstop = ["x"]\nmax_cost = 2\ndataset = "d"\n')
    names = {o.name: o.annotation for o in _options(GenerateConfig)}
    values = load_toml(config, set(names), names)
    assert values["temperature"] == 1.0 and isinstance(values["temperature"], float) and values["max_tokens"] == 256
    assert isinstance(values["max_cost"], float) and values["stop"] == ["x"]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_setting_of_every_command_is_type_checked(cls, tmp_path):
    """No setting's type falls through unchecked: a TOML date, which no flag takes, is refused for each one."""
    options = {o.name: o.annotation for o in _options(cls)}
    config = tmp_path / "all.toml"
    config.write_text("".join(f"{name} = 1979-05-27\n" for name in options))
    with pytest.raises(UserError) as refused:
        load_toml(config, set(options), options)
    lines = str(refused.value).splitlines()
    assert len(lines) == len(options), lines
    assert all(f"{name} = 1979-05-27: expected" in line for name, line in zip(options, lines))
