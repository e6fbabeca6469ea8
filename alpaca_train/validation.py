"""Held-out validation: which records are held out, and the validation loss of a model on them.

A record is held out when the hash of its key (normalised instruction + input, `alpaca_data.records.key_of`)
falls below `fraction`: the choice depends only on the record, so it is the same on every run, every machine
and every world size, and exact or near-exact repeats of one task (same key) are never split between the
training and the validation side.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from alpaca_data.records import key_of

HASH_SPACE = 2**64


def held_out(record: dict[str, Any], fraction: float) -> bool:
    digest = hashlib.sha256(b"alpaca-train/validation\x1f" + key_of(record).encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * HASH_SPACE


def split_validation(records: Sequence[dict[str, Any]], fraction: float) -> tuple[list[dict], list[dict]]:
    """(training records, held-out records), each in the revision's order."""
    if fraction <= 0:
        return list(records), []
    train, held = [], []
    for record in records:
        (held if held_out(record, fraction) else train).append(record)
    return train, held


def validation_loss(model, tokenized, collate, micro_batch_size: int, rank: int, world: int, device, autocast,
                    all_reduce_sum) -> float:
    """Mean token cross-entropy over every held-out example (the training loss's definition).

    Every rank runs the same number of forward passes (FSDP gathers parameters inside each one): ranks with no
    example left run a zero-weight pass on the first example.
    """
    import torch

    from alpaca_train.modeling import token_losses

    n = len(tokenized)
    per_round = micro_batch_size * world
    rounds = math.ceil(n / per_round)
    loss_sum, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for r in range(rounds):
                start = r * per_round + rank * micro_batch_size
                indices = list(range(start, min(start + micro_batch_size, n)))
                batch = collate(tokenized.examples(indices or [0]))
                ce, _ = token_losses(model, batch, device, autocast)
                if indices:
                    loss_sum += float(ce.sum())
                    tokens += int(ce.numel())
    finally:
        model.train(was_training)
    total_loss, total_tokens = all_reduce_sum(loss_sum), all_reduce_sum(float(tokens))
    return total_loss / total_tokens if total_tokens else float("nan")
