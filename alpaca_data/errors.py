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
