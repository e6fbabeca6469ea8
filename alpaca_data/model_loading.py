"""One loader for every local checkpoint: a plain Hugging Face causal-LM folder, or a peft adapter folder.

A folder holding `adapter_config.json` is a LoRA (peft) adapter: its base model is the config's
`base_model_name_or_path` (a Hub id, an absolute folder, or a folder relative to the adapter, tried before the
working directory), loaded first; the adapter is then applied with `PeftModel.from_pretrained` and, for
inference, merged into the weights (same logits, no adapter overhead when generating). The tokenizer is the
adapter folder's when it holds one (alpaca-train saves it there), else the base's.

Used by `alpaca-train serve`, `hf:` teachers and judges (and so `eval generate --model hf:...`), `alpaca-train
detect`, `alpaca-train merge` and `alpaca-train --model ADAPTER`. It lives in alpaca_data because the `hf:`
teacher does (alpaca_train imports alpaca_data, never the reverse).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError, one_line, refuse_missing_model_path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


def is_adapter(ref: str | Path) -> bool:
    return (Path(ref).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder).expanduser() / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable adapter config ({one_line(error, 160)})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a readable adapter config (not a JSON object)")
    return config


def adapter_base(folder: str | Path, label: str | None = None) -> str:
    """The base model an adapter folder applies to, as a loadable reference (checked: one line if missing)."""
    folder = Path(folder).expanduser()
    label = label or str(folder)
    base = adapter_config(folder).get("base_model_name_or_path")
    if not base or not isinstance(base, str):
        raise UserError(f"{label}: {ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    path = Path(base).expanduser()
    if not path.is_absolute() and (folder / path).exists():
        base = str((folder / path).resolve())
    refuse_missing_model_path(base, f"{label}: base model {base}")
    return base


def tokenizer_source(ref: str, label: str | None = None) -> str:
    """Where a checkpoint's tokenizer is: the folder itself, or an adapter's base when the adapter holds none."""
    if is_adapter(ref) and not any((Path(ref).expanduser() / f).is_file() for f in _TOKENIZER_FILES):
        return adapter_base(ref, label)
    return ref


def load_tokenizer(ref: str, label: str | None = None):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(tokenizer_source(ref, label))
    except (OSError, ValueError) as error:
        raise UserError(f"{label or ref}: cannot load the tokenizer: {one_line(error)}") from None


def load_config(ref: str, label: str | None = None):
    """The model config of a checkpoint (an adapter's is its base's)."""
    from transformers import AutoConfig

    source = ref
    for _ in range(9):  # an adapter's base may be an adapter in turn
        if not is_adapter(source):
            break
        source = adapter_base(source, label)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise UserError(f"{label or ref}: cannot load the model config: {one_line(error)}") from None


def load_causal_lm(ref: str, *, label: str | None = None, merge: bool = True, _depth: int = 0, **kwargs: Any):
    """The causal LM of `ref` (`kwargs` go to `from_pretrained`, e.g. `dtype=`). An adapter folder gives its base
    with the adapter applied: merged into plain weights (`merge=True`), or a `PeftModel` (`merge=False`). An
    adapter trained on an adapter (`alpaca-train --lora --model ADAPTER`) has that adapter, merged, as its base."""
    from transformers import AutoModelForCausalLM

    label = label or ref
    adapter = is_adapter(ref)
    source = adapter_base(ref, label) if adapter else ref
    if adapter and is_adapter(source):
        if _depth >= 8:
            raise UserError(f"{label}: adapters name each other as base more than 8 deep (a loop?)")
        model = load_causal_lm(source, label=label, merge=True, _depth=_depth + 1, **kwargs)
    else:
        model = None
    try:
        model = model if model is not None else AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        where = f"{label}: base model {source}" if adapter else label
        raise UserError(f"{where}: cannot load a causal LM: {one_line(error)}") from None
    if not adapter:
        return model
    try:
        from peft import PeftModel
    except ImportError:
        raise UserError(f"{label}: is a LoRA adapter; loading it needs the peft package (pip install peft)") from None
    try:
        with warnings.catch_warnings():  # peft asks transformers' deprecated `is_gradient_checkpointing`
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, str(Path(ref).expanduser()))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise UserError(f"{label}: cannot apply the adapter to {source}: {one_line(error)}") from None
    return model.merge_and_unload() if merge else model
