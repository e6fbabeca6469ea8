"""`python -m tests.racing_cli STAGE ARGS... -- OTHER_ARGS...`: the real `alpaca-data ARGS...`, which at the named
write stage first runs `alpaca-data OTHER_ARGS...` to completion in another process (a concurrent writer).

The race is injected here, through the store's `stage_hook`, so the store's own code carries no test switch.
"""
from __future__ import annotations

import subprocess
import sys

from alpaca_data.cli import main
from alpaca_data.store import Store


def race_at(wanted: str, other: list[str]):
    fired = []

    def hook(stage: str) -> None:
        if stage == wanted and not fired:
            fired.append(stage)
            subprocess.run([sys.executable, "-m", "alpaca_data", *other], check=True, stdout=subprocess.DEVNULL)

    return hook


if __name__ == "__main__":
    stage, rest = sys.argv[1], sys.argv[2:]
    split = rest.index("--")
    Store.stage_hook = staticmethod(race_at(stage, rest[split + 1:]))
    sys.argv = ["alpaca-data", *rest[:split]]
    main()
