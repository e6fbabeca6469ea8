"""CLI: filter, dedup, rules."""
from __future__ import annotations

from typing import Optional

import typer

from alpaca_data.commands._common import open_store, print_json, print_table
from alpaca_data.filters.heuristics import RuleSet
from alpaca_data.filters.pipeline import dedup_revision, filter_revision
from alpaca_data.progress import is_quiet, stderr_console


def _report(result, step: str) -> None:
    if not is_quiet():
        commit, report = result.commit, result.report
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(report.counts.items())) or "none"
        stderr_console.print(f"{step}: kept {len(report.kept)} of {result.source_records}; dropped: {reasons}")
        if getattr(report, "normalised", None):
            stderr_console.print("normalised: " + ", ".join(f"{k} {v}" for k, v in sorted(report.normalised.items())))
        if not commit.created:
            stderr_console.print(f"identical content already stored as {commit.dataset}@{commit.short_id}")
        stderr_console.print(f"rejections: alpaca-data sql \"SELECT reason, count(*) FROM rejections GROUP BY 1\" "
                             f"--rev {commit.dataset}@{commit.short_id}")
    print(result.commit.id)


def filter_(
    ref: str = typer.Argument(..., help="Revision to filter, e.g. alpaca@main."),
    rules: str = typer.Option("default", "--rules", help="Rule spec, e.g. 'default,-blacklist,too_long.max_words=300'"
                                                         " or 'none'. See `alpaca-data rules`."),
    rouge_threshold: float = typer.Option(0.7, "--rouge-threshold", help="Drop when ROUGE-L F > this."),
    no_rouge: bool = typer.Option(False, "--no-rouge", help="Skip the ROUGE-L novelty filter."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Revision whose instructions start the ROUGE pool."),
    rouge_no_tokens: str = typer.Option("drop", "--rouge-no-tokens",
                                        help="Instructions with no ROUGE tokens (e.g. Chinese): drop or keep."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Write into this dataset (default: same)."),
    message: str = typer.Option("", "-m", "--message"),
) -> None:
    """Heuristic rules then greedy ROUGE-L novelty, in revision order; makes a new revision with a rejection report."""
    result = filter_revision(open_store(create=False), ref, rules=rules,
                             rouge_threshold=None if no_rouge else rouge_threshold, pool_ref=pool,
                             on_no_tokens=rouge_no_tokens, dataset=dataset, message=message,
                             progress=not is_quiet())
    _report(result, "filter")


def dedup(
    ref: str = typer.Argument(...),
    method: str = typer.Option("exact", "--method", help="exact, minhash or semantic."),
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="minhash: Jaccard (default 0.8); semantic: cosine (0.95)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    message: str = typer.Option("", "-m", "--message"),
) -> None:
    """Remove duplicates (first of each group kept); makes a new revision with a rejection report."""
    result = dedup_revision(open_store(create=False), ref, method=method, threshold=threshold, dataset=dataset,
                            message=message, progress=not is_quiet())
    _report(result, f"dedup ({method})")


def rules(as_json: bool = typer.Option(False, "--json")) -> None:
    """The heuristic rules, their actions, defaults and parameters."""
    described = RuleSet.all().describe()
    if as_json:
        print_json(described)
        return
    print_table(["rule", "action", "default", "params", "description"],
                [(r["name"], r["action"], r["default"], ", ".join(f"{k}={v}" for k, v in r["params"].items()),
                  r["description"]) for r in described])


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_)
    app.command()(dedup)
    app.command()(rules)
