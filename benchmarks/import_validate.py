"""Validate + import a 52K-record file built from the shared corpora: wall time and peak memory.

Goal (issue 2): under 3 s and under 1 GiB on the 2-core machine. Run: .venv/bin/python benchmarks/import_validate.py
Each phase runs in a fresh subprocess so the peak memory is that of one CLI run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "data" / "corpora"
TARGET_RECORDS = 52_002  # the size of Alpaca's released data
GOAL_SECONDS, GOAL_BYTES = 3.0, 1024**3


def build_file(folder: Path) -> Path:
    records = []
    for path in sorted(CORPORA.glob("*.json")):
        for record in json.loads(path.read_text(encoding="utf-8")):
            if "response" in record:
                record["output"] = record.pop("response")
            records.append(record)
    copies = [dict(r, instruction=f"{r['instruction']} (copy {i // len(records)})") if i >= len(records) else r
              for i, r in enumerate(records * (TARGET_RECORDS // len(records) + 1))][:TARGET_RECORDS]
    out = folder / "alpaca_52k.json"
    out.write_text(json.dumps(copies, ensure_ascii=False, indent=4), encoding="utf-8")
    return out


def timed(args: list[str], env_store: Path) -> tuple[float, int]:
    code = ("import resource, sys, time; from alpaca_data.cli import main; t = time.perf_counter()\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('BENCH', time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc,"
            " file=sys.stderr)")
    completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                               env={"ALPACA_STORE": str(env_store), "PATH": "/usr/bin:/bin"})
    line = [text for text in completed.stderr.splitlines() if text.startswith("BENCH")][-1].split()
    if line[3] not in ("0", "None"):
        raise SystemExit(f"command failed: {args}\n{completed.stderr}")
    return float(line[1]), int(line[2]) * 1024


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = build_file(folder)
        size_mb = path.stat().st_size / 1e6
        validate_s, validate_mem = timed(["-q", "validate", str(path)], folder / "store")
        import_s, import_mem = timed(["-q", "import", str(path), "--dataset", "bench"], folder / "store")
    print(f"file: {TARGET_RECORDS} records, {size_mb:.1f} MB")
    print(f"validate: {validate_s:.2f} s, peak {validate_mem / 2**20:.0f} MiB")
    print(f"import (validate + write revision): {import_s:.2f} s, peak {import_mem / 2**20:.0f} MiB")
    verdict = "meets" if import_s < GOAL_SECONDS and import_mem < GOAL_BYTES else "misses"
    print(f"import time vs 3 s goal: {import_s / GOAL_SECONDS:.2f}x of budget; memory {import_mem / GOAL_BYTES:.2f}x "
          f"of 1 GiB ({verdict} the goal)")


if __name__ == "__main__":
    main()
