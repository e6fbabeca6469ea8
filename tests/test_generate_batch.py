"""Batch mode (--batch) against the demo teacher's and demo judge's Batch API on 127.0.0.1: the same records as
realtime at the batch price, kill -9 while waiting and --resume, a kill between creating a batch and journalling
it, expired/failed batches and failed lines retried, --batch-cancel, and eval generate/judge."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alpaca_data.cli_options import build_config
from alpaca_data.eval.demo_judge import DemoJudgeServer
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.demo_server import DemoConfig, DemoServer
from alpaca_data.generate.journal import read_journal
from alpaca_data.generate.run import run_generation
from alpaca_data.store import Store
from tests.conftest import EVAL_DATA
from tests.judge_server import cli_in_process

ROOT = Path(__file__).resolve().parents[1]
SEEDS = str(ROOT / "tests" / "data" / "seeds" / "alpaca_seed_tasks.jsonl")
NUM, SEED = 30, 5
FAST = {"batch_poll": 0.05, "batch_poll_max": 0.2}


@pytest.fixture
def prices(tmp_path: Path) -> str:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"demo": {"input": 1.0, "output": 2.0}}))
    return str(path)


def _run(store: Path, server: DemoServer, prices: str, **options):
    values = {"seeds": SEEDS, "num": NUM, "spec": "openai:demo", "base_url": server.base_url, "dataset": "gen",
              "seed": SEED, "price_table": prices, **options}
    return run_generation(build_config(GenerateConfig, values), store=store)


def _stats(server) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/_demo/stats") as response:
        return json.loads(response.read())


def _journal(result) -> list[dict]:
    return list(read_journal(result.run_dir / "journal.jsonl"))


def test_batch_keeps_the_realtime_records_at_half_the_price(tmp_path, prices):
    with DemoServer() as realtime_server, DemoServer() as batch_server:
        realtime = _run(tmp_path / "rt", realtime_server, prices)
        batch = _run(tmp_path / "bt", batch_server, prices, batch=True, batch_max_requests=3, batch_first_wave=2,
                     **FAST)
        stats = _stats(batch_server)
    assert batch.status == realtime.status == "done"
    assert batch.revision_id == realtime.revision_id  # the same records: `alpaca-data diff` has nothing to show
    generation = batch.manifest.data["extra"]["generation"]
    assert generation["transport"] == "batch" and set(generation["spent"]) == {"batch"}
    spent = generation["spent"]["batch"]
    # half the realtime price per token: input 0.5, output 1.0 USD per 1M
    assert spent["cost_usd"] == pytest.approx((spent["prompt_tokens"] * 0.5 + spent["completion_tokens"]) / 1e6, abs=1e-6)
    assert generation["priced_as"]["batch_input_per_m"] == 0.5 and generation["priced_as"]["output_per_m"] == 2.0
    assert batch.stats.cost_usd == pytest.approx(spent["cost_usd"], abs=1e-6)
    realtime_spent = realtime.manifest.data["extra"]["generation"]["spent"]["realtime"]
    assert realtime_spent["cost_usd"] == pytest.approx(
        (realtime_spent["prompt_tokens"] + 2 * realtime_spent["completion_tokens"]) / 1e6, abs=1e-6)
    # every batch file holds at most --batch-max-requests lines; every request went in exactly one batch
    files = [e for e in _journal(batch) if e["type"] == "batch_file"]
    assert max(e["requests"] for e in files) == 3 and stats["batches_created"] == len(files) >= 3
    sent = [i["index"] for e in files for i in e["ids"]]
    assert len(sent) == len(set(sent)) == stats["counts"]["requests"] == batch.stats.requests_answered
    assert stats["counts"]["requests"] == stats["batch_lines_answered"]


def _cli(store: Path, base_url: str, prices: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "alpaca_data", "--quiet", "--store", str(store), "generate", "--seeds", SEEDS,
            "--num", str(NUM), "--teacher", "openai:demo", "--base-url", base_url, "--dataset", "gen", "--seed",
            str(SEED), "--price-table", prices, "--batch", "--batch-poll", "0.05", "--batch-poll-max", "0.2", *extra]


def _wait_for(path_glob, store: Path, predicate, process, timeout=30.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for journal in (store / "runs" / "gen").glob(path_glob) if (store / "runs").exists() else []:
            if predicate(list(read_journal(journal))):
                return journal
        time.sleep(0.02)
    raise AssertionError(f"not reached (exit {process.poll()})")


def test_kill_9_while_waiting_on_a_batch_then_resume(tmp_path, prices):
    with DemoServer(DemoConfig(batch_seconds=1.5)) as server:
        straight = _run(tmp_path / "straight", server, prices, batch=True, **FAST)
        created_straight = _stats(server)["batches_created"]
    store = tmp_path / "killed"
    with DemoServer(DemoConfig(batch_seconds=1.5)) as server:
        process = subprocess.Popen(_cli(store, server.base_url, prices), cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        journal = _wait_for("*/journal.jsonl", store, lambda es: any(e["type"] == "batch" for e in es), process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.returncode == -signal.SIGKILL
        assert not any(e["type"] in ("answer", "batch_end") for e in read_journal(journal))  # killed while waiting
        resumed = subprocess.run(_cli(store, server.base_url, prices, "--resume"), cwd=ROOT, capture_output=True,
                                 text=True, timeout=120)
        stats = _stats(server)
    assert resumed.returncode == 0, resumed.stderr
    assert Store.open(store).main_id("gen") == straight.revision_id
    assert stats["batches_created"] == created_straight  # nothing submitted twice
    entries = list(read_journal(journal))
    answered = [e["index"] for e in entries if e["type"] == "answer"]
    assert len(answered) == len(set(answered)) == stats["counts"]["requests"]
    assert [e["type"] for e in entries if e["type"] in ("start", "resume", "committed")] == ["start", "resume",
                                                                                              "committed"]
    # the last line keeps its shape, with what was paid (the batch price)
    cost = straight.manifest.data["extra"]["generation"]["cost_usd"]
    assert resumed.stdout.strip().splitlines()[-1].endswith(f"${cost:.4f}")


@pytest.mark.parametrize("point", ["batch_created", "batch_file"])
def test_a_kill_around_creating_a_batch_never_submits_it_twice(tmp_path, prices, point):
    """Killed after creating a batch but before journalling its id, the resumed run finds it in the provider's
    list by its metadata and adopts it; killed after the upload, before creating it, it creates it then."""
    with DemoServer() as server:
        straight = _run(tmp_path / "straight", server, prices, batch=True, **FAST)
        created_straight = _stats(server)["batches_created"]
    store = tmp_path / "killed"
    with DemoServer() as server:
        env = {**os.environ, "ALPACA_BATCH_CRASH_AT": point}
        crashed = subprocess.run(_cli(store, server.base_url, prices), cwd=ROOT, env=env, capture_output=True,
                                 timeout=60)
        assert crashed.returncode == -signal.SIGKILL
        resumed = _run(store, server, prices, batch=True, resume=True, **FAST)
        stats = _stats(server)
    assert resumed.revision_id == straight.revision_id
    assert stats["batches_created"] == created_straight
    batches = [e for e in _journal(resumed) if e["type"] == "batch"]
    assert batches[0].get("adopted", False) is (point == "batch_created")


@pytest.mark.parametrize("retry", ["batch", "realtime"])
def test_expired_and_failed_batches_and_failed_lines_are_retried(tmp_path, prices, retry):
    with DemoServer() as server:
        clean = _run(tmp_path / "clean", server, prices)
    faults = DemoConfig(batch_faults=("expired", "failed"), fault_5xx_rate=0.15, fault_429_rate=0.1)
    with DemoServer(faults) as server:
        result = _run(tmp_path / "faulty", server, prices, batch=True, batch_retry=retry, batch_max_requests=5,
                      batch_first_wave=4, **FAST)
        stats = _stats(server)
    assert result.revision_id == clean.revision_id
    errors = result.manifest.data["extra"]["generation"]["counts"]["errors"]
    # the first wave (8 requests) is two batches: 5 lines that expire after 2 are answered, then 3 that fail
    assert errors["batch_expired"] == 3 and errors["batch_failed"] == 3
    assert errors.get("server_error", 0) + errors.get("rate_limited", 0) == stats["counts"]["5xx"] + stats["counts"]["429"] > 0
    ends = [e["status"] for e in _journal(result) if e["type"] == "batch_end"]
    assert ends[:2] == ["expired", "failed"]
    spent = result.manifest.data["extra"]["generation"]["spent"]
    assert set(spent) == ({"batch", "realtime"} if retry == "realtime" else {"batch"})
    assert result.stats.cost_usd == pytest.approx(sum(row["cost_usd"] for row in spent.values()), abs=1e-6)


def test_batch_cancel_cancels_the_open_batches_and_resume_finishes(tmp_path, prices, monkeypatch, capsys):
    with DemoServer() as server:
        straight = _run(tmp_path / "straight", server, prices, batch=True, **FAST)
    store = tmp_path / "store"
    with DemoServer(DemoConfig(batch_seconds=60)) as server:
        env = {**os.environ, "ALPACA_BATCH_CRASH_AT": "batch_created"}  # its batch id never journalled
        subprocess.run(_cli(store, server.base_url, prices), cwd=ROOT, env=env, capture_output=True, timeout=60)
        cli = cli_in_process(store, monkeypatch, capsys)
        cancelled = cli(*_cli(store, server.base_url, prices, "--batch-cancel", "--resume")[6:])
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled 1 open batches" in cancelled.last_line
        assert "batch_demo000001 (cancelled)" in cancelled.last_line
        assert _stats(server)["batches_cancelled"] == 1
        server.batches.batch_seconds = 0  # the new batch of the cancelled requests comes back at once
        done = cli(*_cli(store, server.base_url, prices, "--resume")[6:])
        stats = _stats(server)
    assert done.returncode == 0, done.stderr
    assert Store.open(store).main_id("gen") == straight.revision_id
    assert stats["batches_created"] == 2 and stats["batch_lines_answered"] == stats["counts"]["requests"]


def test_a_bad_batch_setting_is_refused_in_one_line(cli_here_store):
    cli = cli_here_store
    bad = cli("generate", "--seeds", SEEDS, "--num", "3", "--teacher", "demo", "-d", "g", "--batch",
              "--batch-retry", "later")
    assert bad.returncode == 2 and "--batch-retry 'later': expected batch or realtime" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.fixture
def cli_here_store(store_path, monkeypatch, capsys):
    return cli_in_process(store_path, monkeypatch, capsys)


def test_eval_generate_and_judge_in_batch_give_the_realtime_outputs_and_verdicts(cli_here_store, store_path):
    cli = cli_here_store
    assert EVAL_DATA.exists()
    with DemoServer() as teacher, DemoJudgeServer(batch_seconds=0.2) as judge:
        for dataset, extra in (("out-rt", ()), ("out-bt", ("--batch", "--batch-poll", "0.05"))):
            made = cli("eval", "generate", "--model", "openai:alpaca-demo-teacher", "--base-url", teacher.base_url,
                       "--set", "user-oriented", "--limit", "6", "-d", dataset, *extra)
            assert made.returncode == 0, made.stderr
        for dataset, extra in (("judged-rt", ()), ("judged-bt", ("--batch", "--batch-poll", "0.05"))):
            judged = cli("eval", "judge", "out-rt@main", "out-bt@main", "--judge", "openai:alpaca-demo-judge",
                         "--base-url", judge.base_url, "-d", dataset, *extra)
            assert judged.returncode == 0, judged.stderr
        judge_stats = _stats(judge)
    store = Store.open(store_path)
    assert store.main_id("out-rt") == store.main_id("out-bt")
    assert judge_stats["batches_created"] == 1
    realtime, batch = (store.read_records(f"{d}@main") for d in ("judged-rt", "judged-bt"))
    fields = ("item_id", "order", "preference", "raw", "output_1", "output_2")
    assert [[r[f] for f in fields] for r in realtime] == [[r[f] for f in fields] for r in batch]
    assert len(batch) == 12 and all(r["preference"] == 0.0 for r in batch)  # the same outputs on both sides: ties
    recipe = store.resolve("judged-bt@main").data["recipe"]
    assert recipe["transport"] == "batch" and recipe["spent"]["batch"]["requests"] == 12


def test_budget_and_machine_demos_in_batch(tmp_path, prices):
    """--max-cost reserves a wave's worst case at the batch price before submitting it (never crossed; resume with a
    higher cap finishes the same records); machine demos with a lag go out wave by wave and keep realtime's records."""
    with DemoServer() as server:
        realtime = _run(tmp_path / "rt", server, prices, num=20, machine_demos=1, machine_lag=2, max_tokens=400)
        batch = _run(tmp_path / "bt", server, prices, num=20, machine_demos=1, machine_lag=2, max_tokens=400,
                     batch=True, **FAST)
        waves = [e for e in _journal(batch) if e["type"] == "batch_file"]
        capped = _run(tmp_path / "cap", server, prices, num=60, batch=True, max_cost=0.006, **FAST)
        assert capped.status == "budget_exhausted" and 0 < capped.stats.cost_usd <= 0.006
        finished = _run(tmp_path / "cap", server, prices, num=60, batch=True, max_cost=1.0, resume=True, **FAST)
        plain = _run(tmp_path / "plain", server, prices, num=60)
    assert batch.revision_id == realtime.revision_id and len(waves) > 1
    assert all(e["requests"] <= 3 for e in waves)  # at most lag + 1 requests ahead of what is processed
    assert finished.revision_id == plain.revision_id
