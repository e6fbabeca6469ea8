"""From a store revision to a checkpoint through the real commands: the checkpoint names its revision."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import CORPORA, run_cli


def _train_cli(*args: str, store, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alpaca_train", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "ALPACA_STORE": str(store)})


def test_store_revision_to_checkpoint_with_lineage(tmp_path):
    store = tmp_path / "store"
    revision = run_cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "gsm", store=store).last_line
    assert run_cli("tag", "gsm@main", "v1", store=store).returncode == 0
    made = _train_cli("tiny-model", str(tmp_path / "tiny"), store=store)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "run"
    trained = _train_cli("--data", "gsm@v1", "--model", str(tmp_path / "tiny"), "--out", str(out),
                         "--max-steps", "2", "--effective-batch-size", "8", "--micro-batch-size", "4",
                         "--max-length", "128", "--cache-dir", "", store=store)
    assert trained.returncode == 0, trained.stderr
    lineage = json.loads((out / "alpaca_lineage.json").read_text())
    assert lineage["dataset"]["ref"] == "gsm@v1" and lineage["dataset"]["revision_id"] == revision
    manifest_file = store / "datasets" / "gsm" / "revisions" / revision / "manifest.sha256"
    assert lineage["dataset"]["manifest_hash"] == manifest_file.read_text().strip()
    assert revision in (out / "README.md").read_text()
    missing = _train_cli("--data", "gsm@v2", "--model", str(tmp_path / "tiny"), "--out", str(tmp_path / "x"),
                         store=store)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "v2" in missing.stderr
