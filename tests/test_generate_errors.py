"""Generation on user mistakes: one line, non-zero exit, nothing committed."""
from __future__ import annotations

import socket

from alpaca_data.store import Store
from tests.conftest import CORPORA, SEEDS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_teacher_fails_fast_with_one_line(cli, store_path):
    result = cli("-q", "generate", "--seeds", SEEDS, "--num", "5", "--teacher", "openai:any-model", "--dataset", "x",
                 "--base-url", f"http://127.0.0.1:{_closed_port()}/v1", "--max-retries", "1",
                 env={"OPENAI_API_KEY": "sk-test-not-a-real-key"}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the teacher") and result.stderr.count("\n") == 1
    assert "sk-test-not-a-real-key" not in result.stderr + result.stdout
    assert not (store_path / "datasets" / "x").exists()


def test_alpaca_records_can_seed_a_run_and_bad_seeds_are_named(cli, store_path, tmp_path):
    result = cli("-q", "generate", "--seeds", CORPORA / "gpteacher_roleplay.json", "--num", "5", "--teacher", "demo",
                 "--dataset", "rp")
    assert result.returncode == 0, result.stderr
    records = Store.open(store_path).read_records("rp")
    assert len(records) == 5 and all(r["prompt_seeds"][0].startswith("gpteacher_roleplay_") for r in records)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Say hi", "instances": [{"input": "", "output": "hi"}]}\n{"instruction": 7}\n')
    refused = cli("generate", "--seeds", bad, "--num", "5", "--teacher", "demo", "--dataset", "b")
    assert refused.returncode == 1 and "bad.jsonl:line 2" in refused.stderr and "Traceback" not in refused.stderr
