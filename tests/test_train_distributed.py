"""The FSDP path on CPU: `alpaca-train launch --nproc 2` (torchrun, gloo), interrupted and resumed,
gives the model a single process trains, saved as an ordinary from_pretrained directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from alpaca_train.trainer import TrainConfig, train
from tests.train_fixtures import *


def _launch(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "alpaca_train", "launch", "--nproc", "2", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_two_process_fsdp_run_resumes_and_matches_single_process(tmp_path, records_file, tiny_model_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    common = ["--data", str(records_file), "--model", str(tiny_model_dir), "--max-length", "96",
              "--effective-batch-size", "8", "--micro-batch-size", "2", "--lr", "1e-3", "--max-steps", "4",
              "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "fsdp"
    first = _launch(*common, "--out", str(out), "--stop-after-steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "FSDP full shard" in first.stderr and (out / "checkpoint-2" / "trainer_state.pt").is_file()
    second = _launch(*common, "--out", str(out), "--resume", "latest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "done: step 4/4" in second.stdout

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert type(model).__name__ == "LlamaForCausalLM"
    lineage = json.loads((out / "alpaca_lineage.json").read_text())
    assert lineage["training"]["world_size"] == 2 and lineage["training"]["gradient_accumulation_steps"] == 2

    single = train(TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "single"),
                               max_length=96, effective_batch_size=8, micro_batch_size=2, lr=1e-3, max_steps=4,
                               cache_dir=str(tmp_path / "cache"), logging_steps=100))
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert all(abs(r["loss"] - x) < 1e-4 for r, x in zip(logged, single.losses, strict=True))
    a = load_file(out / "model.safetensors")
    b = load_file(tmp_path / "single" / "model.safetensors")
    assert sorted(a) == sorted(b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_two_processes_without_fsdp_use_ddp_and_match_single_process(tmp_path, records_file, tiny_model_dir):
    """--fsdp off with 2 processes once trained two unsynchronised copies; now DDP keeps them in step."""
    from safetensors.torch import load_file

    common = dict(max_length=96, effective_batch_size=8, micro_batch_size=2, lr=1e-3, max_steps=3)
    out = tmp_path / "ddp"
    run = _launch("--data", str(records_file), "--model", str(tiny_model_dir), "--out", str(out), "--fsdp", "off",
                  "--cache-dir", str(tmp_path / "cache"),
                  *[f"--{k.replace('_', '-')}={v}" for k, v in common.items()])
    assert run.returncode == 0, run.stderr[-3000:]
    assert "DDP" in run.stderr
    single = train(TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "single"),
                               cache_dir=str(tmp_path / "cache"), logging_steps=100, **common))
    logged = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all(abs(r["loss"] - x) < 1e-4 for r, x in zip(logged, single.losses, strict=True))
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "single" / "model.safetensors")
    assert sorted(a) == sorted(b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert json.loads((out / "alpaca_lineage.json").read_text())["training"]["parallel"] == "ddp"
