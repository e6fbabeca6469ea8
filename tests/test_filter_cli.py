"""`filter` and `dedup` on real corpora: new revisions whose rejections are queryable with SQL."""
from __future__ import annotations

import json

from alpaca_data.filters.rouge import RougeNoveltyIndex
from alpaca_data.store import Store
from tests.conftest import CORPORA, SEEDS, load_corpus


def _sql(cli, query: str, rev: str):
    result = cli("sql", query, "--rev", rev, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_filter_makes_a_revision_with_queryable_rejections(cli, store_path):
    cli("import", "--map", "response=output", CORPORA / "gpteacher_roleplay.json", "-d", "rp")
    cli("import", SEEDS, "-d", "seeds")
    source = Store.open(store_path).resolve("rp@main")
    result = cli("filter", "rp@main", "--pool", "seeds", "-m", "clean roleplay")
    assert result.returncode == 0, result.stderr
    store = Store.open(store_path)
    filtered = store.resolve(result.last_line[:12].join(["rp@", ""]))
    assert filtered.parents == [source.id] and filtered.data["recipe"]["command"] == "filter"
    summary = filtered.data["extra"]["filter"]
    rows = _sql(cli, "SELECT reason, count(*) AS n FROM rejections GROUP BY reason", "rp@main")
    assert {row["reason"]: row["n"] for row in rows} == summary["counts"]
    assert summary["kept"] + summary["dropped"] == source.record_count == len(load_corpus("gpteacher_roleplay.json"))
    assert filtered.record_count == summary["kept"]
    # Every ROUGE drop names a kept (or pool) instruction that really is that similar.
    drops = _sql(cli, "SELECT instruction, score, most_similar FROM rejections WHERE reason = 'rouge_too_similar'",
                 "rp@main")
    assert drops, "roleplay has near-duplicate instructions"
    checker = RougeNoveltyIndex()
    for row in drops[:20]:
        checker.add([row["most_similar"]])
        assert abs(float(checker.scores(row["instruction"])[-1]) - row["score"]) < 1e-12
        assert row["score"] > 0.7


def test_filter_options_no_rouge_and_rules(cli, store_path):
    cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "gsm")
    result = cli("filter", "gsm", "--no-rouge", "--rules", "too_long.max_words=60")
    assert result.returncode == 0, result.stderr
    reasons = _sql(cli, "SELECT DISTINCT reason FROM rejections", "gsm@main")
    assert reasons == [{"reason": "too_long"}]
    kept = Store.open(store_path).read_records("gsm@main")
    assert kept and max(len(r["instruction"].split()) for r in kept) <= 60
    bad = cli("filter", "gsm", "--rules", "default,-no_such_rule")
    assert bad.returncode == 2 and "no_such_rule" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("filter", "gsm", "--rouge-threshold", "1.5").returncode == 2


def test_non_english_records_get_a_named_reason(cli):
    original = cli("import", CORPORA / "alpaca_zh_10000.json", "-d", "zh").last_line
    result = cli("filter", "zh", "--rules", "none")
    assert result.returncode == 0, result.stderr
    counts = _sql(cli, "SELECT reason, count(*) AS n FROM rejections GROUP BY 1", "zh@main")
    assert {row["reason"] for row in counts} <= {"rouge_no_tokens", "rouge_too_similar"}
    half = len(load_corpus("alpaca_zh_10000.json")) // 2  # most Chinese instructions have no ROUGE tokens
    assert any(row["reason"] == "rouge_no_tokens" and row["n"] > half for row in counts)
    kept = cli("filter", f"zh@{original[:12]}", "--rules", "none", "--rouge-no-tokens", "keep", "-d", "zh-kept")
    assert kept.returncode == 0
    assert not [r for r in _sql(cli, "SELECT reason FROM rejections", "zh-kept") if r["reason"] == "rouge_no_tokens"]


def test_dedup_exact_and_minhash(cli):
    cli("import", "--map", "response=output", CORPORA / "gpteacher_toolformer.json", "-d", "tf")
    exact = cli("dedup", "tf", "--method", "exact")
    assert exact.returncode == 0, exact.stderr
    rows = _sql(cli, "SELECT reason, count(*) AS n FROM rejections GROUP BY 1", "tf@main")
    assert rows and rows[0]["reason"] == "exact_duplicate" and rows[0]["n"] > 0
    near = cli("dedup", "tf", "--method", "minhash", "--threshold", "0.9")
    assert near.returncode == 0, near.stderr
    near_rows = _sql(cli, "SELECT min(score) AS lo FROM rejections", "tf@main")
    assert near_rows[0]["lo"] >= 0.9
    assert cli("dedup", "tf", "--method", "fuzzy").returncode == 2


def test_manifest_stats_describe_the_kept_records_not_the_rejections(cli, store_path):
    """Regression: stats were computed from the last sidecar table (the rejected records)."""
    cli("import", CORPORA / "alpaca_zh_10000.json", "-d", "zh")
    result = cli("filter", "zh@main", "--no-rouge")
    assert result.returncode == 0, result.stderr
    manifest = Store.open(store_path).resolve("zh@main")
    stats = manifest.data["stats"]
    overview = _sql(cli, "SELECT count(*) AS n, count(*) FILTER (WHERE trim(input) <> '') AS with_input, "
                         "count(*) - count(DISTINCT instruction) AS repeats FROM records", "zh@main")[0]
    assert stats["record_count"] == manifest.record_count == overview["n"] < 10_000
    assert stats["with_input"] == overview["with_input"]
    assert stats["duplicate_instructions"] >= overview["repeats"]  # stats also fold case and spacing
    assert manifest.data["extra"]["filter"]["dropped"] > manifest.record_count  # the rejections are the larger table
    # CSV for Unix pipelines: `\n` line ends, not `\r\n`
    csv_out = cli("sql", "SELECT count(*) AS n FROM records", "--rev", "zh@main", "-f", "csv")
    assert csv_out.stdout == f"n\n{overview['n']}\n"


def test_a_step_that_drops_nothing_leaves_a_usable_revision(cli, store_path, tmp_path):
    """Regression: an empty rejections table was a Parquet file with no columns, and sql/card/hub failed."""
    records = [{"instruction": f"Name a fruit that is {colour} when ripe.", "input": "<noinput>",
                "output": f"A {colour} fruit."} for colour in ("red", "yellow", "green", "purple")]
    (tmp_path / "marked.json").write_text(json.dumps(records))
    cli("import", tmp_path / "marked.json", "-d", "m")
    result = cli("filter", "m@main", "--no-rouge")
    assert result.returncode == 0, result.stderr
    manifest = Store.open(store_path).resolve("m@main")
    assert manifest.data["extra"]["filter"]["normalised"] == {"noinput_marker": 4}
    assert _sql(cli, "SELECT count(*) AS n FROM rejections", "m@main") == [{"n": 0}]
    assert _sql(cli, "SELECT count(*) AS n FROM records WHERE input = ''", "m@main") == [{"n": 4}]
    card = cli("card", "m@main")
    assert card.returncode == 0 and "Traceback" not in card.stderr, card.stderr
    layout = cli("export", "m@main", "--hub-layout", tmp_path / "hub")
    assert layout.returncode == 0, layout.stderr
