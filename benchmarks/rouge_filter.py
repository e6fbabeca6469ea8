"""Benchmark: RougeNoveltyIndex vs rouge_score as Stanford Alpaca uses it.

Run:  .venv/bin/python benchmarks/rouge_filter.py [--quick]

1. rouge_score baseline: ``Pool(cpu_count).map(partial(rouge_scorer._score_lcs, cand_tokens), pool_tokens)``
   exactly like Alpaca's generate loop (pool start-up excluded, i.e. generous to the baseline).
2. ours: full exact score vectors (``idx.scores``) and ``idx.check(with_stats=True/False)`` against
   a pool of 20,000 real instructions.
3. a greedy filter pass over every instruction of the shared corpora from an empty pool
   (with_stats=False and with_stats=True), wall time and peak RSS.

The LAST line printed is ``speedup: <ours full-vector pairs/s / rouge_score pairs/s>x``.

Scale:  .venv/bin/python benchmarks/rouge_filter.py --instructions 100000 250000 1000000 [--kind copies|mixed]
measures the greedy filter alone (``RougeNovelty.check_all`` in 32K-record batches, threshold-only) over N
distinct instructions, each size in a fresh subprocess: wall, CPU (cores used), peak RSS, pool size, and the
fitted growth exponent.  ``copies``: the corpora repeated with "(copy k)" suffixes (build_file's records;
nearly every copy is dropped, the pool stays small); ``mixed``: words of two random corpus records shuffled
together (fixed seed; the pool grows with N).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "corpora"


def load_instructions() -> list[str]:
    out: list[str] = []
    for f in sorted(DATA.glob("*.json")):
        out += [r["instruction"] for r in json.loads(f.read_text())]
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scale_texts(n: int, kind: str) -> list[str]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from import_validate import _corpus_records

    records = _corpus_records()
    if kind == "copies":  # build_file's instructions
        return [r["instruction"] if i < len(records) else f"{r['instruction']} (copy {i // len(records)})"
                for i in range(n) for r in (records[i % len(records)],)]
    words = [r["instruction"].split() for r in records]
    words = [w for w in words if w]
    rng = random.Random(0)
    out = []
    for _ in range(n):
        a, b = rng.choice(words), rng.choice(words)
        k = min(len(a), 40)
        mixed = a[:k] + b[: max(3, k // 2)]
        rng.shuffle(mixed)
        out.append(" ".join(mixed[: max(4, len(mixed) * 2 // 3)]))
    return out


def scale_one(n: int, kind: str) -> None:
    from alpaca_data.filters.rouge import RougeNovelty

    texts = scale_texts(n, kind)
    RougeNovelty().check_all([{"instruction": "warm up"}, {"instruction": "warm up the kernels"}], progress=False)
    step = RougeNovelty()
    wall, cpu = time.perf_counter(), time.process_time()
    kept = 0
    for start in range(0, n, 32_768):
        batch = [{"instruction": t} for t in texts[start : start + 32_768]]
        kept += sum(v.kept for v in step.check_all(batch, progress=False))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"n": n, "kind": kind, "wall": wall, "cpu": cpu, "kept": kept, "pool": len(step.index),
                      "rss_mib": peak_rss_mib()}))


def scale(sizes: list[int], kind: str) -> None:
    import math
    import subprocess

    rows = []
    for n in sizes:
        done = subprocess.run([sys.executable, __file__, "--scale-one", str(n), "--kind", kind],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{kind} N={n}: wall {row['wall']:.1f}s, cpu {row['cpu']:.1f}s ({row['cpu'] / row['wall']:.2f} cores), "
              f"peak RSS {row['rss_mib']:.0f} MiB, kept {row['kept']} (pool {row['pool']})", flush=True)
    for a, b in zip(rows, rows[1:]):
        exponent = math.log(b["wall"] / a["wall"]) / math.log(b["n"] / a["n"])
        print(f"growth {a['n']} -> {b['n']}: n^{exponent:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller/faster run")
    ap.add_argument("--pool", type=int, default=20_000, help="pool size for the throughput test")
    ap.add_argument("--instructions", type=int, nargs="+", help="scale mode: greedy filter alone at these sizes")
    ap.add_argument("--kind", choices=("copies", "mixed"), default="copies")
    ap.add_argument("--scale-one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scale_one:
        return scale_one(args.scale_one, args.kind)
    if args.instructions:
        return scale(args.instructions, args.kind)

    from rouge_score import rouge_scorer

    from alpaca_data.filters import rouge as rouge_mod
    from alpaca_data.filters.rouge import RougeNoveltyIndex

    instructions = load_instructions()
    ncpu = os.cpu_count() or 1
    print(f"instructions: {len(instructions)} from {DATA}  | cpus: {ncpu}")
    rng = random.Random(0)
    shuffled = instructions[:]
    rng.shuffle(shuffled)
    pool_n = min(args.pool if not args.quick else 5_000, len(shuffled) - 500)
    pool, cands = shuffled[:pool_n], shuffled[pool_n:]
    cands = [c for c in cands if c.isascii()] or cands  # skip zero-token (Chinese) candidates

    # ---------------------------------------------------------------- rouge_score baseline
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    base_pool = [scorer._tokenizer.tokenize(t) for t in pool[: (5_000 if args.quick else 20_000)]]
    budget = 1.5 if args.quick else 4.0
    pairs = 0
    with Pool(ncpu) as p:
        p.map(partial(rouge_scorer._score_lcs, ["warm", "up"]), base_pool[: ncpu * 8])
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < budget:
            toks = scorer._tokenizer.tokenize(cands[k % len(cands)])
            chunk = base_pool[: max(1000, len(base_pool) // 4)]
            res = p.map(partial(rouge_scorer._score_lcs, toks), chunk)
            _ = [s.fmeasure for s in res]
            pairs += len(chunk)
            k += 1
        base_dt = time.perf_counter() - t0
    base_pps = pairs / base_dt
    print(f"rouge_score  Pool({ncpu}) _score_lcs: {pairs} pairs in {base_dt:.2f}s = {base_pps:,.0f} pairs/s")

    # ---------------------------------------------------------------- ours, pool of 20k
    t0 = time.perf_counter()
    for par in (False, True):  # load (or compile) the single- and multi-chunk kernels
        warm = RougeNoveltyIndex(threshold=0.7, n_jobs=2 if par else 1)
        warm.add(["jit warm up", "warm up the kernels"] * (rouge_mod._PARALLEL_MIN_STATS if par else 1))
        warm.check("warm up", with_stats=True)
        warm.check("warm up", with_stats=False)
    print(f"ours: numba kernels loaded/compiled in {time.perf_counter() - t0:.2f}s (cached after first run)")
    t0 = time.perf_counter()
    idx = RougeNoveltyIndex(threshold=0.7)
    idx.add(pool)
    idx.scores(cands[0])  # builds the inverted index
    print(f"ours: pool of {len(idx)} tokenised + indexed in {time.perf_counter() - t0:.2f}s")

    def timeit(fn, secs):
        n = 0
        t = time.perf_counter()
        while True:
            fn(cands[n % len(cands)])
            n += 1
            dt = time.perf_counter() - t
            if dt >= secs and n >= 20:
                return n, dt

    secs = 1.0 if args.quick else 3.0
    n, dt = timeit(idx.scores, secs)
    ours_pps = n * len(idx) / dt
    print(
        f"ours scores()            : {n} x {len(idx)} pairs in {dt:.2f}s = {ours_pps:,.0f} pairs/s "
        f"({dt / n * 1e3:.3f} ms/candidate)"
    )
    n, dt = timeit(lambda c: idx.check(c, with_stats=True), secs)
    print(f"ours check(stats=True)   : {n * len(idx) / dt:,.0f} pairs/s ({dt / n * 1e3:.3f} ms/candidate)")
    n, dt = timeit(lambda c: idx.check(c, with_stats=False), secs)
    print(f"ours check(stats=False)  : {n * len(idx) / dt:,.0f} pairs/s ({dt / n * 1e3:.3f} ms/candidate)")
    idx = None  # free the 20k index

    # ---------------------------------------------------------------- greedy filter, all corpora
    texts = instructions if not args.quick else shuffled[:8_000]
    for with_stats in (False, True):
        idx = RougeNoveltyIndex(threshold=0.7)
        t0 = time.perf_counter()
        dec = idx.filter(texts, with_stats=with_stats, progress=False)
        dt = time.perf_counter() - t0
        kept = sum(d.keep for d in dec)
        reasons: dict[str | None, int] = {}
        for d in dec:
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
        print(
            f"greedy filter (with_stats={with_stats}) over {len(texts)} instructions: {dt:.2f}s, "
            f"kept {kept}, reasons {reasons}, peak RSS {peak_rss_mib():.0f} MiB"
        )
        idx = dec = None

    print(f"speedup: {ours_pps / base_pps:.0f}x")


if __name__ == "__main__":
    main()
