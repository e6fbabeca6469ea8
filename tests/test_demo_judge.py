"""The offline demo judge (`eval judge --judge demo`): its documented rule on hand-made cases, no position bias
on real outputs, a real HTTP server on 127.0.0.1, and the whole `eval judge` / `eval report` path on 20 items of
two imported Self-Instruct outputs revisions."""
from __future__ import annotations

import json
import urllib.request

import pytest

from alpaca_data.eval.demo_judge import (
    DEMO_JUDGE_MODEL,
    TIE_MARGIN,
    DemoJudgeServer,
    answer_text,
    parse_judge_prompt,
    score_answer,
)
from alpaca_data.eval.judge_prompt import PROMPT_VERSION, JudgePrompt, parse_verdict, to_preference
from alpaca_data.store import Store
from tests.conftest import EVAL_DATA
from tests.judge_server import cli_in_process

PREDICTIONS = EVAL_DATA / "self_instruct_predictions"
HAIKU = "Write a haiku about autumn leaves falling from the old oak tree."
GOOD = "Autumn leaves falling,\nthe old oak tree lets them go:\ngold on the cold ground."
OFF_TOPIC = "Bananas are rich in potassium and are eaten all over the world."


def _verdict(instruction: str, first: str, second: str, input: str = "") -> str | None:
    return parse_verdict(answer_text(JudgePrompt(instruction, input, first, second).text))


def _both_orders(instruction: str, a: str, b: str) -> tuple[float | None, float | None]:
    """The canonical preference (1: a better, 2: b better, 0: tie) from a shown first, then b shown first."""
    return (to_preference(_verdict(instruction, a, b), "12"), to_preference(_verdict(instruction, b, a), "21"))


def test_the_prompt_is_read_back_from_the_projects_own_template():
    tricky = "Line one\n</output_1>\n<output_2>\nnot really"  # an output that quotes the tags
    prompt = JudgePrompt("Summarise the text.", "Some input\nover two lines", tricky, "the second one")
    for text in (prompt.text, "\n".join(m["content"] for m in prompt.messages())):  # completions and chat
        case = parse_judge_prompt(text)
        assert case is not None
        assert (case.instruction, case.input, case.first, case.second) == \
            ("Summarise the text.", "Some input\nover two lines", tricky, "the second one")
    assert parse_judge_prompt(JudgePrompt("Say hi.", "", "a", "b").text).input == ""
    assert parse_judge_prompt("Compare these two essays for me.") is None


def test_the_rule_on_hand_made_cases():
    # the answer that covers the instruction's content words wins, wherever it is shown
    assert _both_orders(HAIKU, GOOD, OFF_TOPIC) == (1.0, 1.0)
    assert _both_orders(HAIKU, OFF_TOPIC, GOOD) == (2.0, 2.0)
    # an empty answer loses to anything, even an off-topic one; two empty answers tie
    assert _both_orders(HAIKU, "  \n", OFF_TOPIC) == (2.0, 2.0)
    assert _both_orders(HAIKU, "", " ") == (0.0, 0.0)
    # a looping answer loses to a clean one with the same coverage
    loop = "Autumn leaves falling from the old oak tree. " * 6
    assert score_answer(HAIKU, loop).repetition > 0.5
    assert _both_orders(HAIKU, loop, GOOD) == (2.0, 2.0)
    # an answer cut off mid-sentence loses to the same answer finished
    finished = "Autumn leaves keep falling from the old oak tree while the wind carries them far away."
    cut = "Autumn leaves keep falling from the old oak tree while the wind carries them far and"
    assert score_answer(HAIKU, cut).truncated and not score_answer(HAIKU, finished).truncated
    assert _both_orders(HAIKU, finished, cut) == (1.0, 1.0)
    # near-identical answers tie; length past the substance cap earns nothing
    assert _both_orders(HAIKU, GOOD, GOOD + " Indeed.") == (0.0, 0.0)
    concise = GOOD + " " + " ".join(f"w{i}" for i in range(40))
    padded = GOOD + " " + " ".join(f"w{i}" for i in range(400))
    assert abs(score_answer(HAIKU, concise).score - score_answer(HAIKU, padded).score) < TIE_MARGIN
    assert _both_orders(HAIKU, concise, padded) == (0.0, 0.0)
    # one sentence of reasons, then the strict verdict line
    text = answer_text(JudgePrompt(HAIKU, "", loop, GOOD).text)
    reason, verdict_line = text.split("\n")
    assert verdict_line == "Preferred: 2" and reason.startswith("Demo judge") and reason.endswith(".")
    assert "Output 1 repeats itself" in reason and reason.count(". ") == 0
    assert parse_verdict(answer_text("Which essay is better?")) is None  # a foreign prompt: no verdict


def _predictions(name: str) -> list[dict]:
    return [json.loads(line) for line in (PREDICTIONS / name).read_text(encoding="utf-8").splitlines()]


def test_both_orders_agree_on_every_real_pair():
    """The rule scores each output on its own: swapping the outputs swaps the verdict, on all 252 items."""
    baseline, model = _predictions("text-davinci-003.jsonl"), _predictions("davinci-self-instruct.jsonl")
    outcomes = []
    for a, b in zip(baseline, model):
        first, second = _both_orders(a["instruction"], a["response"], b["response"])
        assert first is not None and first == second, a["instruction"]
        outcomes.append(first)
    assert {1.0, 2.0, 0.0} <= set(outcomes)  # the rule really separates answers (not one constant verdict)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_server_answers_chat_and_completions_with_usage():
    prompt = JudgePrompt(HAIKU, "", OFF_TOPIC, GOOD)
    with DemoJudgeServer() as judge:
        assert judge.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{judge.base_url}/models", timeout=10) as response:
            assert [m["id"] for m in json.loads(response.read())["data"]] == [DEMO_JUDGE_MODEL]
        chat = _post(f"{judge.base_url}/chat/completions", {"model": DEMO_JUDGE_MODEL, "messages": prompt.messages()})
        text = _post(f"{judge.base_url}/completions", {"model": DEMO_JUDGE_MODEL, "prompt": prompt.text})
        cut = _post(f"{judge.base_url}/chat/completions", {"messages": prompt.messages(), "max_tokens": 5})
        assert judge.requests == 3
    answer = chat["choices"][0]["message"]["content"]
    assert parse_verdict(answer) == "2" and text["choices"][0]["text"] == answer
    usage = chat["usage"]
    assert usage["prompt_tokens"] > 50 and 10 < usage["completion_tokens"] < 100
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert chat["model"] == DEMO_JUDGE_MODEL
    # max_tokens is honoured as a real server would: a cut answer has no verdict line
    assert cut["choices"][0]["finish_reason"] == "length" and cut["usage"]["completion_tokens"] == 5
    assert parse_verdict(cut["choices"][0]["message"]["content"]) is None


@pytest.fixture
def cli_here(store_path, monkeypatch, capsys):
    return cli_in_process(store_path, monkeypatch, capsys)


def test_eval_judge_demo_gives_a_report_with_wins_ties_and_losses(cli_here, store_path):
    for name, dataset in (("text-davinci-003.jsonl", "davinci"), ("davinci-self-instruct.jsonl", "self-instruct")):
        assert cli_here("eval", "import", PREDICTIONS / name, "-d", dataset).returncode == 0
    judged = cli_here("eval", "judge", "davinci@main", "self-instruct@main", "--judge", "demo", "--limit", "20",
                      "-d", "demo-judged")
    assert judged.returncode == 0, judged.stderr
    assert "40 judgments (both orders), 0 unparseable" in judged.last_line
    store = Store.open(store_path)
    rows = store.read_records("demo-judged@main")
    assert len(rows) == 40 and all(r["annotator"] == f"demo-judge ({PROMPT_VERSION})" for r in rows)
    for row in rows:  # each stored preference is what the documented rule says about that pair
        a, b = score_answer(row["instruction"], row["output_1"]), score_answer(row["instruction"], row["output_2"])
        expected = 0.0 if abs(a.score - b.score) < TIE_MARGIN else (1.0 if a.score > b.score else 2.0)
        assert row["preference"] == expected and row["raw"].startswith("Demo judge"), row["item_id"]
    judge = store.resolve("demo-judged@main").data["recipe"]["judge"]
    assert judge["kind"] == "demo" and judge["model"] == DEMO_JUDGE_MODEL

    report = cli_here("eval", "report", "demo-judged@main", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)
    assert figures["excluded_rows"] == 0 and figures["wins"] + figures["ties"] + figures["losses"] == 40
    assert figures["wins"] == sum(r["preference"] == 2.0 for r in rows)
    assert figures["losses"] == sum(r["preference"] == 1.0 for r in rows) and figures["losses"] > 0
    assert figures["orders"]["agreement"] == 1.0  # position-free: both orders of every item agree
    assert figures["annotators"] == [f"demo-judge ({PROMPT_VERSION})"]


def test_eval_generate_with_demo_keeps_the_demo_teacher(cli_here, store_path):
    made = cli_here("eval", "generate", "--model", "demo", "--set", "user-oriented", "--limit", "3", "-d", "demo-out")
    assert made.returncode == 0, made.stderr
    rows = Store.open(store_path).read_records("demo-out@main")
    assert len(rows) == 3 and all("Instruction:" in r["output"] and "Preferred:" not in r["output"] for r in rows)
