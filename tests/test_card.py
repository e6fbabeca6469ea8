"""Dataset cards: Hub metadata that round-trips through huggingface_hub and datasets, and a body with real numbers."""
from __future__ import annotations

import json

import pytest
from huggingface_hub import DatasetCard

from alpaca_data.analyze.sql import analysis_sql, run_sql
from alpaca_data.filters.revision import filter_revision
from alpaca_data.hub import card_text
from alpaca_data.importer import import_files
from alpaca_data.store import Store
from tests.conftest import CORPORA, load_corpus, run_cli


@pytest.fixture(scope="module")
def gsm_store(tmp_path_factory):
    """gsm8k imported, then filtered by the default heuristic rules (real drop counts)."""
    store = Store.open(tmp_path_factory.mktemp("card") / "store")
    imported = import_files(store, [str(CORPORA / "gsm8k_train_alpaca.json")], "gsm", show_progress=False).result
    filtered = filter_revision(store, "gsm@main", rouge_threshold=None, progress=False).commit
    return store, imported.manifest, filtered.manifest


def test_card_metadata_round_trips_and_body_has_real_numbers(gsm_store):
    store, imported, filtered = gsm_store
    text = card_text(store, "gsm@main", repo_id="alice/gsm8k-alpaca")
    card = DatasetCard(text)
    data = card.data.to_dict()
    assert data["license"] == "cc-by-nc-4.0" and data["language"] == ["en"]
    assert data["task_categories"] == ["text-generation"] and data["size_categories"] == ["n<1K"]  # the ~500-record sample, filtered
    assert data["pretty_name"] == f"gsm ({filtered.short_id})"
    assert data["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = data["dataset_info"]
    assert [f["name"] for f in info["features"]] == ["instruction", "input", "output"]
    assert info["splits"][0]["name"] == "train" and info["splits"][0]["num_examples"] == filtered.record_count
    assert info["splits"][0]["num_bytes"] > 0 and info["download_size"] > 0

    # datasets reads the same metadata (configs and split sizes) from the card
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    assert MetadataConfigs.from_dataset_card_data(card.data)["default"]["data_files"] == [
        {"split": "train", "path": "data/train-*"}]
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    assert infos["default"].splits["train"].num_examples == filtered.record_count

    body = card.text
    counts = filtered.data["extra"]["filter"]["counts"]
    assert counts and sum(counts.values()) == imported.record_count - filtered.record_count
    for reason, count in counts.items():
        assert f"| {reason} | {count} |" in body
    assert f"kept {filtered.record_count} of {imported.record_count}" in body
    assert "imported from `gsm8k_train_alpaca.json`" in body
    overview = run_sql(store, analysis_sql("overview"), "gsm@main").as_dicts()
    output_row = next(row for row in overview if row["field"] == "output")
    assert f"| output | {filtered.record_count} | {output_row['share_with_input']} | {output_row['mean_words']} |" in body
    assert filtered.id in body and imported.id in body  # lineage
    assert "Below is an instruction that describes a task, paired with an input" in body
    assert "Below is an instruction that describes a task. Write a response" in body
    assert "### Response:" in body
    for needle in ("Hallucination", "biases", "terms of use", "@misc{gsm_", "@misc{alpaca", "wang2023selfinstruct",
                   "https://huggingface.co/datasets/alice/gsm8k-alpaca"):
        assert needle in body


def test_card_for_generated_revision_names_teacher_decoding_counts_and_cost(tmp_path):
    store = Store.open(tmp_path / "store")
    seeds = [{"instruction": f"Give an example of a {word}.", "input": "", "output": f"A {word}."}
             for word in ("fruit", "colour", "river")]
    seed_rev = store.commit("gen", seeds, message="seeds", recipe={"command": "import"})
    generation = {"teacher": "openai", "model": "gpt-4o-mini", "api": "chat",
                  "decoding": {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072}, "seed": 7,
                  "seed_file_sha256": "ab" * 32, "counts": {"target": 2, "kept": 2, "dropped": {"too_short": 3}},
                  "tokens": {"prompt": 1200, "completion": 800}, "cost_usd": 0.0123}
    generated = [{"instruction": "Name a planet.", "input": "", "output": "Mars."},
                 {"instruction": "Translate to French.", "input": "cat", "output": "chat", "source": "machine"}]
    store.commit("gen", generated, message="generate 2 tasks", parents=[seed_rev.id],
                 recipe={"command": "generate", "sources": [{"path": "seed_tasks.jsonl", "sha256": "ab" * 32}]},
                 extra={"teacher": "openai", "generation": generation})
    body = DatasetCard(card_text(store, "gen@main", license="apache-2.0", language="en,fr",
                                 pretty_name="Tiny generated set")).text
    assert "teacher: `openai`, model `gpt-4o-mini`" in body
    assert "temperature=1.0" in body and "run seed 7" in body and "`seed_tasks.jsonl`" in body
    assert "$0.0123" in body and "too_short 3" in body
    assert "teacher model" in body  # limitations speak of the teacher
    data = DatasetCard(card_text(store, "gen@main", license="apache-2.0", language="en,fr")).data.to_dict()
    assert data["license"] == "apache-2.0" and data["language"] == ["en", "fr"]
    names = [f["name"] for f in data["dataset_info"]["features"]]
    assert names == ["instruction", "input", "output", "source"]


def test_card_cli_writes_file_and_refuses_bad_options(tmp_path):
    store = tmp_path / "store"
    records = load_corpus("alpaca_zh_10000.json")[:50]
    (tmp_path / "zh.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    assert run_cli("import", tmp_path / "zh.json", "-d", "zh", store=store).returncode == 0
    done = run_cli("card", "zh", "-o", tmp_path / "README.md", "--language", "zh", "--pretty-name", "Alpaca zh",
                   store=store)
    assert done.returncode == 0, done.stderr
    card = DatasetCard((tmp_path / "README.md").read_text(encoding="utf-8"))
    assert card.data.language == ["zh"] and card.data.pretty_name == "Alpaca zh"
    bad = run_cli("card", "zh", "--language", "not a language", store=store)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --language") and len(bad.stderr.splitlines()) == 1
