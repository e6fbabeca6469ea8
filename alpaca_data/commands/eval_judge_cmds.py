"""`alpaca-data eval judge BASELINE MODEL`: blind pairwise judging by an LLM, as an annotations revision."""
from __future__ import annotations

import sys

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.commands._request_runs import exit_uncommitted, resumable_on_interrupt
from alpaca_data.eval.judge import JudgeConfig


def register(eval_app: typer.Typer) -> None:
    eval_app.command("judge")(judge)


@config_command(JudgeConfig)
def judge(cfg: JudgeConfig,
          baseline: str = typer.Argument(..., help="Outputs revision of the baseline (output_1), e.g. davinci@main."),
          model: str = typer.Argument(..., help="Outputs revision of the model evaluated (output_2).")) -> None:
    """Judge two outputs revisions pair by pair with an LLM (blind, both orders) and commit the annotations."""
    from alpaca_data.eval.judge import judge_outputs
    from alpaca_data.eval.requests import RequestProgress

    with resumable_on_interrupt("verdicts"), RequestProgress(f"eval judge with {cfg.judge.spec}", total=0) as progress:
        result = judge_outputs(cfg, baseline, model, progress=progress)
    stats = result.stats
    if result.revision_id is None:
        exit_uncommitted(result, cfg.limits, done="judgments made", total=result.requests)
    rate = "-" if result.win_rate is None else f"{100 * result.win_rate:.1f}%"
    counts = result.manifest.data["recipe"]["counts"]
    if counts["only_1"] or counts["only_2"]:
        print(f"left out: {counts['only_1']} items answered by {baseline} only, {counts['only_2']} by {model} only",
              file=sys.stderr)
    print(f"{result.dataset}@{result.revision_id[:12]}: {result.annotations} judgments ({cfg.orders} orders), "
          f"{result.unparseable} unparseable; win rate of {model}: {rate}; "
          f"{stats.prompt_tokens + stats.completion_tokens:,} tokens, ${stats.cost_usd:.4f}")
