"""Where the step log goes besides `train_log.jsonl`: TensorBoard or Weights & Biases (`--report-to`), when
installed. Rank 0 only; every numeric field of a log row becomes a scalar at its step."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError

REPORTERS = ("none", "tensorboard", "wandb")
_NOT_SCALARS = {"step", "epoch"}


class Reporter:
    def __init__(self, kind: str, out: Path, settings: dict[str, Any]):
        self.kind, self._writer, self._run = kind, None, None
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError("--report-to tensorboard: the tensorboard package is not installed "
                                "(pip install tensorboard)") from None
            self._writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError:
                raise UserError("--report-to wandb: the wandb package is not installed (pip install wandb)") from None
            self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "alpaca-train"), dir=str(out),
                                   name=out.name, config=settings)

    def log(self, record: dict[str, Any]) -> None:
        scalars = {k: v for k, v in record.items() if k not in _NOT_SCALARS and isinstance(v, (int, float))}
        if self._writer is not None:
            for name, value in scalars.items():
                self._writer.add_scalar(name, value, record["step"])
            self._writer.flush()
        if self._run is not None:
            self._run.log(scalars, step=record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._run is not None:
            self._run.finish()
