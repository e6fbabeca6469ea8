"""Run a typer app the project's way (`alpaca-data`, `alpaca-train`): a user's mistake is one line on
stderr and a defined exit code (1: bad input, 2: wrong usage), never a traceback."""
from __future__ import annotations

import os
import sys

import typer
from typer._click import exceptions as click_exceptions  # typer vendors click (pyproject: typer>=0.29)

from alpaca_data.errors import UserError
from alpaca_data.secrets import redact


def version_option(prog_name: str) -> typer.models.OptionInfo:
    """`--version`: prints e.g. `alpaca-data 0.1.0` and exits (the installed alpaca-kit's version)."""

    def show(value: bool) -> None:
        if value:
            from importlib.metadata import PackageNotFoundError, version

            try:
                found = version("alpaca-kit")
            except PackageNotFoundError:  # run from a checkout that was never installed
                found = "unknown"
            print(f"{prog_name} {found}")
            raise typer.Exit(0)

    return typer.Option(False, "--version", callback=show, is_eager=True, expose_value=False,
                        help="Print the version and exit.")


def run_app(app: typer.Typer, prog_name: str, argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as error:  # a bare command (or group): its help, and success
        try:
            print(error.format_message())
        except BrokenPipeError:
            os._exit(0)
        sys.exit(0)
    except UserError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        sys.exit(error.exit_code)
    except click_exceptions.UsageError as error:  # plain one line, not a decorated box
        path = error.ctx.command_path if error.ctx else prog_name
        print(f"error: {error.format_message()} (see `{path} --help`)", file=sys.stderr)
        sys.exit(2)
    except click_exceptions.ClickException as error:
        print(f"error: {redact(error.format_message())}", file=sys.stderr)
        sys.exit(error.exit_code)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        os._exit(0)
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
