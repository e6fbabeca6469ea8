"""Run every benchmark in turn (`make bench`); each prints its own figures and its ratio last."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("import_validate.py", "rouge_filter.py", "generate_throughput.py", "train_throughput.py",
              "watermark_detect.py", "real_model.py", "watermark_real.py", "scale.py", "diversity_scale.py",
              "near_dup_scale.py", "lora_memory.py")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== {name}", flush=True)
        if subprocess.call([sys.executable, str(HERE / name), *sys.argv[1:]]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
