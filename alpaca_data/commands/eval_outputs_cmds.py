"""`alpaca-data eval generate`: a model's answers on an evaluation set, as an outputs revision."""
from __future__ import annotations

import sys

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.eval.outputs import EvalGenerateConfig

STOPPED_EXIT = 3  # stopped cleanly (budget, --max-requests): nothing committed, --resume continues


def register(eval_app: typer.Typer) -> None:
    eval_app.command("generate")(generate)


@config_command(EvalGenerateConfig)
def generate(cfg: EvalGenerateConfig) -> None:
    """Answer every item of an evaluation set with a model and commit the answers as a revision."""
    from alpaca_data.eval.outputs import generate_outputs
    from alpaca_data.eval.requests import RequestProgress

    try:
        with RequestProgress(f"eval generate {cfg.model.spec}", total=0) as progress:
            result = generate_outputs(cfg, progress=progress)
    except KeyboardInterrupt:
        print("interrupted: answers so far are journalled; run the same command with --resume to continue",
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
            why = f"{result.failed} requests failed ({dict(stats.errors)})"
        print(f"{why}: {stats.answered} of {result.items} items answered; nothing committed. Continue with "
              f"--resume (run folder {result.run_dir})", file=sys.stderr)
        raise typer.Exit(STOPPED_EXIT if result.status != "incomplete" else 1)
    left_out = f", {result.failed} failed and left out" if result.failed else ""
    print(f"{cfg.dataset}@{result.revision_id[:12]}: {result.items - result.failed} outputs of "
          f"{result.manifest.data['recipe']['generator']} on {cfg.set}{left_out}, "
          f"{stats.prompt_tokens + stats.completion_tokens:,} tokens, {spent}")
