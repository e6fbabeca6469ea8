"""Errors meant for users: one line, no traceback, a defined exit code."""
from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input or environment. Printed as one line; exit code 1."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(UserError):
    """Wrong command-line usage (bad option values, conflicting flags). Exit code 2."""

    exit_code = 2


def refuse_missing_model_path(ref: str, label: str | None = None) -> None:
    """A model/tokenizer reference written as a path (/x, ./x, ~/x) that does not exist: say so plainly
    instead of letting the Hub client complain that it is not a valid repo id."""
    from pathlib import Path

    if ref.startswith(("/", ".", "~")) and not Path(ref).expanduser().exists():
        raise UserError(f"{label or ref}: no such model folder")
