"""alpaca_train data: prompts, the prompt/response boundary, labels, truncation, cache, sources, steps."""
from __future__ import annotations

import json

import numpy as np
import pytest

from alpaca_data.errors import UserError
from alpaca_data.store import Store
from alpaca_train import data as D
from alpaca_train.prompts import PROMPT_INPUT, PROMPT_NO_INPUT, format_prompt, prompt_segments
from tests.train_fixtures import *
from tests.train_fixtures import corpus_sample

STANFORD_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
STANFORD_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n")


def test_templates_are_stanford_alpacas():
    assert PROMPT_INPUT == STANFORD_INPUT and PROMPT_NO_INPUT == STANFORD_NO_INPUT
    assert format_prompt("Do X", "") == STANFORD_NO_INPUT.format(instruction="Do X")
    assert format_prompt("Do X", "data") == STANFORD_INPUT.format(instruction="Do X", input="data")
    for inp in ("", "data"):
        assert "".join(s.text for s in prompt_segments("Do X", inp)) == format_prompt("Do X", inp)


@pytest.mark.parametrize("output", [
    " starts with a space", "no space", ", punctuation first", "\nnewline first", "Ünïcödé — 你好, мир 🦙",
    "", "   ", "### Response:\n nested template text", "x"])
@pytest.mark.parametrize("input_text", ["", "some input ending without newline", "input ending with space "])
def test_boundary_is_exact_and_labels_mask_only_the_prompt(tokenizer, output, input_text):
    record = {"instruction": "Answer the question.", "input": input_text, "output": output}
    data = D.tokenize_records([record], tokenizer, max_length=512)
    ids, plen = data.example(0)
    prompt = format_prompt(record["instruction"], input_text)
    # prompt ids are exactly the prompt tokenised alone; response ids exactly the output alone, then EOS
    assert list(ids[:plen]) == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert list(ids[plen:]) == tokenizer(output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.decode(ids[:plen]) == prompt
    assert tokenizer.decode(ids[plen:-1]) == output
    batch = D.PaddedCollator(tokenizer.eos_token_id)([(ids, plen)])
    labels = batch["labels"][0].tolist()
    assert labels[:plen] == [D.IGNORE_INDEX] * plen
    assert labels[plen:] == [int(t) for t in ids[plen:]]


def test_padded_and_padfree_collation_mask_prompt_and_padding_exactly(tokenizer, records64):
    data = D.tokenize_records(records64[:5], tokenizer, max_length=4096)
    assert data.stats["response_truncated"] == 0
    examples = data.examples(range(5))
    pad_id = tokenizer.eos_token_id
    padded = D.PaddedCollator(pad_id)(examples)
    width = max(len(ids) for ids, _ in examples)
    assert padded["input_ids"].shape == (5, width)
    for row, (ids, plen) in enumerate(examples):
        n = len(ids)
        expected = [D.IGNORE_INDEX] * plen + [int(t) for t in ids[plen:]] + [D.IGNORE_INDEX] * (width - n)
        assert padded["labels"][row].tolist() == expected
        assert padded["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        # the trained EOS is kept although pad id == EOS id: labels come from lengths, not from ids
        assert padded["labels"][row, n - 1].item() == tokenizer.eos_token_id
    flat = D.PaddingFreeCollator()(examples)
    total = sum(len(ids) for ids, _ in examples)
    assert flat["input_ids"].shape == (1, total)
    positions = flat["position_ids"][0].tolist()
    starts = np.cumsum([0] + [len(ids) for ids, _ in examples])[:-1]
    assert [i for i, p in enumerate(positions) if p == 0] == list(starts)
    expected = [x for ids, plen in examples for x in [D.IGNORE_INDEX] * plen + [int(t) for t in ids[plen:]]]
    assert flat["labels"][0].tolist() == expected


def test_long_input_is_cut_from_the_middle_and_the_response_kept(tokenizer):
    words = " ".join(f"w{i}" for i in range(600))
    record = {"instruction": "Summarise the text.", "input": "START " + words + " END", "output": "A short summary."}
    data = D.tokenize_records([record], tokenizer, max_length=128)
    ids, plen = data.example(0)
    assert len(ids) == 128
    text = tokenizer.decode(ids[:plen])
    assert text.startswith(STANFORD_INPUT.split("{instruction}")[0]) and text.endswith("\n\n### Response:\n")
    assert "Summarise the text." in text and "START" in text and "END" in text  # head and tail survive
    assert tokenizer.decode(ids[plen:]) == "A short summary.<|endoftext|>"
    assert data.stats["prompt_truncated"] == 1 and data.stats["dropped"] == 0


def test_long_response_keeps_prompt_and_is_cut_on_the_right_without_eos(tokenizer):
    record = {"instruction": "Count.", "input": "", "output": " ".join(str(i) for i in range(500))}
    data = D.tokenize_records([record], tokenizer, max_length=100)
    ids, plen = data.example(0)
    assert len(ids) == 100
    assert tokenizer.decode(ids[:plen]) == format_prompt("Count.")
    assert ids[-1] != tokenizer.eos_token_id and tokenizer.decode(ids[plen:]).startswith("0 1 2 3")
    assert data.stats["response_truncated"] == 1


def test_both_long_keeps_a_quarter_for_the_prompt_content(tokenizer):
    long = " ".join(f"w{i}" for i in range(800))
    data = D.tokenize_records([{"instruction": long, "input": "", "output": long}], tokenizer, max_length=200)
    ids, plen = data.example(0)
    assert len(ids) == 200 and plen >= 200 // 4 and len(ids) - plen >= 50


def test_examples_without_room_for_a_response_are_dropped_and_counted(tokenizer):
    records = [{"instruction": "Say hi.", "input": "", "output": "hi"},
               {"instruction": "Say hi.", "input": "", "output": "hi there"}]
    fixed = len(tokenizer(format_prompt("", ""), add_special_tokens=False)["input_ids"])
    with pytest.raises(UserError):
        D.tokenize_records(records, tokenizer, max_length=fixed - 2)
    ok = D.tokenize_records(records + [{"instruction": "x" * 10, "input": "", "output": ""}], tokenizer, 60)
    assert ok.stats["dropped"] == 0 and len(ok) == 3
    # empty output: EOS alone is the response, one trained token
    assert ok.response_lens[2] == 1


def test_fit_example_drops_when_the_template_alone_overflows():
    prompt, response, status = D.fit_example([1] * 10, [False] * 10, [5, 6], max_length=10)
    assert status == "dropped" and response == []
    prompt, response, status = D.fit_example([1, 2, 3, 4, 5, 6], [False, True, True, True, True, False],
                                             [7, 8, 9], max_length=7)
    assert status == "prompt_truncated" and response == [7, 8, 9] and prompt == [1, 2, 5, 6]


def test_tokenisation_is_cached_per_revision_tokenizer_and_max_length(tokenizer, records64, tmp_path):
    first = D.load_or_tokenize(records64, "rev-a", tokenizer, 128, tmp_path)
    assert not first.cache_hit and (tmp_path / first.cache_path.split("/")[-1]).is_file()
    second = D.load_or_tokenize(records64, "rev-a", tokenizer, 128, tmp_path)
    assert second.cache_hit and np.array_equal(first.ids, second.ids) and second.stats == first.stats
    assert not D.load_or_tokenize(records64, "rev-a", tokenizer, 129, tmp_path).cache_hit
    assert not D.load_or_tokenize(records64, "rev-b", tokenizer, 128, tmp_path).cache_hit
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_sources_file_json_jsonl_alias_and_errors(tmp_path, monkeypatch):
    rows = [{"instruction": "a", "input": "", "response": "b"}, {"instruction": "c", "input": "", "output": "d"}]
    (tmp_path / "r.json").write_text(json.dumps(rows))
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    a = D.load_source(str(tmp_path / "r.json"))
    b = D.load_source(str(tmp_path / "r.jsonl"))
    assert a.kind == "file" and a.records == b.records == [
        {"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": "", "output": "d"}]
    assert a.revision_id == b.revision_id and a.extra["file_sha256"] != b.extra["file_sha256"]
    with pytest.raises(UserError, match="no such file"):
        D.load_source(str(tmp_path / "missing.json"))
    # a Hub ref goes through `alpaca-data pull`; with no Hub reachable that is one clear error
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="cannot reach the Hub"):
        D.load_source("tatsu-lab/alpaca@main", store_path=tmp_path / "store")
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "x", "input": ""}]))
    with pytest.raises(UserError, match="record 1: output"):
        D.load_source(str(tmp_path / "bad.json"))


def test_sources_store_refs(tmp_path):
    store = Store.open(tmp_path / "store")
    recs = corpus_sample(6)
    v1 = store.commit("alpaca", recs[:4], message="first", recipe={"command": "test", "options": {}})
    store.tag("alpaca@main", "v1")
    v2 = store.commit("alpaca", recs, message="second", recipe={"command": "test", "options": {}})
    for ref, manifest, n in (("alpaca@v1", v1, 4), ("alpaca@main", v2, 6), (f"alpaca@{v1.id[:10]}", v1, 4)):
        source = D.load_source(ref, tmp_path / "store")
        assert source.kind == "store" and source.revision_id == manifest.id and len(source.records) == n
        assert source.manifest_hash == store.manifest_hash(ref) and source.dataset == "alpaca"
    with pytest.raises(UserError):
        D.load_source("alpaca@nope", tmp_path / "store")
    with pytest.raises(UserError):
        D.load_source("alpaca@main", tmp_path / "no-store")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_step_plan_keeps_alpacas_steps_and_balances_ranks(world):
    n, eb, micro = 50, 12, 2
    response_lens = np.arange(1, n + 1)
    order = D.epoch_order(n, seed=1, epoch=0)
    assert D.steps_per_epoch(n, eb) == 5
    seen = []
    for step in range(5):
        plans = [D.plan_step(order, step, eb, micro, r, world, response_lens, grouped=step % 2 == 0)
                 for r in range(world)]
        assert len({len(p.micro_batches) for p in plans}) == 1  # same number of passes on every rank
        got = sorted(i for p in plans for mb in p.micro_batches for i in mb)
        assert got == sorted(order[step * eb:(step + 1) * eb].tolist())
        assert plans[0].label_tokens == int(response_lens[got].sum())
        seen += got
    assert sorted(seen) == list(range(n))
    assert not np.array_equal(D.epoch_order(n, 1, 0), D.epoch_order(n, 1, 1))
    assert np.array_equal(D.epoch_order(n, 1, 1), D.epoch_order(n, 1, 1))


def test_bos_adding_tokenizer_gets_exactly_one_bos_on_the_prompt(tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir), add_bos_token=True)
    assert D.special_prefix(tok) == [tok.bos_token_id]
    data = D.tokenize_records([{"instruction": "Say yo.", "input": "", "output": "yo"}], tok, 64)
    ids, plen = data.example(0)
    prompt_ids = tok(format_prompt("Say yo."), add_special_tokens=False)["input_ids"]
    assert list(ids) == [tok.bos_token_id] + prompt_ids + tok("yo", add_special_tokens=False)["input_ids"] + [
        tok.eos_token_id]
    assert plen == 1 + len(prompt_ids)
    assert D.tokenizer_fingerprint(tok) != D.tokenizer_fingerprint(AutoTokenizer.from_pretrained(str(tokenizer_dir)))


def test_dropped_examples_are_counted_and_the_rest_kept(tokenizer):
    fixed_no_input = len(tokenizer(format_prompt("", ""), add_special_tokens=False)["input_ids"])
    fixed_input = len(tokenizer(PROMPT_INPUT.format(instruction="", input=""), add_special_tokens=False)["input_ids"])
    assert fixed_input > fixed_no_input + 8
    records = [{"instruction": "Hi.", "input": "", "output": "Hello there, friend."},
               {"instruction": "Hi.", "input": "an input", "output": "Hello."},  # template alone too long
               {"instruction": "Bye.", "input": "", "output": "Bye."}]
    data = D.tokenize_records(records, tokenizer, max_length=fixed_no_input + 8)
    assert data.stats["dropped"] == 1 and data.stats["examples"] == 2 and list(data.source_index) == [0, 2]
    assert all(n >= 1 for n in data.response_lens) and all(n <= fixed_no_input + 8 for n in data.lengths)
