"""Generation throughput against the demo teacher at 200 ms latency: one request in flight (what the
original stanford_alpaca loop does) versus --concurrency 8. The bound at 8 in flight is 8 / 0.2 s = 40
requests/s; the target is at least 90% of it, i.e. parsing, filtering and journalling never become the
bottleneck. Prints the ratio last.

    .venv/bin/python benchmarks/generate_throughput.py [--latency-ms 200] [--concurrency 8]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alpaca_data.cli_options import build_config
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.run import run_generation

SEEDS = ROOT / ".." / "shared" / "data" / "seeds" / "alpaca_seed_tasks.jsonl"


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "alpaca_data", "demo-teacher", "--port", "0",
                                "--latency-ms", str(latency_ms)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/v1)", line)
    if not match:
        process.kill()
        raise SystemExit(f"demo teacher did not start: {line!r}")
    return process, match.group(1)


def measure(base_url: str, store: Path, concurrency: int, requests: int) -> dict:
    cfg = build_config(GenerateConfig, dict(seeds=str(SEEDS), num=1_000_000, spec="demo", dataset=f"bench-c{concurrency}",
                                            base_url=base_url, concurrency=concurrency, max_requests=requests,
                                            seed=concurrency))
    started = time.perf_counter()
    result = run_generation(cfg, store=store)
    total = time.perf_counter() - started
    stats = result.stats
    network = stats.finished - stats.network_started
    return {"requests": stats.network_answers, "rps": stats.network_answers / network, "network_s": network,
            "total_s": total, "parsed": stats.parsed, "kept": stats.kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0, help="target duration of each phase")
    args = parser.parse_args()
    latency = args.latency_ms / 1000.0
    server, base_url = start_server(args.latency_ms)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = Path(tmp) / "store"
            # warm-up (imports, numba compilation of the ROUGE kernels) outside the measured runs
            run_generation(build_config(GenerateConfig, dict(seeds=str(SEEDS), num=5, spec="demo", dataset="warm")),
                           store=store)
            n_one = max(5, int(args.seconds / latency))
            n_many = max(20, int(args.seconds * args.concurrency / latency))
            one = measure(base_url, store, 1, n_one)
            many = measure(base_url, store, args.concurrency, n_many)
    finally:
        server.terminate()
        server.wait(timeout=10)
    bound = args.concurrency / latency
    for name, row in (("1 in flight", one), (f"concurrency {args.concurrency}", many)):
        print(f"{name:>16}: {row['requests']:4d} requests in {row['network_s']:.2f} s = {row['rps']:6.2f} req/s "
              f"({row['parsed']} tasks parsed, {row['kept']} kept; {row['total_s']:.2f} s with set-up and commit)")
    print(f"bound at {args.concurrency} in flight: {bound:.1f} req/s; reached {many['rps'] / bound:.1%} of it")
    print(f"ratio concurrency {args.concurrency} / 1 in flight: {many['rps'] / one['rps']:.2f}x")


if __name__ == "__main__":
    main()
