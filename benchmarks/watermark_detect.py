"""Watermark detection from decoded text (Kirchenbauer et al. 2023 via transformers; `alpaca_train.watermark`).

The tiny random LLaMA answers real instructions (Self-Instruct's user-oriented set, Alpaca's prompt) by
sampling, with the watermark and without. Figures, each from the decoded text, at z >= 4:
- detection rate of watermarked answers (goal >= 98%);
- the same after 20% of each answer's tokens are replaced by random ones (goal >= 90%);
- false positives on the model's unwatermarked answers and on real human/GPT-written outputs in shared/data
  (AlpacaEval, Self-Instruct predictions, seed and user-oriented task outputs) (goal <= 1%),
  counting repeated (previous token, token) pairs once (the default) and every time.

    .venv/bin/python benchmarks/watermark_detect.py [--answers 120] [--tokens 200] [--batch 24]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
from rich.progress import track

from alpaca_train.prompts import format_prompt
from alpaca_train.tiny import make_tiny_llama
from alpaca_train.watermark import Z_THRESHOLD, Detector, WatermarkKey, watermarking_config

DATA = ROOT.parent / "shared" / "data"
TEMPERATURE, TOP_P = 0.7, 0.9  # a common serving setting; lower entropy than 1.0 makes the watermark weaker


def instructions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (DATA / "eval" / "user_oriented_instructions.jsonl").open()]
    prompts = [format_prompt(r["instruction"], (r["instances"][0].get("input") or "") if r["instances"] else "")
               for r in rows]
    return [prompts[i % len(prompts)] for i in range(n)]


def human_outputs() -> dict[str, list[str]]:
    """Real outputs written by people or GPT models, by source."""
    out: dict[str, list[str]] = {}
    for name in ("alpaca-7b", "text_davinci_003", "gpt4"):
        out[f"alpaca_eval/{name}"] = [r["output"] for r in json.loads((DATA / "eval" / "alpaca_eval" /
                                                                          f"{name}.json").read_text())]
    for path in sorted((DATA / "eval" / "self_instruct_predictions").glob("*.jsonl")):
        out[f"self_instruct/{path.stem}"] = [json.loads(line)["response"] for line in path.open()]
    for label, path in (("seed_tasks", DATA / "seeds" / "alpaca_seed_tasks.jsonl"),
                        ("user_oriented", DATA / "eval" / "user_oriented_instructions.jsonl")):
        out[label] = [i["output"] for line in path.open() for i in json.loads(line)["instances"]]
    return {k: [t for t in v if t and t.strip()] for k, v in out.items()}


def generate(model, tokenizer, prompts: list[str], tokens: int, batch: int, config, label: str) -> list[list[int]]:
    """Each prompt's generated ids, from left-padded batches (as the server runs them)."""
    answers = []
    for start in track(range(0, len(prompts), batch), description=label):
        enc = tokenizer(prompts[start:start + batch], return_tensors="pt", padding=True)
        kwargs = {"watermarking_config": config} if config is not None else {}
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=0,
                                 min_new_tokens=tokens, max_new_tokens=tokens, pad_token_id=tokenizer.pad_token_id,
                                 **kwargs)
        answers += out[:, enc["input_ids"].shape[1]:].tolist()
    return answers


def replace_share(ids: list[int], share: float, vocab: int, rng: random.Random) -> list[int]:
    ids = list(ids)
    for position in rng.sample(range(len(ids)), round(share * len(ids))):
        ids[position] = rng.randrange(vocab)
    return ids


def rate(detector: Detector, texts: list[str], label: str) -> tuple[int, int, float, float]:
    """(flagged, scored texts, smallest z, largest z)."""
    zs = [d.z_score for d in (detector.detect_text(t) for t in track(texts, description=label))
          if d.scored_tokens]
    return sum(z >= Z_THRESHOLD for z in zs), len(zs), min(zs, default=0.0), max(zs, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=120)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--replace", type=float, default=0.2)
    args = parser.parse_args()
    # every tensor here is small: torch's thread pool only adds overhead, milliseconds per op on a busy machine
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = random.Random(0)
    key = WatermarkKey.from_secret("benchmark-secret-" + "5" * 32, "benchmark")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_tiny_llama(Path(tmp) / "tiny")
        detector = Detector(str(Path(tmp) / "tiny"), key)
    tokenizer = detector.tokenizer
    tokenizer.pad_token, tokenizer.padding_side = tokenizer.eos_token, "left"
    model.eval()
    prompts = instructions(args.answers)
    config = watermarking_config(key)
    marked = generate(model, tokenizer, prompts, args.tokens, args.batch, config, "watermarked answers")
    plain = generate(model, tokenizer, prompts, args.tokens, args.batch, None, "unwatermarked answers")
    generated_s = time.perf_counter() - started

    def decode(ids: list[int]) -> str:  # as the server streams it
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    vocab = len(tokenizer)
    attacked = [decode(replace_share(ids, args.replace, vocab, rng)) for ids in marked]
    rows = [("watermarked answers (detection)", rate(detector, [decode(i) for i in marked], "watermarked"), ">= 98%"),
            (f"{args.replace:.0%} of tokens replaced (detection)", rate(detector, attacked, "attacked"), ">= 90%")]
    false_rows = []
    humans = human_outputs()
    for ignore in (True, False):
        detector.ignore_repeated_ngrams = ignore
        how = "repeats once" if ignore else "repeats counted"
        false_rows.append((f"unwatermarked tiny-model answers, {how}",
                           rate(detector, [decode(i) for i in plain], "unwatermarked")))
        per_source = {name: rate(detector, texts, f"{name} ({how})") for name, texts in humans.items()}
        flagged = sum(v[0] for v in per_source.values())
        scored = sum(v[1] for v in per_source.values())
        false_rows.append((f"human/GPT outputs, {how}", (flagged, scored, min(v[2] for v in per_source.values()),
                                                           max(v[3] for v in per_source.values()))))
        for name, value in per_source.items():
            false_rows.append((f"  {name}, {how}", value))
    print(f"\n{len(prompts)} answers of {args.tokens} generated tokens (tiny LLaMA, temperature {TEMPERATURE}, "
          f"top-p {TOP_P}), key {key.fingerprint}, threshold z >= {Z_THRESHOLD}; generation {generated_s:.0f} s, "
          f"total {time.perf_counter() - started:.0f} s")
    for label, (hit, n, low, _), goal in rows:
        print(f"{label:<52} {hit:5d}/{n:<5d} = {hit / n:7.2%}   (goal {goal})  min z {low:.1f}")
    for label, (hit, n, _, top) in false_rows:
        print(f"{label:<52} {hit:5d}/{n:<5d} = {hit / max(n, 1):7.2%}   (goal <= 1%)  max z {top:.2f}")


if __name__ == "__main__":
    main()
