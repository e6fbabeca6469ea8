"""The `local` content filter against disguised abuse (issue 19, item 13), before and after normalisation.

Figures, at the filter's threshold (LOCAL_THRESHOLD):
- catch rate per trick (full-width letters, Cyrillic/Greek lookalikes, spaced letters, dotted letters,
  zero-width characters, all combined) on plainly abusive texts (tests/moderation_tricks.py), scored as the text
  is (before) and as `LocalModerator` scores it now, normalised (after);
- false refusals on real answers from ../shared/data (AlpacaEval outputs of Alpaca-7B, text-davinci-003 and
  GPT-4, Self-Instruct predictions, GPTeacher roleplay and codegen, Chinese Alpaca outputs), before and after;
- false refusals on real answers disguised with each trick (a sample), after;
- the time normalisation adds per text.

    .venv/bin/python benchmarks/moderation_tricks.py [--disguised 1000]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alpaca_train.moderation import LOCAL_THRESHOLD, LocalModerator, text_windows  # noqa: E402
from alpaca_train.moderation_text import normalise  # noqa: E402
from tests.moderation_tricks import ABUSIVE, TRICKS  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def real_answers() -> dict[str, list[str]]:
    """Real outputs written by people or models, by source."""
    out: dict[str, list[str]] = {}
    for name in ("alpaca-7b", "text_davinci_003", "gpt4"):
        rows = json.loads((DATA / "eval" / "alpaca_eval" / f"{name}.json").read_text(encoding="utf-8"))
        out[f"alpaca_eval/{name}"] = [r["output"] for r in rows]
    for path in sorted((DATA / "eval" / "self_instruct_predictions").glob("*.jsonl")):
        out[f"self_instruct/{path.stem}"] = [json.loads(line)["response"] for line in path.open(encoding="utf-8")]
    for name in ("gpteacher_roleplay", "gpteacher_codegen"):
        rows = json.loads((DATA / "corpora" / f"{name}.json").read_text(encoding="utf-8"))
        out[name] = [r["response"] for r in rows]
    out["alpaca_zh_10000"] = [r["output"] for r in
                              json.loads((DATA / "corpora" / "alpaca_zh_10000.json").read_text(encoding="utf-8"))]
    return {name: [t for t in texts if isinstance(t, str) and t.strip()] for name, texts in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--disguised", type=int, default=1000, help="real answers disguised with each trick")
    args = parser.parse_args()
    started = time.perf_counter()
    local = LocalModerator()

    def before(texts: list[str]) -> list[float]:  # the filter as it was: the text scored as written
        pieces, owners = [], []
        for index, text in enumerate(texts):
            windows = [text, *text_windows(text)]
            pieces += windows
            owners += [index] * len(windows)
        best = [0.0] * len(texts)
        for index, score in zip(owners, local._predict_prob(pieces)):
            best[index] = max(best[index], float(score))
        return best

    def flagged(scores: list[float]) -> int:
        return sum(score >= LOCAL_THRESHOLD for score in scores)

    print(f"threshold {LOCAL_THRESHOLD}; {len(ABUSIVE)} plainly abusive texts per trick\n")
    print(f"{'trick':<24} {'caught before':>14} {'caught after':>14}")
    for name, trick in TRICKS.items():
        texts = [trick(text) for text in ABUSIVE]
        was, now = flagged(before(texts)), flagged(local.score_many(texts))
        print(f"{name:<24} {was:>5}/{len(texts):<3} {was / len(texts):4.0%} {now:>5}/{len(texts):<3} "
              f"{now / len(texts):4.0%}")

    answers = real_answers()
    print(f"\n{'false refusals on real answers':<36} {'before':>16} {'after':>16}  changed by normalising")
    total = [0, 0, 0, 0]
    newly: list[tuple[str, str]] = []
    for name, texts in answers.items():
        old, new = before(texts), local.score_many(texts)
        changed = sum(normalise(text, local._known_words) != text for text in texts)
        was, now = flagged(old), flagged(new)
        total = [total[0] + len(texts), total[1] + was, total[2] + now, total[3] + changed]
        newly += [(name, text) for text, a, b in zip(texts, old, new) if b >= LOCAL_THRESHOLD > a]
        print(f"{name:<36} {was:>6}/{len(texts):<5} {was / len(texts):5.2%} {now:>6}/{len(texts):<5} "
              f"{now / len(texts):5.2%}  {changed}")
    n, was, now, changed = total
    print(f"{'all':<36} {was:>6}/{n:<5} {was / n:5.2%} {now:>6}/{n:<5} {now / n:5.2%}  {changed}")
    for name, text in newly:
        print(f"  newly flagged ({name}): {' '.join(text.split())[:160]!r}")

    sample = random.Random(0).sample([t for texts in answers.values() for t in texts], args.disguised)
    print(f"\n{'real answers disguised (after)':<36} {'flagged':>16}")
    for name, trick in TRICKS.items():
        now = flagged(local.score_many([trick(text) for text in sample]))
        print(f"{name:<36} {now:>6}/{len(sample):<5} {now / len(sample):5.2%}")

    texts = [t for texts in answers.values() for t in texts]
    tick = time.perf_counter()
    for text in texts:
        normalise(text, local._known_words)
    per_text = (time.perf_counter() - tick) / len(texts)
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"\nnormalising: {per_text * 1e6:.0f} µs per real answer (mean {mean_chars:.0f} characters); "
          f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
