"""The whole evaluation chain through the real CLIs: a store revision -> `alpaca-train` (a tiny checkpoint, 2 steps)
-> `eval generate` on 20 items of the 252 user-oriented set -> `eval judge` against text-davinci-003's published
outputs (`eval import`) -> `eval report`, whose lineage must lead back to the training revision.

The judge is the offline demo judge (`--judge demo`): it is what a user without an API key runs, and its verdicts
depend on the real texts (the tiny model's babble against davinci's answers), so the counts are not fixed by
markers planted in the outputs.
"""
from __future__ import annotations

import json

from alpaca_data.store import Store
from tests.conftest import EVAL_DATA
from tests.judge_server import cli_in_process
from tests.serve_fixtures import trained_checkpoint  # noqa: F401  (the session fixture, shared with the serve tests)

DAVINCI = EVAL_DATA / "self_instruct_predictions" / "text-davinci-003.jsonl"
ITEMS = 20


def test_the_report_leads_back_to_the_training_revision(trained_checkpoint, monkeypatch, capsys):  # noqa: F811
    trained = trained_checkpoint  # imports gsm-small, `alpaca-train tiny-model`, 2 training steps
    ckpt = trained.path
    cli = cli_in_process(trained.store, monkeypatch, capsys)

    made = cli("eval", "generate", "--model", f"hf:{ckpt}", "--set", "user-oriented", "--limit", ITEMS,
               "-d", "tiny-outputs", "--max-tokens", "8", "--request-batch-size", "10")
    assert made.returncode == 0, made.stderr
    imported = cli("eval", "import", DAVINCI, "-d", "davinci-003")
    assert imported.returncode == 0, imported.stderr
    baseline_id = imported.last_line
    judged = cli("eval", "judge", "davinci-003@main", "tiny-outputs@main", "--judge", "demo", "-d", "tiny-vs-davinci")
    assert judged.returncode == 0, judged.stderr
    assert f"left out: {252 - ITEMS} items answered by davinci-003@main only" in judged.stderr
    assert f"{2 * ITEMS} judgments (both orders), 0 unparseable" in judged.last_line

    store = Store.open(trained.store)
    annotations = store.resolve("tiny-vs-davinci@main")
    outputs = store.resolve("tiny-outputs@main")
    assert store.resolve("davinci-003@main").id == baseline_id
    report = cli("eval", "report", "tiny-vs-davinci@main", "--json")
    assert report.returncode == 0, report.stderr
    figures = json.loads(report.stdout)

    # eval result -> annotations revision
    chain = figures["lineage"]
    assert chain["annotations"] == {"dataset": "tiny-vs-davinci", "revision_id": annotations.id,
                                    "short_id": annotations.id[:12], "command": "eval judge"}
    baseline, model = chain["outputs"]
    # -> both outputs revisions, each by dataset and revision id, found in this store
    assert (baseline["side"], baseline["dataset"], baseline["revision_id"], baseline["found"]) == \
        ("output_1", "davinci-003", baseline_id, True)
    assert (model["side"], model["dataset"], model["revision_id"], model["found"]) == \
        ("output_2", "tiny-outputs", outputs.id, True)
    assert baseline["generator"] == "text-davinci-003" and baseline["training_data"] is None  # a published file
    # -> the checkpoint that answered
    assert model["generator"] == ckpt.name
    assert model["model"] == {"spec": f"hf:{ckpt}", "path": str(ckpt.resolve())}
    # -> the training dataset revision: the one imported before training, as the checkpoint itself records it
    assert model["training_data"]["revision_id"] == trained.revision_id
    assert model["training_data"]["ref"] == trained.dataset_ref
    lineage_file = json.loads((ckpt / "alpaca_lineage.json").read_text())
    assert lineage_file["dataset"]["revision_id"] == trained.revision_id
    assert store.resolve(trained.dataset_ref).id == trained.revision_id

    # the verdicts: every judged row is a win, a tie or a loss of the tiny model
    rows = store.read_records(annotations)
    assert figures["rows"] == len(rows) == 2 * ITEMS and figures["items"] == ITEMS
    assert figures["excluded_rows"] == 0
    assert figures["wins"] + figures["ties"] + figures["losses"] == len(rows)
    assert figures["losses"] == sum(r["preference"] == 1.0 for r in rows)
    assert figures["wins"] == sum(r["preference"] == 2.0 for r in rows)
    assert figures["model"] == ckpt.name and figures["baseline"] == "text-davinci-003"

    # the text report shows the same chain, one arrow per link
    text = cli("eval", "report", "tiny-vs-davinci@main")
    assert text.returncode == 0, text.stderr
    assert (f"model (output_2): tiny-outputs@{outputs.id[:12]} generator {ckpt.name} <- model hf:{ckpt} "
            f"(checkpoint {ckpt.resolve()}) <- trained on {trained.dataset_ref} (revision {trained.revision_id[:12]})"
            ) in text.stdout
