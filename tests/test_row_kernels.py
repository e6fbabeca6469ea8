"""The numba row kernels (`store.row_kernels` through `store.encode`) against the Python definitions they
replace: canonical JSON as `records.canonical_bytes` writes it, words as `str.split` counts them, and
`records.normalise_text`."""
from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest

from alpaca_data.records import canonical_bytes, normalise_text
from alpaca_data.store.encode import (
    TextView,
    canonical_json,
    encode_lines,
    encode_table,
    normalised_hashes,
    normalised_texts,
    text_counts,
    text_hashes,
)
from alpaca_data.store.tables import table_to_records

# every character str.split() splits on, every control character, JSON's own escapes, and text in other scripts
SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]
CONTROLS = [chr(c) for c in range(0x20)] + ["\x7f", "\x80", "\x9f"]
ODD = ['"', "\\", "/", "\u2028", "\u2029", "\ufeff", "é", "ß", "ﬁ", "Ａ", "İ", "中文", "😀", "\U0010ffff", "\u0301"]


def random_text(rng: random.Random, length: int) -> str:
    pieces = []
    for _ in range(length):
        pick = rng.random()
        if pick < 0.5:
            pieces.append(rng.choice("abcXYZ 019.,"))
        elif pick < 0.7:
            pieces.append(rng.choice(SPACES))
        elif pick < 0.85:
            pieces.append(rng.choice(CONTROLS))
        else:
            pieces.append(rng.choice(ODD))
    return "".join(pieces)


def random_table(seed: int, rows: int = 300) -> pa.Table:
    rng = random.Random(seed)
    texts = [[random_text(rng, rng.randrange(0, 30)) for _ in range(rows)] for _ in range(3)]
    ints = [None if rng.random() < 0.3 else rng.choice([0, -1, 7, 10, 99, -10**18, 2**63 - 1, -2**63,
                                                         rng.randrange(-10**9, 10**9)]) for _ in range(rows)]
    flags = [None if rng.random() < 0.3 else rng.random() < 0.5 for _ in range(rows)]
    notes = [None if rng.random() < 0.5 else random_text(rng, 5) for _ in range(rows)]
    return pa.table({"instruction": texts[0], "input": texts[1], "output": texts[2], "attempt": pa.array(ints),
                     "checked": pa.array(flags), "a note": notes, "zz_empty": pa.nulls(rows)})


def python_lines(table: pa.Table) -> bytes:
    return b"".join(canonical_bytes(record) + b"\n" for record in table_to_records(table))


@pytest.mark.parametrize("seed", range(6))
def test_canonical_json_is_byte_for_byte_the_json_modules(seed):
    table = random_table(seed)
    built, ends = canonical_json(table)
    assert built.tobytes() == python_lines(table)
    assert ends.tolist() == np.cumsum([len(canonical_bytes(r)) + 1 for r in table_to_records(table)]).tolist()


def test_canonical_json_of_a_slice_with_null_core_text_and_keys_that_need_escaping():
    table = random_table(9).slice(17, 40)  # Arrow offsets that do not start at 0
    table = table.append_column('k"\\\u00e9', pa.array(["x"] * 40))
    table = table.set_column(0, "instruction", pa.array([None, "a"] * 20, pa.string()))
    built, _ = canonical_json(table)
    assert built.tobytes() == python_lines(table)
    assert json.loads(built.tobytes().split(b"\n")[0])["instruction"] is None


def test_canonical_json_leaves_floats_and_lists_to_python():
    assert canonical_json(pa.table({"instruction": ["a"], "score": [0.5]})) is None
    assert canonical_json(pa.table({"instruction": ["a"], "seeds": [[1, 2]]})) is None
    table = pa.table({"instruction": ["a"], "input": [""], "output": ["b"], "seeds": [[1, 2]], "s": [1e-7]})
    assert bytes(encode_table(table).canonical) == python_lines(table)


@pytest.mark.parametrize("seed", range(4))
def test_word_and_character_counts_are_pythons(seed):
    table = random_table(seed)
    for name in ("instruction", "input", "output"):
        texts = table.column(name).to_pylist()
        counts = text_counts(TextView.of(table.column(name)))
        assert counts.words.tolist() == [len(text.split()) for text in texts]
        assert counts.chars.tolist() == [len(text) for text in texts]


@pytest.mark.parametrize("seed", range(4))
def test_normalised_text_is_normalise_texts(seed):
    table = random_table(seed)
    rng = random.Random(seed)
    ascii_texts = ["".join(rng.choice("aB \t\n\x1c\x1f\x0b.") for _ in range(rng.randrange(0, 12))) for _ in range(300)]
    for column in (table.column("instruction"), pa.array(ascii_texts), pa.array([None] * 150 + ascii_texts[:150])):
        expected = [normalise_text(value or "").encode() for value in column.to_pylist()]
        assert normalised_texts(TextView.of(column)) == expected


def test_stats_of_kernel_lines_equal_those_of_python_lines():
    table = random_table(3)
    kernel = encode_table(table)
    lines = [canonical_bytes(r) for r in table_to_records(table)]
    python = encode_lines(lines, *(table.column(n) for n in ("instruction", "input", "output")))
    assert bytes(kernel.canonical) == python.canonical
    for name in ("ends", "with_input", "empty_output", "chars", "words", "instruction_hashes"):
        assert getattr(kernel, name).tolist() == getattr(python, name).tolist(), name
    kept = np.arange(len(kernel)) % 3 != 1
    assert bytes(kernel.select(kept).canonical) == python.select(kept).canonical


def test_hashes_of_normalised_fields_are_those_of_the_python_keys():
    from alpaca_data.filters.exact import ExactDuplicates

    table = random_table(5)
    fields = ("instruction", "input", "missing")
    keys = ExactDuplicates.keys_for_table(table, fields)
    assert keys.tolist() == [ExactDuplicates.key_for(r, fields) for r in table_to_records(table)]
    for name in ("instruction", "output"):
        view = TextView.of(table.column(name))
        assert normalised_hashes(view).tolist() == text_hashes(normalised_texts(view)).tolist()
    one_field = ExactDuplicates.keys_for_table(table, ("instruction",))
    assert one_field.tolist() == normalised_hashes(TextView.of(table.column("instruction"))).tolist()


def test_text_hashes_tell_texts_apart():
    texts = [str(i).encode() for i in range(200_000)] + [b"", b"\x00", b"\x00\x00", b"a" * 8, b"a" * 9, b"a" * 16]
    assert len(set(text_hashes(texts).tolist())) == len(texts)
    assert text_hashes([b"same text"]).tolist() * 2 == text_hashes([b"same text", b"same text"]).tolist()


def test_an_empty_batch_encodes_to_nothing():
    empty = random_table(1).slice(0, 0)
    encoded = encode_table(empty)
    assert len(encoded) == 0 and bytes(encoded.canonical) == b""
    for name in ("ends", "with_input", "empty_output", "chars", "words", "instruction_hashes"):
        assert len(getattr(encoded, name)) == 0, name
    assert len(normalised_hashes(TextView.of(empty.column("instruction")))) == 0


@pytest.mark.parametrize("seed", range(4))
def test_control_rows_are_the_rows_the_control_regex_matches(seed):
    import pyarrow.compute as pc

    from alpaca_data.filters.candidates import _CONTROL_OR_BREAK, control_rows

    table = random_table(seed).slice(3)
    fields = ("instruction", "input", "output", "a note", "not there")
    expected = np.zeros(table.num_rows, dtype=bool)
    for name in fields[:4]:
        expected |= pc.fill_null(pc.match_substring_regex(table.column(name), _CONTROL_OR_BREAK), False).to_numpy()
    assert expected.any()
    assert control_rows(table, fields).tolist() == expected.tolist()
    plain = pa.table({"output": ["a\tb\nc", "\u00a0\u2028é", "\ufeffx", "x\ufeff", "\u0085", "\u00c2\u0080", "\r"]})
    assert control_rows(plain, ("output",)).tolist() == [False, False, True, True, True, True, True]


def test_record_keys_are_key_of():
    from alpaca_data.records import key_of
    from alpaca_data.store.encode import record_keys

    records = table_to_records(random_table(7)) + [{"instruction": None, "input": None}, {"instruction": "Ａb\u00a0c"}]
    assert record_keys([r.get("instruction") for r in records], [r.get("input") for r in records]) == \
        [key_of(r) for r in records]
    assert record_keys([], []) == []


@pytest.mark.parametrize("seed", range(3))
def test_literal_scan_finds_what_arrow_match_substring_finds(seed):
    """One pass for many needles (case-blind ones too, overlapping ones, at either end, multi-byte) gives Arrow's
    answer for each; nulls and missing fields hold nothing, the empty needle is in every text."""
    import pyarrow.compute as pc

    from alpaca_data.filters.candidates import LiteralScan

    rng = random.Random(seed)
    alphabet = ["a", "A", "t", "T", "ta", "ch", "ED", "d", "<", "[", ":", "/", "`", "\\", "n", "é", "中", " ", "\n",
                "``", "://", "Attached", "attacheD", "é中"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))) for _ in range(2000)]
    texts = [None if rng.random() < 0.05 else text for text in texts]
    needles = [("attached", True), ("tach", False), ("TA", True), ("<", False), ("[", False), ("://", False),
               ("```", False), ("\\n", False), ("é中", False), ("aa", False), ("a", True), ("É", True)]
    table = pa.table({"output": texts, "wide": pa.array(texts, pa.large_string()), "n": list(range(len(texts)))})
    scan = LiteralScan(table, [(name, needle, blind) for name in ("output", "wide") for needle, blind in needles])
    for name in ("output", "wide"):
        for needle, blind in needles:
            expected = pc.fill_null(pc.match_substring(table.column(name), needle, ignore_case=blind), False)
            assert scan.rows(name, needle, blind).tolist() == expected.to_pylist(), (name, needle, blind)
            assert 0 < sum(expected.to_pylist()) < len(texts)
    assert scan.rows("output", "").tolist() == [True] * len(texts)
    assert not scan.rows("not there", "a").any()
    assert LiteralScan(table).rows("output", "tach").tolist() == scan.rows("output", "tach").tolist()


def test_key_table_answers_like_a_dict_through_growth_and_colliding_keys():
    """Each key's first slot, -1 for a first; keys 0, 2**64-1 and keys equal in their low bits (one probe chain)
    included; batches of every size, the table growing from its smallest."""
    from alpaca_data.filters.key_table import KeyTable

    rng = np.random.default_rng(7)
    pool = np.concatenate([rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2),
                           np.array([0, 2**64 - 1], dtype=np.uint64),
                           (np.arange(1, 200, dtype=np.uint64) << np.uint64(40))])  # same low bits
    keys = rng.choice(pool, 20000)
    table, seen, position = KeyTable(capacity=1), {}, 0
    for size in (1, 7, 0, 500, 3000, 16492):
        batch = keys[position:position + size]
        slots = np.arange(position, position + size, dtype=np.int64) * 3
        expected = []
        for key, slot in zip(batch.tolist(), slots.tolist()):
            expected.append(seen.get(key, -1))
            seen.setdefault(key, slot)
        assert table.claim(batch, slots).tolist() == expected
        position += size
    assert position == len(keys) and len(table) == len(seen) and len(seen) > 2500
