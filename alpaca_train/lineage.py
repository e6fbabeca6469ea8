"""`alpaca_lineage.json` and the model card written into every checkpoint directory."""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from alpaca_data.model_prompt import LINEAGE_FILE
from alpaca_data.resources import resource_dir
from alpaca_train import __version__
from alpaca_train.prompts import PROMPT_INPUT, PROMPT_NO_INPUT

LINEAGE_SCHEMA = "alpaca-train/lineage/v1"
CARD_TEMPLATE = resource_dir("cards") / "model_card.md.j2"

_FALLBACK_CARD = """# {{ title }}

Fine-tuned from `{{ lineage.base_model.id }}` on `{{ lineage.dataset.ref }}`
(revision `{{ lineage.dataset.revision_id }}`) with alpaca-train {{ lineage.code.alpaca_train_version }}.
See `alpaca_lineage.json` for the full lineage.
"""


def _package_version(name: str, fallback: str | None = None) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except ImportError:  # PackageNotFoundError is an ImportError
        return fallback


@lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=False)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
        return commit.stdout.strip(), bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def code_version() -> dict[str, Any]:
    import torch
    import transformers

    commit, dirty = _git_state()
    kit = _package_version("alpaca-kit", __version__)
    return {"alpaca_train_version": kit, "alpaca_data_version": kit, "git_commit": commit, "git_dirty": dirty,
            "torch": torch.__version__, "transformers": transformers.__version__}


def read_lineage(directory: str | os.PathLike) -> dict[str, Any] | None:
    """A checkpoint's `alpaca_lineage.json`; None for a model folder alpaca-train did not make."""
    from alpaca_data.errors import UserError

    path = Path(directory).expanduser() / LINEAGE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"{path}: cannot read the checkpoint's lineage (not valid JSON)") from None


def base_model_origin(model: str) -> dict[str, Any]:
    """Licence and attribution a fine-tune inherits from its base: from the base folder's import record
    (`alpaca-train import-gguf`), or carried on from the base's own lineage when it is an alpaca-train checkpoint."""
    from alpaca_train.gguf_import import read_import_record

    folder = Path(model).expanduser()
    if not folder.is_dir():
        return {}
    imported = read_import_record(folder)
    if imported:
        source = imported.get("source") or {}
        origin = {"license": imported.get("license"), "attribution": imported.get("attribution"),
                  "original": imported.get("base_model"),
                  "imported_from": {"file": source.get("file"), "sha256": source.get("sha256")}}
        return {key: value for key, value in origin.items() if value}
    try:
        parent = read_lineage(folder) or {}
    except Exception:  # noqa: BLE001 - an unreadable parent lineage only loses the inherited licence
        return {}
    base = parent.get("base_model") or {}
    return {key: base[key] for key in ("license", "attribution", "original", "imported_from") if base.get(key)}


def write_lineage(directory: str | os.PathLike, lineage: Mapping[str, Any]) -> Path:
    path = Path(directory) / LINEAGE_FILE
    payload = {"schema": LINEAGE_SCHEMA, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
               **lineage}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def render_card(lineage: Mapping[str, Any], template_path: str | os.PathLike | None = None) -> str:
    import jinja2

    path = Path(template_path) if template_path else CARD_TEMPLATE
    source = path.read_text(encoding="utf-8") if path.is_file() else _FALLBACK_CARD
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined, keep_trailing_newline=True, autoescape=False)
    base_id = str(lineage.get("base_model", {}).get("id", ""))
    is_hub_id = bool(base_id) and not Path(base_id).exists() and base_id.count("/") == 1
    title = f"{Path(str(lineage.get('output_dir', 'model'))).name} (Alpaca fine-tune)"
    return env.from_string(source).render(lineage=lineage, title=title, base_model_is_hub_id=is_hub_id,
                                          prompt_input=PROMPT_INPUT.rstrip("\n"),
                                          prompt_no_input=PROMPT_NO_INPUT.rstrip("\n"))


def write_card(directory: str | os.PathLike, lineage: Mapping[str, Any]) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(render_card(lineage), encoding="utf-8")
    return path
