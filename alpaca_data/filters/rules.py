"""The heuristic rules themselves: one small class per rule (see `heuristics` for the table and specs)."""
from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from alpaca_data.filters.report import TEXT_FIELDS, Drop, _text
from alpaca_data.records import normalise_text


@dataclass
class Rule:
    """A named rule. Dataclass fields are its parameters (overridable from a spec)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    action: ClassVar[str] = "drop"
    enabled_by_default: ClassVar[bool] = True

    def apply(self, record: Mapping[str, Any]) -> Drop | dict[str, Any] | None:
        """Return a Drop, a normalised copy of the record, or None (nothing to do)."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class DropRule(Rule):
    action: ClassVar[str] = "drop"

    def test(self, record: Mapping[str, Any]) -> str | None:
        """Return a (non-empty) detail string when the record must be dropped."""
        raise NotImplementedError

    def apply(self, record: Mapping[str, Any]) -> Drop | None:
        detail = self.test(record)
        return Drop(self.name, detail) if detail else None


@dataclass
class NormaliseRule(Rule):
    action: ClassVar[str] = "normalise"

    def normalise(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """Return a new dict when something changed, else None. Never mutate `record`."""
        raise NotImplementedError

    def apply(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        return self.normalise(record)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------------------------
# Placeholder markers ("<noinput>", "N/A", ...)

_MARKER_EDGE = "<>[](){}\"'`*.,:;!?/\\-_ \t\n\r"
_LABEL = re.compile(r"^(?:input|output)\s*[:：]\s*", re.IGNORECASE)
_SQUASH = re.compile(r"[\s_\-]+")


def _canonical_marker(text: str) -> str:
    """"<No Input>" / "Input: none." / "[N/A]" -> "noinput" / "none" / "n/a"."""
    value = text.strip().casefold().strip(_MARKER_EDGE)
    value = _LABEL.sub("", value).strip(_MARKER_EDGE)
    return _SQUASH.sub("", value)


_NOINPUT_MARKERS = (
    "noinput", "no input", "no input provided", "no input required", "no input needed",
    "no input given", "no input necessary", "none", "n/a", "not applicable",
)
_NOOUTPUT_MARKERS = ("nooutput", "no output", "n/a", "none")


@dataclass
class NoInputMarker(NormaliseRule):
    name: ClassVar[str] = "noinput_marker"
    description: ClassVar[str] = (
        'input that only says there is no input ("<noinput>", "No input", "N/A", "None", "<none>", '
        '"Input: none", ...; case, brackets and punctuation ignored) becomes ""')
    markers: tuple[str, ...] = _NOINPUT_MARKERS

    def __post_init__(self) -> None:
        self._canon = {_canonical_marker(m) for m in self.markers}

    def normalise(self, record):
        value = _text(record, "input")
        if not value or not value.strip():
            return None
        if len(value) <= 64 and _canonical_marker(value) in self._canon:
            return {**record, "input": ""}
        return None


# --------------------------------------------------------------------------------------------
# Control characters

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x85]")
_LINE_BREAK_OR_CONTROL = re.compile(r"[\r\x0b\x0c\x85\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff]")
_LITERAL_NEWLINE = re.compile(r"\\n")
# Literal "\n" in code or data (print("a\n"), python('...'), "id,name\n1,Ann") is meant; leave
# text that looks like code or quotes a string alone.
_CODE_HINTS = re.compile(r"[`{}=<>\"]|\\[tr\"'\\]|\(['\"]|['\"]\)|\b(?:print|printf|echo|def|return|import)\b")
_BREAK_BEFORE = set(".!?,;:)]")


def _prose_with_literal_newlines(text: str) -> bool:
    """True when text has no real line break and every literal \\n sits where a line break would
    (after sentence punctuation or next to another \\n), as in a poem or paragraphs."""
    if "\n" in text or "\\n" not in text or _CODE_HINTS.search(text):
        return False
    for match in _LITERAL_NEWLINE.finditer(text):
        start, end = match.span()
        if not (text[start - 1:start] in _BREAK_BEFORE or text[start - 2:start] == "\\n"
                or text[end:end + 2] == "\\n"):
            return False
    return True


@dataclass
class ControlCharacters(NormaliseRule):
    name: ClassVar[str] = "control_characters"
    description: ClassVar[str] = (
        "removes stray C0/C1 control characters except newline and tab (CR LF and CR become LF, a BOM "
        "is removed); with literal_newlines, an output with no real line breaks whose literal \\n "
        "escapes all sit at line-break positions (prose, poems) gets real ones; code and quoted "
        "data are left alone")
    literal_newlines: bool = True
    fields: tuple[str, ...] = TEXT_FIELDS
    literal_newline_fields: tuple[str, ...] = ("output",)

    def _clean(self, name: str, text: str) -> str:
        if _LINE_BREAK_OR_CONTROL.search(text):
            text = _LINE_BREAKS.sub("\n", text)
            text = _CONTROL.sub("", text)
        if (self.literal_newlines and name in self.literal_newline_fields
                and _prose_with_literal_newlines(text)):
            text = _LITERAL_NEWLINE.sub("\n", text)
        return text

    def normalise(self, record):
        changed: dict[str, str] = {}
        for name in dict.fromkeys((*self.fields, *self.literal_newline_fields)):
            value = record.get(name)
            if isinstance(value, str) and value:
                cleaned = self._clean(name, value)
                if cleaned != value:
                    changed[name] = cleaned
        return {**record, **changed} if changed else None


# --------------------------------------------------------------------------------------------
# Alpaca's own filters (stanford_alpaca generate_instruction.py)

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_TOKENS = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


def count_words(text: str, count_cjk: bool = False) -> int:
    """Alpaca's word count, ``len(text.split())``; with count_cjk each CJK character is a word."""
    if count_cjk:
        return len(_CJK_TOKENS.findall(text))
    return len(text.split())


@dataclass
class EmptyOutput(DropRule):
    name: ClassVar[str] = "empty_output"
    description: ClassVar[str] = (
        'output is empty or whitespace, or a placeholder: "N/A", "<nooutput>", "none"')
    markers: tuple[str, ...] = _NOOUTPUT_MARKERS

    def __post_init__(self) -> None:
        self._canon = {_canonical_marker(m) for m in self.markers}

    def test(self, record):
        value = _text(record, "output")
        if not value.strip():
            return "empty output"
        if len(value) <= 64 and _canonical_marker(value) in self._canon:
            return f"placeholder output {value.strip()!r}"
        return None


@dataclass
class TooShort(DropRule):
    name: ClassVar[str] = "too_short"
    description: ClassVar[str] = "instruction has <= max_words words (len(instruction.split()), as Alpaca)"
    max_words: int = 3
    count_cjk: bool = False

    def test(self, record):
        words = count_words(_text(record, "instruction"), self.count_cjk)
        return f"{words} words" if words <= self.max_words else None


@dataclass
class TooLong(DropRule):
    name: ClassVar[str] = "too_long"
    description: ClassVar[str] = "instruction has > max_words words (len(instruction.split()), as Alpaca)"
    max_words: int = 150
    count_cjk: bool = False

    def test(self, record):
        words = count_words(_text(record, "instruction"), self.count_cjk)
        return f"{words} words" if words > self.max_words else None


_ALPACA_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram",
)


@dataclass
class Blacklist(DropRule):
    name: ClassVar[str] = "blacklist"
    description: ClassVar[str] = (
        "instruction contains a whole word or phrase a text model cannot act on (Alpaca's list: image, "
        "graph, picture, file, map, draw, plot, go to, video, audio, music, flowchart, diagram, ...); "
        "case-insensitive")
    words: tuple[str, ...] = _ALPACA_BLACKLIST
    fields: tuple[str, ...] = ("instruction",)

    def __post_init__(self) -> None:
        alternatives = sorted((r"\s+".join(map(re.escape, w.split())) for w in self.words if w.strip()),
                              key=len, reverse=True)
        self._pattern = (re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)
                         if alternatives else None)
        # A text can only match a word or phrase whose every word it contains (`_folded`, as IGNORECASE
        # compares ASCII letters): most texts skip the regex scan. Words beyond ASCII always scan.
        words = [w for w in self.words if w.strip()]
        self._needs = [tuple(w.casefold().split()) for w in words] if all(w.isascii() for w in words) else None
        self._single = tuple(parts[0] for parts in self._needs or () if len(parts) == 1)
        self._phrases = tuple(parts for parts in self._needs or () if len(parts) > 1)

    def _may_match(self, folded: str) -> bool:
        for word in self._single:
            if word in folded:
                return True
        return any(all(part in folded for part in parts) for parts in self._phrases)

    def test(self, record):
        if self._pattern is None:
            return None
        for name in self.fields:
            text = _text(record, name)
            if self._needs is not None and not self._may_match(_folded(text)):
                continue
            match = self._pattern.search(text)
            if match:
                return f"{name} contains {match.group(0)!r}"
        return None


@dataclass
class WriteAProgram(DropRule):
    name: ClassVar[str] = "write_a_program"
    description: ClassVar[str] = (
        'instruction starts with "Write a program" (exact prefix, as Alpaca; "Write a Python program" '
        "is kept)")
    prefixes: tuple[str, ...] = ("Write a program",)

    def test(self, record):
        instruction = _text(record, "instruction").strip()
        for prefix in self.prefixes:
            if prefix and instruction.startswith(prefix):
                return f"starts with {prefix!r}"
        return None


@dataclass
class StartsWithPunctuation(DropRule):
    name: ClassVar[str] = "starts_with_punctuation"
    description: ClassVar[str] = "first character of the instruction is ASCII punctuation (string.punctuation)"
    allow: str = ""

    def test(self, record):
        instruction = _text(record, "instruction").strip()
        first = instruction[:1]
        if first and first in string.punctuation and first not in self.allow:
            return f"starts with {first!r}"
        return None


@dataclass
class StartsWithNonAscii(DropRule):
    name: ClassVar[str] = "starts_with_non_ascii"
    description: ClassVar[str] = "first character of the instruction is not ASCII"

    def test(self, record):
        first = _text(record, "instruction").strip()[:1]
        if first and not first.isascii():
            return f"starts with {first!r} (U+{ord(first):04X})"
        return None


# --------------------------------------------------------------------------------------------
# Classes found in the released 52K (AlpacaDataCleaned)

_MEDIA_WORDS = r"(?:picture|image|photo|photograph|img|video|audio|screenshot)s?"
_MEDIA_PATTERNS = (
    re.compile(rf"<\s*{_MEDIA_WORDS}(?:\s+attached)?\s*/?>", re.IGNORECASE),  # <image>, <Picture Attached>
    re.compile(r"<[^<>\n]{0,40}\battach(?:ed|ment)\b[^<>\n]{0,40}>", re.IGNORECASE),  # <attached image>
    re.compile(rf"\[\s*{_MEDIA_WORDS}(?:\s+attached)?\s*\]", re.IGNORECASE),  # [image]
    re.compile(r"\battached\s+(?:photo|photograph|image|picture|video|audio|file|screenshot|document|"
               r"chart|graph|diagram)s?\b", re.IGNORECASE),
    re.compile(rf"\b{_MEDIA_WORDS}\s+(?:is\s+|are\s+)?attached\b", re.IGNORECASE),
    re.compile(r"!\[[^\]\n]*\]\([^)\s]+"),  # markdown image
    re.compile(r"(?:https?|ftp)://\S+?\.(?:jpe?g|png|gif|bmp|webp|svg|tiff?|mp3|wav|ogg|mp4|mov|avi|"
               r"webm|pdf)\b", re.IGNORECASE),  # a link to a media file
)
_LINK = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
def _folded(text: str) -> str:
    """Text in which an ASCII word that `re.IGNORECASE` finds in `text` is found by `in`: case-folded, and the
    dotless i (which IGNORECASE matches with i, casefold keeps) made an i. Checked for every code point."""
    return text.casefold().replace("\u0131", "i")


# Text (folded) that every match of the pattern at the same index contains: a cheap test before the scan.
_MEDIA_NEEDS = (("<",), ("<", "attach"), ("[",), ("attached",), ("attached",), ("![",), ("://",))


@dataclass
class NeedsMedia(DropRule):
    name: ClassVar[str] = "needs_media"
    description: ClassVar[str] = (
        'instruction or input refers to something attached or linked: "<Picture Attached>", "<image>", '
        '"[image]", "attached photo", markdown images, links to media files; with links=true also any '
        "http(s):// link")
    links: bool = True
    fields: tuple[str, ...] = ("instruction", "input")

    def test(self, record):
        for name in self.fields:
            text = _text(record, name)
            if not text:
                continue
            if "<" not in text and "[" not in text and "://" not in text and "attached" not in _folded(text):
                continue  # every match of a pattern contains one of these: most texts need no scan
            folded = _folded(text)
            for needs, pattern in zip(_MEDIA_NEEDS, _MEDIA_PATTERNS):
                if all(part in folded for part in needs):
                    match = pattern.search(text)
                    if match:
                        return f"{name} refers to media {match.group(0)[:60]!r}"
            if self.links and "://" in text:
                match = _LINK.search(text)
                if match:
                    return f"{name} contains link {match.group(0)[:60]!r}"
        return None


_MERGED_PATTERNS = (
    # "2. Instruction: ..." -- the generator kept going with the next numbered task
    re.compile(r"^[ \t]*\d{1,3}[ \t]*[.)][ \t]*(?:Instruction|INSTRUCTION|instruction)[ \t]*[:：]", re.MULTILINE),
    # "### Instruction:" -- a prompt-template block inside the answer
    re.compile(r"^[ \t]*#{2,}[ \t]*(?:Instruction|INSTRUCTION)\b", re.MULTILINE),
)
_NUMBERED_INPUT = re.compile(r"^[ \t]*\d{1,3}[ \t]*[.)][ \t]*(?:Input|INPUT)[ \t]*[:：]", re.MULTILINE)
_NUMBERED_OUTPUT = re.compile(r"^[ \t]*\d{1,3}[ \t]*[.)][ \t]*(?:Output|OUTPUT)[ \t]*[:：]", re.MULTILINE)
_LABEL_INSTRUCTION = re.compile(r"^[ \t]*(?:Instruction|INSTRUCTION)[ \t]*[:：]", re.MULTILINE)
_LABEL_IO = re.compile(r"^[ \t]*(?:Input|INPUT|Output|OUTPUT)[ \t]*[:：]", re.MULTILINE)


@dataclass
class MergedInstructions(DropRule):
    name: ClassVar[str] = "merged_instructions"
    description: ClassVar[str] = (
        'output goes on with further generated tasks: a line like "2. Instruction:", a "### Instruction" '
        'block, numbered "N. Input:"/"N. Output:" blocks, or an "Instruction:" line after the answer '
        'followed by "Input:"/"Output:"')

    def test(self, record):
        output = _text(record, "output")
        if "nstruction" not in output and "NSTRUCTION" not in output and "nput" not in output:
            return None
        for pattern in _MERGED_PATTERNS:
            match = pattern.search(output)
            if match:
                return f"output contains {match.group(0).strip()!r}"
        if _NUMBERED_INPUT.search(output) and _NUMBERED_OUTPUT.search(output):
            return "output contains numbered Input:/Output: blocks"
        body = output.lstrip()
        for match in _LABEL_INSTRUCTION.finditer(body):
            if match.start() > 0 and _LABEL_IO.search(body, match.end()):
                return "output contains Instruction:/Input:/Output: blocks after the answer"
        return None


_FENCE = re.compile(r"```")


@dataclass
class EmptyCodeBlock(DropRule):
    name: ClassVar[str] = "empty_code_block"
    description: ClassVar[str] = "output contains a fenced code block (```) with nothing inside"

    def test(self, record):
        output = _text(record, "output")
        if output.count("```") < 2:
            return None
        fences = [m.start() for m in _FENCE.finditer(output)]
        for opening, closing in zip(fences[0::2], fences[1::2]):
            inside = output[opening + 3:closing]
            first_line, newline, rest = inside.partition("\n")
            # "```python\n```": the first line is the language tag; "``` ```" has no tag
            body = rest if newline and re.fullmatch(r"[\w+#.\-]*\s*", first_line) else inside
            if not body.strip():
                return "empty fenced code block"
        return None


@dataclass
class OutputEchoesInstruction(DropRule):
    name: ClassVar[str] = "output_echoes_instruction"
    description: ClassVar[str] = "output equals the instruction (compared after records.normalise_text)"
    enabled_by_default: ClassVar[bool] = False

    def test(self, record):
        output = normalise_text(_text(record, "output"))
        if output and output == normalise_text(_text(record, "instruction")):
            return "output repeats the instruction"
        return None


# --------------------------------------------------------------------------------------------
# Rule sets

#: Every known rule, in the order they run (normalising rules first).
RULES: tuple[type[Rule], ...] = (
    NoInputMarker,
    ControlCharacters,
    EmptyOutput,
    TooShort,
    TooLong,
    Blacklist,
    WriteAProgram,
    StartsWithPunctuation,
    StartsWithNonAscii,
    NeedsMedia,
    MergedInstructions,
    EmptyCodeBlock,
    OutputEchoesInstruction,
)
