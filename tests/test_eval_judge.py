"""`eval judge` against a real position-biased judge on 127.0.0.1 (tests/judge_server.py), through the CLI.

The outputs are real model answers on Self-Instruct's user-oriented set (text-davinci-003 as the baseline,
GPT-3 fine-tuned on Self-Instruct as the model), with markers that drive the judge's known rule.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpaca_data.eval.annotations import commit_rows, output_record
from alpaca_data.eval.judge_prompt import JudgePrompt, parse_verdict, to_preference
from alpaca_data.generate.journal import read_journal
from alpaca_data.store import Store
from tests.conftest import EVAL_DATA, snapshot
from tests.judge_server import GARBAGE, JUDGE_MODEL, QUALITY, JudgeServer, cli_in_process, verdict_text

N = 20
ONLY_B = {1, 6, 11, 16, 19}     # only the model's output carries the quality marker
ONLY_A = {2, 7, 12}             # only the baseline's does
BOTH = {3, 8, 13}               # both do: no signal, the judge falls back on position
GARBAGE_ITEMS = {4, 14}         # the judge gives no verdict
SECRET = "sk-evaljudgesecret0123456789"
PREDICTIONS = EVAL_DATA / "self_instruct_predictions"


def _predictions(name: str) -> list[dict]:
    lines = (PREDICTIONS / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:N]]


def _outputs(store: Store, dataset: str, name: str, generator: str, marked: set[int]) -> None:
    rows = []
    for i, p in enumerate(_predictions(name)):
        output = p["response"].strip()
        if i in marked:
            output += f" {QUALITY}"
        if i in GARBAGE_ITEMS:
            output += f" {GARBAGE}"
        rows.append(output_record(instruction=p["instruction"], input=p["input"], output=output, generator=generator,
                                  item_id=str(i), category=None, decoding=None))
    commit_rows(store, dataset, rows, message=f"{generator} test outputs", recipe={"command": "eval import",
                                                                                   "generator": generator})


@pytest.fixture
def outputs(store_path: Path) -> Path:
    store = Store.open(store_path)
    _outputs(store, "base", "text-davinci-003.jsonl", "text-davinci-003", ONLY_A | BOTH)
    _outputs(store, "model", "davinci-self-instruct.jsonl", "gpt3-self-instruct", ONLY_B | BOTH)
    return store_path


@pytest.fixture
def cli_here(store_path, monkeypatch, capsys):
    return cli_in_process(store_path, monkeypatch, capsys)


@pytest.fixture
def judge_server():
    with JudgeServer() as server:
        yield server


def _judge(cli, server: JudgeServer, *args: str):
    return cli("eval", "judge", "base@main", "model@main", "--judge", f"openai:{JUDGE_MODEL}", "--base-url",
               server.base_url, "--backoff-base", "0", *args, env={"OPENAI_API_KEY": SECRET})


def _expected(i: int, order: str) -> float | None:
    """The rule, on canonical sides: 1 = baseline (output_1) better, 2 = model better."""
    if i in GARBAGE_ITEMS:
        return None
    if i in ONLY_A:
        return 1.0
    if i in ONLY_B:
        return 2.0
    return 1.0 if order == "12" else 2.0  # the output shown first


def _model_win_rate(preferences: list[float | None]) -> float:
    scores = [0.5 if p == 0 else p - 1 for p in preferences if p is not None]
    return sum(scores) / len(scores)


def test_judging_both_orders_cancels_the_judges_position_bias(cli, outputs, judge_server):
    one = _judge(cli, judge_server, "--orders", "one", "-d", "judged-once")
    assert one.returncode == 0, one.stderr
    both = _judge(cli, judge_server, "-d", "judged-both")
    assert both.returncode == 0, both.stderr
    assert len(judge_server.received) == N + 2 * N
    store = Store.open(outputs)
    once, twice = store.read_records("judged-once@main"), store.read_records("judged-both@main")
    assert len(once) == N and len(twice) == 2 * N
    for row in once + twice:
        assert row.get("preference") == _expected(int(row["item_id"]), row["order"])
    assert {r["order"] for r in once} == {"12"} and [r["order"] for r in twice] == ["12", "21"] * N

    judged = [i for i in range(N) if i not in GARBAGE_ITEMS]
    position_items = [i for i in judged if i not in ONLY_A | ONLY_B]
    # What a judge with no position bias (a draw when nothing tells the outputs apart) would give the model:
    unbiased = (len(ONLY_B) + 0.5 * len(position_items)) / len(judged)
    biased = len(ONLY_B) / len(judged)  # output_1 is always shown first: every position item goes to it
    assert _model_win_rate([r.get("preference") for r in once]) == pytest.approx(biased)
    assert _model_win_rate([r.get("preference") for r in twice]) == pytest.approx(unbiased)
    assert biased < unbiased - 0.2
    on_position_items = [r.get("preference") for r in twice if int(r["item_id"]) in position_items]
    assert _model_win_rate(on_position_items) == 0.5
    assert f"win rate of model@main: {100 * unbiased:.1f}%" in both.last_line
    assert f"win rate of model@main: {100 * biased:.1f}%" in one.last_line

    # The report (eval report) reads the same revision and finds the same figure.
    report = cli("eval", "report", "judged-both@main", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["win_rate"] == pytest.approx(100 * unbiased)
    assert figures["model"] == "gpt3-self-instruct" and figures["baseline"] == "text-davinci-003"

    # Unparseable verdicts are kept with the judge's raw answer and counted; the key it echoed is masked.
    unparseable = [r for r in twice if r.get("preference") is None]
    assert sorted(int(r["item_id"]) for r in unparseable) == sorted(list(GARBAGE_ITEMS) * 2)
    assert all(r["raw"].startswith("I would rather not say.") and "***" in r["raw"] for r in unparseable)
    assert f"{2 * len(GARBAGE_ITEMS)} unparseable" in both.last_line
    parsed = [r for r in twice if r.get("preference") is not None]
    assert all(r["raw"].rstrip().endswith(("Preferred: 1", "Preferred: 2")) for r in parsed)
    assert SECRET not in json.dumps(twice) and SECRET not in both.stdout + both.stderr
    for journal in (outputs / "runs").rglob("journal.jsonl"):
        assert SECRET not in journal.read_text()

    # Rows and recipe follow alpaca_data.eval.annotations; the judge saw the outputs blind (no model names).
    manifest = store.resolve("judged-both@main")
    recipe = manifest.data["recipe"]
    base, model = store.resolve("base@main"), store.resolve("model@main")
    assert recipe["command"] == "eval judge"
    assert recipe["output_1"] == {"dataset": "base", "revision_id": base.id, "generator": "text-davinci-003"}
    assert recipe["output_2"] == {"dataset": "model", "revision_id": model.id, "generator": "gpt3-self-instruct"}
    assert recipe["counts"]["unparseable"] == 2 * len(GARBAGE_ITEMS) and recipe["judge"]["orders"] == "both"
    assert recipe["judge"]["prompt_version"] and recipe["cost_usd"] == 0.0  # no price known: nothing counted
    assert all(r["annotator"] == f"openai:{JUDGE_MODEL} ({recipe['judge']['prompt_version']})" for r in twice)
    assert all(r["generator_1"] == "text-davinci-003" and r["generator_2"] == "gpt3-self-instruct" for r in twice)
    prompts = json.dumps([body["messages"] for body in judge_server.received])
    assert "text-davinci-003" not in prompts and "self-instruct" not in prompts
    first = twice[0]
    shown = [b for b in judge_server.received if first["output_1"] in b["messages"][1]["content"]]
    assert any(b["messages"][1]["content"].index(first["output_1"]) > b["messages"][1]["content"].index(
        first["output_2"]) for b in shown)  # order 21 really showed output_2 first


def test_resume_after_request_limit_sends_only_the_missing_requests(cli_here, outputs, judge_server):
    stopped = _judge(cli_here, judge_server, "--max-requests", "15", "-d", "judged")
    assert stopped.returncode == 3, stopped.stderr
    assert "--max-requests 15 reached: 15 of 40 judgments made; nothing committed" in stopped.stderr
    assert len(judge_server.received) == 15
    assert "judged" not in Store.open(outputs).datasets()
    resumed = _judge(cli_here, judge_server, "--resume", "-d", "judged")
    assert resumed.returncode == 0, resumed.stderr
    assert len(judge_server.received) == 2 * N  # the 25 missing ones, nothing twice
    bodies = [json.dumps(b, sort_keys=True) for b in judge_server.received]
    assert len(set(bodies)) == len(bodies)
    rows = Store.open(outputs).read_records("judged@main")
    assert len(rows) == 2 * N
    assert all(r.get("preference") == _expected(int(r["item_id"]), r["order"]) for r in rows)
    manifest = Store.open(outputs).resolve("judged@main")
    assert manifest.data["recipe"]["counts"]["replayed"] == 15


def test_failed_requests_are_sent_again_on_resume(cli_here, outputs, judge_server):
    judge_server.fail_after = 30
    failed = _judge(cli_here, judge_server, "--max-retries", "1", "--concurrency", "1", "-d", "judged")
    assert failed.returncode == 1, failed.stderr
    assert "10 requests failed" in failed.stderr and "Traceback" not in failed.stderr
    assert len(judge_server.received) == 30 + 2 * 10  # each failing request tried twice
    judge_server.fail_after = None
    resumed = _judge(cli_here, judge_server, "--resume", "-d", "judged")
    assert resumed.returncode == 0, resumed.stderr
    assert len(judge_server.received) == 50 + 10
    assert len(Store.open(outputs).read_records("judged@main")) == 2 * N


def test_the_cost_cap_stops_cleanly_and_resume_continues(cli_here, outputs, judge_server, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({JUDGE_MODEL: {"input": 2000.0, "output": 2000.0}}))
    cap = 12.0
    capped = _judge(cli_here, judge_server, "--price-table", str(prices), "--max-cost", str(cap), "-d", "judged")
    assert capped.returncode == 3, capped.stderr
    assert "budget reached" in capped.stderr and "nothing committed" in capped.stderr
    sent = len(judge_server.received)
    assert 0 < sent < 2 * N
    journal = next((outputs / "runs" / "judged").glob("*/journal.jsonl"))
    answers = [e for e in read_journal(journal) if e["type"] == "answer"]
    assert len(answers) == sent
    spent = sum((e["prompt_tokens"] + e["completion_tokens"]) * 2000.0 / 1e6 for e in answers)
    assert spent <= cap
    assert "judged" not in Store.open(outputs).datasets()
    resumed = _judge(cli_here, judge_server, "--price-table", str(prices), "--max-cost", "1000", "--resume", "-d", "judged")
    assert resumed.returncode == 0, resumed.stderr
    assert len(judge_server.received) == 2 * N
    recipe = Store.open(outputs).resolve("judged@main").data["recipe"]
    assert recipe["cost_usd"] <= 1000 and recipe["cost_usd"] > spent


def test_mistakes_are_one_line_and_write_nothing(cli_here, outputs, judge_server):
    before = snapshot(outputs)
    cases = [(("base@main", "nothere@main", "--judge", "openai:x", "--base-url", judge_server.base_url), 1, "nothere"),
             (("base@main", "model@main", "--judge", "openai:x", "--orders", "three"), 2, "--orders"),
             (("base@main", "model@main", "--judge", "nonsense"), 2, "--judge 'nonsense': expected"),
             (("base@main", "model@main", "--judge", "openai:unpriced", "--base-url", judge_server.base_url,
               "--max-cost", "1"), 2, "no price known"),
             (("base@main", "model@main", "--judge", "openai:x", "-d", "../evil"), 2, "invalid dataset name")]
    for args, code, needle in cases:
        result = cli_here("eval", "judge", *args)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)
    assert snapshot(outputs) == before and not judge_server.received


def test_verdicts_are_parsed_strictly_and_mapped_back_to_the_pair():
    assert parse_verdict("A is fine.\nPreferred: 2") == "2"
    assert parse_verdict("**Preferred: tie**") == "tie"
    assert parse_verdict("Preferred: 1\n...on reflection\nPreferred: 2") == "2"  # the last verdict line counts
    assert parse_verdict("I prefer output 1") is None and parse_verdict("") is None and parse_verdict(None) is None
    assert parse_verdict("Preferred: 1 or 2") is None
    assert [to_preference("1", "12"), to_preference("2", "12"), to_preference("1", "21"), to_preference("2", "21")] \
        == [1.0, 2.0, 2.0, 1.0]
    assert to_preference("tie", "21") == 0.0 and to_preference(None, "12") is None
    prompt = JudgePrompt("Say hi.", "", "hello", "hey")
    user = prompt.messages()[1]["content"]
    assert user.index("<output_1>\nhello\n</output_1>") < user.index("<output_2>\nhey\n</output_2>")
    assert "<input>" not in user and "<input>\nctx" in JudgePrompt("Say hi.", "ctx", "a", "b").messages()[1]["content"]
    assert verdict_text(user, "") .endswith("Preferred: 1")  # the test judge reads the prompt it is sent
