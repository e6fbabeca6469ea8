"""What the spaCy parse said about each instruction, kept in the store so a text is parsed once per model.

`alpaca-data diversity` on a revision, then on its filtered child (or on the same one again), parses only the
first lines it has not seen: the answers (root verb, direct object) are a pure function of the text, the model
and its version, and the parse rule of `analyze.diversity`, all of which name the cache file. A damaged or
unreadable cache is ignored and rewritten, never trusted in part; `--no-cache` skips it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from alpaca_data.durable import atomic_file

PARSE_RULE_VERSION = 2  # bump when first_line / first_verb_and_object / load_parser change what a text yields
# (2: the layers multiply with numpy's BLAS, not blis)
_SCHEMA = pa.schema([("text", pa.string()), ("verb", pa.string()), ("object", pa.string())])


class ParseCache:
    def __init__(self, store_root: Path, model_name: str, model_version: str, spacy_version: str):
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model_name}-{model_version}-spacy{spacy_version}-"
                                                    f"rule{PARSE_RULE_VERSION}")
        self.path = Path(store_root) / "cache" / "diversity" / f"{label}.parquet"

    def load(self) -> dict[str, tuple[str | None, str | None]]:
        try:
            table = pq.read_table(self.path)
            if table.schema != _SCHEMA:
                return {}
        except (OSError, pa.ArrowException):
            return {}  # none yet, or damaged: parse again and rewrite
        columns = [table.column(name).to_pylist() for name in _SCHEMA.names]
        return {text: (verb, obj) for text, verb, obj in zip(*columns)}

    def save(self, answers: dict[str, tuple[str | None, str | None]]) -> None:
        """Write every answer (the old ones and the new), replacing the file in one step."""
        texts = list(answers)
        table = pa.table([texts, [answers[t][0] for t in texts], [answers[t][1] for t in texts]], schema=_SCHEMA)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path) as handle:
            pq.write_table(table, handle, compression="zstd")
