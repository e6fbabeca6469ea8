"""`alpaca-data eval generate`: a model's answers on an evaluation set, as an outputs revision."""
from __future__ import annotations

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.commands._request_runs import exit_uncommitted, resumable_on_interrupt
from alpaca_data.eval.outputs import EvalGenerateConfig


def register(eval_app: typer.Typer) -> None:
    eval_app.command("generate")(generate)


@config_command(EvalGenerateConfig)
def generate(cfg: EvalGenerateConfig) -> None:
    """Answer every item of an evaluation set with a model and commit the answers as a revision."""
    from alpaca_data.eval.outputs import generate_outputs
    from alpaca_data.eval.requests import RequestProgress

    with resumable_on_interrupt("answers"), RequestProgress(f"eval generate {cfg.model.spec}", total=0) as progress:
        result = generate_outputs(cfg, progress=progress)
    stats = result.stats
    if result.revision_id is None:
        exit_uncommitted(result, cfg.limits, done="items answered", total=result.items)
    left_out = f", {result.failed} failed and left out" if result.failed else ""
    print(f"{cfg.dataset}@{result.revision_id[:12]}: {result.items - result.failed} outputs of "
          f"{result.manifest.data['recipe']['generator']} on {cfg.set}{left_out}, "
          f"{stats.prompt_tokens + stats.completion_tokens:,} tokens, ${stats.cost_usd:.4f}")
