"""The bar chart of an `eval report`: wins / ties / losses of the model, overall and per category (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError

COLOURS = {"wins": "#2e7d32", "ties": "#9e9e9e", "losses": "#c62828"}


def _short(name: str, width: int = 36) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Horizontal stacked bars, one per group, as shares of its decided-or-tied rows; counts written on them."""
    # Figure + the Agg canvas directly: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [("overall", report["wins"], report["ties"], report["losses"])]
    categories = report["categories"]
    if len(categories) > 1:
        groups += [(row["category"], row["wins"], row["ties"], row["losses"]) for row in categories]
    figure = Figure(figsize=(8, 1.2 + 0.45 * len(groups)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = [_short(name, 28) for name, *_ in groups][::-1]
    left = [0.0] * len(groups)
    legend = {"wins": "model wins", "ties": "ties", "losses": "baseline wins"}
    for column, label in enumerate(("wins", "ties", "losses"), start=1):
        counts = [group[column] for group in groups][::-1]
        totals = [max(1, sum(group[1:])) for group in groups][::-1]
        shares = [c / t * 100 for c, t in zip(counts, totals)]
        bars = axes.barh(names, shares, left=left, color=COLOURS[label],
                         label=legend[label])
        for bar, count, share in zip(bars, counts, shares):
            if share >= 6:
                axes.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, str(count),
                          ha="center", va="center", color="white", fontsize=8)
        left = [a + b for a, b in zip(left, shares)]
    axes.axvline(50, color="black", linewidth=0.6, linestyle=":")
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of judged rows")
    axes.set_title(f"model {_short(report['model'])} vs baseline {_short(report['baseline'])}", fontsize=9)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3, fontsize=8, frameon=False)
    figure.tight_layout()
    target = Path(path)
    try:
        figure.savefig(target, format="png", dpi=120)
    except OSError as error:
        raise UserError(f"{target}: cannot write the chart: {error.strerror or error}") from None
    return target
