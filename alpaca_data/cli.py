"""`alpaca-data`: one command, thin subcommands over the library.

Each module in `alpaca_data.commands` registers its subcommands on the shared app.
User mistakes (UserError) become one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import os
import sys

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from alpaca_data.commands import ALL_COMMAND_MODULES
from alpaca_data.errors import UserError
from alpaca_data.progress import set_quiet

app = typer.Typer(
    name="alpaca-data",
    help="Make, version, filter, query and publish Alpaca-style instruction datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



@app.callback()
def _options(
    store: str = typer.Option(None, "--store", envvar="ALPACA_STORE", help="Store folder (default ./alpaca-store)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or chatter; results only."),
) -> None:
    if store:
        os.environ["ALPACA_STORE"] = store
    set_quiet(quiet)


for module in ALL_COMMAND_MODULES:
    module.register(app)


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="alpaca-data", standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except click_exceptions.UsageError as error:  # plain one line, not a decorated box
        path = error.ctx.command_path if error.ctx else "alpaca-data"
        print(f"error: {error.format_message()} (see `{path} --help`)", file=sys.stderr)
        sys.exit(2)
    except click_exceptions.ClickException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        sys.exit(error.exit_code)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        os._exit(0)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
