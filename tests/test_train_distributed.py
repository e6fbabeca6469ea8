"""The FSDP path on CPU: `alpaca-train launch --nproc 2` (torchrun, gloo), interrupted and resumed,
gives the model a single process trains, saved as an ordinary from_pretrained directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from alpaca_train.trainer import TrainConfig, train
from tests.conftest import ROOT
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


def test_launch_builds_torchrun_for_one_node_many_nodes_and_a_rendezvous():
    from alpaca_data.errors import UsageError
    from alpaca_train.cli import torchrun_command

    single = torchrun_command(8, 1, 0, None, 29500, None, None, None, 0)
    assert single[-1] == "--standalone" and "--nproc-per-node=8" in single
    static = torchrun_command(4, 2, 1, "node0", 29400, None, None, None, 3)
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=node0", "--master-port=29400", "--max-restarts=3"} <= set(static)
    rdzv = torchrun_command(4, 2, 0, None, 29500, "c10d", "node0:29400", "job7", 0)
    assert {"--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400", "--rdzv-id=job7"} <= set(rdzv)
    for bad in ((4, 2, 0, None, 29500, None, None, None, 0), (4, 2, 2, "h", 29500, None, None, None, 0),
                (4, 2, 0, None, 29500, "c10d", None, None, 0)):
        with pytest.raises(UsageError):
            torchrun_command(*bad)


def test_two_nodes_on_loopback_train_the_single_process_model(tmp_path, records_file, tiny_model_dir):
    """Two `launch --nnodes 2` processes (one per "node", static rendezvous on 127.0.0.1) form one world."""
    import socket

    from safetensors.torch import load_file

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    common = ["--data", str(records_file), "--model", str(tiny_model_dir), "--max-length", "96",
              "--effective-batch-size", "8", "--micro-batch-size", "2", "--lr", "1e-3", "--max-steps", "2",
              "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "nodes")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    nodes = [subprocess.Popen([sys.executable, "-m", "alpaca_train", "launch", "--nproc", "1", "--nnodes", "2",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               *common], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "world 2" in outputs[0][1]
    single = train(TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "single"),
                               max_length=96, effective_batch_size=8, micro_batch_size=2, lr=1e-3, max_steps=2,
                               cache_dir=str(tmp_path / "cache"), logging_steps=100))
    assert single.global_step == 2
    a, b = load_file(tmp_path / "nodes" / "model.safetensors"), load_file(tmp_path / "single" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_a_sharded_load_holds_a_fraction_of_the_model_on_each_rank(tmp_path, tokenizer):
    """~110M parameters (random, built here), 2 gloo ranks: each rank's peak host memory while loading is
    below 60% of one full fp32 copy; the plain path (every rank reads everything) is shown for contrast."""
    from alpaca_train.tiny import make_tiny_llama

    folder = tmp_path / "llama-110m"
    make_tiny_llama(folder, tokenizer, layers=12, hidden=640)
    results = {}
    for mode in ("sharded", "full"):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                   "-m", "tests.load_memory_probe", str(folder)] + (["--full"] if mode == "full" else [])
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        results[mode] = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    for mode, rows in results.items():
        for row in rows:
            print(f"{mode} rank {row['rank']}: load peak {row['load_peak_bytes'] / 2**20:.0f} MiB = "
                  f"{row['load_peak_bytes'] / row['full_fp32_bytes']:.0%} of one fp32 copy "
                  f"({row['full_fp32_bytes'] / 2**20:.0f} MiB)")
    assert len(results["sharded"]) == 2 and results["sharded"][0]["full_fp32_bytes"] > 400 * 2**20
    assert all(row["load_peak_bytes"] < 0.6 * row["full_fp32_bytes"] for row in results["sharded"])
    assert all(row["load_peak_bytes"] > 0.9 * row["full_fp32_bytes"] for row in results["full"])  # the contrast


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and every process below it, found through /proc."""
    import signal
    from pathlib import Path

    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigkill_then_resume_from_shards_on_two_or_one_processes(tmp_path, records_file, tiny_model_dir):
    """A 2-process FSDP run writes sharded checkpoints (each rank its shards), is SIGKILLed, resumes from the
    shards on 2 processes (same weights as an uninterrupted run within 1e-6) and on 1 process (resharded)."""
    import time

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    common = ["--data", str(records_file), "--model", str(tiny_model_dir), "--max-length", "96",
              "--effective-batch-size", "8", "--micro-batch-size", "2", "--lr", "1e-3", "--max-steps", "12",
              "--save-steps", "2", "--val-fraction", "0", "--cache-dir", str(tmp_path / "cache")]
    straight = _launch(*common, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.Popen([sys.executable, "-m", "alpaca_train", "launch", "--nproc", "2", *common, "--out", str(out)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "checkpoint-2" / "trainer_state.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be killed"
    _kill_tree(run.pid)  # torchrun and both ranks at once (torchrun starts its workers in sessions of their own)
    run.wait(timeout=30)
    time.sleep(1)
    assert not (out / "model.safetensors").exists()  # nothing of the killed run is still going
    shards = sorted((out / "checkpoint-2" / "shards").glob("*.distcp"))
    assert len(shards) == 2  # one file per rank

    # A kill during a later save leaves a partial checkpoint beyond the last whole one: resume must rewrite it.
    whole = max(int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.pt"))
    partial = out / f"checkpoint-{whole + 2}" / "shards"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "__0_0.distcp").write_bytes(b"half a shard")
    (partial / ".metadata").write_bytes(b"not metadata")
    resumed = _launch(*common, "--out", str(out), "--resume", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(out / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6

    one = train(TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "one"),
                            resume=str(out / "checkpoint-2"), max_length=96, effective_batch_size=8,
                            micro_batch_size=2, lr=1e-3, max_steps=12, save_steps=2, val_fraction=0.0,
                            cache_dir=str(tmp_path / "cache"), logging_steps=100))
    assert one.global_step == 12
    c = load_file(tmp_path / "one" / "model.safetensors")
    assert max((a[k] - c[k]).abs().max().item() for k in a) < 1e-4  # resharded 2 -> 1: other reduction order

    ids = torch.tensor([[1, 42, 314, 2718]])
    logits = [AutoModelForCausalLM.from_pretrained(str(path)).eval()(ids).logits
              for path in (tmp_path / "straight", out)]
    assert torch.allclose(logits[0], logits[1], atol=1e-5)
