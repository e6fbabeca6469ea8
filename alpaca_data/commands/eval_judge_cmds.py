"""`alpaca-data eval judge BASELINE MODEL`: blind pairwise judging by an LLM, as an annotations revision."""
from __future__ import annotations

import sys

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.eval.judge import JudgeConfig

STOPPED_EXIT = 3  # stopped cleanly (budget, --max-requests): nothing committed, --resume continues


def register(eval_app: typer.Typer) -> None:
    eval_app.command("judge")(judge)


@config_command(JudgeConfig)
def judge(cfg: JudgeConfig,
          baseline: str = typer.Argument(..., help="Outputs revision of the baseline (output_1), e.g. davinci@main."),
          model: str = typer.Argument(..., help="Outputs revision of the model evaluated (output_2).")) -> None:
    """Judge two outputs revisions pair by pair with an LLM (blind, both orders) and commit the annotations."""
    from alpaca_data.eval.judge import judge_outputs
    from alpaca_data.eval.requests import RequestProgress

    try:
        with RequestProgress(f"eval judge with {cfg.judge.spec}", total=0) as progress:
            result = judge_outputs(cfg, baseline, model, progress=progress)
    except KeyboardInterrupt:
        print("interrupted: verdicts so far are journalled; run the same command with --resume to continue",
              file=sys.stderr)
        raise typer.Exit(130) from None
    stats = result.stats
    spent = f"${stats.cost_usd:.4f}"
    if result.revision_id is None:
        if result.status == "budget_exhausted":
            why = f"budget reached ({spent} of ${cfg.limits.max_cost})"
        elif result.status == "request_limit":
            why = f"--max-requests {cfg.limits.max_requests} reached"
        else:
            why = f"{stats.failed} requests failed ({dict(stats.errors)})"
        print(f"{why}: {stats.answered} of {result.requests} judgments made; nothing committed. Continue with "
              f"--resume (run folder {result.run_dir})", file=sys.stderr)
        raise typer.Exit(STOPPED_EXIT if result.status != "incomplete" else 1)
    rate = "-" if result.win_rate is None else f"{100 * result.win_rate:.1f}%"
    counts = result.manifest.data["recipe"]["counts"]
    if counts["only_1"] or counts["only_2"]:
        print(f"left out: {counts['only_1']} items answered by {baseline} only, {counts['only_2']} by {model} only",
              file=sys.stderr)
    print(f"{result.dataset}@{result.revision_id[:12]}: {result.annotations} judgments ({cfg.orders} orders), "
          f"{result.unparseable} unparseable; win rate of {model}: {rate}; "
          f"{stats.prompt_tokens + stats.completion_tokens:,} tokens, {spent}")
