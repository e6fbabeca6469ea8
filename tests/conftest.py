"""Shared fixtures: the real shared data, a fresh store per test, and the real CLI in a subprocess."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CORPORA = SHARED_DATA / "corpora"
SEEDS = SHARED_DATA / "seeds" / "alpaca_seed_tasks.jsonl"
RESPONSE_CORPORA = ("gpteacher_toolformer.json", "gpteacher_roleplay.json", "gpteacher_codegen.json")


def pytest_configure(config: pytest.Config) -> None:
    """The suite reads real data by path: without it, stop once and say where it goes (never skip quietly)."""
    missing = [path for path in (CORPORA, SEEDS) if not path.exists()]
    if missing:
        raise pytest.UsageError(f"shared test data not found: {', '.join(map(str, missing))}. The tests read the "
                                f"shared data folder beside the checkout ({SHARED_DATA}); clone the repository "
                                f"next to shared/ (../shared/data) and run `make test` again.")


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
    with open(CORPORA / name, encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def shared_corpus(name: str) -> tuple[dict, ...]:
    """A shared corpus (name with or without .json) with GPTeacher's `response` read as `output`; cached."""
    path = CORPORA / (name if name.endswith(".json") else f"{name}.json")
    return tuple({("output" if k == "response" else k): v for k, v in r.items()} for r in load_corpus(path.name))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes (to prove a failed command changed nothing)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "lock"}
