"""`alpaca-data`: one command, thin subcommands over the library.

Each module in `alpaca_data.commands` registers its subcommands on the shared app.
User mistakes (UserError) become one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import os

import typer

from alpaca_data.cli_runner import run_app, version_option
from alpaca_data.commands import ALL_COMMAND_MODULES
from alpaca_data.progress import set_quiet

app = typer.Typer(
    name="alpaca-data",
    help="Make, version, filter, query and publish Alpaca-style instruction datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help, as alpaca-train's: full flag names at 80 columns
)

@app.callback()
def _options(
    store: str = typer.Option(None, "--store", envvar="ALPACA_STORE", help="Store folder (default ./alpaca-store)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter; results only."),
    _version: bool = version_option("alpaca-data"),
) -> None:
    if store:
        os.environ["ALPACA_STORE"] = store
    set_quiet(quiet)


for module in ALL_COMMAND_MODULES:
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    run_app(app, "alpaca-data", argv)
