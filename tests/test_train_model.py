"""alpaca_train with a tiny random LLaMA on CPU: batching equivalence, training, resume, lineage, CLI."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from alpaca_data.store import Store
from alpaca_train import data as D
from alpaca_train.modeling import decoder_layer_classes, per_example_loss, setup_pad_token
from alpaca_train.trainer import TRAINER_STATE, TrainConfig, train
from tests.train_fixtures import *
from tests.train_fixtures import corpus_sample


@pytest.fixture(scope="module")
def sharp_model(tokenizer):
    """A tiny LLaMA with large random weights, so that attending across examples visibly changes losses."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, initializer_range=0.3)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_per_example_loss_is_the_same_padded_and_padding_free(sharp_model, tokenizer, attn):
    sharp_model.config._attn_implementation = attn
    sharp_model.set_attn_implementation(attn) if hasattr(sharp_model, "set_attn_implementation") else None
    data = D.tokenize_records(corpus_sample(10), tokenizer, max_length=96)
    examples = data.examples(range(len(data)))
    with torch.no_grad():
        padded = per_example_loss(sharp_model, D.PaddedCollator(tokenizer.eos_token_id)(examples))
        flat_batch = D.PaddingFreeCollator()(examples)
        flat = per_example_loss(sharp_model, flat_batch)
        alone = torch.stack([per_example_loss(sharp_model, D.PaddedCollator(0)([e]))[0] for e in examples])
        # negative control: the same concatenation without restarting positions leaks across examples
        flat_batch["position_ids"] = torch.arange(flat_batch["input_ids"].shape[1])[None]
        leaky = per_example_loss(sharp_model, flat_batch)
    assert torch.allclose(padded, flat, atol=1e-5, rtol=0)
    assert torch.allclose(padded, alone, atol=1e-5, rtol=0)
    assert (leaky[1:] - padded[1:]).abs().max() > 1e-2


def test_decoder_layer_class_is_found_from_the_model(sharp_model):
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    assert decoder_layer_classes(sharp_model) == {LlamaDecoderLayer}
    sharp_model._no_split_modules = None  # fall back to the repeated block of the largest ModuleList
    try:
        assert decoder_layer_classes(sharp_model) == {LlamaDecoderLayer}
    finally:
        del sharp_model._no_split_modules


def test_pad_token_strategies(tokenizer_dir, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert setup_pad_token(tok, None, "eos")["pad_token_id"] == tok.eos_token_id and len(tok) == 50257
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    before = model.get_input_embeddings().weight.detach().clone()
    info = setup_pad_token(tok, model, "add")
    emb = model.get_input_embeddings().weight.detach()
    assert info["strategy"] == "add" and tok.pad_token == "[PAD]" and emb.shape[0] == before.shape[0] + 1
    assert torch.allclose(emb[:-1], before) and model.config.pad_token_id == tok.pad_token_id


def _cfg(tmp_path, data, model, **kw) -> TrainConfig:
    base = {"data": str(data), "model": str(model), "out": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
            "max_length": 96, "effective_batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "max_steps": 6,
            "logging_steps": 100}
    return TrainConfig(**{**base, **kw})


def test_loss_falls_and_the_checkpoint_has_lineage_and_card(tmp_path, records_file, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _cfg(tmp_path, records_file, tiny_model_dir, max_length=128, effective_batch_size=8, micro_batch_size=8,
               lr=3e-3, max_steps=None, epochs=3)
    result = train(cfg)
    assert result.global_step == result.total_steps == 24  # 64 records / 8 per step x 3 epochs
    first, last = sum(result.losses[:4]) / 4, sum(result.losses[-4:]) / 4
    assert last < first - 1.0, result.losses
    out = tmp_path / "out"
    reloaded = AutoModelForCausalLM.from_pretrained(str(out))
    assert AutoTokenizer.from_pretrained(str(out)).pad_token_id is not None
    assert reloaded.config.vocab_size == 50257
    lineage = json.loads((out / "alpaca_lineage.json").read_text())
    assert lineage["dataset"]["ref"] == str(records_file) and len(lineage["dataset"]["revision_id"]) == 64
    assert lineage["base_model"]["id"] == str(tiny_model_dir) and lineage["tokenizer"]["fingerprint"]
    assert lineage["training"]["lr"] == 3e-3 and lineage["training"]["gradient_accumulation_steps"] == 1
    assert lineage["code"]["alpaca_train_version"] and "git_commit" in lineage["code"]
    assert lineage["checkpoint"] == {"global_step": 24, "total_steps": 24, "final": True, "epoch": 3.0}
    card = (out / "README.md").read_text()
    assert lineage["dataset"]["revision_id"] in card and "### Response:" in card and "{{" not in card
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 24


def test_resume_continues_the_schedule_exactly(tmp_path, records_file, tiny_model_dir):
    from safetensors.torch import load_file

    full = train(_cfg(tmp_path / "a", records_file, tiny_model_dir, batching="grouped"))
    part = train(_cfg(tmp_path / "b", records_file, tiny_model_dir, batching="grouped", stop_after_steps=3))
    assert part.stopped_early and part.global_step == 3
    ckpt = tmp_path / "b" / "out" / "checkpoint-3"
    assert (ckpt / TRAINER_STATE).is_file() and (ckpt / "alpaca_lineage.json").is_file()
    assert (ckpt / "README.md").is_file() and (ckpt / "shards" / ".metadata").is_file()  # a sharded checkpoint
    assert json.loads((ckpt / "alpaca_lineage.json").read_text())["checkpoint"]["global_step"] == 3
    rest = train(_cfg(tmp_path / "b", records_file, tiny_model_dir, batching="grouped", resume="latest"))
    assert rest.global_step == full.global_step == 6 and rest.total_steps == full.total_steps
    assert rest.lrs == pytest.approx(full.lrs[3:], abs=1e-12)
    assert rest.losses == pytest.approx(full.losses[3:], abs=1e-5)
    a, b = load_file(tmp_path / "a" / "out" / "model.safetensors"), load_file(tmp_path / "b" / "out" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # padding-free batching trains the same model as Alpaca's padded batching (same steps, same loss)
    free = train(_cfg(tmp_path / "c", records_file, tiny_model_dir, batching="padfree"))
    assert free.losses == pytest.approx(full.losses, abs=1e-4)


def test_resume_refuses_other_data(tmp_path, records_file, tiny_model_dir, records64):
    from alpaca_data.errors import UserError

    train(_cfg(tmp_path, records_file, tiny_model_dir, max_steps=2, stop_after_steps=1))
    other = tmp_path / "other.json"
    other.write_text(json.dumps(records64[:32]))
    with pytest.raises(UserError, match="trained on revision"):
        train(_cfg(tmp_path, other, tiny_model_dir, max_steps=2, resume="latest"))


def test_cli_config_file_flags_and_errors(tmp_path, records_file, tiny_model_dir, capsys):
    from alpaca_data.cli_options import build_config, load_toml
    from alpaca_train import cli

    toml = tmp_path / "train.toml"
    toml.write_text(f'data = "{records_file}"\nmodel = "{tiny_model_dir}"\nlr = 0.5\n[train]\nmax-length = 64\n'
                    f'epochs = 2\n')
    values = load_toml(toml, {f.name for f in dataclasses.fields(TrainConfig)})
    cfg = build_config(TrainConfig, {**values, "out": "o", "lr": 0.01})  # flags win over the file
    assert (cfg.lr, cfg.max_length, cfg.epochs, cfg.out, cfg.batching) == (0.01, 64, 2, "o", "padfree")

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as done:
            cli.main(list(args))
        captured = capsys.readouterr()
        return done.value.code, captured.out + captured.err

    code, output = run("--help")
    assert code == 0 and all(name in output for name in ("train", "launch", "tiny-model"))
    toml.write_text("learning_rate = 1\n")
    code, output = run("train", "--config", str(toml), "--out", "o")
    assert code == 1 and "unknown setting(s): learning_rate" in output
    code, output = run("--data", str(tmp_path / "nope.json"), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"))
    assert code == 1 and "no such file" in output and "Traceback" not in output
    code, output = run("--data", str(records_file), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
                       "--effective-batch-size", "6", "--micro-batch-size", "4")
    assert code == 1 and "not a multiple" in output
    code, output = run("--data", str(records_file), "--out", "o")
    assert code == 2 and output.strip() == "error: missing option(s): --model"
    code, output = run("launch", "--nproc", "0")
    assert code == 2 and output.strip() == "error: --nproc must be at least 1"


def test_training_from_a_store_ref_records_the_revision(tmp_path, tiny_model_dir):
    store = Store.open(tmp_path / "store")
    manifest = store.commit("alpaca", corpus_sample(8), message="eight",
                            recipe={"command": "test", "options": {}})
    store.tag("alpaca@main", "v1")
    result = train(_cfg(tmp_path, "alpaca@v1", tiny_model_dir, store=str(tmp_path / "store"), max_steps=1))
    assert result.global_step == 1
    lineage = json.loads((tmp_path / "out" / "alpaca_lineage.json").read_text())
    assert lineage["dataset"]["ref"] == "alpaca@v1" and lineage["dataset"]["kind"] == "store"
    assert lineage["dataset"]["revision_id"] == manifest.id and lineage["dataset"]["dataset"] == "alpaca"
    assert lineage["dataset"]["manifest_hash"] == store.manifest_hash("alpaca@v1")
    assert manifest.id in (tmp_path / "out" / "README.md").read_text()
