"""Where the project's top-level resource folders (schemas/, analyses/, cards/) are.

In a source checkout (and an editable install) they are read from the repository; a wheel carries copies
inside the package (alpaca_data/_resources/, mapped in pyproject.toml).
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGED = Path(__file__).resolve().parent / "_resources"


def resource_dir(name: str) -> Path:
    """`schemas`, `analyses` or `cards`."""
    in_repo = REPO_ROOT / name
    return in_repo if in_repo.is_dir() else PACKAGED / name
