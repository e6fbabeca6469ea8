"""Named heuristic rules that drop or normalise Alpaca records.

Every rule has a snake_case ``name`` (the reason code written to rejection files), an
``action`` (``drop`` or ``normalise``), a default on/off state and a few parameters.
A :class:`RuleSet` runs its normalising rules first, then its drop rules, always in the
order of the table below; the first drop rule that fires gives the reason.

Rules
-----

==========================  =========  =======  =====================================================
rule                        action     default  what it does (parameters)
==========================  =========  =======  =====================================================
noinput_marker              normalise  on       input that only says "no input" (``<noinput>``,
                                                ``No input``, ``N/A``, ``None``, ``<none>``,
                                                ``Input: none``, ...) becomes "" (``markers``)
control_characters          normalise  on       removes C0/C1 control characters except ``\\n`` and
                                                ``\\t`` (``\\r\\n``/``\\r`` become ``\\n``, a BOM is
                                                removed); an output written as one line of prose
                                                with literal ``\\n`` escapes at line-break
                                                positions gets real line breaks; code and quoted
                                                data are left alone (``literal_newlines``,
                                                ``fields``, ``literal_newline_fields``)
empty_output                drop       on       output empty/whitespace or a placeholder: "N/A",
                                                "<nooutput>", "none" (``markers``)
too_short                   drop       on       instruction has <= 3 words, ``len(inst.split())``
                                                as in stanford_alpaca (``max_words``, ``count_cjk``)
too_long                    drop       on       instruction has > 150 words (``max_words``,
                                                ``count_cjk``)
blacklist                   drop       on       instruction contains a whole word/phrase the model
                                                cannot act on: image(s), graph(s), picture(s),
                                                file(s), map(s), draw, plot, go to, video, audio,
                                                music, flowchart, diagram; case-insensitive
                                                (``words``, ``fields``)
write_a_program             drop       on       instruction starts with "Write a program"
                                                (``prefixes``)
starts_with_punctuation     drop       on       first character of the instruction is in
                                                ``string.punctuation`` (``allow``)
starts_with_non_ascii       drop       on       first character of the instruction is not ASCII
needs_media                 drop       on       instruction/input refers to an attachment or link:
                                                ``<Picture Attached>``, ``<image>``, ``[image]``,
                                                "attached photo", markdown images, links to media
                                                files, and any http(s):// link (``links``,
                                                ``fields``)
merged_instructions         drop       on       output goes on with further generated tasks
                                                ("2. Instruction: ...", "### Instruction:",
                                                "Instruction:" ... "Input:"/"Output:" blocks)
empty_code_block            drop       on       output contains a fenced code block (three
                                                backticks) with nothing inside
output_echoes_instruction   drop       off      output equals the instruction (after
                                                ``records.normalise_text``)
==========================  =========  =======  =====================================================

The first six drop rules after ``empty_output`` are stanford_alpaca's own post-processing
(``generate_instruction.py``); the rest are classes of defects the community found in the
released 52K (AlpacaDataCleaned). The Alpaca rules are English-centric: ``too_short`` and
``starts_with_non_ascii`` drop almost every Chinese record; use
``default,-starts_with_non_ascii,too_short.count_cjk=true`` for CJK data.

Rule specs (``RuleSet.from_spec``, the CLI's ``--rules``) are comma lists, read left to right::

    default                                      the rules marked "on"
    all                                          every rule
    default,-blacklist                           default without blacklist
    too_short,too_long                           just these two
    default,too_long.max_words=300,output_echoes_instruction
                                                 set a parameter (this also enables the rule)
    blacklist.words=image|video                  list parameters take "|"-separated values

An empty or missing spec means ``default``.
"""
from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from alpaca_data.errors import UsageError
from alpaca_data.records import key_of, normalise_text

__all__ = [
    "RULES",
    "Blacklist",
    "ControlCharacters",
    "Drop",
    "DropRule",
    "EmptyCodeBlock",
    "EmptyOutput",
    "FilterReport",
    "MergedInstructions",
    "NeedsMedia",
    "NoInputMarker",
    "NormaliseRule",
    "OutputEchoesInstruction",
    "Rule",
    "RuleOutcome",
    "RuleSet",
    "StartsWithNonAscii",
    "StartsWithPunctuation",
    "TooLong",
    "TooShort",
    "WriteAProgram",
    "make_rejection",
]

TEXT_FIELDS: tuple[str, ...] = ("instruction", "input", "output")


def _text(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------
# Outcomes and reports


@dataclass(frozen=True)
class Drop:
    """What a drop rule returns when it fires: the reason code and a short human detail."""

    reason: str
    detail: str | None = None


@dataclass
class RuleOutcome:
    """The result of running a RuleSet on one record."""

    record: dict[str, Any]  # a copy, normalised where a normalising rule fired
    dropped_by: str | None = None
    normalised_by: list[str] = field(default_factory=list)
    detail: str | None = None  # why the drop rule fired (e.g. the blacklisted word)

    @property
    def kept(self) -> bool:
        return self.dropped_by is None


def make_rejection(reason: str, record: Mapping[str, Any], index: int, *, score: float | None = None,
                   most_similar: str | None = None) -> dict[str, Any]:
    """One row of a rejections file (shared by heuristic, dedup and ROUGE filters)."""
    return {
        "reason": reason,
        "action": "drop",
        "key": key_of(record),
        "instruction": _text(record, "instruction"),
        "input": _text(record, "input"),
        "output": _text(record, "output"),
        "score": score,
        "most_similar": most_similar,
        "index": index,
    }


@dataclass
class FilterReport:
    """Kept records (in input order), one rejection row per dropped record, and counts."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # reason -> records dropped
    normalised: dict[str, int] = field(default_factory=dict)  # rule -> records normalised
    kept_indices: list[int] = field(default_factory=list)  # input position of each kept record

    @property
    def total(self) -> int:
        return len(self.kept) + len(self.rejections)

    @property
    def dropped(self) -> int:
        return len(self.rejections)


# --------------------------------------------------------------------------------------------
# Rule base classes


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

    def test(self, record):
        if self._pattern is None:
            return None
        for name in self.fields:
            match = self._pattern.search(_text(record, name))
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
            for pattern in _MEDIA_PATTERNS:
                match = pattern.search(text)
                if match:
                    return f"{name} refers to media {match.group(0)[:60]!r}"
            if self.links:
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
_BY_NAME: dict[str, type[Rule]] = {rule.name: rule for rule in RULES}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _coerce(rule: type[Rule], param: str, default: Any, raw: str) -> Any:
    where = f"{rule.name}.{param}"
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise UsageError(f"rule parameter {where}: expected true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise UsageError(f"rule parameter {where}: expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise UsageError(f"rule parameter {where}: expected a number, got {raw!r}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split("|") if part.strip())
    return raw


def _param_defaults(rule: type[Rule]) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(rule):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # pragma: no cover - none today
            defaults[f.name] = f.default_factory()
    return defaults


def _unknown_rule(name: str) -> UsageError:
    return UsageError(f"unknown filter rule {name!r} (known: {', '.join(_BY_NAME)})")


class RuleSet:
    """An ordered set of configured rules.

    Normalising rules run first, then drop rules; known rules always run in the order of
    :data:`RULES` (custom Rule instances keep the order given, after the known ones).
    """

    def __init__(self, rules: Iterable[Rule]):
        rules = list(rules)
        order = {cls: i for i, cls in enumerate(RULES)}
        rules.sort(key=lambda r: (r.action != "normalise", order.get(type(r), len(order))))
        names = [r.name for r in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate rules in RuleSet: {names}")
        self.rules: list[Rule] = rules
        self._normalisers = [r for r in rules if r.action == "normalise"]
        self._droppers = [r for r in rules if r.action == "drop"]

    # -- construction --------------------------------------------------------------------

    @classmethod
    def default(cls) -> RuleSet:
        return cls(rule() for rule in RULES if rule.enabled_by_default)

    @classmethod
    def all(cls) -> RuleSet:
        return cls(rule() for rule in RULES)

    @classmethod
    def from_spec(cls, spec: str | None) -> RuleSet:
        """Build a RuleSet from a comma list; see the module docstring for the grammar."""
        if spec is None or not spec.strip():
            return cls.default()
        enabled: list[str] = []
        overrides: dict[str, dict[str, Any]] = {}

        def enable(name: str) -> None:
            if name not in enabled:
                enabled.append(name)

        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item in ("default", "all"):
                for rule in RULES:
                    if item == "all" or rule.enabled_by_default:
                        enable(rule.name)
            elif item.startswith("-"):
                name = item[1:].strip()
                if name not in _BY_NAME:
                    raise _unknown_rule(name)
                if name in enabled:
                    enabled.remove(name)
            elif "=" in item or "." in item:
                target, sep, raw = item.partition("=")
                name, dot, param = target.strip().partition(".")
                name, param = name.strip(), param.strip()
                if name not in _BY_NAME:
                    raise _unknown_rule(name)
                if not dot or not param or not sep:
                    raise UsageError(f"bad rule setting {item!r}: expected RULE.PARAM=VALUE")
                rule = _BY_NAME[name]
                defaults = _param_defaults(rule)
                if param not in defaults:
                    takes = ", ".join(defaults) or "no parameters"
                    raise UsageError(f"unknown parameter {name}.{param} ({name} takes: {takes})")
                overrides.setdefault(name, {})[param] = _coerce(rule, param, defaults[param], raw.strip())
                enable(name)
            else:
                if item not in _BY_NAME:
                    raise _unknown_rule(item)
                enable(item)
        return cls(_BY_NAME[name](**overrides.get(name, {})) for name in enabled)

    # -- introspection -------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Rule:
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({', '.join(self.names)})"

    def describe(self) -> list[dict[str, Any]]:
        """Every known rule (and any custom one in this set), in run order, for docs and CLI listings.

        Each dict: name, action, default ("on"/"off"), enabled (in this set), params (this set's
        values for enabled rules, the defaults otherwise), description.
        """
        mine = {rule.name: rule for rule in self.rules}
        rows = []
        extra = [rule for rule in self.rules if rule.name not in _BY_NAME]
        for cls_or_rule in [*RULES, *extra]:
            name = cls_or_rule.name
            rule = mine.get(name)
            params = rule.params() if rule is not None else {
                k: _plain(v) for k, v in _param_defaults(cls_or_rule).items()}
            rows.append({
                "name": name,
                "action": cls_or_rule.action,
                "default": "on" if cls_or_rule.enabled_by_default else "off",
                "enabled": rule is not None,
                "params": params,
                "description": cls_or_rule.description,
            })
        return rows

    # -- running -------------------------------------------------------------------------

    def check(self, record: Mapping[str, Any]) -> RuleOutcome:
        """Run the rules on one record. The input is never mutated; the outcome holds a copy."""
        current: dict[str, Any] = dict(record)
        normalised_by: list[str] = []
        for rule in self._normalisers:
            result = rule.apply(current)
            if isinstance(result, Drop):  # a custom rule may do both
                return RuleOutcome(current, result.reason, normalised_by, result.detail)
            if result is not None and result != current:
                current = dict(result)
                normalised_by.append(rule.name)
        for rule in self._droppers:
            result = rule.apply(current)
            if isinstance(result, Drop):
                return RuleOutcome(current, result.reason, normalised_by, result.detail)
            if isinstance(result, dict) and result != current:
                current = dict(result)
                normalised_by.append(rule.name)
        return RuleOutcome(current, None, normalised_by)

    def apply(self, records: Iterable[Mapping[str, Any]], *, progress: bool = True) -> FilterReport:
        """Run the rules on every record. Rejections hold the (normalised) record's text and key."""
        from alpaca_data.filters.dedup import track  # local: dedup imports this module

        report = FilterReport()
        for index, record in enumerate(track(records, "heuristic rules", progress)):
            outcome = self.check(record)
            for name in outcome.normalised_by:
                report.normalised[name] = report.normalised.get(name, 0) + 1
            if outcome.dropped_by is None:
                report.kept.append(outcome.record)
                report.kept_indices.append(index)
            else:
                report.rejections.append(make_rejection(outcome.dropped_by, outcome.record, index))
                report.counts[outcome.dropped_by] = report.counts.get(outcome.dropped_by, 0) + 1
        return report
