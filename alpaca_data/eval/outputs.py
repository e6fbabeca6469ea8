"""`eval generate`: one model's answers on an evaluation set, committed as an outputs revision.

Prompts: an `alpaca-train` checkpoint (`hf:PATH` holding `alpaca_lineage.json`) sees the Alpaca template it was
trained on; `openai:MODEL --api chat` sends the instruction (+ "\\n\\n" + input) as one user message (an
`alpaca-train serve` server applies the template itself); `--api completions` sends the Alpaca-formatted
prompt. The recipe's `model.lineage` names the training data: from the checkpoint's `alpaca_lineage.json`, or
from the `lineage` field a server gives for the model in `GET /v1/models`.

Decoding defaults are greedy (temperature 0, as evaluations usually decode) with at most 512 new tokens and no
stop strings (the Alpaca template needs none: the model ends with EOS).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from alpaca_data.cli_options import nested as nested_settings
from alpaca_data.cli_options import required, setting
from alpaca_data.errors import UsageError, UserError, refuse_missing_model_path
from alpaca_data.eval.annotations import commit_rows, output_record
from alpaca_data.eval.requests import (
    GreedyDecoding,
    ModelSpecSettings,
    Request,
    RunnerStats,
    RunOptions,
    make_teacher,
    open_run,
    price_of,
    recipe_options,
    record_commit,
    run_requests,
    stopped_uncommitted,
)
from alpaca_data.eval.sets import EvalSet, load_eval_set
from alpaca_data.generate.config import RequestLimits
from alpaca_data.generate.pricing import spent_report
from alpaca_data.generate.teachers import parse_teacher_spec
from alpaca_data.prompt_template import TEMPLATE_VERSION, format_prompt, user_message
from alpaca_data.store.refs import NAME_PATTERN

LINEAGE_KEYS = ("dataset", "base_model", "output_dir")


@dataclass(kw_only=True)
class ModelSettings(ModelSpecSettings):
    FLAG: ClassVar[str] = "--model"
    spec: str = required("openai:MODEL (with --base-url for a local server), hf:PATH or demo.", FLAG)


@dataclass(kw_only=True)
class EvalDecoding(GreedyDecoding):
    max_tokens: int = setting(512, "Most new tokens per answer (a budget reserves this much for every request).")


@dataclass(kw_only=True)
class EvalGenerateConfig:
    set: str = required("user-oriented (252), alpaca-eval (805), an Alpaca-format file or a store ref.")
    dataset: str = required("Dataset to commit the outputs revision to.", "-d")
    model: ModelSettings = nested_settings(ModelSettings)
    generator: str | None = setting(None, "The model's name in reports (default: the model or checkpoint name).")
    eval_data: str | None = setting(None, "Folder of the built-in sets (default $ALPACA_EVAL_DATA, else "
                                          "../shared/data/eval beside the checkout).")
    limit: int | None = setting(None, "Answer only the first N items.")
    run: RunOptions = nested_settings(RunOptions)
    decoding: EvalDecoding = nested_settings(EvalDecoding)
    limits: RequestLimits = nested_settings(RequestLimits)

    def validate(self) -> None:
        if not NAME_PATTERN.fullmatch(self.dataset or ""):
            raise UsageError(f"--dataset {self.dataset!r}: invalid dataset name (letters, digits, . _ -; no paths)")
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be at least 1")
        self.model.validate()
        self.decoding.validate()
        self.limits.validate()


@dataclass(frozen=True)
class EvalPrompt:
    """An evaluation item as a request: `text` is Alpaca's prompt, `messages()` the bare user turn."""

    instruction: str
    input: str

    @property
    def text(self) -> str:
        return format_prompt(self.instruction, self.input)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": user_message(self.instruction, self.input)}]


@dataclass
class OutputsResult:
    status: str  # done | budget_exhausted | request_limit | incomplete
    stats: RunnerStats
    run_dir: Path
    items: int
    failed: int = 0
    revision_id: str | None = None
    manifest: Any = None


def checkpoint_lineage(path: str) -> dict[str, Any] | None:
    """The lineage subset of an alpaca-train checkpoint (None for any other model folder)."""
    from alpaca_train.lineage import read_lineage

    lineage = read_lineage(path)
    if lineage is None:
        return None
    return {**{key: lineage.get(key) for key in LINEAGE_KEYS}, "checkpoint": str(Path(path).expanduser().resolve())}


def served_lineage(teacher: Any) -> dict[str, Any] | None:
    """The `lineage` a server gives for the model in GET /v1/models (our `alpaca-train serve` does); None when
    the server says nothing about it or does not list models."""
    import openai

    client = openai.OpenAI(api_key=teacher.client.api_key, base_url=str(teacher.client.base_url), timeout=10,
                           max_retries=0)
    try:
        for entry in client.models.list():
            if entry.id == teacher.model:
                lineage = (entry.model_extra or {}).get("lineage")
                return lineage if isinstance(lineage, dict) else None
    except (openai.OpenAIError, ValueError, TypeError):
        return None
    finally:
        client.close()
    return None


def _identity(cfg: EvalGenerateConfig, eval_set: EvalSet) -> dict[str, Any]:
    """The settings that fix the answers: a resumed run must share them (their hash names the run)."""
    settings = cfg.model
    return {"command": "eval generate", "model": settings.spec, "api": settings.api,
            "decoding": cfg.decoding.as_dict(), "seed": cfg.run.seed, "send_seed": settings.send_seed,
            "set": {k: v for k, v in eval_set.source.items() if k != "path"}, "prompt_template": TEMPLATE_VERSION,
            "request_batch_size": settings.request_batch_size if settings.spec.startswith("hf:") else 1}


def _generator_name(cfg: EvalGenerateConfig, kind: str, target: str) -> str:
    if cfg.generator:
        return cfg.generator
    return Path(target).expanduser().resolve().name if kind == "hf" else target


def generate_outputs(cfg: EvalGenerateConfig, store: str | os.PathLike | None = None,
                     progress: Any = None) -> OutputsResult:
    """Answer every item of the set with the model and commit the outputs revision (when all are answered)."""
    from alpaca_data.store import Store

    cfg.validate()
    wall_start = time.time()
    store = Store.open(store)
    # Everything that can be refused is checked before a run folder exists or a request is sent.
    eval_set = load_eval_set(cfg.set, eval_data=cfg.eval_data, store=store, limit=cfg.limit)
    kind, target = parse_teacher_spec(cfg.model.spec)
    price = price_of(cfg.model.spec, cfg.limits)
    if kind == "hf":
        refuse_missing_model_path(target, cfg.model.spec)
    lineage = checkpoint_lineage(target) if kind == "hf" else None
    prompt_format = (lambda prompt: prompt.text) if lineage else None  # checkpoints always see their template
    folder = open_run(store.root / "runs" / cfg.dataset, _identity(cfg, eval_set), resume=cfg.run.resume,
                      run_dir=cfg.run.run_dir)
    teacher, demo_server = make_teacher(cfg.model, cfg.decoding, timeout=cfg.limits.timeout,
                                        prompt_format=prompt_format)
    if kind != "hf":
        lineage = served_lineage(teacher)
        if lineage and teacher.api == "chat" and lineage.get("template_version", TEMPLATE_VERSION) == TEMPLATE_VERSION:
            # A model served on the Alpaca template (`alpaca-train serve`): its chat API would fold the input into
            # the instruction, so send Alpaca's own prompt (the one the hf: path and the trainer use) as a completion.
            teacher.api = teacher.info.api = "completions"
    requests = [Request(item.item_id, EvalPrompt(item.instruction, item.input)) for item in eval_set.items]
    if progress is not None:
        progress.total = len(requests)
    outcomes, stats = run_requests(folder, teacher, requests, cfg.limits, max_tokens=cfg.decoding.max_tokens,
                                   price=price, seed=cfg.run.seed, progress=progress, demo_server=demo_server)
    result = OutputsResult(stats.status, stats, folder.path, len(requests), failed=stats.failed)
    if stopped_uncommitted(stats, cfg.run):
        return result
    generator = _generator_name(cfg, kind, target)
    decoding_text = json.dumps(cfg.decoding.as_dict(), sort_keys=True)
    rows = [output_record(instruction=item.instruction, input=item.input, output=outcomes[item.item_id]["text"],
                          generator=generator, item_id=item.item_id, category=item.category, decoding=decoding_text)
            for item in eval_set.items if outcomes.get(item.item_id, {}).get("type") == "answer"]
    if not rows:
        raise UserError(f"no item was answered ({stats.failed} requests failed: {dict(stats.errors)}); nothing "
                        f"committed (run folder {folder.path})")
    info = teacher.info
    recipe = {
        "command": "eval generate", "generator": generator, "set": eval_set.source,
        "model": {"spec": cfg.model.spec, "path": str(Path(target).expanduser().resolve()) if kind == "hf" else None,
                  "kind": info.kind, "api": info.api, "endpoint_host": info.endpoint_host, "lineage": lineage},
        "decoding": cfg.decoding.as_dict(), "options": recipe_options(cfg, info.endpoint_host),
        "counts": {"items": len(requests), "answered": len(rows), "failed": stats.failed,
                   "replayed": stats.replayed, "finish_length": sum(
                       1 for o in outcomes.values() if o.get("type") == "answer" and o.get("finish_reason") == "length")},
        "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens},
        "cost_usd": round(stats.cost_usd, 6), "spent": spent_report(stats.spent),
        "transport": "batch" if cfg.limits.batching.batch else "realtime",
        "wall_time_s": round(time.time() - wall_start, 3),
        "run_id": folder.path.name, "config_hash": folder.digest,
    }
    message = cfg.run.message or f"eval generate: {generator} on {eval_set.name} ({len(rows)} items)"
    manifest = commit_rows(store, cfg.dataset, rows, message=message, recipe=recipe).manifest
    record_commit(folder, manifest.id)
    result.revision_id, result.manifest = manifest.id, manifest
    return result
