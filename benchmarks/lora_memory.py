"""What LoRA saves (issue 23): peak memory and time per optimizer step of `--lora` (alpaca-lora's defaults: r 8,
alpha 16, dropout 0.05 on q_proj,v_proj) against full fine-tuning, same model, same data, same steps, on this CPU.

Each run is a fresh process (so its peak RSS is its own) doing what `alpaca-train` does per step: the model from
the shared loader, the peft adapter from `alpaca_train.lora.apply_lora`, the tokenised Alpaca prompts with
response-only labels, padding-free micro-batches, `token_losses` (LM head on trained positions only), gradient
clipping and AdamW over the trainable parameters. Reported: peak RSS of the process, its rise above the process
after imports and tokenisation (the training's own memory: weights, gradients, AdamW state, activations), the
best and median seconds per step (best: the machine may be shared), trainable parameters and the adapter's size
on disk against the model's. Goal: LoRA's peak memory at most half of full fine-tuning's. Prints the ratio last.

    .venv/bin/python benchmarks/lora_memory.py                              # the ~110M random LLaMA
    .venv/bin/python benchmarks/lora_memory.py --model models/smollm2      # + the real SmolLM2-135M (make smollm2)
    .venv/bin/python benchmarks/lora_memory.py --gradient-checkpointing    # both runs recompute activations
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data" / "corpora"
CORPORA = ("gsm8k_train_alpaca.json", "gpteacher_roleplay.json", "gpteacher_codegen.json",
           "gpteacher_toolformer.json", "alpaca_zh_10000.json")


def load_records(n: int) -> list[dict]:
    folder = SHARED if SHARED.is_dir() else ROOT / "tests" / "data" / "corpora"
    pools = []
    for name in CORPORA:
        rows = json.loads((folder / name).read_text(encoding="utf-8"))
        pools.append([{"instruction": r["instruction"], "input": r.get("input") or "",
                       "output": r.get("output", r.get("response", ""))} for r in rows])
    return [pools[i % len(pools)][i // len(pools) % len(pools[i % len(pools)])] for i in range(n)]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args) -> dict:
    """One run (full or LoRA) in this process; returns its figures."""
    import torch

    from alpaca_data.model_loading import load_causal_lm, load_tokenizer
    from alpaca_train import data as D
    from alpaca_train import lora
    from alpaca_train.modeling import setup_pad_token, token_losses
    from alpaca_train.trainer import TrainConfig

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    setup_pad_token(tokenizer)
    records = load_records(args.micro_batch_size * (args.steps + args.warmup))
    data = D.tokenize_records(records, tokenizer, args.max_length)
    collate = D.make_collator("padfree", tokenizer.pad_token_id)
    batches = [collate(data.examples(list(range(k, k + args.micro_batch_size))))
               for k in range(0, len(data) - args.micro_batch_size + 1, args.micro_batch_size)]
    base_rss = rss_mib()  # imports, tokenizer and data: what both runs share before the model exists
    model = load_causal_lm(args.model, dtype=torch.float32)
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if args.mode == "lora":
        cfg = TrainConfig(data="-", model=args.model, out="-", lora=True)  # alpaca-lora's defaults
        model = lora.apply_lora(model, cfg, gradient_checkpointing=args.gradient_checkpointing)
    model.train()
    trainable, total = lora.parameter_counts(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-4 if args.mode == "lora" else 2e-5)
    device = torch.device("cpu")
    times, losses = [], []
    for i, batch in enumerate(batches[:args.warmup + args.steps]):
        start = time.perf_counter()
        ce, _ = token_losses(model, batch, device)
        loss = ce.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        losses.append(float(loss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"mode": args.mode, "model": args.model, "trainable": trainable, "total": total,
              "peak_rss_mib": round(peak, 1), "base_rss_mib": round(base_rss, 1),
              "training_mib": round(peak - base_rss, 1), "best_s_per_step": round(min(times), 3),
              "median_s_per_step": round(statistics.median(times), 3), "steps": len(times),
              "tokens_per_step": int(statistics.mean(int(b["input_ids"].numel()) for b in batches[:len(losses)])),
              "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
              "checkpointing": args.gradient_checkpointing}
    with tempfile.TemporaryDirectory() as folder:
        if args.mode == "lora":
            lora.save_adapter(model, Path(folder), None)
        else:
            model.save_pretrained(folder, safe_serialization=True)
        result["saved_bytes"] = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
    return result


def make_110m(folder: Path) -> str:
    from alpaca_train.tiny import make_tiny_llama

    if not (folder / "config.json").is_file():
        make_tiny_llama(folder, layers=12, hidden=640)  # the FSDP load test's model: ~110M parameters, GPT-2 BPE
    return str(folder)


def run_pair(model: str, args) -> list[dict]:
    rows = []
    for mode in ("full", "lora"):
        cmd = [sys.executable, __file__, "--worker", mode, "--model", model, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--micro-batch-size", str(args.micro_batch_size),
               "--max-length", str(args.max_length)] + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                        "TOKENIZERS_PARALLELISM": "false"})
        if done.returncode != 0:
            raise SystemExit(f"{mode} run on {model} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def report(rows: list[dict], name: str) -> float:
    full, lo = rows
    print(f"\n{name}: {full['total'] / 1e6:.1f}M parameters, {full['tokens_per_step']} tokens per step, "
          f"{full['steps']} timed steps (+warm-up), 1 thread{', gradient checkpointing' if full['checkpointing'] else ''}")
    print(f"{'':<6} {'trainable':>14} {'peak RSS':>10} {'training':>10} {'s/step best':>12} {'median':>8} "
          f"{'saved':>10}  loss first -> last")
    for r in rows:
        print(f"{r['mode']:<6} {r['trainable']:>14,} {r['peak_rss_mib']:>8.0f}Mi {r['training_mib']:>8.0f}Mi "
              f"{r['best_s_per_step']:>12.2f} {r['median_s_per_step']:>8.2f} {r['saved_bytes'] / 2**20:>8.2f}Mi  "
              f"{r['first_loss']} -> {r['last_loss']}")
    ratio = lo["peak_rss_mib"] / full["peak_rss_mib"]
    print(f"LoRA / full: peak RSS {ratio:.2f}x, training memory {lo['training_mib'] / full['training_mib']:.2f}x, "
          f"s/step {lo['best_s_per_step'] / full['best_s_per_step']:.2f}x (best), trainable share "
          f"{lo['trainable'] / lo['total']:.3%}, adapter {lo['saved_bytes'] / full['saved_bytes']:.4%} of the model")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[],
                        help="also measure this model folder (e.g. models/smollm2); the ~110M LLaMA always runs")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--gradient-checkpointing", action="store_true", help="both runs recompute activations")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--worker", choices=("full", "lora"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.model = args.model[-1]
        args.mode = args.worker
        print(json.dumps(worker(args)))
        return 0
    cache = Path(tempfile.gettempdir()) / "alpaca-bench-llama-110m"
    ratios = []
    all_rows = []
    for name, model in [("LLaMA ~110M (random, GPT-2 BPE)", make_110m(cache))] + [(m, m) for m in args.model]:
        rows = run_pair(model, args)
        all_rows += rows
        ratios.append(report(rows, name))
    if args.json:
        print(json.dumps(all_rows))
    worst = max(ratios)
    print(f"\nratio: LoRA peak memory {worst:.2f}x full fine-tuning's (worst model; goal <= 0.50: "
          f"{'met' if worst <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
