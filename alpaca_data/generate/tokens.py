"""Token counts without a tokenizer: a rough count for servers that report no usage, and a strict upper bound
for budgets.

The bound holds for byte-level BPE tokenizers (GPT-2/3/4, LLaMA 3, Qwen, ...): every token covers at least one
byte, so a text never has more tokens than UTF-8 bytes; each chat message adds a few tokens of framing.
"""
from __future__ import annotations

import re
from typing import Any

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")  # a word or a punctuation mark
MESSAGE_FRAMING_TOKENS = 8  # role and separators per chat message, generously
REPLY_PRIMING_TOKENS = 8


def count_tokens(text: str) -> int:
    """A rough, deterministic token count (words and punctuation marks)."""
    return len(TOKEN_PATTERN.findall(text))


def prompt_token_bound(text: str, messages: list[dict[str, Any]] | None = None) -> int:
    """At most this many prompt tokens, whichever endpoint (completions: `text`; chat: `messages`) is used."""
    as_text = len(text.encode("utf-8"))
    if not messages:
        return as_text + REPLY_PRIMING_TOKENS
    as_chat = sum(len(str(m.get("content", "")).encode("utf-8")) + MESSAGE_FRAMING_TOKENS for m in messages)
    return max(as_text, as_chat) + REPLY_PRIMING_TOKENS
