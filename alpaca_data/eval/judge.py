"""`eval judge BASELINE MODEL`: blind pairwise judgments by an LLM, committed as an annotations revision.

BASELINE is output_1, MODEL output_2 (AlpacaEval's convention: the win rate is output_2's). Each pair is
judged once with output_1 shown first (order "12") and, by default, once more with output_2 shown first
("21"): a judge that favours a position then favours each side equally often, so the bias cancels in the
win rate. Every judgment is its own annotation row, its preference mapped back to the canonical pair;
an unparseable verdict is kept with preference None and the judge's raw answer.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from alpaca_data.cli_options import nested, required, setting
from alpaca_data.errors import UsageError, UserError
from alpaca_data.eval.annotations import annotation_record, commit_rows, revision_ref
from alpaca_data.eval.judge_prompt import PROMPT_VERSION, JudgePrompt, parse_verdict, prompt_sha256, to_preference
from alpaca_data.eval.pairs import Comparison, compare
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
from alpaca_data.generate.config import RequestLimits
from alpaca_data.generate.pricing import spent_report
from alpaca_data.store.refs import NAME_PATTERN

ORDERS = {"both": ("12", "21"), "one": ("12",)}


@dataclass(kw_only=True)
class JudgeSettings(ModelSpecSettings):
    FLAG: ClassVar[str] = "--judge"
    spec: str = required("The judge: openai:MODEL (with --base-url for a local server), hf:PATH or demo.", FLAG)


@dataclass(kw_only=True)
class JudgeDecoding(GreedyDecoding):
    max_tokens: int = setting(256, "Most tokens per verdict: a short reason and the `Preferred:` line.")


@dataclass(kw_only=True)
class JudgeConfig:
    judge: JudgeSettings = nested(JudgeSettings)
    dataset: str | None = setting(None, "Dataset to commit the annotations to (default judge-<A>-vs-<B>).", "-d")
    orders: str = setting("both", "both: judge each pair in both orders (cancels position bias); one: output_1 "
                                  "first only.")
    limit: int | None = setting(None, "Judge only the first N pairs.")
    run: RunOptions = nested(RunOptions)
    decoding: JudgeDecoding = nested(JudgeDecoding)
    limits: RequestLimits = nested(RequestLimits)

    def validate(self) -> None:
        if self.orders not in ORDERS:
            raise UsageError(f"--orders {self.orders!r}: expected both or one")
        if self.dataset is not None and not NAME_PATTERN.fullmatch(self.dataset):
            raise UsageError(f"--dataset {self.dataset!r}: invalid dataset name (letters, digits, . _ -; no paths)")
        if self.limit is not None and self.limit < 1:
            raise UsageError("--limit must be at least 1")
        self.judge.validate()
        self.decoding.validate()
        self.limits.validate()


@dataclass
class JudgeResult:
    status: str  # done | budget_exhausted | request_limit | incomplete
    stats: RunnerStats
    run_dir: Path
    dataset: str
    requests: int
    annotations: int = 0
    unparseable: int = 0
    win_rate: float | None = None  # output_2's, over parsed verdicts (draws count half)
    revision_id: str | None = None
    manifest: Any = None


def annotator_name(spec: str) -> str:
    stripped = spec.strip()  # the offline heuristic judge says so in every row: demo-judge[:NAME]
    name = "demo-judge" + stripped[4:] if stripped == "demo" or stripped.startswith("demo:") else spec
    return f"{name} ({PROMPT_VERSION})"


def win_rate(preferences: list[float | None]) -> float | None:
    """output_2's win rate in AlpacaEval's way: preference - 1 per verdict, a draw (0) counts half; None left out."""
    scored = [0.5 if p == 0 else p - 1 for p in preferences if p is not None]
    return sum(scored) / len(scored) if scored else None


def _requests(comparison: Comparison, orders: tuple[str, ...]) -> list[Request]:
    requests = []
    for pair in comparison.pairs:
        for order in orders:
            first, second = (pair.output_1, pair.output_2) if order == "12" else (pair.output_2, pair.output_1)
            requests.append(Request(f"{pair.key}:{order}", JudgePrompt(pair.instruction, pair.input, first, second)))
    return requests


def _identity(cfg: JudgeConfig, comparison: Comparison) -> dict[str, Any]:
    """The settings that fix the verdicts: a resumed run must share them (their hash names the run)."""
    settings = cfg.judge
    return {"command": "eval judge", "judge": settings.spec, "api": settings.api, "decoding": cfg.decoding.as_dict(),
            "seed": cfg.run.seed, "send_seed": settings.send_seed, "prompt_version": PROMPT_VERSION,
            "prompt_sha256": prompt_sha256(), "orders": cfg.orders, "limit": cfg.limit,
            "output_1": comparison.manifest_1.id, "output_2": comparison.manifest_2.id,
            "request_batch_size": settings.request_batch_size if settings.spec.startswith("hf:") else 1}


def default_dataset(comparison: Comparison) -> str:
    return f"judge-{comparison.manifest_1.dataset}-vs-{comparison.manifest_2.dataset}"[:100]


def judge_outputs(cfg: JudgeConfig, ref_1: str, ref_2: str, store: str | os.PathLike | None = None,
                  progress: Any = None) -> JudgeResult:
    """Judge every pair the two outputs revisions share and commit the annotations (when all are answered)."""
    from alpaca_data.store import Store

    cfg.validate()
    wall_start = time.time()
    store = Store.open(store)
    comparison = compare(store, ref_1, ref_2, limit=cfg.limit)
    price = price_of(cfg.judge.spec, cfg.limits)
    dataset = cfg.dataset or default_dataset(comparison)
    store.check_dataset_name(dataset)
    folder = open_run(store.root / "runs" / dataset, _identity(cfg, comparison), resume=cfg.run.resume,
                      run_dir=cfg.run.run_dir)
    teacher, demo_server = make_teacher(cfg.judge, cfg.decoding, timeout=cfg.limits.timeout, role="judge")
    requests = _requests(comparison, ORDERS[cfg.orders])
    if progress is not None:
        progress.total = len(requests)
    outcomes, stats = run_requests(folder, teacher, requests, cfg.limits, max_tokens=cfg.decoding.max_tokens,
                                   price=price, seed=cfg.run.seed, progress=progress, demo_server=demo_server)
    result = JudgeResult(stats.status, stats, folder.path, dataset, len(requests))
    if stopped_uncommitted(stats, cfg.run):
        return result
    rows = _rows(cfg, comparison, outcomes)
    if not rows:
        raise UserError(f"no judgment was answered ({stats.failed} requests failed: {dict(stats.errors)}); nothing "
                        f"committed (run folder {folder.path})")
    unparseable = sum(1 for row in rows if row["preference"] is None)
    by_order = {order: [r["preference"] for r in rows if r["order"] == order] for order in ORDERS[cfg.orders]}
    info = teacher.info
    recipe = {
        "command": "eval judge",
        "output_1": revision_ref(comparison.manifest_1, comparison.generator_1),
        "output_2": revision_ref(comparison.manifest_2, comparison.generator_2),
        "annotator": annotator_name(cfg.judge.spec),
        "judge": {"spec": cfg.judge.spec, "kind": info.kind, "model": info.model, "api": info.api,
                  "endpoint_host": info.endpoint_host, "prompt_version": PROMPT_VERSION,
                  "prompt_sha256": prompt_sha256(), "decoding": cfg.decoding.as_dict(), "orders": cfg.orders},
        "options": recipe_options(cfg, info.endpoint_host),
        "counts": {"pairs": len(comparison.pairs), "only_1": comparison.only_1, "only_2": comparison.only_2,
                   "requests": len(requests), "annotations": len(rows), "unparseable": unparseable,
                   "failed": stats.failed, "replayed": stats.replayed,
                   "unparseable_by_order": {o: sum(p is None for p in v) for o, v in by_order.items()}},
        "win_rate_by_order": {order: win_rate(prefs) for order, prefs in by_order.items()},
        "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens},
        "cost_usd": round(stats.cost_usd, 6), "spent": spent_report(stats.spent),
        "transport": "batch" if cfg.limits.batching.batch else "realtime",
        "wall_time_s": round(time.time() - wall_start, 3),
        "run_id": folder.path.name, "config_hash": folder.digest,
    }
    message = cfg.run.message or (f"eval judge: {comparison.generator_2} vs {comparison.generator_1} by {cfg.judge.spec} "
                              f"({len(rows)} judgments)")
    manifest = commit_rows(store, dataset, rows, message=message, recipe=recipe).manifest
    record_commit(folder, manifest.id)
    result.annotations, result.unparseable = len(rows), unparseable
    result.win_rate = win_rate([row["preference"] for row in rows])
    result.revision_id, result.manifest = manifest.id, manifest
    return result


def _rows(cfg: JudgeConfig, comparison: Comparison, outcomes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    annotator = annotator_name(cfg.judge.spec)
    for pair in comparison.pairs:
        for order in ORDERS[cfg.orders]:
            outcome = outcomes.get(f"{pair.key}:{order}", {})
            if outcome.get("type") != "answer":
                continue  # failed after every retry (only with --allow-failed)
            raw = outcome.get("text")
            rows.append(annotation_record(
                instruction=pair.instruction, input=pair.input, output_1=pair.output_1,
                generator_1=comparison.generator_1, output_2=pair.output_2, generator_2=comparison.generator_2,
                annotator=annotator, preference=to_preference(parse_verdict(raw), order), item_id=pair.item_id,
                category=pair.category, order=order, raw=raw, created_at=outcome.get("time")))
    return rows
