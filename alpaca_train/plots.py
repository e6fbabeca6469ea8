"""The loss curve of a run (training loss per logged step, validation loss where it was measured), as a PNG
written beside each checkpoint."""
from __future__ import annotations

import json
from pathlib import Path


def plot_losses(log_path: Path, out: Path) -> Path | None:
    """Read `train_log.jsonl` and draw it; None when there is nothing logged yet."""
    if not log_path.is_file():
        return None
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        axes.plot(*zip(*train), label="training loss", linewidth=1.2)
    if val:
        axes.plot(*zip(*val), "o-", label="validation loss", linewidth=1.6)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("mean token cross-entropy")
    axes.set_title(f"{out.parent.name}: loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out
