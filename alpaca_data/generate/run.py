"""A generation run from options to a committed revision: run folder, resume, teacher set-up, commit.

Run folder: `<store>/runs/<dataset>/<run-id>/` with `config.json` (the settings that fix the output),
`journal.jsonl` (every answer, fsynced) and `run.json` (status). The run id is
`<UTC time>-<config hash[:10]>`; `--resume` picks the newest unfinished run of the dataset with the same
config hash (or `--run-dir`), replays its journal and continues.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alpaca_data.cli_options import flat_settings
from alpaca_data.durable import sha256_file, write_json
from alpaca_data.errors import UsageError, UserError
from alpaca_data.filters.report import rejections_table
from alpaca_data.filters.steps import Pipeline
from alpaca_data.generate.config import GenerateConfig
from alpaca_data.generate.engine import Engine, Stats
from alpaca_data.generate.journal import Journal, answered_indices
from alpaca_data.generate.pricing import load_price_table, price_for, spent_report
from alpaca_data.generate.prompt import load_seed_tasks, template_hash
from alpaca_data.generate.teachers import HFTeacher, OpenAITeacher, parse_teacher_spec
from alpaca_data.secrets import redact


@dataclass
class GenerateResult:
    status: str                      # done | request_limit | budget_exhausted
    stats: Stats
    run_dir: Path
    revision_id: str | None = None
    manifest: Any = None
    kept: int = 0
    cancelled: list[str] | None = None  # --batch-cancel: the batches cancelled


def determining_config(cfg: GenerateConfig, seeds_hash: str, model: str) -> dict[str, Any]:
    """The settings that fix a run's output: a resumed run must share them (their hash names the run)."""
    teacher = cfg.teacher
    return {"teacher": teacher.spec, "model": model, "api": teacher.api, "decoding": cfg.decoding.as_dict(),
            "seed": cfg.seed,
            "num_prompt_instructions": cfg.num_prompt_instructions, "machine_demos": cfg.machine_demos,
            "machine_lag": cfg.machine_lag if cfg.machine_demos else 0, "prompt_template_sha256": template_hash(),
            "seed_file_sha256": seeds_hash, "rules": cfg.rules, "rouge_threshold": cfg.rouge_threshold,
            "send_seed": teacher.send_seed,
            # hf: a batch is sampled together with one seed, so its size shapes every answer
            "request_batch_size": teacher.request_batch_size if teacher.spec.startswith("hf:") else 1}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def find_unfinished_run(runs_root: Path, digest: str) -> Path | None:
    """The newest run folder under `runs_root` with this config hash that was not committed (for --resume)."""
    if not runs_root.is_dir():
        return None
    candidates = []
    for run_json in runs_root.glob("*/run.json"):
        try:
            state = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue
        if state.get("config_hash") == digest and state.get("status") != "committed":
            candidates.append(run_json.parent)
    return max(candidates, key=lambda p: p.name) if candidates else None


def prepare_run_dir(runs_root: Path, config: dict[str, Any], digest: str, *, resume: bool,
                    run_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """The run folder for these settings and whether it holds a run to continue: `run_dir` if given (refused
    when it holds a run and `resume` is off, or one with other settings), else with `resume` the newest
    unfinished one, else a new `<UTC time>-<hash[:10]>` folder (not created yet)."""
    if run_dir:
        path = Path(run_dir)
        existing = (path / "config.json").exists()
        if existing and not resume:
            raise UsageError(f"{path}: holds a run already; pass --resume to continue it")
        if existing:
            saved = json.loads((path / "config.json").read_text())
            if config_hash(saved) != digest:
                diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
                raise UsageError(f"{path}: cannot resume with different settings: {', '.join(diff)}")
        return path, existing
    if resume:
        found = find_unfinished_run(runs_root, digest)
        if found is not None:
            return found, True
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return runs_root / f"{stamp}-{digest[:10]}", False


def _make_teacher(cfg: GenerateConfig):
    settings, decoding = cfg.teacher, cfg.decoding
    kind, target = parse_teacher_spec(settings.spec)
    demo_server = None
    if kind == "hf":
        return HFTeacher(target, api=settings.api, decoding=decoding, batch_size=settings.request_batch_size,
                         spec=settings.spec), None
    model = target
    base_url = settings.base_url
    if kind == "demo" and not base_url:
        from alpaca_data.generate.demo_server import DemoConfig, DemoServer

        demo_server = DemoServer(DemoConfig(**cfg.demo_options)).start()
        base_url = demo_server.base_url
    teacher = OpenAITeacher(model, api=settings.api, base_url=base_url,
                            api_key=None if kind == "openai" else (os.environ.get("OPENAI_API_KEY") or "demo"),
                            timeout=cfg.limits.timeout, decoding=decoding, send_seed=settings.send_seed,
                            spec=settings.spec, kind=kind)
    return teacher, demo_server


def _load_filters(cfg: GenerateConfig, seed_instructions: list[str]) -> Pipeline:
    """The same steps as `alpaca-data filter`: rules, then ROUGE-L novelty against seeds + kept so far."""
    from alpaca_data.filters.rouge import RougeNovelty
    from alpaca_data.filters.ruleset import RuleSet

    return Pipeline([RuleSet.from_spec(cfg.rules),
                     RougeNovelty(cfg.rouge_threshold, seed_instructions, exact_scores=True)])


def run_generation(cfg: GenerateConfig, store: str | os.PathLike | None = None, progress: Any = None) -> GenerateResult:
    """Run (or resume) a generation and commit the revision when N tasks are kept (store: a folder, default
    $ALPACA_STORE or ./alpaca-store)."""
    from alpaca_data.store import Store

    cfg.validate()
    wall_start = time.time()
    seeds = load_seed_tasks(cfg.seeds)
    seeds_hash = sha256_file(cfg.seeds)
    limits = cfg.limits
    kind, model = parse_teacher_spec(cfg.teacher.spec)
    store = Store.open(store)
    # Everything that can be refused is checked before a run folder exists or a request is sent.
    price_table = load_price_table(limits.price_table)
    price = None if kind == "hf" else price_for(model, price_table)
    if kind == "hf" and (limits.batching.batch or limits.batching.batch_cancel):
        raise UsageError("--batch: needs an HTTP teacher (openai:MODEL or demo); an hf: model runs in-process")
    if limits.max_cost is not None and price is None and kind != "hf":
        raise UsageError(f"--max-cost: no price known for model {model!r}; give one with --price-table")
    filters = _load_filters(cfg, [s.instruction for s in seeds])
    config = determining_config(cfg, seeds_hash, model)
    digest = config_hash(config)
    run_dir, resuming = prepare_run_dir(store.root / "runs" / cfg.dataset, config, digest, resume=cfg.resume,
                                        run_dir=cfg.run_dir)
    if limits.batching.batch_cancel:
        return _cancel_batches(cfg, run_dir if resuming else None)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resuming:
        write_json(run_dir / "config.json", config)
    state = {"config_hash": digest, "dataset": cfg.dataset, "status": "running", "num": cfg.num}
    write_json(run_dir / "run.json", state)
    plan = _RunPlan(cfg, store, run_dir, resuming, state, seeds, seeds_hash, digest, price, filters, wall_start)
    try:
        return _run(plan, progress)
    except BaseException as error:  # the run folder says how it ended; --resume continues it
        if state["status"] == "running":
            interrupted = isinstance(error, KeyboardInterrupt)
            state.update(status="interrupted" if interrupted else "failed", error=redact(str(error))[:300])
            write_json(run_dir / "run.json", state)
        raise


@dataclass
class _RunPlan:
    """What `run_generation` checked and prepared before the first request."""

    cfg: GenerateConfig
    store: Any
    run_dir: Path
    resuming: bool
    state: dict[str, Any]  # run.json
    seeds: list
    seeds_hash: str
    digest: str  # config hash: names the run
    price: Any
    filters: Pipeline
    wall_start: float


def _run(plan: _RunPlan, progress: Any) -> GenerateResult:
    cfg, store, run_dir, state, digest, price = plan.cfg, plan.store, plan.run_dir, plan.state, plan.digest, plan.price
    seeds, seeds_hash, filters, resuming, wall_start = plan.seeds, plan.seeds_hash, plan.filters, plan.resuming, \
        plan.wall_start
    decoding = cfg.decoding
    journal = Journal.open(run_dir / "journal.jsonl")
    entries = journal.entries() if resuming else []
    replay = answered_indices(entries)
    if any(entry.get("type") == "batch_file" for entry in entries):
        cfg.limits.batching.batch = True  # a batch run resumes in batch mode: its open batches are taken up
    journal.event("resume" if resuming else "start", replayable=len(replay), batch=cfg.limits.batching.batch)
    teacher, demo_server = _make_teacher(cfg)
    engine = Engine(cfg, seeds, teacher, journal, filters, price, replay=replay, request_id_prefix=digest[:10],
                    on_tick=progress.update if progress is not None else None, run_id=run_dir.name)

    async def _main() -> Stats:
        try:
            return await engine.run()
        finally:
            await teacher.aclose()

    try:
        stats = asyncio.run(_main())
    finally:
        journal.close()
        if demo_server is not None:
            demo_server.stop()
    state.update(status=stats.status, kept=len(engine.kept))
    result = GenerateResult(status=stats.status, stats=stats, run_dir=run_dir, kept=len(engine.kept))
    if stats.status == "budget_exhausted":
        write_json(run_dir / "run.json", state)
        return result
    if not engine.kept:
        write_json(run_dir / "run.json", state)
        raise UserError(f"no task was kept after {stats.processed} requests ({stats.requests_failed} failed; "
                        f"errors: {dict(stats.errors)}, parse failures: {dict(stats.parse_failures)}, "
                        f"dropped: {dict(stats.dropped)}); "
                        f"nothing committed (run folder {run_dir})")
    info = teacher.info
    generation = {
        "teacher": info.kind, "teacher_spec": info.spec, "model": info.model, "api": info.api,
        "endpoint_host": info.endpoint_host, "decoding": decoding.as_dict(), "seed": cfg.seed,
        "num_prompt_instructions": cfg.num_prompt_instructions, "machine_demos": cfg.machine_demos,
        "machine_lag": cfg.machine_lag if cfg.machine_demos else None, "send_request_seed": cfg.teacher.send_seed,
        "prompt_template_sha256": template_hash(), "seed_file_sha256": seeds_hash,
        "filters": {"rules": cfg.rules, "rouge_threshold": cfg.rouge_threshold, "rouge_pool": "seed instructions + kept",
                    **filters.summary()},
        "counts": {
            "target": cfg.num, "kept": len(engine.kept), "requests_answered": stats.requests_answered,
            "requests_failed": stats.requests_failed, "requests_processed": stats.processed,
            "requests_replayed": stats.replayed, "finish_length": stats.finish_length, "http_attempts_this_session": stats.requests_sent,
            "parsed": stats.parsed, "parse_failures": dict(stats.parse_failures),
            "dropped": dict(stats.dropped), "normalised": dict(stats.normalised), "errors": dict(stats.errors),
        },
        "tokens": {"prompt": stats.prompt_tokens, "completion": stats.completion_tokens},
        "cost_usd": round(stats.cost_usd, 6), "priced_as": None if price is None else price.as_dict(),
        "spent": spent_report(stats.spent), "transport": "batch" if cfg.limits.batching.batch else "realtime",
        "wall_time_s": round(time.time() - wall_start, 3), "status": stats.status,
        "run_id": run_dir.name, "config_hash": digest,
    }
    options = {k: v for k, v in flat_settings(cfg).items() if k not in ("resume", "run_dir", "message")}
    if options.get("base_url"):
        options["base_url"] = info.endpoint_host  # the host only: a URL may carry credentials
    recipe = {"command": "generate", "options": options,
              "sources": [{"path": str(cfg.seeds), "sha256": seeds_hash}]}
    message = cfg.message or f"generate {len(engine.kept)} tasks with {cfg.teacher.spec}"
    manifest = store.commit(cfg.dataset, engine.kept[: cfg.num], message=message, recipe=recipe,
                            extra={"teacher": info.kind, "generation": generation},
                            sidecars={"rejections": rejections_table(engine.rejections)}).manifest
    state.update(status="committed", revision=manifest.id)
    write_json(run_dir / "run.json", state)
    closing = Journal.open(run_dir / "journal.jsonl")
    closing.event("committed", revision=manifest.id, kept=len(engine.kept[: cfg.num]))
    closing.close()
    result.revision_id, result.manifest = manifest.id, manifest
    return result


def _cancel_batches(cfg: GenerateConfig, run_dir: Path | None) -> GenerateResult:
    """--batch-cancel: cancel the open batches of the run these settings name (or --run-dir); nothing else."""
    from alpaca_data.generate.batching import cancel_run_batches

    if run_dir is None:
        raise UsageError("--batch-cancel: no unfinished run with these settings (give the run's folder with --run-dir)")
    teacher, demo_server = _make_teacher(cfg)
    try:
        cancelled = cancel_run_batches(teacher, run_dir, cfg.limits)
    finally:
        if demo_server is not None:
            demo_server.stop()
    return GenerateResult(status="batches_cancelled", stats=Stats(), run_dir=run_dir, cancelled=cancelled)
