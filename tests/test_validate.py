"""Validation on the real corpus samples (tests/data/corpora), and a catalogue of bad inputs."""
from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alpaca_data.validate import load_valid_records, validate_file
from tests.conftest import CORPORA, RESPONSE_CORPORA, SEEDS, load_corpus, snapshot

PROBLEM_LINE = re.compile(r"^\S+?(:(record \d+|line \d+( col \d+)?))?: .+$")


@pytest.mark.parametrize("name", sorted(p.name for p in CORPORA.glob("*.json")))
def test_every_corpus_sample_validates(name):
    field_map = {"response": "output"} if name in RESPONSE_CORPORA else {}
    report, records = load_valid_records(str(CORPORA / name), field_map)
    assert report.problems == []
    assert report.valid == len(records) == len(load_corpus(name)) > 300
    assert all(set(r) >= {"instruction", "input", "output"} for r in records)


def test_response_corpus_without_map_names_the_fix(cli):
    result = cli("validate", CORPORA / "gpteacher_roleplay.json", "--max-problems", "3")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith("gpteacher_roleplay.json:record 1: output: is missing (required); "
                             "the record has 'response': add --map response=output")
    assert f"{len(load_corpus('gpteacher_roleplay.json'))} problem(s)" in result.stdout  # every record


def test_cli_validates_all_corpora_with_map(cli):
    result = cli("validate", "--map", "response=output", *sorted(CORPORA.glob("*.json")), SEEDS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("valid")


def test_seed_tasks_are_read_as_records():
    report, records = load_valid_records(str(SEEDS))
    assert report.kind == "seed-tasks" and report.problems == []
    assert len(records) >= 175
    first = records[0]
    assert first["source"] == "seed" and first["seed_id"].startswith("seed_task_")
    assert isinstance(first["is_classification"], bool)


BAD_INPUTS = {
    # name: (file name, bytes, expected substring of the problem line)
    "truncated_json": ("a.json", b'[{"instruction": "Say hi", "input": "", "output": "hi"}, {"instruc',
                       "a.json:line 1 col 59: malformed JSON"),
    "empty_file": ("empty.json", b"", "empty.json: file is empty"),
    "whitespace_only": ("blank.jsonl", b"\n \n", "blank.jsonl: file is empty"),
    "empty_array": ("none.json", b"[]", "none.json: holds no records"),
    "wrong_type": ("t.json", b'[{"instruction": "Add", "input": "", "output": 42}]',
                   "t.json:record 1: output: expected string, got number"),
    "null_input": ("n.json", b'[{"instruction": "Add", "input": null, "output": "4"}]',
                   't.json:record 1: input: expected string, got null (use "" for none)'.replace("t.json", "n.json")),
    "missing_field": ("m.json", b'[{"instruction": "Add", "input": ""}]', "m.json:record 1: output: is missing"),
    "empty_instruction": ("e.json", b'[{"instruction": "  ", "input": "", "output": "x"}]',
                          "e.json:record 1: instruction: must not be empty"),
    "nested_object": ("o.json", b'[{"instruction": "Add", "input": {"a": 1}, "output": "4"}]',
                      "o.json:record 1: input: expected string, got object"),
    "nested_provenance": ("p.json", b'[{"instruction": "Add", "input": "", "output": "4", "meta": {"a": 1}}]',
                          "p.json:record 1: meta: provenance field must be a scalar or a flat list, got object"),
    "nan": ("nan.json", b'[{"instruction": "Add", "input": "", "output": "4", "score": NaN}]',
            "nan.json:record 1: score: NaN/Infinity is not valid JSON"),
    "bad_jsonl_line": ("b.jsonl", b'{"instruction": "A b c d", "input": "", "output": "x"}\n{"instruction": oops}\n',
                       "b.jsonl:line 2 col 17: malformed JSON"),
    "invalid_utf8": ("u.jsonl", b'{"instruction": "Caf\xe9 menu", "input": "", "output": "x"}\n',
                     "u.jsonl:line 1: instruction: contains invalid UTF-8 (undecodable bytes or lone surrogates)"),
    "deep_nesting": ("deep.json", b"[" * 100000 + b"]" * 100000, "deep.json: JSON is nested too deeply"),
    "not_an_array": ("s.json", b'"just a string"', "s.json: expected a JSON array of records, got string"),
    "record_not_object": ("r.json", b'[["Add", "", "4"]]', "r.json:record 1: expected a record object, got array"),
    "duplicate_keys": ("d.json", b'[{"instruction": "Add", "input": "", "output": "4", "output": "5"}]',
                       "d.json:record 1: output: key appears more than once in the object"),
    "control_chars": ("c.json", b'[{"instruction": "Add\\u0007 two", "input": "", "output": "4"}]',
                      "c.json:record 1: instruction: contains control character U+0007 at offset 3"),
    "absurd_size": ("big.json", json.dumps([{"instruction": "Add", "input": "x" * 100001, "output": "4"}]).encode(),
                    "big.json:record 1: input: is 100,001 characters, over the 100,000 limit"),
    "single_object": ("one.json", b'{"instruction": "Add", "input": "", "output": "4"}\n{"oops"',
                      "one.jsonl".replace("one.jsonl", "one.json:line 2 col 8: malformed JSON")),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_line_and_changes_nothing(case, cli, tmp_path, store_path):
    name, payload, expected = BAD_INPUTS[case]
    path = tmp_path / name
    path.write_bytes(payload)
    assert cli("-q", "import", SEEDS, "--dataset", "seeds").returncode == 0
    before = snapshot(store_path)

    validated = cli("validate", path)
    assert validated.returncode == 1
    problem_lines = validated.stderr.strip().splitlines()
    assert "Traceback" not in validated.stderr
    assert len(problem_lines) == 1, problem_lines
    assert problem_lines[0].endswith(expected.split(":", 1)[1]) or expected in problem_lines[0], problem_lines
    assert PROBLEM_LINE.match(problem_lines[0])

    imported = cli("import", path, "--dataset", "seeds")
    assert imported.returncode == 1 and "Traceback" not in imported.stderr
    assert imported.stderr.strip().splitlines()[-1].startswith("error: import refused")
    assert snapshot(store_path) == before


def test_every_problem_is_reported_in_one_pass(tmp_path, cli):
    lines = [
        '{"instruction": "Good one here", "input": "", "output": "fine"}',
        '{"instruction": "", "input": "", "output": "x"}',
        '{"instruction": oops',
        '{"instruction": "Fine", "input": 3, "output": null}',
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = cli("validate", path)
    assert result.returncode == 1
    problems = result.stderr.strip().splitlines()
    assert [p.split(":", 2)[1] for p in problems] == ["line 2", "line 3 col 17", "line 4", "line 4"]
    assert "4 problem(s)" in result.stdout


@pytest.mark.parametrize("args,fragment", [
    (("validate", "{missing}"), "no such file"),
    (("validate", "{dir}"), "is a directory"),
])
def test_missing_path_and_directory(args, fragment, tmp_path, cli):
    args = [a.format(missing=tmp_path / "nope.json", dir=tmp_path) for a in args]
    result = cli(*args)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(cli, tmp_path):
    assert cli("import", SEEDS).returncode == 2  # --dataset missing
    bad_map = cli("validate", "--map", "response", SEEDS)
    assert bad_map.returncode == 2 and "SOURCE=TARGET" in bad_map.stderr
    assert cli("import", SEEDS, "--dataset", "bad/name").returncode == 2


def test_parquet_and_csv_inputs(tmp_path):
    records = [{"instruction": "Name a colour.", "input": "", "output": "Blue."},
               {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "r.parquet")
    assert load_valid_records(str(tmp_path / "r.parquet"))[1] == records
    (tmp_path / "r.csv").write_text("instruction,input,output\nName a colour.,,Blue.\nAdd the numbers.,2 and 3,5\n")
    assert load_valid_records(str(tmp_path / "r.csv"))[1] == records
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    problems = validate_file(str(tmp_path / "bad.parquet"), show_progress=False).problems
    assert len(problems) == 1 and "not a readable Parquet file" in str(problems[0])


def test_strict_mode_flags_unknown_fields_and_empty_outputs(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"instruction": "Say hi", "input": "", "output": "", "mood": "happy"}]))
    assert validate_file(str(path), show_progress=False).ok
    problems = [str(p) for p in validate_file(str(path), strict=True, show_progress=False).problems]
    assert any("mood: unknown field" in p for p in problems)
    assert any("output: is empty (strict mode)" in p for p in problems)
