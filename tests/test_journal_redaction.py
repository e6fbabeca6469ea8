"""The journal keeps model text as received (issue 19, item 16): text shaped like a credential ("basic cooking
skills", "bearer bonds", "sk-learn", "hf_hub") survives kill -9 + --resume unchanged, at start-up, mid-run and
mid-commit; known secret values are masked everywhere, credential shapes only in error bodies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from alpaca_data.cli_options import build_config
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.demo_server import DemoConfig, DemoServer
from alpaca_data.generate.run import run_generation
from alpaca_data.journal import Journal, read_journal
from alpaca_data.store import Store
from tests.conftest import ROOT, SEEDS

LOOKALIKES = ("basic cooking skills", "bearer bonds", "Bearer securities", "sk-learn", "sk-learn-contrib",
              "hf_hub", "hf_hub_download")
SUFFIX = ("\nNotes: teach basic cooking skills first. Bearer securities (bearer bonds) pay whoever holds them. "
          "Use sk-learn-contrib (an sk-learn add-on) or huggingface_hub.hf_hub_download, which hf_hub wraps.")
NUM, SEED = 40, 11


def test_model_text_is_journalled_as_received_and_secrets_are_masked(tmp_path, monkeypatch):
    secret = "k3y-journal-test-000111"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    journal = Journal.open(tmp_path / "journal.jsonl")
    text = f"Teach basic cooking skills; bearer bonds; sk-learn-contrib; hf_hub_download; Bearer abcdefgh1234.{SUFFIX}"
    journal.append({"type": "answer", "index": 0, "text": text + f" (echoed key {secret})"})
    journal.append({"type": "failed", "index": 1, "error": "server_error", "errors": ["server_error"],
                    "message": f"503: Authorization: Bearer sk-abcdef123456 and {secret}"})
    journal.close()
    answer, failed = read_journal(tmp_path / "journal.jsonl")
    assert answer["text"] == text + " (echoed key ***)"  # the known key masked, every lookalike kept
    assert "sk-abcdef123456" not in failed["message"] and secret not in failed["message"]
    assert failed["message"].startswith("503: Authorization: ***")


class Gate:
    """Holds the demo teacher's answers: `allow(n)` lets the next n through (None: all); requests held from an
    earlier `allow` go through uncounted once a new one starts, so a killed client's leftovers cost nothing."""

    def __init__(self, server: DemoServer):
        self._cond = threading.Condition()
        self._epoch, self._allowed, self._served, self._held = 0, None, 0, 0
        inner = server.brain.answer

        def answer(*args, **kwargs):
            with self._cond:
                epoch = self._epoch
                while epoch == self._epoch and self._allowed is not None and self._served >= self._allowed:
                    self._held += 1
                    self._cond.wait()
                    if epoch == self._epoch:
                        self._held -= 1
                if epoch == self._epoch:
                    self._served += 1
            return inner(*args, **kwargs)

        server.brain.answer = answer

    @property
    def waiting(self) -> int:
        """Requests of the current `allow` held at the gate."""
        with self._cond:
            return self._held

    def allow(self, count: int | None) -> None:
        with self._cond:
            self._epoch, self._allowed, self._served, self._held = self._epoch + 1, count, 0, 0
            self._cond.notify_all()


def _cli(store: Path, base_url: str, *extra: str, pause: str | None = None) -> list[str]:
    command = ["-m", "tests.pausing_cli", pause] if pause else ["-m", "alpaca_data"]
    return [sys.executable, *command, "--quiet", "--store", str(store), "generate", "--seeds", str(SEEDS),
            "--num", str(NUM), "--teacher", "demo", "--dataset", "gen", "--seed", str(SEED), "--concurrency", "2",
            "--base-url", base_url, *extra]


def _wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _answers(store: Path) -> list[dict]:
    found = list((store / "runs" / "gen").glob("*/journal.jsonl")) if (store / "runs").exists() else []
    return [e for e in read_journal(found[0]) if e["type"] == "answer"] if found else []


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def test_lookalikes_survive_kill_9_at_start_up_mid_run_and_mid_commit(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    store = tmp_path / "killed"
    with DemoServer(DemoConfig(output_suffix=SUFFIX)) as server:
        straight = run_generation(build_config(GenerateConfig, dict(
            seeds=str(SEEDS), num=NUM, spec="demo", dataset="gen", seed=SEED, concurrency=2,
            base_url=server.base_url)), store=tmp_path / "straight")
        gate = Gate(server)

        def start(*extra: str, pause: str | None = None) -> subprocess.Popen:
            return subprocess.Popen(_cli(store, server.base_url, *extra, pause=pause), cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # 1. start-up: the run has journalled its start and sent requests; nothing is answered yet
        gate.allow(0)
        process = start()
        _wait_for(lambda: gate.waiting >= 1, "a request reached the teacher", process)
        _kill(process)
        assert _answers(store) == []
        # 2. mid-run: one answer journalled, the others held
        gate.allow(1)
        process = start("--resume")
        _wait_for(lambda: len(_answers(store)) >= 1 and gate.waiting >= 1, "one answer journalled", process)
        _kill(process)
        assert len(_answers(store)) == 1
        # 3. mid-commit: every answer in, the revision's data written, its ref not moved yet
        gate.allow(None)
        process = start("--resume", pause="before-ref")
        watchdog = threading.Timer(120, process.kill)  # a run that never reaches the pause cannot hang the suite
        watchdog.start()
        paused = process.stdout.readline().strip()
        watchdog.cancel()
        assert paused == "paused at before-ref", process.communicate()[1][-2000:]
        _kill(process)
        assert Store.open(store).main_id("gen") is None  # the data is written, main does not point at it
        # 4. the last resume replays what the journal holds and commits
        resumed = subprocess.run(_cli(store, server.base_url, "--resume"), cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert Store.open(store).main_id("gen") == straight.revision_id
    answers = _answers(store)
    assert answers and all(SUFFIX in answer["text"] for answer in answers)
    records = Store.open(store).read_records("gen@main")
    assert len(records) == NUM and all(record["output"].endswith(SUFFIX) for record in records)
    for phrase in LOOKALIKES:
        assert phrase in records[0]["output"]
