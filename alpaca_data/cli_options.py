"""Settings declared once, in a typed dataclass; command-line options derived from it.

A config dataclass marks each user-facing field with `setting(default, "help")` (or `required("help")`);
nested config dataclasses are flattened. `config_command(Config)` turns a function `fn(config, **extra)`
into a typer command whose options are those fields, plus `--config FILE` (TOML). Values come from
defaults < TOML file < flags given on the command line, and `Config.validate()` (when defined) checks them
before the command runs.

    @dataclass(kw_only=True)
    class Decoding:
        temperature: float = setting(1.0, "Sampling temperature.")

    @dataclass(kw_only=True)
    class RunConfig:
        dataset: str = required("Dataset to write.", "-d")
        decoding: Decoding = nested(Decoding)

    @app.command()
    @config_command(RunConfig)
    def run(config: RunConfig) -> None: ...
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

from alpaca_data.errors import UsageError, UserError

C = TypeVar("C")
_REQUIRED = object()
_META = "cli"


def setting(default: Any, help: str, *flags: str, hidden: bool = False) -> Any:
    """A config field that is also a command-line option (flag: --field-name unless `flags` are given)."""
    meta = {_META: {"help": help, "flags": flags, "hidden": hidden}}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def required(help: str, *flags: str) -> Any:
    """A config field the user must give (on the command line or in the TOML file)."""
    return dataclasses.field(metadata={_META: {"help": help, "flags": flags, "hidden": False, "required": True}})


def nested(cls: type) -> Any:
    """A nested config section; its settings appear as top-level options."""
    return dataclasses.field(default_factory=cls, metadata={_META: {"nested": True}})


@dataclasses.dataclass(frozen=True)
class _Option:
    path: tuple[str, ...]  # field names from the top-level config down to this field
    name: str  # python parameter name (unique across the flattened config)
    annotation: Any
    default: Any  # the dataclass default, or _REQUIRED
    flags: tuple[str, ...]
    help: str
    hidden: bool


def _options(cls: type, prefix: tuple[str, ...] = ()) -> list[_Option]:
    hints = typing.get_type_hints(cls)
    found: list[_Option] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META)
        if meta is None:
            continue
        if meta.get("nested"):
            found.extend(_options(hints[f.name], prefix + (f.name,)))
            continue
        if meta.get("required"):
            default = _REQUIRED
        elif f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()
        flags = meta["flags"] or ()
        if not any(flag.startswith("--") for flag in flags):
            flags = (f"--{f.name.replace('_', '-')}", *flags)
        found.append(_Option(prefix + (f.name,), f.name, hints[f.name], default, tuple(flags), meta["help"],
                             meta["hidden"]))
    names = [option.name for option in found]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise TypeError(f"{cls.__name__}: settings share a name across sections: {sorted(duplicates)}")
    return found


def _cli_annotation(annotation: Any) -> Any:
    """The type typer parses: Optional[X] for every option (None means 'not given'); tuples become lists."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _cli_annotation(args[0]) if len(args) == 1 else str
    if origin in (tuple, list):
        (item, *_) = typing.get_args(annotation) or (str,)
        return typing.Optional[list[item]]
    return typing.Optional[annotation]


def _shown_default(option: _Option) -> str | None:
    """The default as help shows it, plainly (`[default: True]`, `[default: 512]`); None: nothing shown.

    Written into the help text by us: click would show a string `show_default` as `[default: (512)]`."""
    if option.default is _REQUIRED or option.default is None:
        return None
    if isinstance(option.default, (tuple, list)):
        return ",".join(map(str, option.default)) or "none"
    return str(option.default) or "''"


def _flag_decls(option: _Option) -> tuple[str, ...]:
    base = typing.get_origin(option.annotation) is None and option.annotation is bool
    if base:  # --flag/--no-flag, so a TOML `true` can be turned off on the command line
        long = [flag for flag in option.flags if flag.startswith("--")]
        short = [flag for flag in option.flags if not flag.startswith("--")]
        return tuple(f"{flag}/--no-{flag[2:]}" for flag in long) + tuple(short)
    return option.flags


def _coerce(option: _Option, value: Any) -> Any:
    origin = typing.get_origin(option.annotation)
    if isinstance(value, list) and (origin is tuple or option.annotation is tuple):
        return tuple(value)
    return value


def load_toml(path: str | Path, allowed: set[str], kinds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A TOML file of settings: top-level keys or one table of them; `-` and `_` both accepted.

    With `kinds` (setting name -> its annotation), each value must have the type its flag takes (an int for
    `int`, a number for `float`, a list of strings for `tuple[str, ...]`...); every bad key is one line naming
    the file and the key, and nothing runs.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--config {path}: cannot read: {getattr(error, 'strerror', None) or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"--config {path}: {error}") from None
    values: dict[str, Any] = {}
    written: dict[str, str] = {}  # setting name -> the key as the file writes it (for messages)
    for key, value in raw.items():
        if isinstance(value, dict):  # a [section] table: its keys are settings too
            for inner, inner_value in value.items():
                values[inner.replace("-", "_")] = inner_value
                written[inner.replace("-", "_")] = f"{key}.{inner}"
        else:
            values[key.replace("-", "_")] = value
            written[key.replace("-", "_")] = key
    unknown = sorted(set(values) - allowed)
    problems = [f"--config {path}: unknown setting(s): {', '.join(unknown)}"] if unknown else []
    for name, value in values.items():
        if kinds is not None and name in kinds:
            expected = _toml_type_problem(kinds[name], value)
            if expected:
                problems.append(f"--config {path}: {written[name]} = {_shown(value)}: expected {expected}")
            elif _base_type(kinds[name]) is float:
                values[name] = float(value)
    if problems:
        raise UserError("\nerror: ".join(problems))  # one line per bad key, each as the runner prints the first
    return values


def _base_type(annotation: Any) -> Any:
    """`X` for `X | None` / `Optional[X]`; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _toml_type_problem(annotation: Any, value: Any) -> str | None:
    """What a setting of this annotation expects, when a TOML value does not have that type; None when it does."""
    base = _base_type(annotation)
    origin = typing.get_origin(base)
    if base is bool:
        return None if isinstance(value, bool) else "true or false"
    if base is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if base is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if base in (str, Path):
        return None if isinstance(value, str) else "a string"
    if origin in (tuple, list) or base in (tuple, list):
        (item, *_) = typing.get_args(base) or (str,)
        item = str if item is Ellipsis else item
        if not isinstance(value, list):
            return f"a list of {_plural(item)}"
        return None if all(_toml_type_problem(item, v) is None for v in value) else f"a list of {_plural(item)}"
    return None  # a type the flags parse in their own way: left to the config's validate()


def _plural(item: Any) -> str:
    return {str: "strings", int: "integers", float: "numbers", bool: "booleans"}.get(item, "values")


def _shown(value: Any) -> str:
    """A TOML value as the user wrote it, shortened."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif hasattr(value, "isoformat"):  # a TOML date or time
        text = value.isoformat()
    else:
        text = repr(value)
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= 60 else text[:57] + "..."


def build_config(cls: type[C], values: dict[str, Any]) -> C:
    """Make a config from flat setting values (names as in the dataclasses); missing ones keep defaults."""
    options = {option.name: option for option in _options(cls)}
    unknown = sorted(set(values) - set(options))
    if unknown:
        raise UsageError(f"unknown setting(s): {', '.join(unknown)}")
    missing = [option.flags[0] for option in options.values() if option.default is _REQUIRED and values.get(option.name) is None]
    if missing:
        raise UsageError(f"missing option(s): {', '.join(missing)}")
    config = _instantiate(cls, (), {name: _coerce(options[name], value) for name, value in values.items()})
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


def _instantiate(cls: type, prefix: tuple[str, ...], values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META) or {}
        if meta.get("nested"):
            kwargs[f.name] = _instantiate(hints[f.name], prefix + (f.name,), values)
        elif f.name in values and values[f.name] is not None and _META in f.metadata:
            kwargs[f.name] = values[f.name]
        elif meta.get("required"):
            kwargs[f.name] = None
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise UsageError(str(error)) from None


def flat_settings(config: Any) -> dict[str, Any]:
    """The config's settings as one flat dict (nested sections flattened), e.g. for a recipe or lineage."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata.get(_META) or {}
        if meta.get("nested"):
            flat.update(flat_settings(value))
        elif _META in f.metadata:
            flat[f.name] = list(value) if isinstance(value, tuple) else value
    return flat


def config_command(cls: type[C], *, toml: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate `fn(config, **extra)`: the command's options are `cls`'s settings (+ `--config FILE`).

    Parameters of `fn` other than the first (e.g. typer Arguments) stay as they are.
    """
    options = _options(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn).parameters.values())[1:]
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        taken = {p.name for p in params}
        for option in options:
            if option.name in taken:
                raise TypeError(f"{fn.__name__}: parameter {option.name!r} is also a setting of {cls.__name__}")
            shown = _shown_default(option)
            help_text = (option.help + (" [required]" if option.default is _REQUIRED else "")
                         + (f"  [default: {shown}]" if shown is not None else ""))
            params.append(inspect.Parameter(
                option.name, inspect.Parameter.KEYWORD_ONLY, annotation=_cli_annotation(option.annotation),
                default=typer.Option(None, *_flag_decls(option), help=help_text, show_default=False,
                                     hidden=option.hidden)))
        if toml:
            params.append(inspect.Parameter(
                "config_file", inspect.Parameter.KEYWORD_ONLY, annotation=typing.Optional[Path],
                default=typer.Option(None, "--config", help="TOML file of settings (flags given here win).")))

        def command(**kwargs: Any) -> Any:
            config_file = kwargs.pop("config_file", None)
            extra = {p.name: kwargs.pop(p.name) for p in own}
            values = (load_toml(config_file, {o.name for o in options}, {o.name: o.annotation for o in options})
                      if config_file else {})
            values.update({name: value for name, value in kwargs.items() if value is not None})
            return fn(build_config(cls, values), **extra)

        command.__signature__ = inspect.Signature(params)  # typer reads the options from here
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        return command

    return decorate
