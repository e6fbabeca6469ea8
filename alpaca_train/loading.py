"""Load a Hugging Face checkpoint into an FSDP-sharded model without a full copy on any rank.

Every rank builds the model on the meta device (no memory), shards it with FSDP2, allocates only its own
shards, and reads from the safetensors files exactly the rows of each tensor it owns (FSDP2 shards dim 0 in
`torch.chunk` pieces). Rows are read with plain file reads straight into the shard when the dtypes match (a
bounded buffer converts them otherwise), so neither a full tensor nor a memory map of the file is ever
resident: host memory per rank is about 1/world of the model.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
CONVERT_BLOCK_BYTES = 16 * 1024**2  # the most a dtype conversion holds at once
_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def checkpoint_files(folder: Path) -> dict[str, Path] | None:
    """Tensor name -> safetensors file, or None when the folder holds no safetensors weights."""
    index = folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / SINGLE_FILE
    if single.is_file():
        return {name: single for name in _header(single)[0] if name != "__metadata__"}
    return None


def _header(path: Path) -> tuple[dict[str, Any], int]:
    with open(path, "rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(size)), 8 + size


class _Reader:
    """Rows of the tensors of one safetensors file, read at their byte offsets."""

    def __init__(self, path: Path):
        self.path = path
        self.header, self.data_start = _header(path)
        self.handle = open(path, "rb", buffering=0)

    def close(self) -> None:
        self.handle.close()

    def read_rows(self, name: str, start: int, out) -> None:
        """Rows [start, start + len(out)) of tensor `name` into `out` (contiguous, any floating dtype)."""
        import torch

        entry = self.header[name]
        dtype = getattr(torch, _DTYPES[entry["dtype"]])
        shape = entry["shape"]
        row_elems = math.prod(shape[1:]) if len(shape) > 1 else 1
        item = torch.empty((), dtype=dtype).element_size()
        offset = self.data_start + entry["data_offsets"][0] + start * row_elems * item
        if not out.is_contiguous():
            raise ValueError(f"{name}: the destination shard is not contiguous")
        rows = out.shape[0] if out.dim() else 1
        flat = out.reshape(-1)
        if dtype == out.dtype and out.device.type == "cpu":  # straight into the shard
            self._read_into(offset, flat.view(torch.uint8))
            return
        block_rows = max(1, CONVERT_BLOCK_BYTES // max(1, row_elems * item))
        for first in range(0, rows, block_rows):
            count = min(block_rows, rows - first)
            buffer = torch.empty(count * row_elems, dtype=dtype)
            self._read_into(offset + first * row_elems * item, buffer.view(torch.uint8))
            flat[first * row_elems:(first + count) * row_elems].copy_(buffer)

    def _read_into(self, offset: int, target) -> None:
        view = memoryview(target.numpy()).cast("B")
        self.handle.seek(offset)
        done = 0
        while done < len(view):
            got = self.handle.readinto(view[done:])
            if not got:
                raise UserError(f"{self.path}: ends early (truncated checkpoint)")
            done += got


def load_local_shards(model, folder: Path, rank: int, world: int) -> None:
    """Fill an FSDP2 model (allocated with `to_empty`) with this rank's rows of every tensor in `folder`."""
    import torch

    files = checkpoint_files(folder)
    if files is None:
        raise UserError(f"{folder}: no safetensors weights (model.safetensors or its index)")
    readers: dict[Path, _Reader] = {}
    try:
        with torch.no_grad():
            state = dict(model.named_parameters())
            state.update((name, buffer) for name, buffer in model.named_buffers() if name in files)
            missing = sorted(set(state) - set(files))
            if missing:
                raise UserError(f"{folder}: the checkpoint has no tensor {missing[0]!r} of this model")
            for name, tensor in state.items():
                reader = readers.get(files[name]) or readers.setdefault(files[name], _Reader(files[name]))
                local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
                if hasattr(tensor, "to_local") and tensor.dim() and local.numel():
                    chunk = math.ceil(tensor.shape[0] / world)  # FSDP2 shards dim 0 like torch.chunk
                    reader.read_rows(name, rank * chunk, local)
                elif local.numel():
                    reader.read_rows(name, 0, local)
    finally:
        for reader in readers.values():
            reader.close()


def restore_buffers(model) -> None:
    """Non-persistent buffers (e.g. rotary frequencies) are not in checkpoints: recompute them by building a
    fresh copy of each small module that holds one."""
    import torch

    for module in model.modules():
        names = [name for name in getattr(module, "_non_persistent_buffers_set", ()) if name in module._buffers]
        if not names:
            continue
        try:
            with torch.device("cpu"):
                fresh = type(module)(model.config)
        except TypeError as error:
            raise UserError(f"cannot rebuild the buffers of {type(module).__name__} for a sharded load ({error})") \
                from None
        for name in names:
            module._buffers[name] = getattr(fresh, name).to(module._buffers[name].device)


def build_sharded(folder: str, device, bf16: bool, attn_implementation: str | None, rank: int, world: int,
                  prepare=None, load_weights: bool = True):
    """The model of `folder`, FSDP-sharded, each rank holding only its shards (see the module docstring).
    `prepare(model)` runs on the meta model before sharding (e.g. to switch on gradient checkpointing)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from alpaca_train.modeling import apply_fsdp

    config = AutoConfig.from_pretrained(folder)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    if prepare is not None:
        prepare(model)
    model = apply_fsdp(model, device, bf16=bf16)
    model.to_empty(device=device)
    restore_buffers(model)
    if load_weights:
        load_local_shards(model, Path(folder), rank, world)
    return model
