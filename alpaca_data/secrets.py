"""Secrets never leave memory: one `redact` for every message, journal entry, manifest, log and error shown.

Known secrets are the values of the environment variables that hold them (API keys, Hugging Face tokens, the
watermark key) plus any value registered at run time (a key given another way). Anything shaped like a
credential (an `Authorization` header value, `sk-…` API keys, `hf_…` tokens) is masked too, even when it is
not one of ours: a server that echoes a header back must not make us print it.

Shapes belong to headers, URLs, error bodies and messages (`redact`). Model and user text is data: "basic cooking
skills", "bearer bonds" and "sk-learn" are not credentials, so journals, records and flags get `redact_known`
(the known values only; see `alpaca_data.journal.journal_safe`).
"""
from __future__ import annotations

import os
import re
from typing import Any

SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN",
                   "ALPACA_WATERMARK_KEY", "ALPACA_API_KEY", "WANDB_API_KEY")
MASK = "***"
_MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
_registered: set[str] = set()
# (pattern, replacement): the header name is kept, the credential is masked
_SHAPES = (
    (re.compile(r"(?i)(\bauthorization\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?[^\s\"',;]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{6,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{6,}"), MASK),
)


def register(value: str | None) -> None:
    """Treat `value` as a secret from now on (e.g. a key read from a file or given as an option)."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _registered.add(value)


def known_secrets() -> list[str]:
    values = set(_registered)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= _MIN_SECRET_LENGTH:
            values.add(value)
    return sorted(values, key=len, reverse=True)  # longest first, so a secret containing another is masked whole


def redact_known(text: str) -> str:
    """Known secret values masked, nothing else: for model and user text."""
    if not text:
        return text
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str) -> str:
    """Known secret values and anything shaped like a credential masked: for messages, errors, headers, URLs."""
    if not text:
        return text
    text = redact_known(text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside dicts, lists and tuples (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value
