"""Validate, import and export a file built from the shared corpora: wall time and peak memory.

Goals: 52K records (Alpaca's size, a JSON array) import under 3 s and 1 GiB; 1M records (JSONL, `--records
1000000`) under 30 s and 1 GiB, memory flat because validate, import and export stream.
Run: .venv/bin/python benchmarks/import_validate.py [--records N]
Each phase runs in a fresh subprocess so the peak memory is that of one CLI run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "data" / "corpora"
TARGET_RECORDS = 52_002  # the size of Alpaca's released data
GOAL_SECONDS, GOAL_BYTES = 3.0, 1024**3


def _corpus_records() -> list[dict]:
    records = []
    for path in sorted(CORPORA.glob("*.json")):
        for record in json.loads(path.read_text(encoding="utf-8")):
            if "response" in record:
                record["output"] = record.pop("response")
            records.append(record)
    return records


def build_file(folder: Path, count: int, jsonl: bool | None = None) -> Path:
    """`count` records, the corpora repeated with the instruction suffixed; written as they are made (a JSON
    array up to Alpaca's size, JSONL beyond, unless `jsonl` says)."""
    records = _corpus_records()
    as_jsonl = count > TARGET_RECORDS if jsonl is None else jsonl
    out = folder / ("records.jsonl" if as_jsonl else "alpaca_52k.json")
    with out.open("w", encoding="utf-8") as handle:
        if not as_jsonl:
            handle.write("[\n")
        for i in range(count):
            record = records[i % len(records)]
            if i >= len(records):
                record = dict(record, instruction=f"{record['instruction']} (copy {i // len(records)})")
            if as_jsonl:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                handle.write(("" if i == 0 else ",\n") + json.dumps(record, ensure_ascii=False, indent=4))
        if not as_jsonl:
            handle.write("\n]\n")
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=TARGET_RECORDS)
    count = parser.parse_args().records
    goal_s = GOAL_SECONDS if count <= TARGET_RECORDS else 30.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = build_file(folder, count)
        size_mb = path.stat().st_size / 1e6
        validate_s, validate_mem = timed(["-q", "validate", str(path)], folder / "store")
        import_s, import_mem = timed(["-q", "import", str(path), "--dataset", "bench"], folder / "store")
        path.unlink()
        export_s, export_mem = timed(["-q", "export", "bench@main", "--format", "jsonl", "-o",
                                      str(folder / "out.jsonl")], folder / "store")
    print(f"file: {count} records, {size_mb:.1f} MB")
    print(f"validate: {validate_s:.2f} s, peak {validate_mem / 2**20:.0f} MiB")
    print(f"import (validate + write revision): {import_s:.2f} s, peak {import_mem / 2**20:.0f} MiB")
    print(f"export (verify + jsonl): {export_s:.2f} s, peak {export_mem / 2**20:.0f} MiB")
    verdict = "meets" if import_s < goal_s and import_mem < GOAL_BYTES else "misses"
    print(f"import time vs {goal_s:g} s goal: {import_s / goal_s:.2f}x of budget; memory {import_mem / GOAL_BYTES:.2f}x "
          f"of 1 GiB ({verdict} the goal)")


if __name__ == "__main__":
    main()
