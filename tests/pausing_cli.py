"""`python -m tests.pausing_cli STAGE ARGS...`: the real `alpaca-data ARGS...`, stopped at a named write stage.

The crash tests kill this process while it waits there; the pause is injected here, through the store's
`stage_hook`, so the store's own code carries no test switch.
"""
from __future__ import annotations

import sys
import time

from alpaca_data.cli import main
from alpaca_data.store import Store


def pause_at(wanted: str):
    def hook(stage: str) -> None:
        if stage == wanted:
            print(f"paused at {stage}", flush=True)
            time.sleep(3600)

    return hook


if __name__ == "__main__":
    Store.stage_hook = staticmethod(pause_at(sys.argv[1]))
    sys.argv = ["alpaca-data", *sys.argv[2:]]
    main()
