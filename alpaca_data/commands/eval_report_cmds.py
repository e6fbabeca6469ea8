"""`alpaca-data eval import` (published judgments and model outputs as revisions) and `eval report`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from alpaca_data.commands._common import open_store, print_json
from alpaca_data.progress import is_quiet, stderr_console
from alpaca_data.store import Store


def import_(
    path: str = typer.Argument(..., help="An annotations file (AlpacaEval's *.annotations.json) or model outputs "
                                         "(AlpacaEval outputs, Self-Instruct predictions); JSON or JSONL."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name in the store."),
    message: str = typer.Option("", "-m", "--message", help="What this revision is."),
    generator: Optional[str] = typer.Option(None, "--generator",
                                            help="Outputs: the generator name (default: the file's, else its stem)."),
) -> None:
    """Store judgments or model outputs as a revision (annotations or outputs layout); prints its id last."""
    from alpaca_data.eval.importing import import_eval_file

    Store.check_dataset_name(dataset)  # before the file is read or the store is created
    outcome = import_eval_file(open_store(), path, dataset, message=message, generator=generator,
                               show_progress=not is_quiet())
    result = outcome.result
    if not is_quiet():
        what = (f"new {outcome.kind} revision of {dataset}: {outcome.rows} rows ({', '.join(outcome.generators)})"
                if result.created else f"identical content already stored as {dataset}@{result.short_id}; "
                                       "nothing new written")
        stderr_console.print(what, highlight=False, markup=False, soft_wrap=True)
    print(result.id)


def report(
    ref: str = typer.Argument(..., help="An annotations revision: NAME, NAME@main, NAME@TAG or NAME@<id prefix>."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as one JSON object."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a bar chart (PNG) of wins / ties / losses, "
                                                             "overall and per category."),
    resamples: int = typer.Option(2000, "--resamples", min=100, help="Bootstrap resamples for the 95% interval."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (same seed, same interval)."),
) -> None:
    """Wins / ties / losses, win rate (AlpacaEval's metrics), intervals, agreement, categories and lineage."""
    from alpaca_data.eval.report import build_report, render_text

    result = build_report(open_store(create=False), ref, resamples=resamples, seed=seed)
    if plot is not None:
        from alpaca_data.eval.plots import plot_report

        plot_report(result, plot)
        result["plot"] = str(plot)
        if not is_quiet():
            stderr_console.print(f"wrote the chart to {plot}", highlight=False, markup=False, soft_wrap=True)
    if as_json:
        print_json(result)
    else:
        print(render_text(result))


def register(eval_app: typer.Typer) -> None:
    eval_app.command("import")(import_)
    eval_app.command("report")(report)
