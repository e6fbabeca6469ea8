"""`filter` and `dedup` stream a revision in batches over worker threads (alpaca_data.filters.stream) and keep,
drop and word exactly what one in-memory pass over all records does (steps.Pipeline.run, which generation uses)."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from alpaca_data.filters import revision as revision_module
from alpaca_data.filters.exact import ExactDuplicates
from alpaca_data.filters.rouge import RougeNovelty
from alpaca_data.filters.ruleset import RuleSet
from alpaca_data.filters.steps import Pipeline
from alpaca_data.store import Store
from alpaca_data.store import store as store_module
from tests.conftest import corpus_records


def _records() -> list[dict]:
    """Real records with exact duplicates (case and spacing changed), records the rules drop and ones they
    normalise (surrounding whitespace), and provenance columns."""
    base = [dict(r) for name in ("gpteacher_toolformer", "gsm8k_train_alpaca", "alpaca_zh_10000")
            for r in corpus_records(name)[:250]]
    records = []
    for i, record in enumerate(base):
        record["n"] = i
        records.append(record)
        if i % 9 == 0:
            records.append({**record, "instruction": "  " + record["instruction"].upper() + "  ", "n": -i})
        if i % 31 == 0:
            records.append({**record, "output": ""})  # empty output: dropped by the rules
        if i % 13 == 0:  # normalised by the rules: the placeholder input and CR LF line ends
            records.append({**record, "input": "N/A", "output": record["output"].replace("\n", "\r\n"), "n": 10**6 + i})
    # duplicates of early records at the end: the stream looks their kept instruction up in the source file
    records += [{**record, "n": -10**6 - i} for i, record in enumerate(records[:60:4])]
    return records


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(revision_module, "BATCH_ROWS", 97)  # many uneven batches
    monkeypatch.setattr(store_module, "READ_BATCH_ROWS", 89)
    monkeypatch.setenv("ALPACA_PARALLEL_MIN_ROWS", "0")
    store = Store.open(tmp_path / "store")
    store.commit("src", _records(), message="source")
    return store


def _rejections(store: Store, commit) -> list[dict]:
    return pq.read_table(commit.manifest.path / "rejections.parquet").to_pylist()


@pytest.mark.parametrize("command", ["filter", "dedup"])
def test_streamed_on_two_workers_equals_one_pass_in_memory(store, monkeypatch, command):
    records = store.read_records("src@main")
    if command == "filter":
        steps = [RuleSet.default(), RougeNovelty(0.7)]

        def run(dataset):
            return revision_module.filter_revision(store, "src@main", dataset=dataset, progress=False)
    else:
        steps = [ExactDuplicates()]

        def run(dataset):
            return revision_module.dedup_revision(store, "src@main", dataset=dataset, progress=False)

    expected = Pipeline(steps).run(records, progress=False)
    results = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("ALPACA_WORKERS", workers)
        results[workers] = run(f"out{workers}")
    assert results["2"].workers == 2 and results["1"].workers == 1
    assert results["1"].commit.id == results["2"].commit.id
    for outcome in results.values():
        assert store.read_records(outcome.commit.manifest) == expected.kept
        assert _rejections(store, outcome.commit) == [{**row, "request_id": None} for row in expected.rejections]
        assert outcome.pipeline.counts == expected.counts and outcome.pipeline.normalised == expected.normalised
    assert expected.counts.get("exact_duplicate" if command == "dedup" else "rouge_too_similar")
    if command == "filter":
        assert expected.normalised  # the rules changed some records, and the stream stored the changed ones


def test_streamed_diff_counts_and_examples_equal_the_record_by_record_reference(store, monkeypatch):
    from alpaca_data.records import CORE_FIELDS, key_of
    from alpaca_data.store.ops import diff

    monkeypatch.setenv("ALPACA_WORKERS", "2")
    old = store.read_records("src@main")
    new = [dict(r, output=r["output"] + " (edited)") if i % 17 == 0 else r for i, r in enumerate(old[40:])]
    new += [{"instruction": f"A new task number {i}", "input": "", "output": "done"} for i in range(5)]
    store.commit("src", new, message="edited")

    def by_key(records):  # the reference: the first record of each key stands for it
        keyed = {}
        for record in records:
            keyed.setdefault(key_of(record), record)
        return keyed

    before, after = by_key(old), by_key(new)
    added = [r for k, r in after.items() if k not in before]
    removed = [r for k, r in before.items() if k not in after]
    changed = [(before[k], r) for k, r in after.items()
               if k in before and any(before[k][f] != r[f] for f in CORE_FIELDS)]
    result = diff(store, store.log("src")[1].id, "src@main", examples=4)
    assert result.summary() == {"added": len(added), "removed": len(removed), "changed": len(changed),
                                "unchanged": len(after) - len(added) - len(changed)}
    assert (result.added, result.removed, result.changed) == (added[:4], removed[:4], changed[:4])
    assert len(changed) > 4 and len(removed) > 4


@pytest.mark.parametrize("tail", [0, 30])
def test_dedup_batches_whose_drops_all_point_to_earlier_batches_or_that_drop_nothing(store, monkeypatch, tail):
    """Batches with no duplicate of a record of their own: none at all (tail 0), or only of records far back."""
    distinct = [dict(r, n=i) for i, r in enumerate(corpus_records("gsm8k_train_alpaca")[:400])]
    records = distinct + [dict(r, n=-1 - i) for i, r in enumerate(distinct[:tail])]
    store.commit("plain", records, message="no duplicate within a batch")
    expected = Pipeline([ExactDuplicates()]).run(records, progress=False)
    monkeypatch.setenv("ALPACA_WORKERS", "2")
    outcome = revision_module.dedup_revision(store, "plain@main", dataset="plain-out", progress=False)
    assert store.read_records(outcome.commit.manifest) == expected.kept
    assert _rejections(store, outcome.commit) == [{**row, "request_id": None} for row in expected.rejections]
    assert outcome.pipeline.counts == ({"exact_duplicate": tail} if tail else {})
