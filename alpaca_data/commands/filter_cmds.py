"""CLI: filter, dedup, rules."""
from __future__ import annotations

from typing import Optional

import typer

from alpaca_data.commands._common import open_store, print_json, print_table
from alpaca_data.errors import UserError
from alpaca_data.filters.revision import DEDUP_METHODS, StepResult, dedup_revision, filter_revision
from alpaca_data.filters.ruleset import RuleSet
from alpaca_data.progress import is_quiet, stderr_console

FORCE_HELP = "Move main to the new revision even if main moved while this step ran."


def _say(text: str) -> None:
    stderr_console.print(text, highlight=False, markup=False, soft_wrap=True)  # printed commands stay whole


def _report(outcome: StepResult, step: str) -> None:
    commit, pipeline = outcome.commit, outcome.pipeline
    if not is_quiet():
        reasons = ", ".join(f"{reason} {count}" for reason, count in pipeline.counts.items()) or "none"
        _say(f"{step}: kept {outcome.kept} of {outcome.source_records}; dropped: {reasons}")
        if pipeline.normalised:
            _say("normalised: " + ", ".join(f"{k} {v}" for k, v in pipeline.normalised.items()))
        for stats in pipeline.stats:
            _say(f"  {stats.name}: {stats.seen} seen, {stats.kept} kept, {stats.seconds:.2f} s")
        if outcome.workers > 1:
            _say(f"  ({outcome.workers} worker threads; a step's seconds add up the time of each)")
        if not commit.created:
            _say(f"identical content already stored as {commit.dataset}@{commit.short_id}")
        if commit.manifest.has_sidecar("rejections"):
            _say(f"rejections: alpaca-data sql \"SELECT reason, count(*) FROM rejections GROUP BY 1\" "
                 f"--rev {commit.dataset}@{commit.short_id}")
    print(commit.id)
    if commit.main_moved_since:
        raise UserError(f"{commit.dataset}@main moved to {commit.main_moved_since[:12]} while this step ran; the "
                        f"result is stored as {commit.dataset}@{commit.short_id} but main was left where it is "
                        "(run the step again on the new main, or pass --force to move main anyway)")


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
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Heuristic rules then greedy ROUGE-L novelty, in revision order; makes a new revision with a rejection report."""
    outcome = filter_revision(open_store(create=False), ref, rules=rules,
                              rouge_threshold=None if no_rouge else rouge_threshold, pool_ref=pool,
                              on_no_tokens=rouge_no_tokens, dataset=dataset, message=message,
                              progress=not is_quiet(), force=force)
    _report(outcome, "filter")


def dedup(
    ref: str = typer.Argument(...),
    method: str = typer.Option("exact", "--method", help=f"{', '.join(DEDUP_METHODS)}."),
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="minhash: Jaccard (default 0.8); semantic: cosine (0.95)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    message: str = typer.Option("", "-m", "--message"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Remove duplicates (first of each group kept); makes a new revision with a rejection report."""
    outcome = dedup_revision(open_store(create=False), ref, method=method, threshold=threshold, dataset=dataset,
                             message=message, progress=not is_quiet(), force=force)
    _report(outcome, f"dedup ({method})")


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
