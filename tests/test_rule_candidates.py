"""`RuleSet.check_table` runs on each row only the rules that could act on it (alpaca_data.filters.candidates,
Arrow compute over the batch) and must give exactly the verdicts of `check` on every record."""
from __future__ import annotations

import random
import re

import pyarrow as pa
import pyarrow.compute as pc

from alpaca_data.filters import candidates as candidates_module
from alpaca_data.filters.candidates import _FOLDS_TO_ASCII
from alpaca_data.filters.ruleset import RuleSet
from alpaca_data.store.encode import word_counts
from alpaca_data.store.tables import records_to_table, table_to_records
from tests.conftest import corpus_records

TRICKY = [
    {"instruction": "Draw a pıcture", "input": "N/A", "output": "  "},
    {"instruction": "  , starts with a comma", "input": "<noinput>", "output": "none"},
    {"instruction": "\u3000日本語で答えて", "input": "", "output": "はい"},
    {"instruction": "Write a program that adds", "input": "", "output": "```python\n```"},
    {"instruction": "Describe the  \u212aey  word", "input": "see [image]", "output": "x\r\ny"},
    {"instruction": "Summarise this for me please", "input": "http://example.com/a.png", "output": "a\\nb."},
    {"instruction": "Tell me\x1cabout it please", "input": "", "output": "1. Instruction: more"},
    {"instruction": "Go\n\tTO the shop and buy", "input": "", "output": "ok" + " " * 80},
    {"instruction": "a " * 151, "input": "", "output": "long"},
    {"instruction": "a " * 150 + "b", "input": "", "output": "long"},
    {"instruction": "one two three", "input": "", "output": "x"},
    {"instruction": "one two three four", "input": "", "output": "x"},
    {"instruction": "one\u00a0two three four", "input": "", "output": "x"},
    {"instruction": "Explain the photos ATTACHED here", "input": "", "output": "\ufeffBOM text"},
    {"instruction": "Name three fruits", "input": "Input: none.", "output": "Apple, pear, plum."},
    # each of needs_media's patterns, case and folds, and near misses (code with < and [ but no media word)
    *({"instruction": text, "input": "", "output": "ok"}
      for text in ("Describe the <Photo Attached> here", "See the < SCREENSHOTS /> below now", "Read <the attachment, ok>",
                   "Look at the [ Photo attached ] now", "Use the attached\tscreenshots please", "The photograph is attached",
                   "Read this text ![alt](x.png) here", "Fetch the ftp://a.b/c.PDF now", "Open https://example.com now",
                   "Describe the <\u017fcreenshot> here", "Check the [\u0130MG] there", "if a < b and c[0] > 1 then",
                   "Print x[1] for <i> in list", "An attachment without brackets", "A photo, with no marker")),
    # merged_instructions: every way it drops, and texts it reads but keeps
    *({"instruction": "Answer the question below", "input": "", "output": text}
      for text in ("Yes.\n2. Instruction: next", "Yes.\n### INSTRUCTION\nmore", "1. Input: a\n2) OUTPUT: b",
                   "1. INPUT: a\n2. OUTPUT: b", "Sure.\nInstruction: x\nInput: y", "the input and the output",
                   "Type your input here", "instruction manual")),
    # placeholders spelled every way `_canonical_marker` folds, and near misses
    *({"instruction": "Say it in one short word", "input": marker, "output": marker.replace("nput", "utput")}
      for marker in ("<No Input>", "[N/A]", "Output: none", "n.a.", "- none -", "No_Input", "NOINPUT!!",
                     "Input:None", "no input provided.", "\uff2e\uff2f\uff2e\uff25", "\u0130nput: none", "nonee",
                     "input none", "No input, but here is some", "N/A" + " " * 70)),
]


def _records() -> list[dict]:
    return TRICKY + [dict(r) for name in ("gpteacher_toolformer", "gpteacher_codegen", "gpteacher_roleplay",
                                           "gsm8k_train_alpaca", "alpaca_zh_10000")
                     for r in corpus_records(name)[:400]]


def test_check_table_gives_the_verdicts_of_check_for_every_rule_set():
    records = _records()
    table = records_to_table(records)
    rows = table_to_records(table)
    for spec in ("default", "all", "default,too_short.count_cjk=true,blacklist.words=[map;go to;ſtar]",
                 "needs_media,merged_instructions"):
        ruleset = RuleSet.from_spec(spec)
        assert ruleset.check_table(table, rows) == [ruleset.check(row) for row in rows], spec
    flagged = candidates_module.candidate_rows(RuleSet.default().rules, table).any(axis=0)
    assert 0.05 < flagged.mean() < 0.9  # the shortcut skips rows, and does not skip everything


def test_python_whitespace_and_control_characters_are_spelled_exactly_for_re2():
    texts = pa.array([f"a{chr(c)}b" for c in range(0x3100) if not 0xD800 <= c < 0xE000])
    spaced = pa.chunked_array([texts, pa.array(["", "  a  b  ", "\u3000x\u2028y\u00a0 z ", "one"])])
    assert candidates_module.words(spaced).tolist() == [len(t.split()) for t in spaced.to_pylist()]
    assert word_counts(spaced.combine_chunks()).tolist() == [len(t.split()) for t in spaced.to_pylist()]
    alone = pa.array([chr(c) * 2 for c in range(0x3100) if not 0xD800 <= c < 0xE000] + [""])
    empty_output = pc.match_substring_regex(alone, rf"^[{candidates_module._SPACE}]*$").to_pylist()
    assert empty_output == [not t.strip() for t in alone.to_pylist()] and sum(empty_output) > 20
    control = pc.match_substring_regex(texts, candidates_module._CONTROL_OR_BREAK).to_pylist()
    python = re.compile(r"[\r\x0b\x0c\x85\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff]")
    assert control == [bool(python.search(t)) for t in texts.to_pylist()]


def test_the_characters_that_fold_to_ascii_are_derived_from_every_code_point():
    chars = "".join(chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c < 0xE000)
    folded = {c for c in chars if any(f.isascii() and f.isalpha() for f in c.casefold())}
    matched = {c for letter in "abcdefghijklmnopqrstuvwxyz" for c in re.findall("(?i)" + letter, chars)}
    assert set(candidates_module._FOLDS_TO_ASCII) == folded | matched
    texts = ["plain", "caf\u00e9", "\u017ftar", "\u212aey", "ﬁle", None, "x\u00df", "\u00dex", "\ufb07"]
    found = candidates_module._may_fold_to_ascii(pa.table({"instruction": texts}), ("instruction", "no such field"))
    assert found.tolist() == [False, False, True, True, True, False, True, False, False]
    # the row kernel finds what the RE2 class finds, in every character's neighbourhood
    rng = random.Random(5)
    alphabet = [*_FOLDS_TO_ASCII, "\u00de", "\u00e0", "\u0132", "\u1e95", "\u1e9f", "\u212b", "\ufb07", "a", "中",
                "\U0001f600", "\x00"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4))) for _ in range(3000)]
    regex = pc.match_substring_regex(pa.array(texts), candidates_module._FOLDS_TO_ASCII_RE2).to_pylist()
    assert found_all(texts) == regex and 0 < sum(regex) < len(texts)


def found_all(texts: list[str]) -> list[bool]:
    table = pa.table({"instruction": texts, "input": pa.array(texts, pa.large_string())})
    kernel = candidates_module._may_fold_to_ascii(table, ("instruction",)).tolist()
    assert candidates_module._may_fold_to_ascii(table, ("input",)).tolist() == kernel  # large_string: RE2
    return kernel


def test_rows_dropped_without_being_read_are_the_rows_check_drops_for_that_reason():
    """check_rows leaves unread the rows their first candidate rule surely drops (too_short, too_long: all their
    candidates; blacklist: a match on ASCII text): each must be a row `check` drops for that very reason,
    unchanged; and too_short's and too_long's candidates are exactly their drops, Unicode whitespace included."""
    records = _records() + [{"instruction": "Plot\x1cgo\x0bto the MAP_ please", "input": "", "output": "x"},
                            {"instruction": "Open the FILE\x1fnow and read it", "input": "", "output": "x"},
                            {"instruction": "a\u2003b\u00a0c\u3000d", "input": "", "output": "x"},
                            {"instruction": "one\u200btwo three", "input": "", "output": "x"},
                            {"instruction": None, "input": None, "output": "x"}]
    table = records_to_table(records)
    rows = table_to_records(table)
    ruleset = RuleSet.default()
    verdicts, read, exact = ruleset.check_rows(table)
    assert set(exact) == {"too_short", "too_long", "blacklist"} and sum(map(len, exact.values())) > 100
    for reason, dropped in exact.items():
        for row in dropped.tolist():
            assert row not in read and row not in verdicts
            verdict = ruleset.check(rows[row])
            assert (verdict.reason, verdict.record) == (reason, rows[row]), (row, rows[row])
    blacklisted = [row for row in range(len(rows)) if ruleset.check(rows[row]).reason == "blacklist"]
    assert 0.5 < len(exact["blacklist"]) / len(blacklisted) < 1  # most, not the non-ASCII ones
    for rule in (ruleset["too_short"], ruleset["too_long"]):
        found = candidates_module.candidate_rows([rule], table)[0]
        assert found.tolist() == [rule.apply(row) is not None for row in rows], rule.name
