"""`alpaca-data eval import`: the AlpacaEval and Self-Instruct files in tests/data/eval as outputs / annotations revisions,
queried with SQL; bad files are one line and write nothing."""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from alpaca_data.errors import UserError
from alpaca_data.eval.annotations import ANNOTATION_FIELDS, OUTPUT_FIELDS
from alpaca_data.eval.importing import import_eval_file
from alpaca_data.store import Store
from tests.conftest import EVAL_DATA, snapshot

ALPACA_EVAL = EVAL_DATA / "alpaca_eval"  # the first 200 of each model's 805 outputs
PREDICTIONS = EVAL_DATA / "self_instruct_predictions"


def _json(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_alpaca_eval_outputs_import_with_generator_category_and_index_and_answer_sql(cli, store_path):
    for name in ("alpaca-7b", "text_davinci_003", "gpt4"):
        source = _json(ALPACA_EVAL / f"{name}.json")
        dataset = f"ae-{name.replace('_', '-')}"
        if name == "alpaca-7b":  # one through the real CLI, the others in-process (same function)
            result = cli("eval", "import", ALPACA_EVAL / f"{name}.json", "--dataset", dataset)
            assert result.returncode == 0, result.stderr
            assert result.last_line == Store.open(store_path).resolve(f"{dataset}@main").id
        else:
            import_eval_file(Store.open(store_path), str(ALPACA_EVAL / f"{name}.json"), dataset, show_progress=False)
        manifest = Store.open(store_path).resolve(f"{dataset}@main")
        rows = Store.open(store_path).read_records(manifest)
        assert len(rows) == len(source) == 200
        assert {r["generator"] for r in rows} == {r["generator"] for r in source}
        assert [r["output"] for r in rows] == [r["output"] for r in source]
        assert [r["category"] for r in rows] == [r["dataset"] for r in source]
        assert [r["item_id"] for r in rows] == [str(i) for i in range(len(source))]
        assert set(manifest.data["columns"]) == set(OUTPUT_FIELDS)
        recipe = manifest.data["recipe"]
        assert recipe["command"] == "eval import" and recipe["kind"] == "outputs"
        assert recipe["generator"] == source[0]["generator"] and recipe["model"]["spec"] == source[0]["generator"]
        assert recipe["sources"][0]["sha256"] == hashlib.sha256((ALPACA_EVAL / f"{name}.json").read_bytes()).hexdigest()

    # SQL over the imported revision: counts per category equal the file's
    query = cli("sql", "SELECT category, count(*) AS n FROM records GROUP BY category", "--rev", "ae-gpt4@main",
                "--format", "json")
    assert query.returncode == 0, query.stderr
    counted = {row["category"]: row["n"] for row in json.loads(query.stdout)}
    assert counted == dict(Counter(r["dataset"] for r in _json(ALPACA_EVAL / "gpt4.json")))


def test_self_instruct_predictions_take_the_generator_from_the_flag_or_the_file_name(tmp_path):
    store = Store.open(tmp_path / "store")
    path = PREDICTIONS / "text-davinci-001.jsonl"
    source = _jsonl(path)
    by_stem = import_eval_file(store, str(path), "si-001", show_progress=False)
    rows = store.read_records(by_stem.result.manifest)
    assert by_stem.kind == "outputs" and len(rows) == len(source) == 252
    assert {r["generator"] for r in rows} == {"text-davinci-001"}  # the file name's stem
    assert [r["output"] for r in rows] == [r["response"] for r in source]
    assert [r["input"] for r in rows] == [r["input"] for r in source]
    assert all("item_id" not in r for r in rows)  # stored as null: Self-Instruct's files carry no item id
    assert by_stem.result.manifest.data["recipe"]["set"]["format"] == "self_instruct"

    flagged = import_eval_file(store, str(PREDICTIONS / "davinci-self-instruct.jsonl"), "si-ours",
                               generator="gpt3-self-inst", show_progress=False)
    assert {r["generator"] for r in store.read_records(flagged.result.manifest)} == {"gpt3-self-inst"}
    assert flagged.result.manifest.data["recipe"]["options"] == {"generator": "gpt3-self-inst"}


def test_annotations_import_keeps_preferences_nulls_and_annotator_and_answers_sql(cli, store_path, neft_annotations):
    source = _json(neft_annotations)
    result = cli("eval", "import", neft_annotations, "--dataset", "neft", "-m", "AlpacaEval 1.0 NEFT annotations")
    assert result.returncode == 0, result.stderr
    manifest = Store.open(store_path).resolve("neft@main")
    assert set(manifest.data["columns"]) == set(ANNOTATION_FIELDS)
    recipe = manifest.data["recipe"]
    assert recipe["kind"] == "annotations" and recipe["output_1"] is None and recipe["output_2"] is None
    assert recipe["sources"][0] == {"path": neft_annotations.name, "sha256": hashlib.sha256(neft_annotations.read_bytes()).hexdigest(),
                                    "format": "json", "kind": "annotations"}
    assert "price_per_example" in recipe["dropped_fields"]
    rows = Store.open(store_path).read_records(manifest)
    assert [r.get("preference") for r in rows] == [r["preference"] for r in source]
    assert [r.get("raw") for r in rows] == [r["raw_completion"] for r in source]

    query = cli("sql", "SELECT annotator, count(*) AS n, count(preference) AS judged, "
                       "count(*) FILTER (WHERE preference = 2) AS model_wins FROM records GROUP BY annotator",
                "--rev", "neft@main", "--format", "json")
    assert query.returncode == 0, query.stderr
    [row] = json.loads(query.stdout)
    assert row == {"annotator": source[0]["annotator"], "n": len(source),
                   "judged": sum(r["preference"] is not None for r in source),
                   "model_wins": sum(r["preference"] == 2 for r in source)}

    again = cli("eval", "import", neft_annotations, "--dataset", "neft")
    assert again.returncode == 0 and again.last_line == manifest.id and "nothing new written" in again.stderr


def _annotation(**changes) -> dict:
    row = {"instruction": "Say hi.", "output_1": "hi", "generator_1": "base", "output_2": "hello",
           "generator_2": "mine", "annotator": "alice", "preference": 2}
    row.update(changes)
    return {k: v for k, v in row.items() if v is not ...}


@pytest.mark.parametrize("bad, field, reason", [
    ({"preference": "2"}, "preference", "expected a number or null, got str"),
    ({"preference": 3}, "preference", "3 is not 0 (draw), a value in [1, 2] or null"),
    ({"generator_2": ...}, "generator_2", "missing"),
    ({"instruction": "  "}, "instruction", "is empty"),
    ({"order": "left"}, "order", "'left' is not '12' or '21'"),
])
def test_a_bad_annotations_file_is_one_line_naming_file_record_and_field_and_writes_nothing(tmp_path, bad, field,
                                                                                            reason):
    path = tmp_path / "judged.json"
    path.write_text(json.dumps([_annotation(), _annotation(preference=1), _annotation(**bad)]), encoding="utf-8")
    store = Store.open(tmp_path / "store")
    before = snapshot(tmp_path / "store")
    with pytest.raises(UserError) as caught:
        import_eval_file(store, str(path), "judged", show_progress=False)
    assert str(caught.value) == f"{path}:record 3: {field}: {reason}; nothing was written"
    assert snapshot(tmp_path / "store") == before


def test_the_cli_refuses_a_bad_file_in_one_line_and_the_store_is_unchanged(cli, store_path, tmp_path):
    cli("eval", "import", ALPACA_EVAL / "alpaca-7b.json", "--dataset", "a7b")
    before = snapshot(store_path)
    path = tmp_path / "judged.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in (_annotation(), _annotation(annotator=7))) + "\n",
                    encoding="utf-8")
    result = cli("eval", "import", path, "--dataset", "a7b")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {path}:line 2: annotator: expected a string, got int; nothing was written"
    assert snapshot(store_path) == before

    neither = tmp_path / "other.json"
    neither.write_text(json.dumps([{"question": "q", "answer": "a"}]), encoding="utf-8")
    result = cli("eval", "import", neither, "--dataset", "a7b")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "neither an annotations file" in result.stderr and "answer, question" in result.stderr
    assert snapshot(store_path) == before
