"""The in-process `hf:` teacher with a tiny randomly initialised Llama: gibberish, but the path runs."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alpaca_data.cli_options import build_config
from alpaca_data.errors import UserError
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.journal import read_journal
from alpaca_data.generate.prompt import build_prompt, load_seed_tasks
from alpaca_data.generate.run import run_generation
from alpaca_data.generate.teachers import Decoding, HFTeacher

SEEDS = str(Path(__file__).resolve().parent / "data" / "seeds" / "alpaca_seed_tasks.jsonl")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from alpaca_train.tiny import make_tiny_llama

    path = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(path)
    return path


def test_hf_teacher_generates_a_group_as_one_batch_with_its_seed(tiny_model):
    seeds = load_seed_tasks(SEEDS)
    teacher = HFTeacher(str(tiny_model), decoding=Decoding(max_tokens=12, stop=()), batch_size=3)
    teacher.load()
    calls = []
    generate = teacher._model.generate

    def counted(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    teacher._model.generate = counted
    prompts = [build_prompt(i, 0, seeds, 3) for i in range(3)]
    results = asyncio.run(teacher.complete(prompts, seed=1))
    assert calls == [3]  # one generate() call for the whole group
    assert len(results) == 3
    for completion in results:
        assert completion.finish_reason in ("length", "stop")
        assert 0 < completion.completion_tokens <= 12 and completion.prompt_tokens > 300
    again = asyncio.run(teacher.complete(prompts, seed=1))
    assert [c.text for c in again] == [c.text for c in results]  # same group, same seed: same answers
    other = asyncio.run(teacher.complete(prompts, seed=2))
    assert [c.text for c in other] != [c.text for c in results]


def _journal_texts(store: Path) -> dict[int, str]:
    journal = next((store / "runs" / "hf").glob("*/journal.jsonl"))
    return {e["index"]: e["text"] for e in read_journal(journal) if e["type"] == "answer"}


def _hf_generate(store: Path, tiny_model: Path, **overrides):
    options = dict(seeds=SEEDS, num=3, spec=f"hf:{tiny_model}", dataset="hf", api="completions", max_tokens=16,
                   concurrency=4, request_batch_size=2, max_requests=4)
    return run_generation(build_config(GenerateConfig, {**options, **overrides}), store=store)


def test_generate_with_hf_teacher_records_failures_and_is_reproducible_in_batches(tmp_path, tiny_model):
    with pytest.raises(UserError, match="no task was kept after 4 requests") as caught:
        _hf_generate(tmp_path / "a", tiny_model)
    assert "parse failures" in str(caught.value)
    first = _journal_texts(tmp_path / "a")
    assert sorted(first) == [0, 1, 2, 3]
    journal = next((tmp_path / "a" / "runs" / "hf").glob("*/journal.jsonl"))
    answers = [e for e in read_journal(journal) if e["type"] == "answer"]
    assert all(e["completion_tokens"] > 0 and e["model"] == str(tiny_model) for e in answers)
    # Batches are fixed groups of consecutive requests, so timing (here: concurrency) never changes an answer.
    with pytest.raises(UserError):
        _hf_generate(tmp_path / "b", tiny_model, concurrency=1)
    assert _journal_texts(tmp_path / "b") == first
    # The batch size shapes the answers, so it is part of the run's identity.
    from alpaca_data.generate.run import config_hash

    hashes = {json_hash for json_hash in (
        config_hash(json.loads(next((tmp_path / name / "runs" / "hf").glob("*/config.json")).read_text()))
        for name in ("a", "b"))}
    with pytest.raises(UserError):
        _hf_generate(tmp_path / "c", tiny_model, request_batch_size=1)
    single = json.loads(next((tmp_path / "c" / "runs" / "hf").glob("*/config.json")).read_text())
    assert len(hashes) == 1 and config_hash(single) not in hashes and single["request_batch_size"] == 1
