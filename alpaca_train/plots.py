"""The loss curve of a run (training loss per logged step, validation loss where it was measured), as a PNG
written beside each checkpoint."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_log(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def loss_figure(rows: list[dict[str, Any]], title: str):
    """The matplotlib Figure of the logged rows (None when no loss was logged): integer step ticks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        return None
    figure = Figure(figsize=(7, 4), dpi=110)  # no pyplot: no global state, no display needed
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="training loss", linewidth=1.2, marker="." if len(train) <= 30 else None)
    if val:
        axes.plot(*zip(*val), "o-", label="validation loss", linewidth=1.6)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("mean token cross-entropy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def plot_losses(log_path: Path, out: Path) -> Path | None:
    """Read `train_log.jsonl` and draw it; None when there is nothing logged yet."""
    if not log_path.is_file():
        return None
    figure = loss_figure(read_log(log_path), f"{out.parent.name}: loss")
    if figure is None:
        return None
    figure.savefig(out)
    return out
