"""Kill real import processes mid-write and run concurrent imports: the store must stay consistent."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alpaca_data.store import Store
from tests.conftest import CORPORA, ROOT, SEEDS, run_cli


def _start_import(path: Path, store: Path, dataset: str, pause: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "ALPACA_STORE": str(store)}
    command = ["-m", "tests.pausing_cli", pause] if pause else ["-m", "alpaca_data"]
    return subprocess.Popen([sys.executable, *command, "-q", "import", str(path), "-d", dataset], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _assert_consistent(store_path: Path, dataset: str, allowed_ids: set[str | None]) -> None:
    if not (store_path / "STORE").exists():  # killed before the store itself was set up
        assert None in allowed_ids
        assert not list(store_path.glob("datasets/*/revisions/*"))
        return
    fsck = run_cli("fsck", store=store_path)
    assert fsck.returncode == 0, fsck.stderr
    store = Store.open(store_path)
    main = store.main_id(dataset) if dataset in store.datasets() else None
    assert main in allowed_ids
    if main is not None:
        assert len(store.read_records(f"{dataset}@main")) == store.resolve(f"{dataset}@main").record_count


@pytest.mark.parametrize("stage", ["after-data", "before-ref"])
def test_kill_at_each_stage_of_a_write(stage, tmp_path):
    store_path = tmp_path / "store"
    base = run_cli("import", SEEDS, "-d", "d", store=store_path).last_line
    process = _start_import(CORPORA / "gsm8k_train_alpaca.json", store_path, "d", pause=stage)
    assert process.stdout.readline().strip() == f"paused at {stage}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    _assert_consistent(store_path, "d", {base})
    revisions = Store.open(store_path).revision_ids("d")
    if stage == "after-data":
        assert revisions == [base]  # the half-written revision never became visible
    # The store recovers: the same import now completes and moves main.
    finished = run_cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "d", store=store_path)
    assert finished.returncode == 0
    _assert_consistent(store_path, "d", {finished.last_line})
    assert not any((store_path / "tmp").iterdir())


def test_kill_at_random_moments(tmp_path):
    """SIGKILL an import of ~7.5K records at random times; the store is never left half-written."""
    store_path = tmp_path / "store"
    rng = random.Random(7)
    source = tmp_path / "gsm8k_x15.json"  # the sample 15 times over: an import long enough to be killed mid-way
    source.write_text(json.dumps(json.loads((CORPORA / "gsm8k_train_alpaca.json").read_text()) * 15))
    target = run_cli("import", source, "-d", "probe", store=tmp_path / "probe").last_line
    assert len(target) == 64
    for _ in range(6):
        process = _start_import(source, store_path, "d")
        time.sleep(rng.uniform(0.2, 1.6))
        process.send_signal(signal.SIGKILL)
        process.wait()
        _assert_consistent(store_path, "d", {None, target})


def test_concurrent_imports_both_succeed(tmp_path):
    store_path = tmp_path / "store"
    records = json.loads((CORPORA / "gsm8k_train_alpaca.json").read_text())
    half = len(records) // 2
    (tmp_path / "a.json").write_text(json.dumps(records[:half]))
    (tmp_path / "b.json").write_text(json.dumps(records[half:]))
    run_cli("fsck", store=store_path)  # nothing there yet: a clean failure, not a half store
    processes = [_start_import(tmp_path / name, store_path, "d") for name in ("a.json", "b.json")]
    processes.append(_start_import(SEEDS, store_path, "other"))
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    ids = {out.strip().splitlines()[-1] for out, _ in outputs[:2]}
    store = Store.open(store_path)
    assert set(store.revision_ids("d")) == ids
    main = store.resolve("d@main")
    other = (ids - {main.id}).pop()
    assert main.parents == [other]  # the later writer saw the earlier one's revision
    _assert_consistent(store_path, "d", {main.id})
