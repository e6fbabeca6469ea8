"""`alpaca-train --lora`: a peft adapter trained on a store revision, loaded as is by peft, merged, served, used as
an `hf:` teacher, resumed, and the bad combinations refused with one line (issue 23).

One adapter is trained once for the module (4 steps on the tiny LLaMA, the real peft) and reused by every test.
"""
from __future__ import annotations

import json

import httpx
import pytest

from alpaca_train.tiny import make_tiny_llama
from alpaca_train.trainer import TrainConfig, train
from tests.conftest import CORPORA, run_cli
from tests.inprocess_cli import run_main
from tests.serve_fixtures import ServeProcess, train_cli

STEPS = ("--max-steps", "4", "--effective-batch-size", "8", "--micro-batch-size", "4", "--max-length", "128",
         "--lr", "1e-2", "--save-steps", "2", "--cache-dir", "")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    store = folder / "store"
    rows = json.loads((CORPORA / "gsm8k_train_alpaca.json").read_text(encoding="utf-8"))[:64]
    (folder / "train.json").write_text(json.dumps(rows), encoding="utf-8")
    revision = run_cli("import", folder / "train.json", "-d", "gsm-small", store=store).last_line
    make_tiny_llama(folder / "tiny")
    out = folder / "adapter"
    trained = train_cli("--data", "gsm-small@main", "--model", folder / "tiny", "--out", out, "--lora", *STEPS,
                        store=store)
    assert trained.returncode == 0, trained.stderr
    return {"folder": folder, "store": store, "base": folder / "tiny", "adapter": out, "revision": revision,
            "stderr": trained.stderr}


def _logits(model, tokenizer):
    import torch

    ids = tokenizer(["Below is an instruction. Add 2 and 3.", "Name a colour"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**ids).logits


def test_adapter_is_a_small_standard_peft_folder_with_lineage_and_card(lora_run):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    adapter, base = lora_run["adapter"], lora_run["base"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    assert config["base_model_name_or_path"] == str(base.resolve())
    weights = load_file(adapter / "adapter_model.safetensors")
    assert weights and all("lora_A" in k or "lora_B" in k for k in weights)
    assert not (adapter / "model.safetensors").exists()
    adapter_bytes = sum(p.stat().st_size for p in adapter.glob("adapter_*"))
    assert adapter_bytes < (base / "model.safetensors").stat().st_size / 4
    # every checkpoint, the intermediate one too, is an adapter folder peft loads as is
    for folder in (adapter, adapter / "checkpoint-2"):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(folder))
        assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == 2 * 2 * (64 * 8 + 8 * 64)

    lineage = json.loads((adapter / "alpaca_lineage.json").read_text())
    assert lineage["dataset"]["revision_id"] == lora_run["revision"]
    assert lineage["base_model"]["id"] == str(base)
    entry = lineage["adapter"]
    assert entry["type"] == "lora" and entry["r"] == 8 and entry["base_model_name_or_path"] == str(base.resolve())
    assert 0 < entry["trainable_share"] < 0.01 and entry["trainable_parameters"] == 4096
    assert lineage["training"]["lora"] is True and lineage["training"]["lr"] == 1e-2
    card = (adapter / "README.md").read_text()
    assert "library_name: peft" in card and "LoRA adapter" in card and str(base.resolve()) in card
    assert "--lora --lora-r 8" in card
    assert (adapter / "loss_curve.png").is_file() and "4,096 of" in lora_run["stderr"]


def test_merge_gives_the_logits_of_base_plus_adapter(lora_run, tmp_path, capsys):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alpaca_train.cli import main

    adapter, base, merged = lora_run["adapter"], lora_run["base"], tmp_path / "merged"
    done = run_main(main, ["merge", adapter, "--out", merged], capsys)
    assert done.returncode == 0, done.stderr
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    tokenizer.pad_token = tokenizer.eos_token
    plain = _logits(AutoModelForCausalLM.from_pretrained(str(merged)), tokenizer)
    with_peft = _logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter)),
                        tokenizer)
    original = _logits(AutoModelForCausalLM.from_pretrained(str(base)), tokenizer)
    assert (plain - with_peft).abs().max().item() < 1e-4
    assert (plain - original).abs().max().item() > 1e-3  # the adapter changed the model
    lineage = json.loads((merged / "alpaca_lineage.json").read_text())
    assert lineage["dataset"]["revision_id"] == lora_run["revision"] and lineage["adapter"]["r"] == 8
    assert lineage["merge"]["adapter"] == str(adapter.resolve()) and len(lineage["merge"]["adapter_sha256"]) == 64
    assert "merged into its base" in (merged / "README.md").read_text()
    again = run_main(main, ["merge", adapter, "--out", merged], capsys)
    not_adapter = run_main(main, ["merge", base, "--out", tmp_path / "m2"], capsys)
    for refused in (again, not_adapter):
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "not a LoRA adapter" in not_adapter.stderr

    # the one loader: an hf: teacher (and eval generate --model hf:) on the adapter is base + adapter
    from alpaca_data.generate.teachers import HFTeacher

    teacher = HFTeacher(str(adapter))
    teacher.load()
    assert type(teacher._model).__name__ == "LlamaForCausalLM"  # merged: a plain model when generating
    assert torch.allclose(_logits(teacher._model, tokenizer), plain, atol=1e-4)


def test_serve_answers_a_chat_request_from_the_adapter(lora_run):
    with ServeProcess(lora_run["adapter"], "--moderation", "none", "--watermark", "off") as server:
        response = httpx.post(f"{server.base_url}/v1/chat/completions", timeout=60, json={
            "model": "adapter", "messages": [{"role": "user", "content": "Add 2 and 3."}], "max_tokens": 8,
            "temperature": 0})
        info = httpx.get(f"{server.base_url}/v1/models", timeout=10).json()
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["role"] == "assistant" and answer["usage"]["completion_tokens"] >= 1
    assert info["data"][0]["id"] == "adapter"


def test_resumed_lora_run_ends_with_the_same_adapter(lora_run, tmp_path):
    from safetensors.torch import load_file

    resumed = train(TrainConfig(data="gsm-small@main", store=str(lora_run["store"]), model=str(lora_run["base"]),
                                out=str(tmp_path / "resumed"), lora=True, max_steps=4, effective_batch_size=8,
                                micro_batch_size=4, max_length=128, lr=1e-2, cache_dir="",
                                resume=str(lora_run["adapter"] / "checkpoint-2")))
    assert resumed.global_step == 4 and len(resumed.losses) == 2
    a = load_file(lora_run["adapter"] / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert sorted(a) == sorted(b) and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    shards = sum(p.stat().st_size for p in (lora_run["adapter"] / "checkpoint-2" / "shards").iterdir())
    assert shards < (lora_run["base"] / "model.safetensors").stat().st_size / 4  # adapter + its AdamW state only


def test_lr_defaults_to_alpaca_loras_with_lora(lora_run):
    from alpaca_train import lora

    for settings, lr in (({"lora": True}, 3e-4), ({}, 2e-5), ({"lora": True, "lr": 1e-3}, 1e-3)):
        cfg = TrainConfig(data="d.json", model=str(lora_run["base"]), out="o", **settings)
        cfg.validate()
        assert cfg.lr == lr
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, lora.target_modules(cfg.lora_targets)) == \
        (8, 16, 0.05, ["q_proj", "v_proj"])
    assert lora.target_modules("all-linear") == "all-linear"


@pytest.mark.parametrize("args, message", [
    (("--lora", "--lora-r", "0"), "--lora-r must be at least 1, got 0"),
    (("--lora", "--lora-targets", "q_proj,qq_proj"), "--lora-targets qq_proj: no such layer in LlamaForCausalLM"),
    (("--lora", "--quantize", "4bit"), "--quantize 4bit (QLoRA) needs a CUDA GPU"),
    (("--lora-r", "4"), "--lora-r applies to LoRA: add --lora"),
    (("--lora", "--pad-token", "add"), "--pad-token add resizes the embeddings"),
])
def test_bad_lora_combinations_are_one_line(lora_run, tmp_path, capsys, args, message):
    from alpaca_train.cli import main

    refused = run_main(main, ["--data", lora_run["folder"] / "train.json", "--model", lora_run["base"],
                              "--out", tmp_path / "out", "--max-steps", "2", "--cache-dir", "", *args], capsys)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
    assert message in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists()


def test_toml_config_trains_lora_on_top_of_an_adapter(lora_run, tmp_path, capsys, monkeypatch):
    from alpaca_train.cli import main

    toml = tmp_path / "train.toml"
    # --model an adapter: a new adapter on top of it (the first merged into its base)
    toml.write_text(f"data = 'gsm-small@main'\nmodel = '{lora_run['adapter']}'\nout = '{tmp_path / 'out'}'\n"
                    "lora = true\nlora_r = 4\nlora_targets = 'all-linear'\nmax_steps = 1\neffective_batch_size = 4\n"
                    "micro_batch_size = 4\nmax_length = 64\ncache_dir = ''\n", encoding="utf-8")
    monkeypatch.setenv("ALPACA_STORE", str(lora_run["store"]))
    done = run_main(main, ["train", "--config", toml], capsys)
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert config["r"] == 4 and {name.rsplit(".", 1)[-1] for name in config["target_modules"]} == \
        {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}  # all but the LM head
    assert json.loads((tmp_path / "out" / "alpaca_lineage.json").read_text())["training"]["lr"] == 3e-4
    assert config["base_model_name_or_path"] == str(lora_run["adapter"].resolve())

    from alpaca_data.model_loading import load_causal_lm

    stacked = load_causal_lm(str(tmp_path / "out"))
    assert type(stacked).__name__ == "LlamaForCausalLM" and not any("lora_" in n for n, _ in stacked.named_parameters())
