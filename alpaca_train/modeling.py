"""Model-side helpers: pad token, FSDP wrapping, the masked loss.

Pad token (default `--pad-token eos`): a tokenizer without a pad token gets `pad_token = eos_token`;
the vocabulary and the embedding matrix are left exactly as the base model has them. This is safe here
because labels are built from explicit prompt/response lengths, never from `input_ids == pad_id`: the
real EOS that ends every response is still trained, and padded positions are excluded by the attention
mask and by label -100 (and with the default padding-free batching there is no padding at all). Keeping
the vocabulary avoids an untrained embedding row, a resize that must happen before FSDP sharding, and a
checkpoint whose vocabulary no longer matches the base tokenizer. `--pad-token add` reproduces Stanford
Alpaca instead: add `[PAD]`, resize the embeddings and initialise the new row to the mean embedding.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alpaca_data.errors import UserError
from alpaca_train.data import IGNORE_INDEX


def setup_pad_token(tokenizer, model=None, strategy: str = "eos") -> dict[str, Any]:
    """Give the tokenizer a pad token (see module docstring). Returns what was done, for the lineage."""
    if tokenizer.pad_token_id is not None:
        done = {"strategy": "existing", "pad_token": str(tokenizer.pad_token), "pad_token_id": tokenizer.pad_token_id}
    elif strategy == "eos":
        if tokenizer.eos_token is None:
            raise UserError("the tokenizer has neither a pad nor an EOS token; use --pad-token add")
        tokenizer.pad_token = tokenizer.eos_token
        done = {"strategy": "eos", "pad_token": str(tokenizer.pad_token), "pad_token_id": tokenizer.pad_token_id}
    elif strategy == "add":
        tokenizer.add_special_tokens({"pad_token": "[PAD]"})
        done = {"strategy": "add", "pad_token": "[PAD]", "pad_token_id": tokenizer.pad_token_id}
    else:
        raise UserError(f"--pad-token {strategy}: expected eos or add")
    if model is not None:
        if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return done


def decoder_layer_classes(model: nn.Module) -> set[type]:
    """The repeated block class to wrap, found from the model itself: `_no_split_modules` when the
    model declares it, else the class of the children of the largest ModuleList of identical blocks."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if classes:
        return classes
    best: nn.ModuleList | None = None
    for module in model.modules():
        if (isinstance(module, nn.ModuleList) and len(module) and len({type(c) for c in module}) == 1
                and (best is None or len(module) > len(best))):
            best = module
    if best is None:
        raise UserError(f"cannot find the decoder-layer class of {type(model).__name__} for FSDP auto-wrap")
    return {type(best[0])}


def apply_fsdp(model: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """FSDP2 full shard (parameters, gradients and optimizer state sharded; parameters re-sharded after
    forward): one unit per decoder layer, then the root (embeddings, final norm, LM head). With bf16 the
    unsharded parameters and compute are bf16 while the sharded master weights and gradient reduction
    stay fp32."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    classes = tuple(decoder_layer_classes(model))
    for module in list(model.modules()):
        if isinstance(module, classes):
            fully_shard(module, mesh=mesh, mp_policy=mp, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=True)
    return model


def model_inputs(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    inputs = {"input_ids": batch["input_ids"].to(device)}
    if "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"].to(device)
    if "position_ids" in batch:
        inputs["position_ids"] = batch["position_ids"].to(device)
    return inputs


def token_losses(model: nn.Module, batch: dict[str, Any], device: torch.device,
                 autocast: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every trained token (fp32), and the micro-batch example each belongs to.

    Only positions whose next token is trained go through the LM head (`logits_to_keep` as a boolean
    mask): prompt and padding positions never materialise a vocabulary-sized logit row."""
    labels = batch["labels"].to(device)
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    with autocast if autocast is not None else nullcontext():
        out = model(**model_inputs(batch, device), logits_to_keep=keep, use_cache=False)
    logits = out.logits.float().reshape(-1, out.logits.shape[-1])
    ce = F.cross_entropy(logits, targets[keep], reduction="none")
    return ce, batch["example_index"].to(device)[keep]


def per_example_loss(model: nn.Module, batch: dict[str, Any], device: torch.device | None = None) -> torch.Tensor:
    """Mean token loss of each example of a micro-batch (for tests and evaluation)."""
    device = device or next(model.parameters()).device
    ce, index = token_losses(model, batch, device)
    n = int(batch["num_examples"])
    sums = torch.zeros(n, dtype=ce.dtype, device=ce.device).index_add_(0, index, ce)
    counts = torch.zeros(n, dtype=ce.dtype, device=ce.device).index_add_(0, index, torch.ones_like(ce))
    return sums / counts.clamp_min(1)
