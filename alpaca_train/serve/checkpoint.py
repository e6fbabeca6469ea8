"""Load what the server serves: a checkpoint folder (alpaca-train's, any causal LM folder, or a peft adapter on its
base) and its lineage."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError, one_line, refuse_missing_model_path
from alpaca_data.model_loading import load_causal_lm, tokenizer_source
from alpaca_data.model_prompt import ALPACA, CHAT_TEMPLATE, prompt_style, render_chat
from alpaca_data.prompt_template import format_prompt
from alpaca_train.lineage import LINEAGE_FILE, read_lineage
from alpaca_train.serve.prompting import PromptError, message_text, split_chat, template_for

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class Checkpoint:
    path: Path
    name: str
    model: Any
    tokenizer: Any
    lineage: dict[str, Any] | None  # alpaca_lineage.json, None for a plain model folder
    template_version: str  # the Alpaca template's version, or "chat-template" for the tokenizer's own
    prompt_prefix: list[int]  # ids the trainer put before the prompt (e.g. BOS); none before a chat template
    context_length: int | None

    @property
    def prompt_style(self) -> str:
        return CHAT_TEMPLATE if self.template_version == CHAT_TEMPLATE else ALPACA

    def chat_prompt(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The text the model sees for a chat: its own chat template (every turn as sent), or Alpaca's."""
        if self.prompt_style == CHAT_TEMPLATE:
            split_chat(messages)  # the same checks (roles, text parts, last turn the user's) either way
            return render_chat(self.tokenizer, [{"role": m["role"], "content": message_text(m.get("content", ""))}
                                                for m in messages])
        return format_prompt(*split_chat(messages))

    def summary(self) -> dict[str, Any]:
        """What clients may see about where the model came from (no local secrets: paths and ids only)."""
        lineage = self.lineage or {}
        dataset = lineage.get("dataset") or {}
        return {"checkpoint": str(self.path), "base_model": (lineage.get("base_model") or {}).get("id"),
                "dataset": {k: dataset.get(k) for k in ("ref", "name", "revision_id") if dataset.get(k)} or None,
                "output_dir": lineage.get("output_dir"), "template_version": self.template_version,
                "trained_with_alpaca_train": self.lineage is not None}


def load_checkpoint(path: str, *, name: str | None = None, dtype: str = "auto", device: str | None = None) -> Checkpoint:
    import torch
    from transformers import AutoTokenizer

    from alpaca_train.data import special_prefix

    folder = Path(path).expanduser()
    refuse_missing_model_path(path, kind="checkpoint", hub=False)
    lineage = read_lineage(folder)
    try:
        template = template_for(lineage)
    except PromptError as error:
        raise UserError(f"{folder / LINEAGE_FILE}: {error}") from None
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    try:  # a peft adapter folder is its base with the adapter merged in (alpaca_data.model_loading)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(str(folder)))
    except (OSError, ValueError) as error:
        raise UserError(f"{folder}: cannot load a causal LM: {one_line(error)}") from None
    model = load_causal_lm(str(folder), dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    context = getattr(model.config, "max_position_embeddings", None)
    prefix = special_prefix(tokenizer)
    if prompt_style(folder, tokenizer) == CHAT_TEMPLATE:  # an instruct model that is not alpaca-train's: the
        template, prefix = CHAT_TEMPLATE, []               # chat template writes its own special tokens
    return Checkpoint(folder.resolve(), name or folder.resolve().name, model, tokenizer, lineage, template, prefix,
                      context)
