"""Data commands at scale: wall time, peak memory summed over every process, and cores used, per command and size.

Run: .venv/bin/python benchmarks/scale.py [--records 52002 --records 250000 --records 1000000] [--check-serial]
Input: JSONL files of N records built from ../shared/data/corpora (benchmarks/import_validate.build_file: the
corpora repeated, each repeat's instruction suffixed). Baseline, measured in the same run on the same file: one
core parsing it with the standard library (`json.loads` per line), best of two.
Each command is the real CLI in a fresh process; its memory is the peak of the sum of the RSS of the command and
all its worker processes, sampled every 20 ms. `import`, `filter --no-rouge` and `dedup` are best of two runs.
--check-serial also runs those three with ALPACA_WORKERS=1 and checks that the revision ids are identical.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_validate import CORPORA, build_file  # noqa: E402

DEFAULT_SIZES = (52_002, 250_000, 1_000_000)
BEST_OF_TWO = ("import", "filter --no-rouge", "dedup")
DIVERSITY_MAX = 52_002  # the spaCy parse grows linearly; 52K is the size the goal names


@dataclass
class Run:
    seconds: float
    peak_bytes: int
    cpu_seconds: float
    last_line: str

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


def _sample(process: psutil.Process, cpu: dict[int, float]) -> int:
    """RSS summed over the process and its descendants (pages they share are counted in each); records each
    one's CPU seconds so far in `cpu` (the last sample of a process that ended stands for it)."""
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
            times = proc.cpu_times()
            cpu[proc.pid] = times.user + times.system
        except psutil.Error:
            pass
    return total


def run(args: list[str], store: Path, env: dict[str, str] | None = None) -> Run:
    full_env = {**os.environ, "ALPACA_STORE": str(store), "ALPACA_PROGRESS_INTERVAL": "3600", **(env or {})}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "alpaca_data", "-q", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=full_env)
    process = psutil.Process(child.pid)
    peak, cpu = [0], {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], _sample(process, cpu))
            except psutil.Error:  # the command ended between two looks
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"alpaca-data {' '.join(args)} failed ({child.returncode}):\n{err[-2000:]}")
    return Run(seconds, peak[0], sum(cpu.values()), (out.strip().splitlines() or [""])[-1])


def json_loads_seconds(path: Path) -> float:
    code = ("import json, sys, time\nt = time.perf_counter()\nwith open(sys.argv[1], 'rb') as f:\n"
            "    for line in f:\n        json.loads(line)\nprint(time.perf_counter() - t)")
    return min(float(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(2))


def measure(count: int, folder: Path, check_serial: bool) -> dict[str, Run | float | str]:
    path = build_file(folder, count, jsonl=True)
    results: dict[str, Run | float | str] = {"json.loads": json_loads_seconds(path),
                                              "mb": path.stat().st_size / 1e6}
    store = folder / "store"

    def best(name: str, args: list[str], env: dict[str, str] | None = None) -> Run:
        runs = [run(args, store, env) for _ in range(2 if name in BEST_OF_TWO else 1)]
        return min(runs, key=lambda r: r.seconds)

    results["import"] = best("import", ["import", str(path), "-d", "big"])
    results["filter --no-rouge"] = best("filter --no-rouge", ["filter", "big@main", "--no-rouge", "-d", "filtered"])
    results["dedup"] = best("dedup", ["dedup", "big@main", "-d", "deduped"])
    results["export"] = run(["export", "big@main", "--format", "jsonl", "-o", str(folder / "out.jsonl")], store)
    (folder / "out.jsonl").unlink()
    results["diff"] = run(["diff", "big@main", "filtered@main"], store)
    results["card"] = run(["card", "big@main", "-o", str(folder / "card.md")], store)
    results["sql"] = run(["sql", "SELECT count(*), avg(length(output)) FROM records", "--rev", "big@main"], store)
    if count <= DIVERSITY_MAX:
        results["diversity"] = run(["diversity", "big@main"], store)
    if check_serial:
        serial = {"ALPACA_WORKERS": "1"}
        ids = {name: results[name].last_line for name in BEST_OF_TWO}
        for name, args in (("import", ["import", str(path), "-d", "serial"]),
                           ("filter --no-rouge", ["filter", "serial@main", "--no-rouge", "-d", "serial-f"]),
                           ("dedup", ["dedup", "serial@main", "-d", "serial-d"])):
            got = run(args, store, serial)
            results[f"{name} (1 worker)"] = got
            results[f"{name} ids"] = "identical" if got.last_line == ids[name] else \
                f"DIFFERENT: {got.last_line[:12]} vs {ids[name][:12]}"
    path.unlink()
    return results


def _growth(a: tuple[int, float], b: tuple[int, float]) -> float:
    return math.log(b[1] / a[1]) / math.log(b[0] / a[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", help="sizes to measure (repeatable)")
    parser.add_argument("--check-serial", action="store_true", help="also run with one worker; compare the ids")
    options = parser.parse_args()
    if not CORPORA.exists():
        print(f"{CORPORA} not found: this benchmark reads the shared corpora (see ../shared/data/README)")
        return
    sizes = sorted(options.records or DEFAULT_SIZES)
    table: dict[int, dict] = {}
    for count in sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
            table[count] = measure(count, Path(tmp), options.check_serial)
        baseline = table[count]["json.loads"]
        print(f"\n{count:,} records ({table[count]['mb']:.0f} MB JSONL); one-core json.loads {baseline:.2f} s")
        print("| command | wall | vs json.loads | peak RSS, all processes | cores used |")
        print("|---|---|---|---|---|")
        for name, value in table[count].items():
            if isinstance(value, Run):
                print(f"| `{name}` | {value.seconds:.1f} s | {value.seconds / baseline:.1f}x | "
                      f"{value.peak_bytes / 2**20:.0f} MiB | {value.cores:.2f} |")
            elif name.endswith(" ids"):
                print(f"| {name} vs 2 workers | {value} | | | |")
    if len(sizes) > 1:
        print("\ngrowth exponent of wall time (t ~ n^k) between consecutive sizes (start-up weighs on the smallest):")
        for small, large in zip(sizes, sizes[1:]):
            exponents = [f"{name} {_growth((small, table[small][name].seconds), (large, value.seconds)):.2f}"
                         for name, value in table[large].items()
                         if isinstance(value, Run) and isinstance(table[small].get(name), Run)]
            print(f"  {small:,} -> {large:,}: " + ", ".join(exponents))
    print(json.dumps({str(n): {k: (v.__dict__ if isinstance(v, Run) else v) for k, v in r.items()}
                      for n, r in table.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
