"""The demo teacher's task bank, read from `demo_tasks.json` (shipped inside the package).

The file holds original tasks written for this project (`standalone`, `more`: [instruction, input, output],
"" for no input) and `families`: a few phrasings with a `{x}` slot times content-bearing fillers
([slot text, output]), so instructions differ enough for the ROUGE-L novelty filter to keep many of them.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

BANK_FILE = Path(__file__).with_name("demo_tasks.json")


@lru_cache(maxsize=1)
def all_tasks() -> tuple[tuple[str, str, str, str], ...]:
    """Every task as (key, instruction template, input, output); templates may hold several phrasings
    separated by "\\x1f" (the server picks one per response)."""
    bank = json.loads(BANK_FILE.read_text(encoding="utf-8"))
    tasks: list[tuple[str, str, str, str]] = []
    for index, (instruction, input_text, output) in enumerate(bank["standalone"]):
        tasks.append((f"s{index}", instruction, input_text, output))
    for family_index, family in enumerate(bank["families"]):
        for filler_index, (slot, output) in enumerate(family["fillers"]):
            variants = "\x1f".join(p.format(x=slot) for p in family["phrasings"])
            tasks.append((f"f{family_index}.{filler_index}", variants, "", output))
    for index, (instruction, input_text, output) in enumerate(bank["more"]):
        tasks.append((f"m{index}", instruction, input_text, output))
    return tuple(tasks)
