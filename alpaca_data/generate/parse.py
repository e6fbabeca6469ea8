"""Turn a teacher's response into tasks, tolerating the ways chat models drift from the format.

Handles: numbered or unnumbered labels (also plural, as small models write them), **bold** / __bold__ / `#`
heading decorations around labels, "Instruction 4:" and "Task 4" headers, extra blank lines, `###` / `---` separators, a preamble before the
first task and a closing remark after the last one, and no-input markers. A response cut by the token
limit (finish_reason == "length") loses its last task, as in the original. Every task that cannot be
used is counted under a named reason.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from alpaca_data.generate.prompt import NO_INPUT

_DECOR = r"(?:\*\*|__|\*|`)?"
_LABEL = re.compile(
    r"^[ \t>#*_\-]*"                       # markdown noise: quotes, headings, bullets, bold openers
    r"(?:(?:task\s*)?(\d{1,3})\s*[.):]\s*)?"  # optional task number "4." / "4)" / "Task 4:"
    + _DECOR + r"\s*"
    r"(instruction|input|output|response)s?"  # small models write "Instructions:" too
    r"(?:\s*(?:\d{1,3}|\(\d{1,3}\)))?"     # "Instruction 4:"
    r"\s*" + _DECOR + r"\s*[:：]\s*" + _DECOR + r"[ \t]*"
    r"(.*)$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^\s*(?:#{3,}|-{3,}|\*{3,}|={3,}|_{3,})\s*$")
_HEADER = re.compile(r"^\s*(?:#{1,6}\s*)?(?:\*\*|__)?\s*(?:task|example)\s*#?\s*\d{1,3}\s*[.:)]?\s*(?:\*\*|__)?\s*$"
                     r"|^\s*#{1,6}\s*\d{1,3}\s*[.)]?\s*$", re.IGNORECASE)
_REMARK = re.compile(r"^\s*(?:i hope|hope (?:this|these)|let me know|feel free|these (?:tasks|examples)|"
                     r"here (?:are|were)|that(?:'s| is) all|this (?:completes|concludes)|note:|"
                     r"i've (?:created|written|provided)|enjoy|good luck)", re.IGNORECASE)
_NO_INPUT_VALUES = {
    "", "<noinput>", "<no input>", "<no_input>", "noinput", "no input", "no input.", "none", "none.",
    "n/a", "na", "(none)", "(no input)", "[none]", "[no input]", "-", "--", "null", "nil", "empty",
    "no input needed", "no input required", "not applicable", "<noinput>.", "<none>", "<empty>",
}
_WS = re.compile(r"\s+")
_NOISE_LINE = re.compile(r"^[\s*_#>\-]*$")
_TRAILING_HASHES = re.compile(r"\n?\s*#{3,}\s*$")


@dataclass
class ParseResult:
    tasks: list[dict[str, str]] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    normalised: Counter = field(default_factory=Counter)



def normalise_input(value: str) -> tuple[str, bool]:
    """Map the many ways of saying "no input" to the empty string. Returns (text, was_marker)."""
    stripped = value.strip()
    key = stripped.strip("*_`\"' ").lower()
    if key in _NO_INPUT_VALUES or key == NO_INPUT:
        return "", bool(stripped)
    return stripped, False


def _clean_block(text: str) -> str:
    text = _TRAILING_HASHES.sub("", text.strip("\n"))
    lines = text.split("\n")
    # drop blank-line padding but keep inner blank lines that are part of the content
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and _NOISE_LINE.match(lines[-1]):
        lines.pop()  # a bold/heading opener left behind by a stop sequence ("**" before "20.")
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _strip_closing_remark(text: str) -> tuple[str, bool]:
    """Cut a trailing paragraph such as "I hope these tasks help!" off the last output."""
    paragraphs = re.split(r"\n\s*\n", text)
    if len(paragraphs) > 1 and _REMARK.match(paragraphs[-1]):
        return "\n\n".join(paragraphs[:-1]).rstrip(), True
    return text, False


def parse_response(text: str | None, finish_reason: str | None = "stop", *, open_index: int | None = None,
                   continuation: bool = True) -> ParseResult:
    """Parse one response.

    `open_index` is the number the prompt left open ("4. Instruction:"). With `continuation` (completions
    endpoints, or a chat reply that starts straight with the instruction text) the response is read as the
    rest of that open task.
    """
    result = ParseResult()
    if not text or not text.strip():
        result.failures["empty_response"] += 1
        return result
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    # Find labelled lines first; if the first label is not an Instruction, the text before it is the open
    # task's instruction (a completion that continues "4. Instruction:").
    parsed_lines = [(_LABEL.match(line) if not _SEPARATOR.match(line) else None) for line in lines]
    first_label = next((m.group(2).lower() for m in parsed_lines if m), None)
    tasks: list[dict[str, list[str] | None]] = []
    current: dict | None = None
    field_name: str | None = None
    seen_boundary = False
    if continuation and first_label in ("input", "output", None):
        current = {"instruction": [], "input": None, "output": None, "_repeat": False, "_open": True}
        tasks.append(current)
        field_name = "instruction"
    for line, match in zip(lines, parsed_lines):
        if _SEPARATOR.match(line) or _HEADER.match(line):
            field_name = None
            seen_boundary = True
            continue
        if match:
            label = match.group(2).lower()
            label = "output" if label == "response" else label
            rest = match.group(3)
            if label == "instruction" or current is None:
                current = {"instruction": None, "input": None, "output": None, "_repeat": False}
                tasks.append(current)
                if label != "instruction":
                    current["instruction"] = []
            if current.get(label) is not None and label != "instruction":
                current["_repeat"] = True
            current[label] = [rest] if rest.strip() else []
            field_name = label
            seen_boundary = False
            continue
        if field_name is None or current is None:
            continue  # preamble, stray text between tasks, or a remark after a separator
        if seen_boundary:
            continue
        current[field_name].append(line)

    if finish_reason == "length" and tasks:
        tasks.pop()
        result.failures["truncated"] += 1

    for index, raw in enumerate(tasks):
        instruction = _clean_block("\n".join(raw["instruction"] or []))
        if index == 0 and raw.get("_open"):
            paragraphs = re.split(r"\n\s*\n", instruction)
            if len(paragraphs) > 1 and _REMARK.match(paragraphs[0]):
                instruction = "\n\n".join(paragraphs[1:])  # "Sure! Here are more tasks:" preamble
                result.normalised["preamble"] += 1
        instruction = _WS.sub(" ", instruction).strip().strip("*_").strip()
        if raw["output"] is None:
            result.failures["missing_output" if instruction else "malformed_task"] += 1
            continue
        if raw["_repeat"]:
            result.failures["repeated_field"] += 1
            continue
        output = _clean_block("\n".join(raw["output"]))
        if index == len(tasks) - 1:
            output, cut = _strip_closing_remark(output)
            if cut:
                result.normalised["closing_remark"] += 1
        if raw["input"] is None:
            input_text, marker = "", False
            result.normalised["missing_input_label"] += 1
        else:
            input_text, marker = normalise_input(_clean_block("\n".join(raw["input"])))
        if marker:
            result.normalised["no_input_marker"] += 1
        if not instruction:
            result.failures["empty_instruction"] += 1
            continue
        if not output:
            result.failures["empty_output"] += 1
            continue
        if instruction[0].islower():
            instruction = instruction[0].upper() + instruction[1:]
        result.tasks.append({"instruction": instruction, "input": input_text, "output": output})
    if not tasks:
        result.failures["no_tasks"] += 1
    return result
