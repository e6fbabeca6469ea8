"""Which prompt a local checkpoint is given: one rule for serve, `hf:` teachers and judges, and eval generate.

- a checkpoint alpaca-train made (it has `alpaca_lineage.json`) was trained on the Alpaca template: it gets that;
- any other folder whose tokenizer has a chat template (an instruct model, e.g. SmolLM2 as imported) gets its
  chat template, with the instruction and input as one user turn;
- anything else (a base model, a tiny test model) gets the Alpaca template.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alpaca_data.prompt_template import format_prompt, user_message

ALPACA = "alpaca"
CHAT_TEMPLATE = "chat-template"
LINEAGE_FILE = "alpaca_lineage.json"  # written by alpaca-train into every checkpoint it makes


def prompt_style(folder: str | Path, tokenizer: Any) -> str:
    if (Path(folder).expanduser() / LINEAGE_FILE).is_file():
        return ALPACA
    if getattr(tokenizer, "chat_template", None):
        return CHAT_TEMPLATE
    return ALPACA


def render_chat(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The tokenizer's chat template, ready for the assistant's answer. The template writes the special tokens
    itself, so the text must be tokenized without adding them again."""
    return tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)


def render_item(style: str, tokenizer: Any, instruction: str, input_text: str = "") -> str:
    if style == CHAT_TEMPLATE:
        return render_chat(tokenizer, [{"role": "user", "content": user_message(instruction, input_text)}])
    return format_prompt(instruction, input_text)
