"""Instruction filters.  Submodules are imported lazily (``alpaca_data.filters.rouge`` pulls in
numba kernels on first use), so importing this package stays cheap."""

from __future__ import annotations

__all__ = ["NoveltyDecision", "RougeNoveltyIndex", "rouge_tokenize"]


def __getattr__(name: str):
    if name in __all__:
        from alpaca_data.filters import rouge

        return getattr(rouge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
