"""Shared fixtures: the test data in tests/data, a fresh store per test, and the real CLI in a subprocess."""
from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Everything the suite reads lives in the repository (tests/data/README.md: sources, licences, how the samples
# were cut); the full corpora in ../shared/data feed the benchmarks only.
TEST_DATA = ROOT / "tests" / "data"
CORPORA = TEST_DATA / "corpora"
SEEDS = TEST_DATA / "seeds" / "alpaca_seed_tasks.jsonl"
EVAL_DATA = TEST_DATA / "eval"
RESPONSE_CORPORA = ("gpteacher_toolformer.json", "gpteacher_roleplay.json", "gpteacher_codegen.json")
NEFT_GZ = EVAL_DATA / "alpaca_eval_annotations" / "alpaca-7b-neft.alpaca_eval_gpt4.annotations.json.gz"
LEADERBOARD = EVAL_DATA / "alpaca_eval_annotations" / "alpaca_eval_gpt4_leaderboard.csv"

# The built-in eval sets (`--set user-oriented`, `alpaca-eval`) read tests/data/eval, in-process and in every CLI
# subprocess (the environment is inherited).
os.environ["ALPACA_EVAL_DATA"] = str(EVAL_DATA)
# Under pytest-xdist the two workers share two cores: one thread each for torch/OpenMP/BLAS/numba, here and in
# every subprocess (oversubscribed OpenMP threads slow torch down many times over).
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_name] = "1"
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def pytest_configure(config: pytest.Config) -> None:
    """The suite reads its data from tests/data: without it (a broken checkout), stop once and say so."""
    missing = [path for path in (CORPORA, SEEDS, EVAL_DATA) if not path.exists()]
    if missing:
        raise pytest.UsageError(f"test data not found: {', '.join(map(str, missing))} (tests/data is part of the "
                                f"repository: restore it with git checkout -- tests/data)")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


# Each module runs whole on one worker (pyproject: --dist loadfile), handed out in collection order: the longest
# modules go first, so the suite does not end with one worker running a long module while the other idles.
LONGEST_MODULES = ("test_real_model.py", "test_train_distributed.py", "test_readme_walk.py", "test_serve.py",
                   "test_train_cli.py", "test_integrity.py", "test_web_security.py", "test_serve_browser.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_line(self) -> str:
        lines = self.stdout.strip().splitlines()
        return lines[-1] if lines else ""


def run_cli(*args: str, store: Path | None = None, env: dict | None = None, timeout: float = 300) -> CliResult:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if store is not None:
        full_env["ALPACA_STORE"] = str(store)
    completed = subprocess.run([sys.executable, "-m", "alpaca_data", *map(str, args)], capture_output=True,
                               text=True, env=full_env, timeout=timeout)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def cli(store_path: Path):
    def invoke(*args: str, **kwargs) -> CliResult:
        return run_cli(*args, store=store_path, **kwargs)

    return invoke


def load_corpus(name: str) -> list[dict]:
    """A corpus sample from tests/data/corpora, as stored."""
    with open(CORPORA / name, encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def corpus_records(name: str) -> tuple[dict, ...]:
    """A corpus sample (name with or without .json) with GPTeacher's `response` read as `output`; cached."""
    path = CORPORA / (name if name.endswith(".json") else f"{name}.json")
    return tuple({("output" if k == "response" else k): v for k, v in r.items()} for r in load_corpus(path.name))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes (to prove a failed command changed nothing)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "lock"}


@pytest.fixture(scope="session")
def neft_annotations(tmp_path_factory) -> Path:
    """AlpacaEval's published annotations of Alpaca-7B-NEFT, gunzipped from tests/data under their own name."""
    path = tmp_path_factory.mktemp("neft") / NEFT_GZ.name.removesuffix(".gz")
    path.write_bytes(gzip.decompress(NEFT_GZ.read_bytes()))
    return path
