"""Stanford Alpaca's prompt template: the one definition used by the trainer, eval, the server and both cards.

The text is byte-for-byte Stanford Alpaca's `PROMPT_DICT`. `TEMPLATE_VERSION` is part of the tokenisation
cache key and of the lineage: bump it whenever the text changes.
"""
from __future__ import annotations

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


def format_prompt(instruction: str, input_text: str = "") -> str:
    """Alpaca's prompt. An empty (or missing) input selects the no-input template, as in Alpaca."""
    if input_text:
        return PROMPT_INPUT.format(instruction=instruction, input=input_text)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def user_message(instruction: str, input_text: str = "") -> str:
    """An instruction and its input as one chat turn (for models prompted with their own chat template)."""
    return instruction + (f"\n\n{input_text}" if input_text else "")
