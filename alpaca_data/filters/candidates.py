"""Which records of a batch a heuristic rule could act on, decided for the whole batch at once (Arrow compute).

Each function returns a superset: every record the rule would drop or change is a candidate, and some
candidates are not (a word of the blacklist inside a longer word, a short input that is no placeholder). The
exact rule then runs only on candidates (`RuleSet.candidates`, used by `filters.stream`), so a record no
rule could touch skips the Python rules entirely and every verdict is still the rule's own. A rule without a
function here makes every record a candidate.

Python's notions are kept exactly where a candidate depends on them: `str.split()` whitespace is spelled
out for RE2 (`_SPACE`, checked against `str.isspace` for every code point in the tests), and a text that holds
one of the few characters case-folding turns into ASCII letters (`_FOLDS_TO_ASCII`) is a candidate of the rules
that look for ASCII words case-insensitively. RE2's `\\b` (ASCII) finds a boundary wherever Python's (Unicode)
finds one next to an ASCII letter, so its matches are a superset.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alpaca_data.filters import rules as r
from alpaca_data.store.encode import TextView, kernels, one_array, word_counts

# The characters str.split() and str.strip() treat as whitespace, in RE2 syntax.
_SPACE = r"\t\n\v\f\r\x{1c}-\x{1f} \x{85}\p{Z}"
_CONTROL_OR_BREAK = r"[\r\x{0b}\x{0c}\x{85}\x{0}-\x{8}\x{e}-\x{1f}\x{7f}-\x{84}\x{86}-\x{9f}\x{feff}]"
_CONTROL_OR_BREAK_CHARS = "".join(map(chr, [*range(0x0, 0x9), *range(0xB, 0x20), *range(0x7F, 0xA0), 0xFEFF]))


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    """The field's texts, a null (or a missing field) read as "" (a column without nulls as it is: no copy)."""
    if name in table.column_names:
        column = table.column(name)
        return pc.fill_null(column, "") if column.null_count else column
    return pa.chunked_array([pa.array([""] * table.num_rows, pa.string())])


def _numpy(mask) -> np.ndarray:
    mask = pc.fill_null(mask, True) if mask.null_count else mask
    return np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _any(table: pa.Table, fields, test: Callable[[pa.ChunkedArray], pa.ChunkedArray]) -> np.ndarray:
    mask = np.zeros(table.num_rows, dtype=bool)
    for name in fields:
        mask |= _numpy(test(_column(table, name)))
    return mask


def _not_ascii(column: pa.ChunkedArray):
    return pc.invert(pc.string_is_ascii(column))


# The characters beyond ASCII that `str.casefold` turns into ASCII letters or `re.IGNORECASE` matches with them
# (ß -> ss, the ligatures, the Kelvin sign, long s, dotless and dotted i, ...; the tests derive the set from
# every code point): only a text holding one can match an ASCII word in a way RE2's own (?i) might not see.
_FOLDS_TO_ASCII = "\u00df\u0130\u0131\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a" \
                  "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"


_FOLDS_TO_ASCII_RE2 = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _FOLDS_TO_ASCII) + "]"


@functools.lru_cache(maxsize=None)
def _code_points(chars: str) -> tuple[np.ndarray, np.ndarray]:
    """(the first bytes of their UTF-8 forms as a 256-entry table, the sorted code points) of `chars`."""
    leads = np.zeros(256, dtype=np.bool_)
    for char in chars:
        leads[char.encode()[0]] = True
    return leads, np.array(sorted(set(map(ord, chars))), dtype=np.int64)


def rows_holding(table: pa.Table, fields, chars: str, regex: str) -> np.ndarray:
    """Rows where a field holds one of `chars` (a row kernel: one pass over the bytes; `regex`, the same class
    for RE2, reads a column of another type)."""
    leads, points = _code_points(chars)
    marked = np.zeros(table.num_rows, dtype=bool)
    for name in fields:
        if name in table.column_names and _is_text(table, name):
            view = TextView.of(table.column(name))
            kernels().mark_rows_holding(view.offsets, view.data, view.valid, leads, points, marked)
        elif name in table.column_names:
            marked |= _numpy(pc.match_substring_regex(_column(table, name), regex))
    return marked


def _is_text(table: pa.Table, name: str) -> bool:
    kind = table.schema.field(name).type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


class LiteralScan:
    """The literal substrings the rules of a batch look for, found in one pass over each field's bytes for all
    of them (`row_kernels.mark_literals`); `rows` answers each rule's question. `wanted`: (field, needle,
    ignore_case) triples. ignore_case folds ASCII letters only: the rules that ask for it also take every text
    holding a character that folds to ASCII (`_may_fold_to_ascii`)."""

    def __init__(self, table: pa.Table, wanted=()):
        self.table = table
        self.found: dict[tuple[str, str, bool], np.ndarray] = {}
        self.memo: dict[str, np.ndarray] = {}  # other answers more than one rule asks for
        by_field: dict[str, dict[tuple[str, bool], None]] = {}
        for name, needle, ignore_case in wanted:
            by_field.setdefault(name, {})[(needle, bool(ignore_case))] = None
        for name, needles in by_field.items():
            self._scan(name, list(needles))

    def any_of(self, literals) -> np.ndarray:
        """Rows holding any of these (field, needle, ignore_case) literals."""
        mask = np.zeros(self.table.num_rows, dtype=bool)
        for literal in literals:
            mask |= self.rows(*literal)
        return mask

    def rows(self, name: str, needle: str, ignore_case: bool = False) -> np.ndarray:
        """Rows whose `name` field holds `needle` (a null or missing field holds nothing)."""
        key = (name, needle, bool(ignore_case))
        if key not in self.found:
            self._scan(name, [key[1:]])
        return self.found[key]

    def _scan(self, name: str, needles: list[tuple[str, bool]]) -> None:
        table, rows = self.table, self.table.num_rows
        by_kernel = name in table.column_names and _is_text(table, name)
        for needle, blind in needles:
            if not needle:
                self.found[(name, needle, blind)] = np.ones(rows, dtype=bool)  # the empty string is in every text
            elif name not in table.column_names:
                self.found[(name, needle, blind)] = np.zeros(rows, dtype=bool)
            elif not by_kernel or (blind and not needle.isascii()):  # the kernel folds ASCII letters only
                self.found[(name, needle, blind)] = _numpy(
                    pc.match_substring(_column(table, name), needle, ignore_case=blind))
        needles = [(needle, blind) for needle, blind in needles if (name, needle, blind) not in self.found]
        if not needles:
            return
        coded = [needle.lower().encode() if blind else needle.encode() for needle, blind in needles]
        blinds = [blind for _, blind in needles]
        marked = np.zeros((len(needles), rows), dtype=bool)
        view = TextView.of(table.column(name))
        kernels().mark_literals(view.offsets, view.data, view.valid, *_needle_tables(coded, blinds),
                                np.frombuffer(b"".join(coded), dtype=np.uint8).copy(),
                                np.cumsum([0, *map(len, coded)], dtype=np.int64), np.array(blinds, dtype=np.bool_),
                                marked)
        for k, (needle, blind) in enumerate(needles):
            self.found[(name, needle, blind)] = marked[k]


def _needle_tables(coded: list[bytes], blinds: list[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`row_kernels.mark_literals`' look-up tables for these needles: the pairs of bytes one can start with
    (256 x 256, flat), and for each byte the needles that can start with it (heads into order)."""
    pairs = np.zeros((256, 256), dtype=np.bool_)
    starting: list[list[int]] = [[] for _ in range(256)]
    for k, (code, blind) in enumerate(zip(coded, blinds)):
        for first in _cases(code[0], blind):
            starting[first].append(k)
            if len(code) == 1:
                pairs[first, :] = True
            else:
                pairs[first, _cases(code[1], blind)] = True
    heads = np.cumsum([0, *map(len, starting)], dtype=np.int64)
    order = np.array([k for ks in starting for k in ks], dtype=np.int64)
    return pairs.reshape(-1), heads, order


def _cases(byte: int, blind: bool) -> list[int]:
    """The bytes a needle's (lower-cased) byte matches: itself, and its upper case where compared case-blind."""
    return [byte, byte - 0x20] if blind and 0x61 <= byte <= 0x7A else [byte]


def _may_fold_to_ascii(table: pa.Table, fields) -> np.ndarray:
    return rows_holding(table, fields, _FOLDS_TO_ASCII, _FOLDS_TO_ASCII_RE2)


def _maybe_marker(column: pa.ChunkedArray, markers: set[str]) -> np.ndarray:
    """Texts of at most 64 characters that `rules._canonical_marker` could turn into one of `markers`: it only
    removes characters other than letters and digits, and a leading "input:" or "output:" label, so an ASCII
    text's letters and digits must spell a marker's, after such a label or not. Other short texts are
    candidates (casefold can turn a non-ASCII letter into ASCII ones)."""
    mask = _numpy(pc.less_equal(pc.utf8_length(column), 64))
    rows = np.flatnonzero(mask)
    if not len(rows):
        return mask
    short = column.take(rows)
    spelled = {re.sub("[^a-z0-9]", "", marker) for marker in markers}
    spelled |= {label + text for text in spelled for label in ("input", "output")}
    letters = pc.replace_substring_regex(pc.ascii_lower(short), "[^a-z0-9]", "")
    mask[rows] = _numpy(pc.or_(pc.is_in(letters, pa.array(sorted(spelled))), _not_ascii(short)))
    return mask


def _noinput_marker(rule: r.NoInputMarker, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    column = _column(table, "input")
    return _maybe_marker(column, rule._canon) & _numpy(pc.greater_equal(pc.utf8_length(column), 1))


def control_rows(table: pa.Table, fields) -> np.ndarray:
    """Rows where a field holds a character `_CONTROL_OR_BREAK` matches."""
    return rows_holding(table, fields, _CONTROL_OR_BREAK_CHARS, _CONTROL_OR_BREAK)


def _control_characters(rule: r.ControlCharacters, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    return control_rows(table, dict.fromkeys((*rule.fields, *rule.literal_newline_fields))) | \
        scan.any_of(_literals_of_control_characters(rule))


def _literals_of_control_characters(rule: r.ControlCharacters):
    return [(name, "\\n", False) for name in rule.literal_newline_fields] if rule.literal_newlines else []


def _empty_output(rule: r.EmptyOutput, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    output = _column(table, "output")
    return _maybe_marker(output, rule._canon) | _numpy(pc.match_substring_regex(output, rf"^[{_SPACE}]*$"))


def _too_short(rule: r.TooShort, table: pa.Table, scan: LiteralScan) -> np.ndarray | None:
    """Exactly the rows the rule drops."""
    if rule.count_cjk:
        return None
    return words(_column(table, "instruction")) <= rule.max_words


def _too_long(rule: r.TooLong, table: pa.Table, scan: LiteralScan) -> np.ndarray | None:
    """More than N words take at least 2N + 1 characters; those rows are counted."""
    if rule.count_cjk:
        return None
    instructions = _column(table, "instruction")
    mask = _numpy(pc.greater(pc.utf8_length(instructions), 2 * rule.max_words))
    rows = np.flatnonzero(mask)
    if len(rows):
        mask[rows] = words(instructions.take(rows)) > rule.max_words
    return mask


def words(column: pa.ChunkedArray) -> np.ndarray:
    """len(text.split()) of each text (`store.encode.word_counts`, the one word counter)."""
    return word_counts(one_array(column))


def _blacklist_words(rule: r.Blacklist) -> str:
    """The rule's words and phrases as one RE2 group of alternatives, Python's whitespace between words."""
    words = [w for w in rule.words if w.strip()]
    return "(?:" + "|".join(f"[{_SPACE}]+".join(map(re.escape, w.split())) for w in words) + ")"


def _blacklist(rule: r.Blacklist, table: pa.Table, scan: LiteralScan) -> np.ndarray | None:
    if not any(w.strip() for w in rule.words):
        return np.zeros(table.num_rows, dtype=bool)
    if not all(w.isascii() for w in rule.words if w.strip()):
        return None
    pattern = f"(?i){_blacklist_words(rule)}"
    return _any(table, rule.fields, lambda column: pc.match_substring_regex(column, pattern)) | \
        _may_fold_to_ascii(table, rule.fields)


def _write_a_program(rule: r.WriteAProgram, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    return scan.any_of(_literals_of_write_a_program(rule))


def _literals_of_write_a_program(rule: r.WriteAProgram):
    return [("instruction", prefix, False) for prefix in rule.prefixes if prefix]


def _first_not_alphanumeric(rule, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    """After strip() the first character is punctuation or non-ASCII only if the raw first one is no letter or
    digit (it is that character, or whitespace). Two rules ask: found once a batch."""
    if "first_not_alphanumeric" not in scan.memo:
        scan.memo["first_not_alphanumeric"] = _numpy(
            pc.invert(pc.match_substring_regex(_column(table, "instruction"), "^[A-Za-z0-9]")))
    return scan.memo["first_not_alphanumeric"].copy()


# What a match of each of NeedsMedia's patterns holds (its media words case-blind, their stems): "<" with a media
# word or "attach", "[" with a media word, "attached", "![", "://" (a link, or a link to a media file).
_MEDIA_STEMS = ("picture", "image", "photo", "img", "video", "audio", "screenshot")


def _needs_media(rule: r.NeedsMedia, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    mask = _may_fold_to_ascii(table, rule.fields)
    for name in rule.fields:
        media = scan.any_of((name, stem, True) for stem in _MEDIA_STEMS)
        mask |= scan.rows(name, "attached", True) | scan.rows(name, "![") | scan.rows(name, "://") | \
            (scan.rows(name, "<") & (media | scan.rows(name, "attach", True))) | (scan.rows(name, "[") & media)
    return mask


def _literals_of_needs_media(rule: r.NeedsMedia):
    return [(name, needle, blind) for name in rule.fields
            for needle, blind in [("<", False), ("[", False), ("![", False), ("://", False), ("attached", True),
                                  ("attach", True), *((stem, True) for stem in _MEDIA_STEMS)]]


def _merged_instructions(rule: r.MergedInstructions, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    """Every way the rule drops needs "Instruction" (any case the rule spells) or numbered Input: and Output:
    blocks; and the rule looks no further without "nstruction", "NSTRUCTION" or "nput"."""
    found = {needle: scan.rows("output", needle) for _, needle, _ in _literals_of_merged_instructions(rule)}
    return found["nstruction"] | found["NSTRUCTION"] | (found["nput"] & (found["utput"] | found["UTPUT"]))


def _literals_of_merged_instructions(rule: r.MergedInstructions):
    return [("output", needle, False) for needle in ("nstruction", "NSTRUCTION", "nput", "utput", "UTPUT")]


def _empty_code_block(rule: r.EmptyCodeBlock, table: pa.Table, scan: LiteralScan) -> np.ndarray:
    return scan.rows("output", "```").copy()


def _literals_of_empty_code_block(rule: r.EmptyCodeBlock):
    return [("output", "```", False)]


CANDIDATES: dict[type, Callable[..., np.ndarray | None]] = {
    r.NoInputMarker: _noinput_marker,
    r.ControlCharacters: _control_characters,
    r.EmptyOutput: _empty_output,
    r.TooShort: _too_short,
    r.TooLong: _too_long,
    r.Blacklist: _blacklist,
    r.WriteAProgram: _write_a_program,
    r.StartsWithPunctuation: _first_not_alphanumeric,
    r.StartsWithNonAscii: _first_not_alphanumeric,
    r.NeedsMedia: _needs_media,
    r.MergedInstructions: _merged_instructions,
    r.EmptyCodeBlock: _empty_code_block,
}


# The literal substrings each rule's candidates are found by, declared so that one pass finds them all.
LITERALS: dict[type, Callable[..., list[tuple[str, str, bool]]]] = {
    r.ControlCharacters: _literals_of_control_characters,
    r.WriteAProgram: _literals_of_write_a_program,
    r.NeedsMedia: _literals_of_needs_media,
    r.MergedInstructions: _literals_of_merged_instructions,
    r.EmptyCodeBlock: _literals_of_empty_code_block,
}


def _blacklist_certain(rule: r.Blacklist, table: pa.Table, found: np.ndarray) -> np.ndarray:
    """The rows blacklist surely drops: a field of ASCII text where RE2 finds the rule's own pattern. On ASCII
    text `\\b`, case-blind letters and the whitespace class (`_SPACE`) are Python's, so the match is `re`'s."""
    pattern = f"(?i)\\b{_blacklist_words(rule)}\\b"
    certain = np.zeros(table.num_rows, dtype=bool)
    rows = np.flatnonzero(found)
    for name in rule.fields:
        if not len(rows) or name not in table.column_names or not _is_text(table, name):
            continue
        column = table.column(name).take(rows)
        matched = pc.and_(pc.string_is_ascii(column), pc.match_substring_regex(column, pattern))
        certain[rows] |= _numpy(pc.fill_null(matched, False))  # a null field matches nothing
    return certain


# The rows a drop rule surely drops (given the record reaches it unchanged), among its candidates: too_short's and
# too_long's candidates are exactly their drops.
CERTAIN: dict[type, Callable[..., np.ndarray]] = {
    r.TooShort: lambda rule, table, found: found,
    r.TooLong: lambda rule, table, found: found,
    r.Blacklist: _blacklist_certain,
}


def candidate_rows(rules, table: pa.Table) -> np.ndarray:
    """(rules x rows) bool: which rule could act on which row (a rule without a candidate function: every row)."""
    return candidates_and_certain(rules, table)[0]


def candidates_and_certain(rules, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """candidate_rows, and (rules x rows) the candidates each drop rule surely drops (`CERTAIN`)."""
    matrix = np.ones((len(rules), table.num_rows), dtype=bool)
    certain = np.zeros((len(rules), table.num_rows), dtype=bool)
    scan = LiteralScan(table, [literal for rule in rules if type(rule) in LITERALS
                               for literal in LITERALS[type(rule)](rule)])
    for i, rule in enumerate(rules):
        find = CANDIDATES.get(type(rule))
        found = find(rule, table, scan) if find is not None else None
        if found is not None:
            matrix[i] = found
            if type(rule) in CERTAIN:
                certain[i] = CERTAIN[type(rule)](rule, table, found) & found
    return matrix, certain
