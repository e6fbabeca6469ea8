"""The watermark on a real model's text: SmolLM2-135M-Instruct (Kirchenbauer et al. 2023; `alpaca_train.watermark`).

The imported model answers Self-Instruct's user-oriented instructions through its own chat template, in
left-padded batches, with the project's settings (gamma 0.25, delta 2, z >= 4, repeated token pairs counted once).
Every figure is scored from the decoded text, re-tokenised, as `alpaca-train detect` does. Measured:

- detection rate and z distribution of watermarked answers at ~100 and ~200 generated tokens (the first 100 tokens
  of each 200-token answer), sampling (temperature 1, top-k off, top-p 1) and greedy; min_new_tokens holds EOS
  back so that every row reaches the length;
- the same 200-token answers after 10/20/30% of their tokens are replaced by random ones;
- answers left to stop by themselves (EOS, up to --natural-tokens): how many stop early, and their z by length;
- false positives: the model's unwatermarked answers (sampling and greedy) and real text written by people or
  other models (shared/data/corpora/*.json outputs, Self-Instruct's text-davinci-003 predictions).

    .venv/bin/python benchmarks/watermark_real.py --model models/smollm2    # 16 prompts: ~10 min on the 2-core box
    .venv/bin/python benchmarks/watermark_real.py --model models/smollm2 --device cuda --dtype bfloat16
    .venv/bin/python benchmarks/watermark_real.py --model models/smollm2 --json runs/watermark_real.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch

from alpaca_train.watermark import (
    DELTA,
    GAMMA,
    IGNORE_REPEATED_NGRAMS,
    Z_THRESHOLD,
    Detector,
    WatermarkKey,
    watermarking_config,
)

DATA = ROOT.parent / "shared" / "data"
INSTRUCTIONS = ROOT / "tests" / "data" / "eval" / "user_oriented_instructions.jsonl"
ATTACKS = (0.1, 0.2, 0.3)


def load_prompts(n: int, seed: int) -> list[tuple[str, str]]:
    """(id, user message) for n user-oriented instructions, a fixed random spread over the 252."""
    path = DATA / "eval" / "user_oriented_instructions.jsonl"
    rows = [json.loads(line) for line in (path if path.exists() else INSTRUCTIONS).open()]
    picked = sorted(random.Random(seed).sample(range(len(rows)), min(n, len(rows))))
    out = []
    for i in picked:
        row = rows[i]
        given = (row["instances"][0].get("input") or "").strip() if row["instances"] else ""
        out.append((row["id"], row["instruction"] + (f"\n\n{given}" if given else "")))
    return out


def real_texts(per_source: int, seed: int) -> dict[str, list[str]]:
    """Unwatermarked text by people or other models, by source (at most per_source of each, a fixed sample)."""
    sources: dict[str, list[str]] = {}
    for path in sorted((DATA / "corpora").glob("*.json")):
        rows = json.loads(path.read_text())
        sources[f"corpora/{path.stem}"] = [r.get("output") or r.get("response") or "" for r in rows]
    davinci = DATA / "eval" / "self_instruct_predictions" / "text-davinci-003.jsonl"
    sources["self_instruct/text-davinci-003"] = [json.loads(line)["response"] for line in davinci.open()]
    rng = random.Random(seed)
    out = {}
    for name, texts in sources.items():
        texts = [t for t in texts if isinstance(t, str) and t.strip()]
        out[name] = rng.sample(texts, per_source) if per_source and len(texts) > per_source else texts
    return out


def generate(model, tokenizer, prompts: list[str], *, max_new: int, min_new: int, sample: bool, config,
             batch: int, device: str, label: str) -> tuple[list[list[int]], float]:
    """Each prompt's generated ids (trailing padding removed) and the seconds it took."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    answers: list[list[int]] = []
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        enc = tokenizer(texts[start:start + batch], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        kwargs = {"watermarking_config": config} if config is not None else {}
        if sample:
            kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)  # as serve samples at temperature 1
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new, min_new_tokens=min_new,
                                 pad_token_id=tokenizer.pad_token_id, **kwargs)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            if tokenizer.eos_token_id in row:  # EOS, then padding: keep what came before
                row = row[:row.index(tokenizer.eos_token_id)]
            answers.append(row)
        print(f"  {label}: {min(start + batch, len(texts))}/{len(texts)} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return answers, time.perf_counter() - started


def replace_share(ids: list[int], share: float, allowed: list[int], rng: random.Random) -> list[int]:
    """The paper's attack in its simplest form: a share of positions each get a random (non-special) token."""
    ids = list(ids)
    for position in rng.sample(range(len(ids)), round(share * len(ids))):
        ids[position] = rng.choice(allowed)
    return ids


def summary(detections: list, tokens: list[int] | None = None) -> dict:
    """Detection rate and z quartiles of scored texts (texts with no scored token are counted apart)."""
    scored = [d for d in detections if d.scored_tokens]
    zs = sorted(d.z_score for d in scored)
    out = {"texts": len(detections), "scored_texts": len(scored), "detected": sum(d.watermarked for d in scored)}
    out["rate"] = out["detected"] / len(scored) if scored else 0.0
    if zs:
        q1, median, q3 = statistics.quantiles(zs, n=4, method="inclusive") if len(zs) > 1 else (zs[0],) * 3
        out.update(z_min=zs[0], z_q1=q1, z_median=median, z_q3=q3, z_max=zs[-1],
                   scored_tokens_median=statistics.median(d.scored_tokens for d in scored),
                   green_fraction_median=statistics.median(d.green_fraction for d in scored))
    if tokens:
        out["generated_tokens_median"] = statistics.median(tokens)
    return out


def fmt_row(label: str, s: dict) -> str:
    if not s.get("scored_texts"):
        return f"{label:<46} {'-':>9}"
    hit = f"{s['detected']}/{s['scored_texts']}"
    return (f"{label:<46} {hit:>9} {s['rate']:7.1%}   {s['z_min']:6.2f} {s['z_q1']:6.2f} {s['z_median']:6.2f} "
            f"{s['z_q3']:6.2f} {s['z_max']:6.2f}   {s['scored_tokens_median']:6.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "smollm2", help="an imported model folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--prompts", type=int, default=16, help="prompts per condition")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=200, help="long answers; short ones are their first half")
    parser.add_argument("--natural-tokens", type=int, default=256,
                        help="cap for answers left to stop at EOS by themselves (0: skip that run)")
    parser.add_argument("--per-source", type=int, default=1000,
                        help="real texts scored per source, a fixed random sample (0: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for generation (default 1: on the shared 2-core box 2 threads ran a "
                             "batch of 8 at 2-3 tok/s against 24 tok/s with 1, from oversubscription)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write figures, z-scores and the answers here")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    key = WatermarkKey.from_secret("benchmark-secret-" + "5" * 32, "benchmark")
    config = watermarking_config(key)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    detector = Detector(str(args.model), key)
    prompts = load_prompts(args.prompts, args.seed)
    messages = [m for _, m in prompts]
    short = args.tokens // 2
    figures: dict = {"model": str(args.model), "device": args.device, "dtype": args.dtype, "gamma": GAMMA,
                     "delta": DELTA, "z_threshold": Z_THRESHOLD, "ignore_repeated_ngrams": IGNORE_REPEATED_NGRAMS,
                     "key_fingerprint": key.fingerprint, "prompts": [i for i, _ in prompts], "tokens": args.tokens,
                     "short_tokens": short, "generation": {}, "results": {}, "answers": {}}
    print(f"{args.model}: gamma {GAMMA}, delta {DELTA}, z >= {Z_THRESHOLD}, repeated pairs counted "
          f"{'once' if IGNORE_REPEATED_NGRAMS else 'every time'}; {len(prompts)} prompts per condition, "
          f"{args.device} {args.dtype}, torch threads {torch.get_num_threads()}", flush=True)

    runs = {}
    for name, sample, watermark in (("watermarked, sampling T=1", True, True), ("watermarked, greedy", False, True),
                                    ("unwatermarked, sampling T=1", True, False),
                                    ("unwatermarked, greedy", False, False)):
        ids, seconds = generate(model, tokenizer, messages, max_new=args.tokens, min_new=args.tokens, sample=sample,
                                config=config if watermark else None, batch=args.batch, device=args.device,
                                label=name)
        runs[name] = ids
        made = sum(len(i) for i in ids)
        figures["generation"][name] = {"seconds": seconds, "tokens": made, "tok_s": made / seconds}
    natural = None
    if args.natural_tokens:
        natural, seconds = generate(model, tokenizer, messages, max_new=args.natural_tokens, min_new=0, sample=True,
                                    config=config, batch=args.batch, device=args.device,
                                    label="watermarked, sampling, stops at EOS")
        made = sum(len(i) for i in natural)
        figures["generation"]["natural"] = {"seconds": seconds, "tokens": made, "tok_s": made / seconds}
    generated_s = time.perf_counter() - started

    torch.set_num_threads(1)  # detection is thousands of tiny ops: a thread pool only adds overhead to each

    def decode(ids: list[int]) -> str:  # as the server streams it
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def score(name: str, id_lists: list[list[int]], asked: list[str] | None = None) -> dict:
        texts = [decode(i) for i in id_lists]
        found = [detector.detect_text(t) for t in texts]
        figures["results"][name] = summary(found, [len(i) for i in id_lists])
        figures["answers"][name] = [{"prompt": p, "tokens": len(i), "z": d.z_score, "scored": d.scored_tokens,
                                     "text": t} for p, i, d, t in zip(asked or [p for p, _ in prompts], id_lists,
                                                                      found, texts)]
        return figures["results"][name]

    rows: list[tuple[str, dict]] = []
    for name, ids in runs.items():
        if name.startswith("watermarked"):
            for length in (short, args.tokens):
                label = f"{name}, {length} tokens"
                rows.append((label, score(label, [i[:length] for i in ids])))
    special = set(tokenizer.all_special_ids)
    allowed = [t for t in range(len(tokenizer)) if t not in special]
    for name, ids in runs.items():
        if name.startswith("watermarked"):
            for share in ATTACKS:
                label = f"{name}, {args.tokens} tokens, {share:.0%} replaced"
                rows.append((label, score(label, [replace_share(i, share, allowed, rng) for i in ids])))
    natural_rows: list[tuple[str, dict]] = []
    if natural is not None:
        early = [i for i in natural if len(i) < args.natural_tokens]
        figures["natural"] = {"cap": args.natural_tokens, "stopped_early": len(early), "answers": len(natural),
                              "lengths": sorted(len(i) for i in natural)}
        label = f"watermarked, sampling, stop at EOS (<= {args.natural_tokens})"
        natural_rows.append((label + ", all", score(label + ", all", natural)))
        cap = args.natural_tokens
        for low, high in ((0, 50), (50, 100), (100, 200), (200, cap), (cap, cap + 1)):
            part = [(p, i) for (p, _), i in zip(prompts, natural) if low <= len(i) < high]
            if part:
                name = f"  stopped at {low}-{high - 1} tokens" if high <= cap else f"  cut at {cap} (no EOS)"
                natural_rows.append((name, score(f"natural {low}-{high - 1}", [i for _, i in part],
                                                 [p for p, _ in part])))
    false_rows: list[tuple[str, dict]] = []
    for name, ids in runs.items():
        if name.startswith("unwatermarked"):
            for length in (short, args.tokens):
                label = f"{name}, {length} tokens"
                false_rows.append((label, score(label, [i[:length] for i in ids])))
    detection_started = time.perf_counter()
    all_sources_at = len(false_rows)
    everything = []
    for name, texts in real_texts(args.per_source, args.seed).items():
        found = [detector.detect_text(t) for t in texts]
        everything += found
        figures["results"][name] = summary(found)
        false_rows.append((f"  {name}", figures["results"][name]))
        print(f"  scored {name}: {len(texts)} texts ({time.perf_counter() - detection_started:.0f} s)",
              file=sys.stderr, flush=True)
    figures["results"]["real text, all sources"] = summary(everything)
    false_rows.insert(all_sources_at, ("real text by people / other models, all",
                                       figures["results"]["real text, all sources"]))
    figures["seconds"] = {"generation": generated_s, "total": time.perf_counter() - started}

    head = f"{'':<46} {'z>=4':>9} {'rate':>7}   {'min':>6} {'q1':>6} {'median':>6} {'q3':>6} {'max':>6}   scored"
    print(f"\nwatermarked answers (detection){head[31:]}")
    for label, s in rows:
        print(fmt_row(label, s))
    if natural_rows:
        n = figures["natural"]
        print(f"\nanswers left to stop at EOS: {n['stopped_early']}/{n['answers']} stopped before "
              f"{args.natural_tokens} tokens; lengths {n['lengths']}")
        for label, s in natural_rows:
            print(fmt_row(label, s))
    print(f"\nunwatermarked text (false positives){head[36:]}")
    for label, s in false_rows:
        print(fmt_row(label, s))
    speeds = ", ".join(f"{k}: {v['tok_s']:.0f} tok/s" for k, v in figures["generation"].items())
    print(f"\ngeneration {generated_s:.0f} s ({speeds}); total {figures['seconds']['total']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
