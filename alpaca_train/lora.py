"""LoRA fine-tuning through peft (`alpaca-train --lora`), with alpaca-lora's defaults, and `alpaca-train merge`.

The base model's weights are frozen and every targeted linear layer gets a trainable low-rank update
(`W + alpha/r * B A`); only the update's parameters get gradients and AdamW state. Checkpoints are standard peft
adapter folders (`adapter_config.json`, `adapter_model.safetensors`) beside the tokenizer, lineage and card;
`alpaca_data.model_loading` loads them everywhere a checkpoint goes, and `merge` folds one into a plain folder.
"""
from __future__ import annotations

import hashlib
import math
import shutil
import warnings
from pathlib import Path
from typing import Any

from alpaca_data.errors import UsageError, UserError
from alpaca_data.model_loading import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_base, is_adapter

# alpaca-lora (tloen/alpaca-lora, finetune.py): r 8, alpha 16, dropout 0.05 on q_proj and v_proj, lr 3e-4
DEFAULT_R = 8
DEFAULT_ALPHA = 16
DEFAULT_DROPOUT = 0.05
DEFAULT_TARGETS = "q_proj,v_proj"
DEFAULT_LR = 3e-4
FULL_LR = 2e-5  # Stanford Alpaca's, for full fine-tuning
ALL_LINEAR = "all-linear"


def target_modules(spec: str) -> list[str] | str:
    """`q_proj,v_proj` -> ["q_proj", "v_proj"]; `all-linear` as is (peft: every linear layer but the LM head)."""
    spec = (spec or "").strip()
    if spec == ALL_LINEAR:
        return ALL_LINEAR
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--lora-targets {spec!r}: expected module names such as q_proj,v_proj, or all-linear")
    return names


def validate_settings(cfg) -> None:
    """The LoRA and QLoRA options, checked before anything is loaded (one line each)."""
    defaults = (DEFAULT_R, DEFAULT_ALPHA, DEFAULT_DROPOUT, DEFAULT_TARGETS)
    if not cfg.lora:
        given = [flag for flag, value, default in zip(("--lora-r", "--lora-alpha", "--lora-dropout", "--lora-targets"),
                                                      (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets),
                                                      defaults) if value != default]
        if given:
            raise UsageError(f"{given[0]} applies to LoRA: add --lora")
        if cfg.quantize:
            raise UsageError(f"--quantize {cfg.quantize} is QLoRA: it needs --lora (full fine-tuning is not quantized)")
        return
    if cfg.lora_r is None or cfg.lora_r < 1:
        raise UsageError(f"--lora-r must be at least 1, got {cfg.lora_r}")
    if not (math.isfinite(cfg.lora_alpha) and cfg.lora_alpha > 0):
        raise UsageError(f"--lora-alpha must be a positive number, got {cfg.lora_alpha}")
    if not 0 <= cfg.lora_dropout < 1:
        raise UsageError(f"--lora-dropout must be in [0, 1), got {cfg.lora_dropout}")
    target_modules(cfg.lora_targets)
    if cfg.pad_token == "add":
        raise UsageError("--pad-token add resizes the embeddings, which a LoRA adapter does not carry: "
                         "use --pad-token eos with --lora")
    if cfg.quantize:
        check_quantize(cfg.quantize)


def check_quantize(mode: str) -> None:
    if mode != "4bit":
        raise UsageError(f"--quantize {mode}: expected 4bit (QLoRA)")
    import torch

    if not torch.cuda.is_available():
        raise UserError("--quantize 4bit (QLoRA) needs a CUDA GPU for bitsandbytes; there is none here: "
                        "train plain --lora instead")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("--quantize 4bit (QLoRA) needs the bitsandbytes package (pip install bitsandbytes)") from None


def quantization_kwargs(cfg) -> dict[str, Any]:
    """from_pretrained arguments of QLoRA's 4-bit NF4 base (double quantization, bf16 compute), else none."""
    if not cfg.quantize:
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True,
                                                      bnb_4bit_compute_dtype=torch.bfloat16)}


def base_reference(model: str) -> str:
    """What `adapter_config.json` names as the base: a local folder's absolute path (the adapter then loads from
    anywhere on this machine), or the Hub id as given."""
    folder = Path(model).expanduser()
    return str(folder.resolve()) if folder.is_dir() else model


def check_targets(model, targets: list[str] | str) -> None:
    """Every named target must be a linear (or embedding) layer of the model: one line naming the ones it has."""
    from torch import nn

    if targets == ALL_LINEAR:
        return
    modules = dict(model.named_modules())
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in modules.items() if isinstance(module, nn.Linear)})
    for target in targets:
        matched = [m for name, m in modules.items() if name == target or name.endswith("." + target)]
        if not matched or not all(isinstance(m, (nn.Linear, nn.Embedding)) for m in matched):
            what = "no such layer" if not matched else "not a linear layer"
            raise UsageError(f"--lora-targets {target}: {what} in {type(model).__name__} (its linear layers: "
                             f"{', '.join(linear)}; or all-linear)")


def check_targets_early(cfg) -> None:
    """The targets checked against the model's structure built on the meta device (no weights read): a typo is
    one line before the data is tokenised or the model loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    from alpaca_data.model_loading import load_config

    targets = target_modules(cfg.lora_targets)
    if targets == ALL_LINEAR:
        return
    config = load_config(cfg.model, f"--model {cfg.model}")
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, TypeError, OSError):
        return  # a model class this cannot build on meta: peft checks the targets when the adapter is made
    check_targets(model, targets)


def apply_lora(model, cfg, gradient_checkpointing: bool = False):
    """Wrap `model` (frozen) with a fresh LoRA adapter of `cfg`'s settings: a peft `PeftModelForCausalLM`."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = target_modules(cfg.lora_targets)
    check_targets(model, targets)
    if cfg.quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.enable_input_require_grads()  # the frozen embeddings' output must carry a gradient through checkpoints
    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, bias="none", task_type=TaskType.CAUSAL_LM)
    with warnings.catch_warnings():  # peft asks transformers' deprecated `is_gradient_checkpointing`
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    # written into adapter_config.json: the base as it can be found again (not the working-directory-relative path)
    peft_model.peft_config["default"].base_model_name_or_path = base_reference(cfg.model)
    return peft_model


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, all) parameters; for a peft model `all` counts the base and the adapter."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def lineage_entry(cfg, model) -> dict[str, Any]:
    trainable, total = parameter_counts(model)
    targets = target_modules(cfg.lora_targets)
    return {"type": "lora", "library": "peft", "r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
            "target_modules": targets, "quantize": cfg.quantize, "base_model_name_or_path": base_reference(cfg.model),
            "trainable_parameters": trainable, "total_parameters": total,
            "trainable_share": round(trainable / total, 6) if total else None}


def save_adapter(model, directory: Path, state: dict[str, Any] | None) -> None:
    """The adapter files of a peft model (`state`: a full state dict already gathered, or None for its own)."""
    kwargs = {"state_dict": state} if state is not None else {}
    model.save_pretrained(str(directory), safe_serialization=True, save_embedding_layers=False, **kwargs)


# ---------------------------------------------------------------------------------------------- merge
def merge(adapter: str, out: str, dtype: str = "float32") -> dict[str, Any]:
    """Fold ADAPTER into its base and write a plain checkpoint folder to `out` (lineage: the adapter's, plus a
    `merge` entry naming the adapter and its weights' sha256). Returns the merge entry."""
    import torch

    from alpaca_data.errors import refuse_missing_model_path
    from alpaca_data.model_loading import load_causal_lm, load_tokenizer
    from alpaca_train.lineage import read_lineage, write_card, write_lineage

    refuse_missing_model_path(adapter, kind="checkpoint", hub=False)
    folder = Path(adapter).expanduser()
    if not is_adapter(folder):
        raise UserError(f"{adapter}: not a LoRA adapter (no {ADAPTER_CONFIG}): nothing to merge")
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"--dtype {dtype}: expected float32, bfloat16 or float16")
    base = adapter_base(folder, adapter)
    model = load_causal_lm(str(folder), label=adapter, merge=True, dtype=getattr(torch, dtype))
    tokenizer = load_tokenizer(str(folder), adapter)
    weights = folder / ADAPTER_WEIGHTS
    entry = {"adapter": str(folder.resolve()), "base_model": base,
             "adapter_sha256": hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None,
             "dtype": dtype}
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    model.save_pretrained(str(partial), safe_serialization=True)
    tokenizer.save_pretrained(str(partial))
    lineage = dict(read_lineage(folder) or {})
    if lineage:
        lineage.pop("schema", None)
        lineage.pop("created_at", None)
        lineage["merge"] = entry
        lineage["output_dir"] = str(target)
        write_lineage(partial, lineage)
        write_card(partial, lineage)
    if target.exists():
        target.rmdir()
    partial.rename(target)
    return entry
