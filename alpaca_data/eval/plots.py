"""The bar chart of an `eval report`: wins / ties / losses of the model, overall and per category (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError

COLOURS = {"wins": "#2e7d32", "ties": "#9e9e9e", "losses": "#c62828"}


def _short(name: str, width: int = 36) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _rate(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.1f}%"


def _judges(report: dict[str, Any]) -> str:
    names = [str(name) for name in report.get("annotators") or [] if name not in (None, "None", "")]
    return ", ".join(_short(name, 40) for name in names) if names else "unknown"


def report_figure(report: dict[str, Any]):
    """The chart as a matplotlib Figure: horizontal stacked bars, one per group, as shares of its decided-or-tied
    rows, counts written on them, each group's win rate at its right; the title names the judge."""
    # Figure + the Agg canvas directly: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [("overall", report["wins"], report["ties"], report["losses"], report.get("win_rate"))]
    categories = report["categories"]
    if len(categories) > 1:
        groups += [(row["category"], row["wins"], row["ties"], row["losses"], row.get("win_rate"))
                   for row in categories]
    figure = Figure(figsize=(8, 2.1 + 0.45 * len(groups)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = [_short(name, 28) for name, *_ in groups][::-1]
    left = [0.0] * len(groups)
    legend = {"wins": "model wins", "ties": "ties", "losses": "baseline wins"}
    for column, label in enumerate(("wins", "ties", "losses"), start=1):
        counts = [group[column] for group in groups][::-1]
        totals = [max(1, sum(group[1:4])) for group in groups][::-1]
        shares = [c / t * 100 for c, t in zip(counts, totals)]
        bars = axes.barh(names, shares, left=left, color=COLOURS[label],
                         label=legend[label])
        for bar, count, share in zip(bars, counts, shares):
            if share >= 6:
                axes.text(bar.get_x() + bar.get_width() / 2, bar.get_y() + bar.get_height() / 2, str(count),
                          ha="center", va="center", color="white", fontsize=8)
        left = [a + b for a, b in zip(left, shares)]
    for position, group in enumerate(groups[::-1]):  # the win rate right of each bar
        axes.text(101.5, position, _rate(group[4]), ha="left", va="center", fontsize=8,
                  fontweight="bold" if group[0] == "overall" else "normal")
    axes.text(101.5, len(groups) - 0.45, "win rate", ha="left", va="bottom", fontsize=8, style="italic")
    axes.axvline(50, color="black", linewidth=0.6, linestyle=":")
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of judged rows")
    error = report.get("standard_error")
    spread = f" ± {error:.1f}" if isinstance(error, (int, float)) and error == error else ""
    axes.set_title(f"model {_short(report['model'])} vs baseline {_short(report['baseline'])}\n"
                   f"win rate {_rate(report.get('win_rate'))}{spread} (ties count half), judge: {_judges(report)}",
                   fontsize=9)
    figure.legend(loc="outside lower center", ncol=3, fontsize=8, frameon=False)  # below: clear of the title
    return figure


def plot_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the chart (report_figure) as a PNG."""
    figure = report_figure(report)
    target = Path(path)
    try:
        figure.savefig(target, format="png", dpi=120)
    except OSError as error:
        raise UserError(f"{target}: cannot write the chart: {error.strerror or error}") from None
    return target
