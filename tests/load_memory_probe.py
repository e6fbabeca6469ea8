"""Run under torchrun: each rank loads MODEL_DIR (FSDP-sharded, memory-safe) and prints its peak host memory
during the load as JSON. With `--full`, the plain path (every rank reads the whole fp32 model) for contrast."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def main() -> None:
    import torch
    import torch.distributed as dist

    folder, full = sys.argv[1], "--full" in sys.argv
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    import transformers.models.llama.modeling_llama  # noqa: F401 - code, not weights: imported before measuring
    from transformers import AutoConfig, AutoModelForCausalLM

    from alpaca_train.loading import build_sharded
    from alpaca_train.modeling import apply_fsdp

    with torch.device("meta"):  # warm the model-building code paths on a weightless copy
        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    dist.barrier()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark: the peak below is the load's
    before = rss_kib("VmRSS")
    if full:
        model = apply_fsdp(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), torch.device("cpu"), False)
    else:
        model = build_sharded(folder, torch.device("cpu"), False, None, rank, world)
    peak = rss_kib("VmHWM")
    full_bytes = sum(p.numel() for p in model.parameters()) * 4  # global shapes: one whole fp32 copy
    print(json.dumps({"rank": rank, "load_peak_bytes": (peak - before) * 1024, "full_fp32_bytes": full_bytes}),
          flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
