"""`alpaca-data diversity` on 52K instructions (Alpaca's size): wall time, peak memory and CPU use of the CLI.

Goal: under 30 s on a 2-core machine. The data is import_validate's stand-in for Alpaca 52K (the shared corpora,
repeated with " (copy N)" on the instruction; the real Alpaca file is not in ../shared/data), so about 36K of the
52K first lines are distinct. Each run is the real CLI in a fresh process; the peak memory is the largest of that
process and its parse workers (RUSAGE_CHILDREN), the CPU time theirs together. The timed runs pass --no-cache
(every text parsed); one more run after them shows the store's parse cache answering the same texts.
Run: .venv/bin/python benchmarks/diversity_scale.py [--records N] [--runs 2] [--processes 0]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_validate import CORPORA, TARGET_RECORDS, build_file  # noqa: E402

GOAL_SECONDS = 30.0

# run by a fresh interpreter: the command's wall time and the rusage of it and everything it started
MEASURE = ("import json, resource, subprocess, sys, time\n"
           "t = time.perf_counter(); done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
           "wall = time.perf_counter() - t; r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(json.dumps({'rc': done.returncode, 'wall': wall, 'cpu': r.ru_utime + r.ru_stime,"
           " 'maxrss': r.ru_maxrss * 1024, 'stdout': done.stdout, 'stderr': done.stderr[-2000:]}))")


def measured(args: list[str], env: dict[str, str]) -> dict:
    completed = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, env=env,
                               check=True)
    result = json.loads(completed.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"command failed: {args}\n{result['stderr']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=TARGET_RECORDS)
    parser.add_argument("--runs", type=int, default=2, help="best of this many runs")
    parser.add_argument("--processes", type=int, default=0, help="diversity -j (0: one per core)")
    options = parser.parse_args()
    if not CORPORA.is_dir() or not list(CORPORA.glob("*.json")):
        print(f"skipped: the shared corpora are not at {CORPORA} (this benchmark needs ../shared/data)")
        return
    cli = [sys.executable, "-m", "alpaca_data"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {"ALPACA_STORE": str(folder / "store"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
        path = build_file(folder, options.records)
        subprocess.run([*cli, "-q", "import", str(path), "--dataset", "div"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        path.unlink()
        command = [*cli, "-q", "diversity", "div", "--json", "-j", str(options.processes)]
        runs = []
        for _ in range(options.runs):  # cold: every text parsed (--no-cache neither reads nor writes the cache)
            load = os.getloadavg()[0]
            runs.append(measured([*command, "--no-cache"], env))
            runs[-1]["load"] = load
        measured(command, env)  # fills the store's parse cache
        warm = measured(command, env)
    best = min(runs, key=lambda run: run["wall"])
    summary = json.loads(best["stdout"])
    if json.loads(warm["stdout"]) != summary:
        raise SystemExit("the cached parse gave other counts than the cold one")
    cores = len(os.sched_getaffinity(0))
    print(f"diversity on {summary['instructions']} instructions, {cores} cores, -j {options.processes}: "
          f"{summary['distinct_root_verbs']} root verbs, {summary['distinct_verb_object_pairs']} pairs, "
          f"{summary['no_verb_root']} without a verb root, {summary['verb_without_object']} without an object")
    for i, run in enumerate(runs, 1):
        print(f"  run {i}: {run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU ({run['cpu'] / run['wall']:.0%} of one "
              f"core), peak RSS {run['maxrss'] / 2**20:.0f} MiB, load average before {run['load']:.1f}")
    verdict = "meets" if best["wall"] < GOAL_SECONDS else "misses"
    print(f"best: {best['wall']:.1f} s wall, peak RSS {best['maxrss'] / 2**20:.0f} MiB ({verdict} the "
          f"{GOAL_SECONDS:.0f} s goal)")
    print(f"again on the same texts, answered by the store's parse cache: {warm['wall']:.1f} s wall, "
          f"peak RSS {warm['maxrss'] / 2**20:.0f} MiB (same counts)")


if __name__ == "__main__":
    main()
