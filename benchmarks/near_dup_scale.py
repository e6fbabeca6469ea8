"""Benchmark: MinHash near-duplicate dedup (`NearDuplicates.check_all`) streamed over a big JSONL file.

Run:  .venv/bin/python benchmarks/near_dup_scale.py [--records N] [--batch B] [--file PATH]

The file is `build_file(folder, N)` from benchmarks/import_validate.py (the shared corpora repeated with
"(copy k)" suffixes; 1M records is ~510 MB), built once in /tmp and reused.  Records are read line by line
and given to one step in batches of B, as the streaming pipeline does; prints wall time, CPU time (and
cores used), peak RSS, and the counts.  Reads ../shared/data; exits 0 with a message if it is missing.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=32_768)
    parser.add_argument("--file", type=Path, default=None, help="default: /tmp/alpaca_near_dup_<N>/records.jsonl")
    args = parser.parse_args()
    from import_validate import CORPORA, build_file

    if not list(CORPORA.glob("*.json")):
        print(f"no corpora under {CORPORA}: nothing to measure")
        return
    path = args.file or Path(f"/tmp/alpaca_near_dup_{args.records}") / "records.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        built = build_file(path.parent, args.records)
        if built != path:
            built.rename(path)
        print(f"built {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f}s")

    from alpaca_data.filters.dedup import NearDuplicates

    NearDuplicates().check_all([{"instruction": "warm up the kernels"}], progress=False)  # numba load/compile
    step = NearDuplicates()
    wall, cpu = time.perf_counter(), time.process_time()
    seen = kept = 0
    with path.open(encoding="utf-8") as handle:
        batch: list[dict] = []
        for line in handle:
            batch.append(json.loads(line))
            if len(batch) == args.batch:
                kept += sum(v.kept for v in step.check_all(batch, progress=False))
                seen += len(batch)
                batch = []
            if seen + len(batch) >= args.records:
                break
        if batch:
            kept += sum(v.kept for v in step.check_all(batch, progress=False))
            seen += len(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"near_dup: {seen} records in batches of {args.batch}: kept {kept}, dropped {seen - kept}")
    print(f"wall {wall:.1f} s, cpu {cpu:.1f} s ({cpu / wall:.2f} cores), peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
