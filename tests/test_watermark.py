"""The watermark (`alpaca_train.watermark`, `alpaca-train detect`): keys, generation on a left-padded batch with
transformers' `generate`, detection from ids and from decoded text, false positives on real outputs, the CLI.

The tiny random LLaMA answers real instructions; a fixed test key keeps every figure reproducible."""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from alpaca_data import secrets
from alpaca_data.errors import UserError
from alpaca_train.prompts import format_prompt
from alpaca_train.watermark import (
    DELTA,
    GAMMA,
    KEY_ENV,
    KEY_FILE_ENV,
    CpuSeededWatermarkProcessor,
    Detector,
    WatermarkKey,
    load_key,
    watermark_description,
    watermarking_config,
)
from tests.conftest import EVAL_DATA, SEEDS
from tests.train_fixtures import tiny_model_dir, tokenizer, tokenizer_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-watermark-secret-" + "7" * 24
OTHER_SECRET = "another-watermark-secret-" + "3" * 24
ANSWERS, TOKENS = 24, 200


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Thousands of tiny tensor ops: torch's thread pool only adds overhead (milliseconds each when busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_key_env(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "config" / "alpaca-kit" / "watermark.key"))
    return tmp_path / "config" / "alpaca-kit" / "watermark.key"


# ---------------------------------------------------------------- keys

def test_key_from_env(monkeypatch, no_key_env):
    monkeypatch.setenv(KEY_ENV, SECRET)
    key, notice = load_key()
    assert notice is None and key.source == f"env {KEY_ENV}"
    assert key.fingerprint == "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert not no_key_env.exists()  # a configured key never makes a file


def test_key_file_wins_and_matches_env(monkeypatch, tmp_path, no_key_env):
    path = tmp_path / "k"
    path.write_text(SECRET + "\n")
    monkeypatch.setenv(KEY_ENV, OTHER_SECRET)
    key, notice = load_key(str(path))
    assert notice is None and key.source == f"file {path}"
    monkeypatch.setenv(KEY_ENV, SECRET)
    from_env, _ = load_key()
    assert (key.fingerprint, key.hashing_key()) == (from_env.fingerprint, from_env.hashing_key())


def test_generated_key_file_is_private_and_reused(no_key_env):
    key, notice = load_key()
    assert key.source == f"generated {no_key_env}"
    assert notice and "random" in notice and str(no_key_env) in notice and key.fingerprint in notice
    assert stat.S_IMODE(no_key_env.stat().st_mode) == 0o600
    secret = no_key_env.read_text().strip()
    assert len(secret) >= 32 and secret not in notice
    again, notice2 = load_key()
    assert notice2 is None and again.source == f"file {no_key_env}"
    assert (again.fingerprint, again.hashing_key()) == (key.fingerprint, key.hashing_key())
    assert not [p for p in no_key_env.parent.iterdir() if p != no_key_env]  # no temporary file left


def test_concurrent_first_starts_share_one_key(no_key_env):
    results: list[WatermarkKey] = []
    threads = [threading.Thread(target=lambda: results.append(load_key()[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({k.fingerprint for k in results}) == 1
    assert sum(k.source.startswith("generated") for k in results) == 1


def test_detect_side_never_creates_a_key(no_key_env):
    with pytest.raises(UserError, match="no watermark key is configured"):
        load_key(create=False)
    assert not no_key_env.exists()


@pytest.mark.parametrize("content, message", [(b"", "is empty"), (b"  \n", "is empty"), (b"\xff\xfe", "not UTF-8"),
                                              (b"short", "too short")])
def test_bad_key_files(tmp_path, no_key_env, content, message):
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_key(str(path))


def test_unreadable_key_file(tmp_path, no_key_env):
    with pytest.raises(UserError, match="cannot read"):
        load_key(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="cannot read"):
        load_key(str(tmp_path))  # a folder (permissions cannot make a file unreadable for root)


def test_secret_never_shown():
    key = WatermarkKey.from_secret(SECRET, "test")
    hashing_key = str(key.hashing_key())
    shown = [repr(key), str(key), key.fingerprint, json.dumps(watermark_description(key)),
             repr(watermarking_config(key))]
    for text in shown:
        assert SECRET not in text and hashing_key not in text
    assert SECRET[:16] not in key.fingerprint and key.fingerprint[7:] not in SECRET
    description = watermark_description(key)
    assert (description["gamma"], description["delta"], description["key_fingerprint"]) == (GAMMA, DELTA,
                                                                                           key.fingerprint)
    assert SECRET not in secrets.redact(f"key={SECRET}") and hashing_key not in secrets.redact(f"k {hashing_key}")


def test_hashing_key_is_a_safe_seed():
    keys = [WatermarkKey.from_secret(f"{SECRET}-{i}", "test").hashing_key() for i in range(200)]
    assert len(set(keys)) == 200
    for value in keys:
        assert 2 <= value < 2**64 - 1 and math.gcd(value, 2**64 - 1) == 1  # k * token never 0 mod 2**64 - 1
    assert WatermarkKey.from_secret(SECRET, "a").hashing_key() == WatermarkKey.from_secret(SECRET, "b").hashing_key()
    # spread over all 64 bits, not a small int: the top bit is set for about half of them
    assert 60 <= sum(v >> 63 for v in keys) <= 140


def test_green_lists_are_transformers_own():
    """Drawn by a CPU generator and cached, the green lists are exactly the stock CPU processor's."""
    from transformers.generation.logits_process import WatermarkLogitsProcessor

    config = watermarking_config(WatermarkKey.from_secret(SECRET, "test"))
    settings = dict(greenlist_ratio=GAMMA, bias=DELTA, hashing_key=config.hashing_key)
    stock = WatermarkLogitsProcessor(50257, "cpu", **settings)
    ours = config.construct_processor(50257, "cpu")
    assert isinstance(ours, CpuSeededWatermarkProcessor)
    # one processor per settings: its green-list cache outlives each generate() call (each server batch)
    assert watermarking_config(WatermarkKey.from_secret(SECRET, "again")).construct_processor(50257, "cpu") is ours
    for token in [0, 1, 2, 50256] + random.Random(1).sample(range(50257), 40):
        expected = stock._get_greenlist_ids(torch.tensor([token]))
        assert torch.equal(ours._get_greenlist_ids(torch.tensor([token])).sort().values, expected.sort().values)
        assert len(expected) == int(50257 * GAMMA)
    scores = torch.randn(3, 50257)
    ids = torch.tensor([[5, 7], [9, 11], [3, 50256]])
    assert torch.allclose(ours(ids, scores), stock(ids, scores))


# ---------------------------------------------------------------- generation and detection

def instructions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (EVAL_DATA / "user_oriented_instructions.jsonl").open()]
    return [format_prompt(r["instruction"], (r["instances"][0].get("input") or "") if r["instances"] else "")
            for r in rows[:n]]


def generate(model_dir: Path, prompts: list[str], key: WatermarkKey | None, seed: int) -> list[list[int]]:
    """One left-padded batch through transformers' generate, as the server runs it; each row's new ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    enc = tok(prompts, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any(), "the prompts should need left padding"
    torch.manual_seed(seed)
    extra = {"watermarking_config": watermarking_config(key)} if key else {}
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, min_new_tokens=TOKENS,
                             max_new_tokens=TOKENS, pad_token_id=tok.pad_token_id, **extra)
    return out[:, enc["input_ids"].shape[1]:].tolist()


@pytest.fixture(scope="module")
def key() -> WatermarkKey:
    return WatermarkKey.from_secret(SECRET, "test")


@pytest.fixture(scope="module")
def marked(tiny_model_dir, key) -> list[list[int]]:  # noqa: F811
    return generate(tiny_model_dir, instructions(ANSWERS), key, seed=1)


@pytest.fixture(scope="module")
def detector(tiny_model_dir, key) -> Detector:  # noqa: F811
    return Detector(str(tiny_model_dir), key)


def decode(tokenizer, ids):  # noqa: F811
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def test_every_watermarked_answer_is_detected_from_ids_and_text(marked, detector, tokenizer):  # noqa: F811
    assert len(marked) == ANSWERS and all(len(ids) == TOKENS for ids in marked)
    for ids in marked:
        by_ids, by_text = detector.detect_ids(ids), detector.detect_text(decode(tokenizer, ids))
        assert by_ids.watermarked and by_text.watermarked, (by_ids, by_text)
        assert by_ids.scored_tokens >= TOKENS * 0.9 and by_text.scored_tokens >= TOKENS * 0.75
        assert by_ids.green_fraction > 0.45 and by_ids.p_value < 1e-6
    # trailing EOS/padding (rows that ended early) is not scored against the text
    padded = detector.detect_ids(marked[0] + [tokenizer.eos_token_id] * 50)
    assert padded.as_dict() == detector.detect_ids(marked[0]).as_dict()


def test_transformers_stock_detector_agrees(marked, detector, key, tiny_model_dir):  # noqa: F811
    from transformers import AutoConfig, WatermarkDetector, WatermarkingConfig

    stock = WatermarkDetector(AutoConfig.from_pretrained(str(tiny_model_dir)), "cpu",
                              WatermarkingConfig(greenlist_ratio=GAMMA, bias=DELTA, hashing_key=key.hashing_key()),
                              ignore_repeated_ngrams=True)
    z = stock(torch.tensor(marked[:4]), return_dict=True).z_score
    assert [round(float(v), 6) for v in z] == [round(detector.detect_ids(ids).z_score, 6) for ids in marked[:4]]


def test_another_key_detects_nothing(marked, tiny_model_dir, tokenizer):  # noqa: F811
    other = Detector(str(tiny_model_dir), WatermarkKey.from_secret(OTHER_SECRET, "test"))
    results = [other.detect_text(decode(tokenizer, ids)) for ids in marked]
    assert not any(r.watermarked for r in results)
    assert abs(sum(r.green_fraction for r in results) / len(results) - GAMMA) < 0.03


def test_detected_after_a_fifth_of_tokens_replaced(marked, detector, tokenizer):  # noqa: F811
    rng = random.Random(2)
    detected = 0
    for ids in marked:
        ids = list(ids)
        for position in rng.sample(range(len(ids)), len(ids) // 5):
            ids[position] = rng.randrange(len(tokenizer))
        detected += detector.detect_text(decode(tokenizer, ids)).watermarked
    assert detected >= 0.9 * len(marked)


def test_unwatermarked_answers_are_not_flagged(tiny_model_dir, detector, tokenizer):  # noqa: F811
    plain = generate(tiny_model_dir, instructions(8), None, seed=1)
    results = [detector.detect_text(decode(tokenizer, ids)) for ids in plain]
    assert not any(r.watermarked for r in results) and all(r.scored_tokens > 100 for r in results)


def real_outputs() -> list[str]:
    """200 real answers written by people or GPT models: 50 from each of four sources."""
    alpaca_eval = EVAL_DATA / "alpaca_eval"
    gpt4 = [r["output"] for r in json.loads((alpaca_eval / "gpt4.json").read_text())]
    davinci = [r["output"] for r in json.loads((alpaca_eval / "text_davinci_003.json").read_text())]
    self_instruct = [json.loads(line)["response"] for line in
                     (EVAL_DATA / "self_instruct_predictions" / "davinci-self-instruct.jsonl").open()]
    seeds = [i["output"] for line in SEEDS.open()
             for i in json.loads(line)["instances"]]
    return [t for source in (gpt4, davinci, self_instruct, seeds) for t in [t for t in source if t.strip()][:50]]


def test_real_outputs_are_not_flagged(detector):
    texts = real_outputs()
    assert len(texts) == 200
    results = [detector.detect_text(t) for t in texts]
    flagged = [(r.z_score, t[:80]) for r, t in zip(results, texts) if r.watermarked]
    assert not flagged
    scored = [r for r in results if r.scored_tokens >= 50]
    assert len(scored) >= 100 and abs(sum(r.green_fraction for r in scored) / len(scored) - GAMMA) < 0.03


def test_too_little_text_is_no_verdict(detector, tokenizer):  # noqa: F811
    for ids in ([], [42], [tokenizer.bos_token_id, 42], [42, tokenizer.eos_token_id]):
        result = detector.detect_ids(ids)
        assert (result.scored_tokens, result.watermarked, result.p_value) == (0, False, 1.0)


def test_detector_refuses_a_missing_or_empty_model_folder(tmp_path, key):
    with pytest.raises(UserError, match="no such model folder"):
        Detector(str(tmp_path / "nope"), key)
    with pytest.raises(UserError, match="not a model folder"):
        Detector(str(tmp_path), key)


# ---------------------------------------------------------------- CLI

def run_detect(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, KEY_FILE_ENV)}
    return subprocess.run([sys.executable, "-m", "alpaca_train", "detect", *args], capture_output=True, text=True,
                          input=stdin, env={**full_env, "COLUMNS": "200", **(env or {})}, cwd=ROOT, timeout=300)


def test_cli_detects_from_stdin_as_json(marked, detector, tiny_model_dir, tokenizer):  # noqa: F811
    text = decode(tokenizer, marked[0])
    done = run_detect("--model", str(tiny_model_dir), "-", "--json", env={KEY_ENV: SECRET}, stdin=text)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = detector.detect_text(text)
    assert result["watermarked"] is True and result["scored_tokens"] == expected.scored_tokens
    assert result["z_score"] == pytest.approx(expected.z_score)
    assert result["key_fingerprint"] == detector.key.fingerprint
    assert SECRET not in done.stdout + done.stderr


def test_cli_plain_verdict_from_a_file_with_a_key_file(tmp_path, tiny_model_dir):  # noqa: F811
    key_file, text_file = tmp_path / "wm.key", tmp_path / "answer.txt"
    key_file.write_text(SECRET + "\n")
    text_file.write_text(real_outputs()[0], encoding="utf-8")
    done = run_detect("--model", str(tiny_model_dir), "--file", str(text_file), "--watermark-key-file", str(key_file),
                      "--threshold", "4")
    assert done.returncode == 0, done.stderr  # the verdict is data
    assert "verdict:       not watermarked (z < 4)" in done.stdout
    for label in ("scored tokens:", "green share:", "z-score:", "p-value:"):
        assert label in done.stdout
    assert SECRET not in done.stdout + done.stderr


def test_cli_errors_are_one_line(tmp_path, tiny_model_dir):  # noqa: F811
    key_env = {KEY_ENV: SECRET}
    missing_key_file = tmp_path / "none" / "watermark.key"
    cases = [
        (["--model", str(tmp_path / "nope"), "hello world"], key_env, "no such model folder"),
        (["--model", str(tiny_model_dir), "--file", str(tmp_path / "missing.txt")], key_env, "cannot read"),
        (["--model", str(tiny_model_dir)], key_env, "no text"),
        (["--model", str(tiny_model_dir), "-"], key_env, "no text to score"),
        (["--model", str(tiny_model_dir), "hello world"], {KEY_FILE_ENV: str(missing_key_file)},
         "no watermark key is configured"),
    ]
    for args, env, message in cases:
        done = run_detect(*args, env=env, stdin="  \n")
        lines = done.stderr.strip().splitlines()
        assert done.returncode != 0 and len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert not missing_key_file.exists()  # detect never makes a key
