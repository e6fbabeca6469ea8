"""The rule set: named heuristic rules that drop or normalise Alpaca records, as one filter step, and the
parser of rule specs (`--rules`).

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
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from alpaca_data.errors import UsageError
from alpaca_data.filters.report import Drop
from alpaca_data.filters.rules import (
    RULES,
    Blacklist,
    ControlCharacters,
    DropRule,
    EmptyCodeBlock,
    EmptyOutput,
    MergedInstructions,
    NeedsMedia,
    NoInputMarker,
    NormaliseRule,
    OutputEchoesInstruction,
    Rule,
    StartsWithNonAscii,
    StartsWithPunctuation,
    TooLong,
    TooShort,
    WriteAProgram,
    _plain,
)
from alpaca_data.filters.steps import Step, Verdict

__all__ = [
    "RULES",
    "Blacklist",
    "ControlCharacters",
    "Drop",
    "DropRule",
    "EmptyCodeBlock",
    "EmptyOutput",
    "MergedInstructions",
    "NeedsMedia",
    "NoInputMarker",
    "NormaliseRule",
    "OutputEchoesInstruction",
    "Rule",
    "RuleSet",
    "StartsWithNonAscii",
    "StartsWithPunctuation",
    "TooLong",
    "TooShort",
    "WriteAProgram",
]

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


class RuleSet(Step):
    """An ordered set of configured rules, run as one filter step ("rules").

    Normalising rules run first, then drop rules; known rules always run in the order of
    :data:`RULES` (custom Rule instances keep the order given, after the known ones).
    """

    name = "rules"
    stateless = True  # a verdict depends on the record alone: batches may be checked in any process

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

    def settings(self) -> dict[str, Any]:
        return {"rules": [{"name": rule.name, "params": rule.params()} for rule in self.rules]}

    def check_table(self, table, records: list[dict[str, Any]]) -> list[Verdict]:
        """`check` on each row of an Arrow batch (`records`: its rows as dicts), running on each row only the
        rules that could act on it (`filters.candidates`): same verdicts, most rows meet no rule at all."""
        touched, _, exact = self.check_rows(table)
        for rows in exact.values():
            touched.update((row, self.check(records[row])) for row in rows.tolist())  # with the rule's detail
        return [touched.get(row) or Verdict(record) for row, record in enumerate(records)]

    def check_rows(self, table) -> tuple[dict[int, Verdict], dict[int, dict[str, Any]], dict[str, np.ndarray]]:
        """`check_table`'s verdicts for the rows some rule could act on, by row (every other row is kept as it
        is), and those rows as records: only they are read into Python. The rows their first candidate rule
        surely drops (`candidates.CERTAIN`: no rule before it can act, so the record reaches it as it is) are not
        read at all: they come as {reason: rows}, dropped as they are."""
        from alpaca_data.filters.candidates import candidates_and_certain
        from alpaca_data.store.tables import table_to_records

        matrix, certain = candidates_and_certain(self.rules, table)
        rows = np.flatnonzero(matrix.any(axis=0))
        if not rows.size:
            return {}, {}, {}
        first = np.argmax(matrix[:, rows], axis=0)  # each candidate row's first candidate rule
        sure = certain[first, rows]
        exact = {self.rules[i].name: rows[sure & (first == i)] for i in np.unique(first[sure]).tolist()}
        rows = rows[~sure]
        if not rows.size:
            return {}, {}, exact
        # a batch has few distinct sets of candidate rules: each is listed once. A row's set is its column of
        # the matrix packed into bytes, compared as one opaque value (`unique(axis=0)` on the boolean matrix
        # took 20x as long)
        packed = np.ascontiguousarray(np.packbits(matrix[:, rows], axis=0).T)
        sets, pattern_of_row = np.unique(packed.view(f"V{packed.shape[1]}").reshape(-1), return_inverse=True)
        distinct = np.unpackbits(sets.view(np.uint8).reshape(len(sets), -1), axis=1, count=len(self.rules))
        which = [np.flatnonzero(pattern).tolist() for pattern in distinct]
        pattern_of_row = pattern_of_row.reshape(-1)
        records = dict(zip(rows.tolist(), table_to_records(table.take(rows))))
        verdicts = {}
        for (row, record), pattern in zip(records.items(), pattern_of_row.tolist()):
            verdict = self._check_some(record, which[pattern])
            verdicts[row] = verdict if verdict is not None else self.check(record)
        return verdicts, records, exact

    def _check_some(self, record: Mapping[str, Any], which: list[int]) -> Verdict | None:
        """The rules `which` (in order), the others being unable to act; None when one changed the record,
        since the others were judged on the record as it was (`check` then decides)."""
        for index in which:
            result = self.rules[index].apply(record)
            if isinstance(result, Drop):
                return Verdict(dict(record), result.reason, detail=result.detail)
            if result is not None and result != record:
                return None
        return Verdict(record)

    def check(self, record: Mapping[str, Any]) -> Verdict:
        """Run the rules on one record: normalising rules first, then drop rules; the first drop wins.
        The input is never mutated; the verdict holds a (normalised) copy."""
        current: dict[str, Any] = dict(record)
        normalised_by: list[str] = []
        for rule in self._normalisers:
            result = rule.apply(current)
            if isinstance(result, Drop):  # a custom rule may do both
                return Verdict(current, result.reason, normalised_by=tuple(normalised_by), detail=result.detail)
            if result is not None and result != current:
                current = dict(result)
                normalised_by.append(rule.name)
        for rule in self._droppers:
            result = rule.apply(current)
            if isinstance(result, Drop):
                return Verdict(current, result.reason, normalised_by=tuple(normalised_by), detail=result.detail)
            if isinstance(result, dict) and result != current:
                current = dict(result)
                normalised_by.append(rule.name)
        return Verdict(current, normalised_by=tuple(normalised_by))
