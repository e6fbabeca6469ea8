"""Chat messages -> the Alpaca prompt the checkpoint was trained on.

Alpaca is single-turn: the last user message is the instruction. Earlier turns (and a system message)
travel in the `input` field as a transcript, so a one-message chat gives exactly Stanford Alpaca's prompt
and a longer one still reaches the model in the format it knows.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alpaca_train.prompts import TEMPLATE_VERSION, format_prompt

_SPEAKERS = {"system": "System", "user": "User", "assistant": "Assistant"}


class PromptError(ValueError):
    """A chat the Alpaca template cannot express (the message names the field)."""


def message_text(content: Any) -> str:
    """OpenAI content is a string or a list of parts; only text parts are accepted."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PromptError("messages: only text content parts are supported")
            texts.append(part["text"])
        return "".join(texts)
    raise PromptError("messages: content must be a string or a list of text parts")


def split_chat(messages: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(instruction, input) of a chat: the last user message, and the transcript before it."""
    if not messages:
        raise PromptError("messages: at least one message is required")
    turns = []
    for number, message in enumerate(messages):
        role = message.get("role")
        if role not in _SPEAKERS:
            raise PromptError(f"messages[{number}].role: expected system, user or assistant, got {role!r}")
        turns.append((role, message_text(message.get("content", ""))))
    if turns[-1][0] != "user":
        raise PromptError("messages: the last message must be the user's")
    instruction = turns[-1][1]
    transcript = "\n".join(f"{_SPEAKERS[role]}: {text}" for role, text in turns[:-1])
    return instruction, transcript


def chat_prompt(messages: Sequence[Mapping[str, Any]]) -> str:
    return format_prompt(*split_chat(messages))


def template_for(lineage: Mapping[str, Any] | None) -> str:
    """The template version a checkpoint was trained with (the Alpaca default for a plain model folder)."""
    version = ((lineage or {}).get("tokenization") or {}).get("template_version") or TEMPLATE_VERSION
    if version != TEMPLATE_VERSION:
        raise PromptError(f"the checkpoint was trained with prompt template {version!r}; this alpaca-train "
                          f"knows {TEMPLATE_VERSION!r} only")
    return version
