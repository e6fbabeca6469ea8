"""CLI subcommand modules. Each exposes `register(app)`; add new modules to the table below.

`alpaca-data CMD` imports only the module that owns CMD (`modules_for`): importing them all (duckdb, the eval
judges, the Hub client, the web viewer) cost ~0.4 s before any command could start. A test checks the table
against what each module registers.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# command name -> the module (in this package) that registers it
COMMANDS: dict[str, str] = {
    "validate": "record_cmds", "import": "record_cmds", "export": "record_cmds",
    "datasets": "store_cmds", "log": "store_cmds", "show": "store_cmds", "tag": "store_cmds", "diff": "store_cmds",
    "fsck": "store_cmds",
    "sql": "query_cmds", "diversity": "query_cmds",
    "filter": "filter_cmds", "dedup": "filter_cmds", "rules": "filter_cmds",
    "generate": "generate_cmds", "demo-teacher": "generate_cmds",
    "push": "hub_cmds", "pull": "hub_cmds", "card": "hub_cmds",
    "eval": "eval_cmds",
    "view": "view_cmds",
}
MODULE_NAMES: list[str] = list(dict.fromkeys(COMMANDS.values()))  # in help's order


def modules_for(command: str | None) -> list[ModuleType]:
    """The module that registers `command`, or every module (help, or a name that is no command: the CLI then
    lists them or says which it meant)."""
    names = [COMMANDS[command]] if command in COMMANDS else MODULE_NAMES
    return [importlib.import_module(f"{__name__}.{name}") for name in names]
