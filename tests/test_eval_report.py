"""`alpaca-data eval report` and `alpaca_data.eval.metrics`: the AlpacaEval leaderboard reproduced from its
published annotations, hand-checkable statistics, the length-controlled GLM on synthetic judges, and a report on
a small revision with two raters, both judge orders, categories and a lineage chain."""
from __future__ import annotations

import csv
import json
import math
import statistics

import numpy as np
import pytest

from alpaca_data.eval import metrics
from alpaca_data.eval.annotations import annotation_record, commit_rows, output_record, revision_ref
from alpaca_data.eval.report import build_report, render_text
from alpaca_data.store import Store
from tests.conftest import LEADERBOARD


def _leaderboard_row(name: str) -> dict[str, str]:
    with open(LEADERBOARD, encoding="utf-8", newline="") as handle:
        [row] = [row for row in csv.DictReader(handle) if row["name"] == name]
    return row


# ------------------------------------------------------------------------ the leaderboard, reproduced

def test_the_neft_annotations_give_the_leaderboard_win_rate_through_the_cli(cli, neft_annotations):
    """The whole published annotations file (gunzipped from tests/data) through the real CLI."""
    expected = _leaderboard_row("Alpaca-7B-NEFT")
    source = json.loads(neft_annotations.read_text(encoding="utf-8"))
    judged = [r["preference"] for r in source if r["preference"] is not None]
    assert len(judged) < len(source)  # the file really has missing verdicts to exclude

    imported = cli("eval", "import", neft_annotations, "--dataset", "neft")
    assert imported.returncode == 0, imported.stderr
    result = cli("eval", "report", "neft@main", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ae = report["alpaca_eval"]
    assert ae["win_rate"] == pytest.approx(float(expected["win_rate"]), abs=1e-9)
    assert ae["n_total"] == len(judged) and report["excluded_rows"] == len(source) - len(judged) == 2
    assert ae["avg_length"] == int(expected["avg_length"])
    # standard error and the discrete rate, recomputed here without numpy (the CSV does not publish them)
    scores = [p - 1 for p in judged]
    assert ae["standard_error"] == pytest.approx(statistics.stdev(scores) / math.sqrt(len(scores)) * 100, abs=1e-9)
    assert ae["discrete_win_rate"] == pytest.approx(sum(round(p) - 1 for p in judged) / len(judged) * 100, abs=1e-9)
    assert (ae["n_wins"], ae["n_wins_base"], ae["n_draws"]) == (
        sum(p == 2 for p in judged), sum(p == 1 for p in judged), sum(p in (0, 1.5) for p in judged))
    low, high = report["bootstrap_95"]
    assert low < ae["win_rate"] < high and high - low < 4 * 1.96 * ae["standard_error"]
    # the minimal GLM's figure is labelled as such, not passed off as the leaderboard's LC number
    assert "length_controlled_minimal" in report["length_controlled"]["glm"]
    assert "tanh" in report["length_controlled"]["formula"]
    assert report["lineage"]["outputs"][0]["dataset"] is None  # a published file: no outputs revision

    text = cli("eval", "report", "neft@main")
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    model, baseline = source[0]["generator_2"], source[0]["generator_1"]
    assert first.startswith(f"{baseline} vs {model}: {model} wins {ae['n_wins']} vs {ae['n_wins_base']}, 0 ties")
    assert f"win_rate {ae['win_rate']:.4f}" in text.stdout and "not alpaca_eval's published LC" in text.stdout


def test_a_report_on_an_outputs_revision_names_the_missing_fields_in_one_line(cli, store_path):
    store = Store.open(store_path)
    commit_rows(store, "outs", [output_record(instruction="Say hi.", output="hi", generator="g")], message="x",
                recipe={"command": "eval generate"})
    result = cli("eval", "report", "outs@main")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "not an annotations revision" in result.stderr
    assert "generator_1, generator_2, annotator, preference" in result.stderr


# ------------------------------------------------------------------------------------- metrics by hand

def test_alpaca_eval_winrate_counts_draws_as_half_keeps_fractions_and_drops_missing():
    # 2 = model, 1 = baseline, 0 and 1.5 = draw, 1.75 a fractional verdict, None and 3 dropped
    out = metrics.alpaca_eval_winrate([2, 1, 0, 1.5, 1.75, None, 3, 2])
    # scores 1, 0, .5, .5, .75, 1 over 6 rows
    assert out["win_rate"] == pytest.approx(100 * 3.75 / 6)
    assert (out["n_wins"], out["n_wins_base"], out["n_draws"], out["n_total"]) == (3, 1, 2, 6)
    assert out["standard_error"] == pytest.approx(statistics.stdev([1, 0, .5, .5, .75, 1]) / math.sqrt(6) * 100)
    # discrete: 1.75 rounds to a win -> 1, 0, .5, .5, 1, 1; the out-of-range 3 stays out of both
    assert out["discrete_win_rate"] == pytest.approx(100 * 4 / 6)
    assert metrics.alpaca_eval_winrate([None])["win_rate"] is None
    assert metrics.alpaca_eval_winrate([2])["standard_error"] is None  # one row: no standard error


def test_kappas_match_textbook_examples():
    # Cohen (Wikipedia's example): 50 items, yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po .7, pe .5, kappa .4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert metrics.cohen_kappa(a, b) == pytest.approx(0.4)
    assert metrics.cohen_kappa(["x", "x"], ["x", "x"]) is None  # chance agreement certain: undefined
    # Fleiss (1971, as on Wikipedia): 10 items, 14 raters, 5 categories -> P-bar .378, Pe-bar .213, kappa .210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(metrics.fleiss_kappa(table), 3) == 0.210
    # two raters: Fleiss' kappa is Scott's pi; perfect agreement on mixed labels is 1
    assert metrics.fleiss_kappa([[2, 0], [0, 2], [2, 0]]) == pytest.approx(1.0)


def test_sign_test_p_values():
    assert metrics.sign_test(9, 1) == pytest.approx(22 / 1024)  # 2 * (C(10,0) + C(10,1)) / 2^10
    assert metrics.sign_test(90, 89) == pytest.approx(1.0)  # Alpaca vs text-davinci-003
    assert metrics.sign_test(0, 0) is None
    assert metrics.sign_test(5, 0) == pytest.approx(2 / 32)


def test_the_item_bootstrap_is_seeded_and_repeated_ratings_do_not_narrow_it():
    rng = np.random.default_rng(3)
    scores = rng.choice([0.0, 0.5, 1.0], size=120, p=[0.3, 0.1, 0.6])
    once = metrics.bootstrap_interval(scores, seed=7)
    assert once == metrics.bootstrap_interval(scores, seed=7) and once[0] < scores.mean() * 100 < once[1]
    # every item rated twice, identically: resampling items gives exactly the single-rating interval, while
    # treating the rows as independent would (wrongly) narrow it
    doubled, items = np.repeat(scores, 2), np.repeat(np.arange(scores.size), 2)
    assert metrics.bootstrap_interval(doubled, items, seed=7) == pytest.approx(once)
    naive = metrics.bootstrap_interval(doubled, seed=7)
    assert naive[1] - naive[0] < (once[1] - once[0]) * 0.85


def _judge(model_len, base_len, advantage: float, length_bias: float, seed: int) -> list[float]:
    """A synthetic judge: P(model wins) = sigmoid(advantage + length_bias * tanh((len_2 - len_1) / sd))."""
    rng = np.random.default_rng(seed)
    delta = np.asarray(model_len, float) - np.asarray(base_len, float)
    p = 1 / (1 + np.exp(-(advantage + length_bias * np.tanh(delta / delta.std(ddof=1)))))
    return [2.0 if u < q else 1.0 for u, q in zip(rng.random(delta.size), p)]


def test_the_length_controlled_win_rate_removes_a_length_biased_judges_advantage():
    rng = np.random.default_rng(0)
    n = 3000
    base = rng.integers(200, 1200, size=n)
    # the model answers longer on most items; the judge likes length and nothing else (advantage 0)
    model = base + rng.normal(300, 400, size=n).astype(int)
    preferences = _judge(model, base, advantage=0.0, length_bias=2.0, seed=1)
    raw = metrics.alpaca_eval_winrate(preferences)["win_rate"]
    lc = metrics.length_controlled_winrate(preferences, base, model)
    assert raw > 65  # the bias is real in the raw figure ...
    assert abs(lc["length_controlled_winrate"] - 50) < 4  # ... and gone at equal length
    assert lc["phi"] < 0  # delta_len = len(output_1) - len(output_2): longer model outputs win

    # a judge with no length bias and a real advantage: controlling for length changes little
    fair = _judge(model, base, advantage=1.0, length_bias=0.0, seed=2)
    raw_fair = metrics.alpaca_eval_winrate(fair)["win_rate"]
    lc_fair = metrics.length_controlled_winrate(fair, base, model)["length_controlled_winrate"]
    assert abs(lc_fair - raw_fair) < 3 and abs(lc_fair - 100 / (1 + math.exp(-1))) < 3
    assert "note" not in lc


def test_the_length_controlled_fit_says_when_it_extrapolates_or_diverges():
    rng = np.random.default_rng(5)
    base = rng.integers(100, 400, size=400)
    model = base + rng.integers(50, 600, size=400)  # always longer: equal length is outside the data
    noisy = _judge(model, base, advantage=0.3, length_bias=0.5, seed=6)
    lc = metrics.length_controlled_winrate(noisy, base, model)
    assert lc["length_controlled_winrate"] is not None and lc["note"].startswith("extrapolated: every model output "
                                                                                 "is longer")
    # the longer output always wins: length alone separates the verdicts, the fit runs away
    separable = [2.0 if m > b else 1.0 for m, b in zip(model[:40] - 300, base[:40])]
    diverged = metrics.length_controlled_winrate(separable, base[:40], model[:40] - 300)
    assert diverged["length_controlled_winrate"] is None and "diverged" in diverged["note"]


# -------------------------------------------------------- a small revision: raters, orders, categories, lineage

# (item, category, annotator, order, preference); hand counts are in the test below
SMALL = [
    ("0", "Grammarly", "alice", "12", 2), ("0", "Grammarly", "alice", "21", 2),
    ("1", "Grammarly", "alice", "12", 1), ("1", "Grammarly", "alice", "21", 2),
    ("2", "Gmail", "alice", "12", 0), ("2", "Gmail", "alice", "21", 0),
    ("3", "Gmail", "alice", "12", 1), ("3", "Gmail", "alice", "21", 1),
    ("0", "Grammarly", "bob", "12", 2), ("0", "Grammarly", "bob", "21", 2),
    ("1", "Grammarly", "bob", "12", 1), ("1", "Grammarly", "bob", "21", 1),
    ("2", "Gmail", "bob", "12", 2), ("2", "Gmail", "bob", "21", 1),
    ("3", "Gmail", "bob", "12", 1), ("3", "Gmail", "bob", "21", 1),
]


def _small_store(store: Store) -> str:
    train = store.commit("train", [{"instruction": f"Task {i}", "input": "", "output": "done"} for i in range(3)],
                         message="training data", recipe={"command": "import"}).manifest
    base_rows = [output_record(instruction=f"Task {i}", output="b" * (10 + i), generator="text-davinci-003",
                               item_id=str(i)) for i in range(4)]
    mine_rows = [output_record(instruction=f"Task {i}", output="m" * (20 + 3 * i), generator="mine", item_id=str(i))
                 for i in range(4)]
    base = commit_rows(store, "outputs-base", base_rows, message="baseline", recipe={
        "command": "eval import", "generator": "text-davinci-003",
        "model": {"spec": "text-davinci-003", "path": None, "lineage": None}}).manifest
    mine = commit_rows(store, "outputs-mine", mine_rows, message="mine", recipe={
        "command": "eval generate", "generator": "mine",
        "model": {"spec": "hf:runs/t1", "path": "runs/t1",
                  "lineage": {"dataset": {"ref": "train@main", "dataset": "train", "revision_id": train.id}}}}).manifest
    rows = [annotation_record(instruction=f"Task {item}", output_1=base_rows[int(item)]["output"],
                              generator_1="text-davinci-003", output_2=mine_rows[int(item)]["output"],
                              generator_2="mine", annotator=who, preference=pref, item_id=item, category=category,
                              order=order) for item, category, who, order, pref in SMALL]
    commit_rows(store, "judged", rows, message="two raters, both orders", recipe={
        "command": "eval rate", "output_1": revision_ref(base, "text-davinci-003"), "output_2": revision_ref(mine, "mine")})
    return train.id


def test_a_report_on_two_raters_in_both_orders_with_categories_and_lineage(tmp_path):
    store = Store.open(tmp_path / "store")
    train_id = _small_store(store)
    report = build_report(store, "judged@main")

    # rows: model wins (2) 6, baseline wins (1) 8, draws 2 -> (6 + 2 / 2) / 16
    assert (report["wins"], report["losses"], report["ties"]) == (6, 8, 2)
    assert report["win_rate"] == pytest.approx(100 * 7 / 16) and report["items"] == 4 and report["rows"] == 16
    assert report["headline"].startswith("text-davinci-003 vs mine: text-davinci-003 wins 8 vs 6, 2 ties")
    assert report["sign_test"]["p_value"] == pytest.approx(2 * sum(math.comb(14, k) for k in range(7)) / 2**14)
    assert report["bootstrap"]["unit"] == "item"
    # 16 rows where the model's answer is always longer and length predicts every row: no LC figure, and why
    assert report["alpaca_eval"]["length_controlled_winrate"] is None and report["length_controlled"]["note"]

    # each rater's verdict per item averages both orders: alice model, draw, draw, baseline; bob model, baseline,
    # draw, baseline. Cohen: po 3/4, pe (1*1 + 2*1 + 1*2) / 16 = 5/16 -> 7/11. Fleiss: P-bar 3/4, shares 3/8,
    # 3/8, 2/8 -> Pe 22/64 -> 13/21
    [pair] = report["agreement"]["cohen_kappa"]
    assert pair["raters"] == ["alice", "bob"] and pair["items"] == 4
    assert pair["kappa"] == pytest.approx(7 / 11) and pair["observed_agreement"] == pytest.approx(0.75)
    assert report["agreement"]["fleiss_kappa"]["kappa"] == pytest.approx(13 / 21)

    # orders: alice disagrees with herself on item 1, bob on item 2 -> 6 of 8; the first-shown output wins 7 of
    # the 14 decided rows
    orders = report["orders"]
    assert (orders["pairs"], orders["agreeing"], orders["decided_rows"], orders["first_shown_wins"]) == (8, 6, 14, 7)

    by_category = {row["category"]: row for row in report["categories"]}
    assert {k: (v["wins"], v["ties"], v["losses"], v["n_total"]) for k, v in by_category.items()} == {
        "Grammarly": (5, 0, 3, 8), "Gmail": (1, 2, 5, 8)}
    assert by_category["Grammarly"]["win_rate"] == pytest.approx(62.5)
    assert by_category["Gmail"]["win_rate"] == pytest.approx(25.0)

    baseline, model = report["lineage"]["outputs"]
    assert baseline["dataset"] == "outputs-base" and baseline["found"] and baseline["training_data"] is None
    assert model["model"] == {"spec": "hf:runs/t1", "path": "runs/t1"}
    assert model["training_data"] == {"ref": "train@main", "dataset": "train", "revision_id": train_id}
    text = render_text(report)
    assert (f"model (output_2): outputs-mine@{model['short_id']} generator mine <- model hf:runs/t1 (checkpoint "
            f"runs/t1) <- trained on train@main (revision {train_id[:12]})") in text
    assert "baseline (output_1): outputs-base@" in text and "training data unknown" in text
    assert "Cohen's kappa alice / bob: 0.636" in text and "6 of 8 items judged in both orders agree" in text
    json.dumps(report, allow_nan=False)  # JSON-safe: no numpy types, no NaN


def test_missing_lineage_links_are_unknown_never_an_error(tmp_path):
    store = Store.open(tmp_path / "store")
    rows = [annotation_record(instruction="Task", output_1="a", generator_1="b", output_2="bb", generator_2="m",
                              annotator="judge", preference=2)]
    commit_rows(store, "lonely", rows, message="x", recipe={
        "command": "eval judge", "output_1": {"dataset": "gone", "revision_id": "f" * 64, "generator": "b"},
        "output_2": None})
    report = build_report(store, "lonely@main")
    first, second = report["lineage"]["outputs"]
    assert first["dataset"] == "gone" and not first["found"] and first["model"] is None
    assert second["dataset"] is None
    text = render_text(report)
    assert "gone@ffffffffffff generator b (not in this store; model unknown)" in text
    assert "model (output_2): outputs revision unknown" in text
    assert report["orders"] is None and report["agreement"]["fleiss_kappa"] is None


def test_the_cli_writes_the_chart_and_prints_json(cli, store_path, tmp_path):
    _small_store(Store.open(store_path))
    chart = tmp_path / "chart.png"
    result = cli("eval", "report", "judged@main", "--json", "--plot", chart, "--resamples", "500", "--seed", "3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["plot"] == str(chart) and report["bootstrap"] == {"resamples": 500, "seed": 3, "unit": "item"}
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 500 and height > 150  # overall plus two category bars


def test_a_revision_without_verdicts_reports_so_and_a_bad_chart_path_is_one_line(tmp_path):
    from alpaca_data.errors import UserError
    from alpaca_data.eval.plots import plot_report

    store = Store.open(tmp_path / "store")
    rows = [annotation_record(instruction=f"Task {i}", output_1="a", generator_1="b", output_2="bb", generator_2="m",
                              annotator="judge", preference=None) for i in range(3)]
    commit_rows(store, "unparsed", rows, message="x", recipe={"command": "eval judge"})
    report = build_report(store, "unparsed@main")
    assert report["headline"] == "b vs m: no verdicts (no row has a preference)"
    assert report["win_rate"] is None and report["excluded_rows"] == 3 and report["bootstrap_95"] is None
    assert "win rate      - (draws as half)" in render_text(report)
    json.dumps(report, allow_nan=False)
    with pytest.raises(UserError, match="cannot write the chart"):
        plot_report(report, tmp_path / "no-such-folder" / "chart.png")
