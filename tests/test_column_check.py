"""The import's column-at-a-time path (alpaca_data.column_check, import_chunks.scan_chunk) gives the verdicts,
column kinds, rows and statistics of the record-at-a-time one, on chunks built to trip it up."""
from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from alpaca_data import import_chunks
from alpaca_data.import_chunks import Chunk, check_chunk, convert_chunk, scan_chunk, schema_of
from alpaca_data.records import normalise_text
from alpaca_data.store.encode import encode_table
from alpaca_data.store.tables import records_to_table

BASE = [{"instruction": f"Task {i}: say {'hi' * (i % 3)}", "input": "" if i % 2 else f"ctx {i}",
         "output": f"answer {i}"} for i in range(40)]

# Each case: a field and the values its records take in turn (a missing field where the value is ...).
CASES = {
    "plain": [],
    "unknown string": [("note", ["a", "b", ...])],
    "unknown int then null": [("score", [1, None, 3, ...])],
    "floats only": [("score", [1.5, 2.5, None])],
    "int and float": [("score", [1, 2.5])],
    "float then bool": [("score", [1.5, True])],
    "bool": [("flag", [True, False, ...])],
    "int beyond 64 bits": [("big", [1, 2**64])],
    "string and int": [("mixed", ["a", 1])],
    "flat list": [("tags", [["a", "b"], [], ["c", None]])],
    "list of floats and a bool": [("vals", [[1.5], [True]])],
    "nested list": [("nested", [[[1]], [[2]]])],
    "object": [("obj", [{"a": 1}])],
    "known string": [("source", ["seed", "gen", ...])],
    "known string null": [("source", ["seed", None])],
    "known int or string": [("request_id", [1, "r2", 3])],  # one column holds one type: refused
    "known int": [("request_id", [1, 2, ...])],
    "known int as float": [("request_id", [1.0, 2.0])],
    "known list no null items": [("prompt_seeds", [["a", 1], ["b"]])],
    "known list no null items, mixed": [("prompt_seeds", [[1, 2], ["b"]])],
    "known list of strings": [("prompt_seeds", [["a", "c"], ["b"]])],
    "known list with a null item": [("prompt_seeds", [["a", None]])],
    "known list, empty": [("prompt_seeds", [[], []])],
    "known number null": [("rouge_max", [0.5, None, ...])],
    "known bool as int": [("is_classification", [1, 0])],
    "control char in provenance": [("note", ["ok", "bell \x07"])],
    "C1 char in output": [("output", ["fine", "c1 \x85 here"])],
    "DEL in input": [("input", ["", "del \x7f"])],
    "escaped backslash before b": [("output", ["C:\\bin and \\b regex", "\\f too"])],
    "tab and newline escapes": [("output", ["a\tb\nc\rd", "\u0009"])],
    "empty instruction": [("instruction", ["ok", ""])],
    "whitespace instruction": [("instruction", ["ok", " \u3000 "])],
    "invisible instruction": [("instruction", ["ok", "\u200b\u200b"])],
    "non-ASCII visible instruction": [("instruction", ["ok", "\u00e9t\u00e9"])],
    "null output": [("output", ["x", None])],
    "int input": [("input", ["x", 5])],
    "missing output": [("output", ["x", ...])],
    "long input": [("input", ["x", "y" * 100_001])],
    "quote colon in text": [("output", ['say "a": 1', 'json {"k": "v"}'])],
    "value starting with a colon": [("output", [":x", ": y", "fine"])],
    "quote as a unicode escape": [("output", ["\u0022quoted\u0022: yes", "x"])],
    "field name empty": [(" ", ["x"])],
    "field name with control": [("bad\x01name", ["x"])],
    "quote in field name": [('we"ird', ["x"])],
}


def _chunk_file(tmp_path, case: str, repeated_key: bool = False, spaced: bool = False) -> Chunk:
    records = [dict(r) for r in BASE]
    for name, values in CASES[case]:
        for i, record in enumerate(records):
            value = values[i % len(values)]
            if value is ...:
                record.pop(name, None)
            else:
                record[name] = value
    lines = [json.dumps(r, ensure_ascii=i % 2 == 0) for i, r in enumerate(records)]
    if repeated_key:
        lines[7] = lines[7][:-1] + ', "output": "again"}'
    if spaced:
        lines[3] = lines[3].replace('"output": ', '"output" : ')
    path = tmp_path / "chunk.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return Chunk(str(path), 0, path.stat().st_size)


def _same_verdict(chunk: Chunk) -> None:
    careful = check_chunk(chunk)
    fast = scan_chunk(chunk)
    assert (fast.ok, fast.records, fast.no_input, fast.kinds) == \
        (careful.ok, careful.records, careful.no_input, careful.kinds)
    if careful.ok:
        converted = scan_chunk(import_chunks.replace(chunk, convert=True)).rows
        table, encoded = convert_chunk(import_chunks.replace(chunk, schema=schema_of(careful.kinds)))
        assert converted[0].equals(table)
        assert bytes(converted[1].canonical) == bytes(encoded.canonical)
        for name in ("ends", "with_input", "empty_output", "chars", "words", "instruction_hashes"):
            assert (getattr(converted[1], name) == getattr(encoded, name)).all(), name


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_chunk_gets_the_record_checkers_verdict_kinds_and_rows(tmp_path, case):
    _same_verdict(_chunk_file(tmp_path, case))


@pytest.mark.parametrize("case", ["plain", "quote colon in text", "escaped backslash before b",
                                  "value starting with a colon"])
def test_a_repeated_key_is_never_missed(tmp_path, case):
    chunk = _chunk_file(tmp_path, case, repeated_key=True)
    assert not scan_chunk(chunk).ok
    spaced = _chunk_file(tmp_path, case, repeated_key=True, spaced=True)
    assert not scan_chunk(spaced).ok and not check_chunk(spaced).ok
    _same_verdict(_chunk_file(tmp_path, case, spaced=True))  # a space before a colon alone is fine


def test_the_statistics_match_plain_python_on_odd_text():
    alphabet = list("ab Z\t\n\r\x0b\x0c\x1c\x1f\x85\u00a0\u2028\u3000\u00e9\u00df\u200b\u0130K") + [" ", "x", "  "]
    rng = random.Random(7)

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))

    rows = [{"instruction": text(), "input": text(), "output": text()} for _ in range(5000)]
    encoded = encode_table(records_to_table(rows))
    assert encoded.words.tolist() == [[len(r[f].split()) for f in ("instruction", "input", "output")] for r in rows]
    assert encoded.with_input.tolist() == [bool(r["input"].strip()) for r in rows]
    assert encoded.empty_output.tolist() == [not r["output"].strip() for r in rows]
    assert encoded.chars.tolist() == [sum(len(r[f]) for f in ("instruction", "input", "output")) for r in rows]
    normalised = [normalise_text(r["instruction"]) for r in rows]
    hashes = encoded.instruction_hashes.tolist()
    same_text = {(i, j) for i in range(400) for j in range(400) if normalised[i] == normalised[j]}
    same_hash = {(i, j) for i in range(400) for j in range(400) if hashes[i] == hashes[j]}
    assert same_text == same_hash and len(same_text) > 400  # duplicates exist among the first 400
    assert len(set(hashes)) == len(set(normalised))


def test_a_chunk_without_extra_fields_fits_the_first_chunks_columns():
    from alpaca_data.importer import _fits

    assert _fits({}, {"note": "string"}) and _fits({"note": "null"}, {"note": "string"})
    assert not _fits({"note": "string"}, {}) and not _fits({"score": "int"}, {"score": "float"})
    assert isinstance(schema_of({"score": "float"}).field("score").type, pa.DataType)


@pytest.mark.parametrize("case", ["plain", "unknown string", "unknown int then null", "floats only", "bool",
                                  "flat list", "known string", "known int", "known list of strings", "known list, empty", "known number null", "escaped backslash before b",
                                  "tab and newline escapes", "non-ASCII visible instruction", "quote colon in text"])
def test_valid_chunks_are_decided_a_column_at_a_time(tmp_path, case):
    from alpaca_data.column_check import checked_columns

    records, _, clean_text = import_chunks._plain_records(_chunk_file(tmp_path, case))
    assert checked_columns(records, clean_text=clean_text) is not None  # the fast path, not the fallback


def test_exact_dedup_keys_of_a_batch_are_the_keys_of_its_records():
    from alpaca_data.filters.exact import DEFAULT_FIELDS, ExactDuplicates
    from alpaca_data.store.tables import records_to_table, table_to_records

    alphabet = list("aB Z\t\n\r\x1c\u00a0\u3000\u00c9\u212a\ufb01") + [" ", "x"]
    rng = random.Random(3)
    records = [{"instruction": "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))),
                "input": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))),
                "output": "o", "score": rng.randint(0, 3)} for _ in range(3000)]
    table = records_to_table(records)
    for fields in (DEFAULT_FIELDS, ("instruction",), ("output", "instruction"), ("score",), ("missing",)):
        keys = ExactDuplicates.keys_for_table(table, fields)
        assert keys.tolist() == [ExactDuplicates.key_for(row, fields) for row in table_to_records(table)], fields
    assert len(set(ExactDuplicates.keys_for_table(table, ("instruction",)).tolist())) == \
        len({normalise_text(r["instruction"]) for r in records})


def test_quotes_written_as_unicode_escapes_and_spaced_keys_are_decided_exactly(tmp_path):
    path = tmp_path / "chunk.jsonl"
    good = ['{"instruction": "say \\u0022hi\\u0022: now", "output": "\\u0022k\\u0022:1"}',
            '{"instruction": "a", "output": "b", "note": ":starts with a colon"}']
    twice = '{"instruction": "a", "output": "b", "note" : "x", "note": "y"}'
    for lines, ok in ((good, True), (good + [twice], False), ([twice.replace(' : ', ': ')] + good, False)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        chunk = Chunk(str(path), 0, path.stat().st_size)
        assert scan_chunk(chunk).ok is ok and check_chunk(chunk).ok is ok
        if ok:
            _same_verdict(chunk)
