"""`alpaca-data eval ...`: model outputs, blind pairwise judgments and reports (see `alpaca_data.eval`)."""
from __future__ import annotations

import typer

from alpaca_data.commands import eval_judge_cmds, eval_outputs_cmds, eval_rate_cmds, eval_report_cmds

eval_app = typer.Typer(name="eval", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       help="Evaluate models: outputs on a set, blind pairwise judging (people or an LLM), reports.")


def register(app: typer.Typer) -> None:
    for module in (eval_outputs_cmds, eval_judge_cmds, eval_rate_cmds, eval_report_cmds):
        module.register(eval_app)
    app.add_typer(eval_app, name="eval")
