"""`alpaca-data`: one command, thin subcommands over the library.

Each module in `alpaca_data.commands` registers its subcommands on the shared app.
User mistakes (UserError) become one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import os
import sys

import typer

from alpaca_data.cli_runner import run_app, version_option
from alpaca_data.commands import modules_for
from alpaca_data.progress import set_quiet


def _options(
    store: str = typer.Option(None, "--store", envvar="ALPACA_STORE", help="Store folder (default ./alpaca-store)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter; results only."),
    _version: bool = version_option("alpaca-data"),
) -> None:
    if store:
        os.environ["ALPACA_STORE"] = store
    set_quiet(quiet)


def make_app(command: str | None = None) -> typer.Typer:
    """The CLI with the subcommands of `command`'s module (`commands.modules_for`), or all of them."""
    app = typer.Typer(
        name="alpaca-data",
        help="Make, version, filter, query and publish Alpaca-style instruction datasets.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # plain help, as alpaca-train's: full flag names at 80 columns
    )
    app.callback()(_options)
    for module in modules_for(command):
        module.register(app)
    return app


def command_named(args: list[str]) -> str | None:
    """The subcommand of a command line: its first word that is neither a global option nor --store's value."""
    takes_value = False
    for arg in args:
        if takes_value:
            takes_value = False
        elif arg == "--store":
            takes_value = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    run_app(make_app(command_named(args)), "alpaca-data", argv)
