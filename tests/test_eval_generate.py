"""`eval generate`: a tiny checkpoint trained by alpaca-train on a store revision answers 20 user-oriented items
in-process (hf:), and a real OpenAI-compatible server on 127.0.0.1 answers over HTTP (openai:)."""
from __future__ import annotations

import json

import pytest

from alpaca_data.generate.journal import read_journal
from alpaca_data.store import Store
from alpaca_train.prompts import format_prompt
from tests.conftest import EVAL_DATA, run_cli, snapshot
from tests.judge_server import JudgeServer, cli_in_process
from tests.train_fixtures import corpus_sample

USER_ORIENTED = EVAL_DATA / "user_oriented_instructions.jsonl"


def _first_items(n: int) -> list[dict]:
    tasks = [json.loads(line) for line in USER_ORIENTED.read_text(encoding="utf-8").splitlines()[:n]]
    return [{"item_id": f"{t['id']}#0", "instruction": t["instruction"], "input": t["instances"][0]["input"],
             "category": t["motivation_app"]} for t in tasks]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny LLaMA fine-tuned for 2 steps by alpaca-train on a store revision: (store, checkpoint, revision id)."""
    from alpaca_train.tiny import make_tiny_llama
    from alpaca_train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("eval-generate")
    store = Store.open(root / "store")
    revision = store.commit("train-data", corpus_sample(32), message="training data",
                            recipe={"command": "test"}).manifest.id
    make_tiny_llama(root / "tiny")
    train(TrainConfig(data="train-data@main", store=str(root / "store"), model=str(root / "tiny"),
                      out=str(root / "ckpt"), max_steps=2, max_length=96, effective_batch_size=4, micro_batch_size=2,
                      cache_dir="", logging_steps=100))
    return root / "store", root / "ckpt", revision


def test_an_alpaca_train_checkpoint_answers_the_user_oriented_set(checkpoint, tmp_path):
    store_path, ckpt, revision = checkpoint
    made = run_cli("eval", "generate", "--model", f"hf:{ckpt}", "--set", "user-oriented", "--limit", "20",
                   "--dataset", "tiny-outputs", "--max-tokens", "8", "--request-batch-size", "4", store=store_path)
    assert made.returncode == 0, made.stderr
    store = Store.open(store_path)
    manifest = store.resolve("tiny-outputs@main")
    assert made.last_line.startswith(f"tiny-outputs@{manifest.id[:12]}: 20 outputs of ckpt on user-oriented")
    rows = store.read_records(manifest)
    expected = _first_items(20)
    assert [r["item_id"] for r in rows] == [e["item_id"] for e in expected]
    assert [(r["instruction"], r["input"], r["category"]) for r in rows] == \
        [(e["instruction"], e["input"], e["category"]) for e in expected]
    assert all(r["generator"] == "ckpt" and isinstance(r["output"], str) for r in rows)
    assert any(r["output"].strip() for r in rows)  # a random tiny model still says something
    decoding = json.loads(rows[0]["decoding"])
    assert decoding["temperature"] == 0.0 and decoding["max_tokens"] == 8
    recipe = manifest.data["recipe"]
    assert recipe["command"] == "eval generate" and recipe["generator"] == "ckpt"
    assert recipe["set"]["name"] == "user-oriented" and recipe["set"]["items"] == 20
    model = recipe["model"]
    assert model["spec"] == f"hf:{ckpt}" and model["path"] == str(ckpt.resolve())
    assert model["lineage"]["dataset"]["revision_id"] == revision
    assert model["lineage"]["dataset"]["ref"] == "train-data@main"
    assert model["lineage"]["output_dir"] == str(ckpt) and model["lineage"]["checkpoint"] == str(ckpt.resolve())
    assert model["lineage"]["base_model"]["id"].endswith("tiny")
    # The checkpoint saw the Alpaca template it was trained on: the prompt token counts say so.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
    journal = next((store_path / "runs" / "tiny-outputs").glob("*/journal.jsonl"))
    answers = {e["key"]: e for e in read_journal(journal) if e["type"] == "answer"}
    for item in expected[:3]:
        prompt = format_prompt(item["instruction"], item["input"])
        assert answers[item["item_id"]]["prompt_tokens"] == len(tokenizer(prompt)["input_ids"])


@pytest.fixture
def cli_here(store_path, monkeypatch, capsys):
    return cli_in_process(store_path, monkeypatch, capsys)


@pytest.fixture
def served():
    lineage = {"dataset": {"ref": "alpaca@v1", "revision_id": "ab" * 32}, "base_model": {"id": "llama-7b"},
               "output_dir": "/runs/alpaca-7b"}
    models = [{"id": "other", "object": "model", "created": 0, "owned_by": "tests"},
              {"id": "alpaca-7b", "object": "model", "created": 0, "owned_by": "tests", "lineage": lineage}]
    with JudgeServer(models=models) as server:
        yield server, lineage


def _generate(cli, server: JudgeServer, *args: str):
    return cli("eval", "generate", "--model", "openai:alpaca-7b", "--base-url", server.base_url, "--set",
               "user-oriented", "--limit", "20", *args)


def test_a_served_model_answers_with_its_lineage_and_resumes(cli_here, store_path, served):
    server, lineage = served
    stopped = _generate(cli_here, server, "-d", "served", "--max-requests", "5")
    assert stopped.returncode == 3, stopped.stderr
    assert "5 of 20 items answered; nothing committed" in stopped.stderr
    posts = [b for b in server.received if "prompt" in b]
    assert len(posts) == 5
    resumed = _generate(cli_here, server, "-d", "served", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    posts = [b for b in server.received if "prompt" in b]
    assert len(posts) == 20 and len({b["prompt"] for b in posts}) == 20  # only the missing 15
    items = {item["item_id"]: item for item in _first_items(20)}
    for body in posts:
        assert body["model"] == "alpaca-7b" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    # a model served on the Alpaca template gets Alpaca's prompt, input section included, exactly as the hf: path
    # and the trainer write it (its chat API would fold the input into the instruction)
    assert {b["prompt"] for b in posts} == {format_prompt(i["instruction"], i["input"]) for i in items.values()}
    assert any(i["input"] for i in items.values())
    store = Store.open(store_path)
    manifest = store.resolve("served@main")
    rows = store.read_records(manifest)
    assert len(rows) == 20 and all(r["generator"] == "alpaca-7b" for r in rows)
    recipe = manifest.data["recipe"]
    assert recipe["model"]["lineage"] == lineage and recipe["model"]["path"] is None
    assert recipe["model"]["api"] == "completions"
    assert recipe["counts"]["replayed"] == 5 and recipe["model"]["endpoint_host"].startswith("127.0.0.1:")
    assert server.base_url not in json.dumps(manifest.data)  # the host only: a URL may carry credentials


def test_a_served_chat_model_gets_the_instruction_and_input_as_one_user_turn(cli_here, store_path, served):
    server, _ = served
    made = cli_here("eval", "generate", "--model", "openai:other", "--base-url", server.base_url, "--set",
                    "user-oriented", "--limit", "6", "-d", "served-chat")
    assert made.returncode == 0, made.stderr
    posts = [b for b in server.received if "messages" in b]
    assert len(posts) == 6 and all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in posts)
    assert {b["messages"][0]["content"] for b in posts} == {
        i["instruction"] + (f"\n\n{i['input']}" if i["input"] else "") for i in _first_items(6)}


def test_the_completions_api_sends_the_alpaca_prompt(cli_here, store_path, served):
    server, _ = served
    made = _generate(cli_here, server, "-d", "served-text", "--api", "completions", "--limit", "4")
    assert made.returncode == 0, made.stderr
    prompts = [b["prompt"] for b in server.received if "prompt" in b]
    # requests go out concurrently, so they may arrive in any order
    assert sorted(prompts) == sorted(format_prompt(i["instruction"], i["input"]) for i in _first_items(4))


def test_eval_sets_files_and_refs(cli_here, store_path, served, tmp_path):
    server, _ = served
    alpaca_eval = _generate(cli_here, server, "-d", "ae", "--set", "alpaca-eval", "--limit", "3")
    assert alpaca_eval.returncode == 0, alpaca_eval.stderr
    rows = Store.open(store_path).read_records("ae@main")
    davinci = json.loads((EVAL_DATA / "alpaca_eval" / "text_davinci_003.json").read_text())[:3]
    assert [(r["item_id"], r["instruction"], r["category"]) for r in rows] == \
        [(str(i), d["instruction"], d["dataset"]) for i, d in enumerate(davinci)]
    own = tmp_path / "mine.jsonl"
    own.write_text("".join(json.dumps({"instruction": f"Count to {n}.", "input": "", "output": ""}) + "\n"
                           for n in range(3)))
    from_file = _generate(cli_here, server, "-d", "mine-out", "--set", str(own))
    assert from_file.returncode == 0, from_file.stderr
    assert [r["instruction"] for r in Store.open(store_path).read_records("mine-out@main")] == \
        [f"Count to {n}." for n in range(3)]
    assert cli_here("import", str(own), "-d", "mine").returncode == 0
    from_ref = _generate(cli_here, server, "-d", "mine-ref", "--set", "mine@main")
    assert from_ref.returncode == 0, from_ref.stderr
    recipe = Store.open(store_path).resolve("mine-ref@main").data["recipe"]
    assert recipe["set"]["kind"] == "store" and recipe["set"]["dataset"] == "mine"


def test_a_bad_set_or_missing_data_is_one_line_and_writes_nothing(cli_here, store_path, served, tmp_path):
    server, _ = served
    Store.open(store_path)
    before = snapshot(store_path)
    cases = [(("--set", "nope"), {}, "not a built-in set"),
             (("--set", "user-oriented", "--eval-data", str(tmp_path / "none")), {}, "Self-Instruct"),
             (("--set", "alpaca-eval"), {"ALPACA_EVAL_DATA": str(tmp_path / "none")}, "AlpacaEval"),
             (("--set", "nothere@main"), {}, "nothere"),
             (("--set", str(EVAL_DATA.parent / "README.md")), {}, "README.md")]
    for args, env, needle in cases:
        result = cli_here("eval", "generate", "--model", "openai:alpaca-7b", "--base-url", server.base_url, "-d", "x",
                     *args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and needle in lines[0], (args, result.stderr)
    missing = cli_here("eval", "generate", "--model", f"hf:{tmp_path / 'no-model'}", "--set", "user-oriented", "-d", "x")
    assert missing.returncode == 1 and "no such model folder" in missing.stderr
    assert "--eval-data" in run_cli("eval", "generate", "--model", "openai:m", "--base-url", server.base_url,
                                    "--set", "user-oriented", "-d", "x", "--eval-data", "/nonexistent",
                                    store=store_path).stderr
    assert snapshot(store_path) == before and not [b for b in server.received if "messages" in b]


def test_options_are_settings_with_evaluation_defaults():
    from alpaca_data.cli_options import build_config
    from alpaca_data.eval.outputs import EvalGenerateConfig

    cfg = build_config(EvalGenerateConfig, {"spec": "openai:m", "set": "user-oriented", "dataset": "d"})
    assert (cfg.decoding.temperature, cfg.decoding.max_tokens, cfg.decoding.stop) == (0.0, 512, ())
    assert cfg.limits.concurrency == 8 and cfg.model.api == "chat" and cfg.limit is None
    from alpaca_data.eval.judge import JudgeConfig

    judge = build_config(JudgeConfig, {"spec": "openai:judge"})
    assert (judge.decoding.temperature, judge.decoding.max_tokens, judge.orders) == (0.0, 256, "both")
