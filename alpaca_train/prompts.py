"""The Alpaca prompt (defined once, in alpaca_data.prompt_template) split into segments, so truncation knows what
it may cut. Bump `TEMPLATE_VERSION` there whenever the text or the segmentation changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from alpaca_data.prompt_template import PROMPT_INPUT, PROMPT_NO_INPUT, TEMPLATE_VERSION, format_prompt

__all__ = ["PROMPT_INPUT", "PROMPT_NO_INPUT", "TEMPLATE_VERSION", "format_prompt", "prompt_segments", "Segment"]

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

