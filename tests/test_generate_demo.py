"""End-to-end generation against the demo teacher: a real HTTP server on 127.0.0.1, the openai SDK,
injected faults, both endpoints, budget cap + resume, determinism under concurrency, no leaked secrets."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from alpaca_data.cli_options import build_config
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.demo_server import DemoConfig, DemoServer
from alpaca_data.generate.journal import read_journal
from alpaca_data.generate.ratelimit import TokenBucket
from alpaca_data.generate.run import run_generation
from alpaca_data.store import Store

SEEDS = str(Path(__file__).resolve().parent / "data" / "seeds" / "alpaca_seed_tasks.jsonl")
PROVENANCE = {"request_id", "prompt_seeds", "rouge_max", "rouge_most_similar", "generator"}


def _cfg(tmp_path: Path, **overrides) -> GenerateConfig:
    demo_options = overrides.pop("demo_options", None)
    cfg = build_config(GenerateConfig, {"seeds": SEEDS, "num": 30, "spec": "demo", "dataset": "gen", **overrides})
    cfg.demo_options = demo_options or {}
    return cfg


def _generate(tmp_path: Path, **overrides):
    return run_generation(_cfg(tmp_path, **overrides), store=tmp_path / "store")


def _stats(server: DemoServer) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/_demo/stats") as response:
        return json.loads(response.read())


def test_injected_faults_are_survived_and_counted(tmp_path):
    # An injected timeout holds its answer well past the client's timeout; an ordinary answer (milliseconds) comes
    # well within it, even on a loaded machine: the counts below are exact whatever the timing.
    config = DemoConfig(seed=3, fault_429_rate=0.2, fault_5xx_rate=0.15, fault_timeout_rate=0.03, malformed_rate=0.15,
                        truncate_rate=0.25, retry_after_s=0.05, timeout_sleep_s=30.0)
    with DemoServer(config) as server:
        result = _generate(tmp_path, num=100, base_url=server.base_url, concurrency=1, timeout=2.0,
                           max_retries=10, backoff_base=0.01)
        served = _stats(server)["counts"]
    assert result.status == "done" and result.kept == 100
    generation = result.manifest.data["extra"]["generation"]
    counts = generation["counts"]
    errors = counts["errors"]
    # one request in flight at a time: every fault the server injected reached the client
    assert errors.get("rate_limited", 0) == served["429"] > 0
    assert errors.get("server_error", 0) == served["5xx"] > 0
    assert errors.get("malformed", 0) == served["malformed"] > 0
    assert errors.get("timeout", 0) == served["timeout"] > 0
    assert counts["finish_length"] == served["truncated"] > 0
    assert counts["parse_failures"].get("truncated", 0) <= served["truncated"]
    assert counts["requests_failed"] == 0
    assert served["ok"] == counts["requests_answered"]
    assert result.manifest.data["extra"]["teacher"] == "demo"
    assert generation["endpoint_host"] == f"127.0.0.1:{server.port}"
    journal = list(read_journal(result.run_dir / "journal.jsonl"))
    attempts = sum(e["attempts"] for e in journal if e["type"] == "answer")
    assert attempts == served["requests"]


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_both_endpoints_commit_a_revision_with_provenance(tmp_path, api):
    result = _generate(tmp_path, api=api, num=25)
    assert result.status == "done"
    store = Store.open(tmp_path / "store")
    records = store.read_records(result.revision_id)
    assert len(records) == 25
    assert PROVENANCE <= set(records[0])
    assert all(r["generator"] == "demo" and r["instruction"] and r["output"] for r in records)
    assert all(0 <= r["rouge_max"] <= 0.7 for r in records)
    assert len({r["request_id"] for r in records}) == 25
    assert any(r["input"] for r in records) and any(not r["input"] for r in records)
    assert not any("<noinput>" in r["input"] for r in records)
    data = result.manifest.data
    generation = data["extra"]["generation"]
    assert generation["api"] == api and generation["model"] == "alpaca-demo-teacher"
    assert generation["decoding"] == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072,
                                      "stop": ["\n20", "20.", "20."], "frequency_penalty": 0.0,
                                      "presence_penalty": 0.0}
    assert generation["counts"]["kept"] == 25 and generation["tokens"]["completion"] > 0
    assert generation["cost_usd"] > 0 and len(generation["prompt_template_sha256"]) == 64
    assert data["recipe"]["command"] == "generate" and data["recipe"]["sources"][0]["sha256"] == generation["seed_file_sha256"]
    # every dropped task is in the revision's rejections table, with its reason
    import pyarrow.parquet as pq

    rejections = pq.read_table(result.manifest.sidecar_path("rejections")).to_pylist()
    assert dict(Counter(row["reason"] for row in rejections)) == generation["counts"]["dropped"]


def test_same_seed_same_revision_under_any_concurrency(tmp_path):
    faults = {"seed": 5, "fault_429_rate": 0.1, "fault_5xx_rate": 0.1, "retry_after_s": 0.01, "latency_ms": 5}
    one = _generate(tmp_path, dataset="one", num=50, concurrency=1, demo_options=faults, max_retries=10)
    many = _generate(tmp_path, dataset="many", num=50, concurrency=8, demo_options=faults, max_retries=10)
    other = _generate(tmp_path, dataset="other", num=50, concurrency=8, seed=1)
    assert one.revision_id == many.revision_id
    assert other.revision_id != one.revision_id


def test_budget_cap_stops_cleanly_and_resumes_to_the_same_revision(tmp_path):
    capped = _generate(tmp_path, num=200, concurrency=2, max_cost=0.01)
    assert capped.status == "budget_exhausted" and capped.revision_id is None
    assert 0 < capped.stats.cost_usd <= 0.01  # each request's worst case is reserved before it is sent
    assert "gen" not in Store.open(tmp_path / "store").datasets()
    resumed = _generate(tmp_path, num=200, concurrency=2, max_cost=1.0, resume=True)
    assert resumed.status == "done" and resumed.run_dir == capped.run_dir
    assert resumed.stats.replayed > 0
    straight = _generate(tmp_path, num=200, dataset="straight", concurrency=2)
    assert resumed.revision_id == straight.revision_id
    answered = [e["index"] for e in read_journal(resumed.run_dir / "journal.jsonl") if e["type"] == "answer"]
    assert len(answered) == len(set(answered))


def test_a_capped_run_at_high_prices_never_spends_more_than_the_cap(tmp_path):
    """Regression: the cap was checked only after answers arrived, so the first wave overspent (196x here)."""
    prices = tmp_path / "prices.toml"
    prices.write_text('[alpaca-demo-teacher]\ninput = 60.0\noutput = 180.0\n')
    capped = _generate(tmp_path, num=500, concurrency=8, max_cost=2.0, price_table=str(prices))
    assert capped.status == "budget_exhausted"
    assert 0 < capped.stats.cost_usd <= 2.0 and capped.stats.requests_answered >= 1
    entries = list(read_journal(capped.run_dir / "journal.jsonl"))
    spent = sum((e["prompt_tokens"] * 60.0 + e["completion_tokens"] * 180.0) / 1e6 for e in entries
                if e["type"] == "answer")
    assert spent <= 2.0  # recomputed from the journal: what the server reported it used


def test_api_key_never_written(tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-LEAK-4242"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    with DemoServer() as server:
        result = _generate(tmp_path, spec="openai:alpaca-demo-teacher", base_url=server.base_url,
                                     num=10)
    assert result.manifest.data["extra"]["teacher"] == "openai"
    for path in [*result.run_dir.iterdir(), *(tmp_path / "store").rglob("*.json")]:
        assert secret not in path.read_text(errors="replace"), path


def test_failed_requests_are_recorded_not_fatal(tmp_path):
    # every attempt fails with a 5xx: the run ends at the request limit and records the failures
    config = DemoConfig(fault_5xx_rate=1.0)
    with DemoServer(config) as server, pytest.raises(Exception, match="no task was kept"):
        _generate(tmp_path, base_url=server.base_url, num=5, max_requests=3, max_retries=1,
                            concurrency=3)
    entries = list(read_journal(next((tmp_path / "store" / "runs" / "gen").iterdir()) / "journal.jsonl"))
    failed = [e for e in entries if e["type"] == "failed"]
    assert sorted(e["index"] for e in failed) == [0, 1, 2]
    assert Counter(e["error"] for e in failed) == {"server_error": 3} and all(e["attempts"] == 2 for e in failed)


def test_token_bucket_limits_rate():
    async def main() -> float:
        bucket = TokenBucket(600)  # 10 per second, burst of 10
        start = time.monotonic()
        for _ in range(15):
            await bucket.acquire(1)
        return time.monotonic() - start

    assert asyncio.run(main()) >= 0.4  # 5 tokens past the burst at 10/s cannot come sooner (speed: benchmarks)
