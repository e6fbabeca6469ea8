"""What the content filter reads: text undone of the tricks that hide words from a word-based classifier.

`normalise(text)` is what `LocalModerator` scores (the text the user sees is never changed):
1. NFKC: full-width letters (`ｙｏｕ`), mathematical alphanumerics (`𝐲𝐨𝐮`), circled and other compatibility
   forms become plain letters; the ideographic space becomes a space.
2. Invisible characters are dropped: zero-width spaces and joiners, word joiner, BOM, soft hyphen (every format
   character, category Cf), variation selectors, fillers that render blank; combining marks on Latin letters
   (`f̸u̸c̸k̸`, accents stacked to hide a word) go too.
3. Lookalikes: in a word made only of Latin letters and lookalikes (Cyrillic `у` `о` `а` `е`, Greek `ο` `ι`, small
   capitals, ...), each lookalike becomes the Latin letter it imitates. Words of real Cyrillic or Greek (any
   letter without a Latin twin) are left alone.
4. Spaced letters: a run of three or more single letters with one short separator between them (`y o u`,
   `i.d.i.o.t`, `s-t-u-p-i-d`) is joined into a word; two spaces, a slash or a gap unlike the gaps on both sides
   of it (the space in `f.u.c.k y.o.u`) end the word. A run
   joined into one long unknown word (`y o u a r e a n i d i o t`) is split back into words the classifier
   knows (`segment`) when they are words, not syllables (3+ letters on average).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection

# Lookalikes of Latin letters (Unicode's confusables, the common ones: Cyrillic, Greek, Latin small capitals and
# IPA letters, Armenian); NFKC has already mapped full-width and mathematical letters.
_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m", "н": "h",
    "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "ў": "y", "х": "x", "ѕ": "s", "һ": "h", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ү": "y", "ь": "b",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "І": "I", "Ї": "I", "Ј": "J", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Һ": "H", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    "Ү": "Y",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j", "ω": "w",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Latin small capitals and IPA letters
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ғ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ʏ": "y", "ᴢ": "z", "ı": "i", "ɑ": "a", "ɩ": "i", "ɛ": "e", "ʋ": "u",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q",
})
_LOOKALIKES = frozenset(chr(code) for code in _CONFUSABLES)
# Characters that render as nothing but are not format characters (Cf is dropped by category).
_INVISIBLE = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0") | frozenset(map(chr, range(0xFE00, 0xFE10)))
_WORD = re.compile(r"\w+")
_SEP = r"[ \t\n.\-_*·•'+~|/\\,:]"
# three or more single letters (no letter or digit right before or after each), a short separator between each
_SPACED = re.compile(rf"(?<![^\W_])[A-Za-z](?:{_SEP}{{1,3}}[A-Za-z](?![^\W_])){{2,}}")
_LETTERS = re.compile(r"[A-Za-z]")
_GAPS = re.compile(rf"{_SEP}+")
_WORD_BREAK = re.compile(r"\s{2,}|[/|\n]")
_LONGEST_WORD = 20
_SEGMENT_FROM = 7  # letters run together before a split into words is tried (shorter: one word, kept whole)
_MEAN_WORD = 3  # a split is kept when its words are this long on average ("in su la ti on" is not)


def _invisible(char: str) -> bool:
    return char in _INVISIBLE or unicodedata.category(char) == "Cf" or 0xE0100 <= ord(char) <= 0xE01EF


def _drop_invisible(text: str) -> str:
    out: list[str] = []
    for char in text:
        if _invisible(char):
            continue
        if out and unicodedata.category(char) == "Mn" and out[-1].isascii() and out[-1].isalpha():
            continue  # a combining mark stacked on a Latin letter
        out.append(char)
    return "".join(out)


def _unmask_word(match: re.Match) -> str:
    word = match.group()
    if not any(char in _LOOKALIKES for char in word):
        return word
    if all(char in _LOOKALIKES or char.isascii() for char in word):
        return word.translate(_CONFUSABLES)
    return word  # a real Cyrillic or Greek word: some letter has no Latin twin


def segment(word: str, known: Collection[str]) -> list[str] | None:
    """`word` cut into known words (fewest pieces, then the longest), or None when it cannot be."""
    lower = word.lower()
    best: list[tuple[int, int, int] | None] = [None] * (len(lower) + 1)  # (pieces, -sum of squares, start)
    best[0] = (0, 0, 0)
    for end in range(1, len(lower) + 1):
        for start in range(max(0, end - _LONGEST_WORD), end):
            if best[start] is None or lower[start:end] not in known:
                continue
            pieces, squares, _ = best[start]
            candidate = (pieces + 1, squares - (end - start) ** 2, start)
            if best[end] is None or candidate < best[end]:
                best[end] = candidate
    if best[-1] is None:
        return None
    cuts, end = [], len(lower)
    while end > 0:
        start = best[end][2]
        cuts.append(word[start:end])
        end = start
    return cuts[::-1]


def _join_spaced(text: str, known: Collection[str] | None) -> str:
    def join(match: re.Match) -> str:
        run = match.group()
        letters, gaps = _LETTERS.findall(run), _GAPS.findall(run)
        words = [letters[0]]
        for index, (gap, letter) in enumerate(zip(gaps, letters[1:])):
            neighbours = [other for other in gaps[max(index - 1, 0):index] + gaps[index + 1:index + 2]
                          if not _WORD_BREAK.search(other)]
            if _WORD_BREAK.search(gap) or (neighbours and all(other != gap for other in neighbours)):
                words.append("")  # two spaces, a slash, or a gap unlike those on both sides (`f.u.c.k y.o.u`)
            words[-1] += letter
        return " ".join(_split_joined(word, known) for word in words)

    return _SPACED.sub(join, text)


def _split_joined(letters: str, known: Collection[str] | None) -> str:
    pieces = segment(letters, known) if known and len(letters) >= _SEGMENT_FROM else None
    if pieces and letters.lower() not in known and len(letters) >= _MEAN_WORD * len(pieces):
        return " ".join(pieces)  # whole words run together, not one unknown word cut into syllables
    return letters


def normalise(text: str, known_words: Collection[str] | None = None) -> str:
    """`text` as the classifier should read it (see the module's docstring); `known_words` (lowercase) lets a
    long run of spaced letters be split back into words."""
    if not text.isascii():  # ASCII has no compatibility forms, invisible characters or lookalikes
        text = _drop_invisible(unicodedata.normalize("NFKC", text))
        if not text.isascii():
            text = _WORD.sub(_unmask_word, text)
    return _join_spaced(text, known_words)


def normaliser(known_words: Collection[str] | None = None) -> Callable[[str], str]:
    return lambda text: normalise(text, known_words)
