"""A tiny checkpoint trained by `alpaca-train` on a store revision, and `alpaca-train serve` as a real process.

    from tests.serve_fixtures import trained_checkpoint  # the session fixture
    with ServeProcess(checkpoint, "--moderation", "none") as server: server.base_url ...
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CORPORA, run_cli

WATERMARK_SECRET = "test-watermark-secret-0123456789abcdef"
_URL = re.compile(r"serving \S+ on (http://\S+?) ")


@dataclass(frozen=True)
class Trained:
    path: Path
    store: Path
    dataset_ref: str
    revision_id: str


def train_cli(*args: str, store: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alpaca_train", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "ALPACA_STORE": str(store)})


def train_tiny_checkpoint(folder: Path, *, records: int = 64) -> Trained:
    """import `records` GSM8K records -> `alpaca-train tiny-model` -> two training steps."""
    store = folder / "store"
    source = folder / "train.json"
    rows = json.loads((CORPORA / "gsm8k_train_alpaca.json").read_text(encoding="utf-8"))[:records]
    source.write_text(json.dumps(rows), encoding="utf-8")
    revision = run_cli("import", source, "-d", "gsm-small", store=store).last_line
    made = train_cli("tiny-model", folder / "tiny", store=store)
    assert made.returncode == 0, made.stderr
    out = folder / "alpaca-tiny"
    trained = train_cli("--data", "gsm-small@main", "--model", folder / "tiny", "--out", out, "--max-steps", "2",
                        "--effective-batch-size", "8", "--micro-batch-size", "4", "--max-length", "128",
                        "--cache-dir", "", store=store)
    assert trained.returncode == 0, trained.stderr
    return Trained(out, store, "gsm-small@main", revision)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Trained:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("served"))


class ServeProcess:
    """`alpaca-train serve CHECKPOINT --port 0 ...` in a subprocess; stderr is collected in `self.log`."""

    def __init__(self, checkpoint: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
        self.command = [sys.executable, "-m", "alpaca_train", "serve", str(checkpoint), "--port", "0", *map(str, args)]
        self.env = {**os.environ, "ALPACA_WATERMARK_KEY": WATERMARK_SECRET, **(env or {})}
        self.cwd = cwd
        self.lines: list[str] = []
        self.base_url = ""

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def __enter__(self) -> ServeProcess:
        self.process = subprocess.Popen(self.command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=self.env, cwd=self.cwd)
        found = threading.Event()

        def drain() -> None:
            for line in self.process.stderr:
                self.lines.append(line)
                match = _URL.search(line)
                if match and not found.is_set():
                    self.base_url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(120) or not self.base_url:
            self.stop()
            raise AssertionError(f"the server did not start:\n{self.log}")
        return self

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        time.sleep(0.1)  # let the drain thread read the last lines
        return self.process.returncode

    def __exit__(self, *_: object) -> None:
        self.stop()
