"""CLI subcommand modules. Each exposes `register(app)`; add new modules to the list below."""
from alpaca_data.commands import (
    eval_cmds,
    filter_cmds,
    generate_cmds,
    hub_cmds,
    query_cmds,
    record_cmds,
    store_cmds,
    view_cmds,
)

ALL_COMMAND_MODULES = [record_cmds, store_cmds, query_cmds, filter_cmds, generate_cmds, hub_cmds, eval_cmds, view_cmds]
