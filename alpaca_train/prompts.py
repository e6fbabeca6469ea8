"""The two Alpaca prompt templates, split into segments so truncation knows what it may cut.

The text produced is byte-for-byte Stanford Alpaca's `PROMPT_DICT`. `TEMPLATE_VERSION` is part of the
tokenisation cache key and of the lineage: bump it whenever the text or the segmentation changes.
"""
from __future__ import annotations

from dataclasses import dataclass

TEMPLATE_VERSION = "alpaca-v1"

PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)

_HEAD_INPUT, _rest = PROMPT_INPUT.split("{instruction}")
_MID_INPUT, _TAIL_INPUT = _rest.split("{input}")
_HEAD_NO_INPUT, _TAIL_NO_INPUT = PROMPT_NO_INPUT.split("{instruction}")


@dataclass(frozen=True)
class Segment:
    text: str
    cuttable: bool  # user content (instruction / input) that truncation may shorten; template text is never cut


def prompt_segments(instruction: str, input_text: str = "") -> list[Segment]:
    """The prompt as ordered segments; "".join(s.text) == format_prompt(...)."""
    if input_text:
        return [Segment(_HEAD_INPUT, False), Segment(instruction, True), Segment(_MID_INPUT, False),
                Segment(input_text, True), Segment(_TAIL_INPUT, False)]
    return [Segment(_HEAD_NO_INPUT, False), Segment(instruction, True), Segment(_TAIL_NO_INPUT, False)]


def format_prompt(instruction: str, input_text: str = "") -> str:
    """Alpaca's prompt. An empty (or missing) input selects the no-input template, as in Alpaca."""
    if input_text:
        return PROMPT_INPUT.format(instruction=instruction, input=input_text)
    return PROMPT_NO_INPUT.format(instruction=instruction)
