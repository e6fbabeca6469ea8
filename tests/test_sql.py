"""SQL over revisions with DuckDB: views, analyses, errors."""
from __future__ import annotations

import json
import statistics

from tests.conftest import CORPORA, load_corpus


def test_records_view_and_revisions_table(cli):
    cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "gsm")
    count = len(load_corpus("gsm8k_train_alpaca.json"))
    result = cli("sql", "SELECT count(*) AS n FROM records", "--rev", "gsm@main", "--format", "json")
    assert json.loads(result.stdout) == [{"n": count}]
    revisions = json.loads(cli("sql", "SELECT dataset, record_count, is_main FROM revisions", "-f", "json").stdout)
    assert revisions == [{"dataset": "gsm", "record_count": count, "is_main": True}]
    csv_out = cli("sql", "SELECT 1 AS a, 'x' AS b", "-f", "csv").stdout
    assert csv_out.splitlines() == ["a,b", "1,x"]


def test_overview_analysis_matches_python(cli):
    records = load_corpus("alpaca_zh_10000.json")
    cli("import", CORPORA / "alpaca_zh_10000.json", "-d", "zh")
    rows = json.loads(cli("sql", "--analysis", "overview", "--rev", "zh", "-f", "json").stdout)
    by_field = {row["field"]: row for row in rows}
    assert by_field["instruction"]["records"] == len(records)
    share = sum(1 for r in records if r["input"].strip()) / len(records)
    assert abs(by_field["input"]["share_with_input"] - share) < 1e-4
    words = [len(r["output"].split()) for r in records]
    assert abs(by_field["output"]["mean_words"] - statistics.mean(words)) < 0.01
    assert by_field["output"]["median_words"] == statistics.median(words)
    assert by_field["output"]["max_words"] == max(words)


def test_duplicates_and_longest_analyses(cli, tmp_path):
    records = [{"instruction": "Say hello", "input": "", "output": "Hello"},
               {"instruction": "say  HELLO ", "input": "", "output": "Hi"},
               {"instruction": "Count to three", "input": "", "output": "1, 2, 3 " * 30}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    cli("import", tmp_path / "d.json", "-d", "d")
    dups = json.loads(cli("sql", "-a", "duplicates", "-r", "d", "-f", "json").stdout)
    assert dups == [{"normalised_instruction": "say hello", "copies": 2, "distinct_outputs": 2}]
    longest = json.loads(cli("sql", "-a", "longest", "-r", "d", "-f", "json").stdout)
    assert longest[0]["instruction"] == "Count to three" and longest[0]["rank"] == 1


def test_bad_queries_give_one_line_and_exit_1(cli):
    cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "gsm")
    for query, fragment in (("SELEC 1", "syntax error"), ("SELECT nope FROM records", "nope"),
                            ("SELECT * FROM rejections", "no rejection report")):
        result = cli("sql", query, "--rev", "gsm")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    no_rev = cli("sql", "SELECT count(*) FROM records")
    assert no_rev.returncode == 1 and "--rev" in no_rev.stderr
    assert cli("sql", "-a", "no-such-analysis", "-r", "gsm").returncode == 2
    assert cli("sql").returncode == 2
