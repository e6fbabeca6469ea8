"""The training loop: Stanford Alpaca's recipe, single process or FSDP under torchrun, with exact resume.

One optimizer step = `effective_batch_size` consecutive examples of the epoch's random order (so the
number of optimizer steps is Alpaca's, whatever the batching), dealt to ranks and micro-batches. The
loss of a step is the sum of token cross-entropies divided by the number of trained tokens of the whole
global step (all micro-batches, all ranks) -- the same loss for every way of cutting the step up, which
is what makes padded, padding-free and length-grouped batching interchangeable.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpaca_data.cli_options import required, setting
from alpaca_data.durable import atomic_file
from alpaca_data.errors import UserError, one_line, refuse_missing_model_path
from alpaca_train.reporting import Reporter

TRAINER_STATE = "trainer_state.pt"
SHARDS_DIR = "shards"  # torch distributed checkpoint of an intermediate checkpoint: weights + optimizer state


@dataclass(kw_only=True)
class TrainConfig:
    """Every training setting, declared once: `alpaca-train train` options and its TOML file come from here."""

    data: str = required("Store ref (alpaca@v1), JSON/JSONL/Parquet file, or Hub dataset user/name@rev.")
    model: str = required("Base model: local path or Hub id.")
    out: str = required("Output directory.")
    tokenizer: str | None = setting(None, "Tokenizer path/id (default: the model's).")
    store: str | None = setting(None, "Store folder (default $ALPACA_STORE or ./alpaca-store).")
    epochs: int = setting(3, "Epochs.")
    lr: float | None = setting(None, "Peak learning rate (default 2e-5, Stanford Alpaca's; 3e-4 with --lora, "
                                     "alpaca-lora's).")
    effective_batch_size: int = setting(128, "Examples per optimizer step: micro-batch x accumulation x world size.")
    micro_batch_size: int = setting(4, "Examples per forward pass.")
    warmup_ratio: float = setting(0.03, "Share of the steps spent warming up.")
    lr_scheduler: str = setting("cosine", "cosine | linear | constant.")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_length: int = setting(512, "Tokens per example.")
    max_grad_norm: float = setting(1.0, "Gradient clipping (0: off).")
    adam_beta1: float = setting(0.9, "AdamW beta1.", hidden=True)
    adam_beta2: float = setting(0.999, "AdamW beta2.", hidden=True)
    adam_epsilon: float = setting(1e-8, "AdamW epsilon.", hidden=True)
    precision: str = setting("auto", "auto (bf16 on GPUs that support it, else fp32) | bf16 | fp32.")
    batching: str = setting("padfree", "padfree | padded (Alpaca's) | grouped (padded, length-sorted in a step).")
    pad_token: str = setting("eos", "eos | add (Alpaca's [PAD] + resize).")
    seed: int = setting(42, "Seed of the data order and the initialisation.")
    max_steps: int | None = setting(None, "Total optimizer steps (overrides epochs for the schedule).")
    save_steps: int = setting(0, "Intermediate checkpoint every N steps (0: only the final model).")
    stop_after_steps: int | None = setting(None, "Save a checkpoint and stop at this step; the schedule is unchanged.")
    resume: str | None = setting(None, "A checkpoint directory, or 'latest' (the newest checkpoint-N under --out).")
    cache_dir: str | None = setting(None, "Tokenisation cache ('' disables).")
    logging_steps: int = setting(1, "Log every N steps.")
    attn_implementation: str | None = setting(None, "eager | sdpa | flash_attention_2.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass (less memory).")
    fsdp: str = setting("auto", "auto (on with several processes) | on | off (several processes then use DDP).")
    val_fraction: float = setting(0.02, "Share of the revision held out for validation, chosen by record hash "
                                        "(the same records on every run); 0: no validation.")
    val_data: str | None = setting(None, "Validate on this dataset instead (store ref, file or Hub dataset); "
                                         "the whole revision then trains.")
    eval_steps: int = setting(0, "Validation loss every N steps, besides each epoch end and the last step (0: not).")
    report_to: str = setting("none", "none | tensorboard | wandb: also send the step log there (when installed).")
    lora: bool = setting(False, "Train a LoRA adapter (peft) on the frozen model instead of every weight; "
                                "checkpoints are peft adapter folders.")
    lora_r: int = setting(8, "LoRA rank (with --lora).")
    lora_alpha: float = setting(16, "LoRA alpha: the update is scaled by alpha / r (with --lora).")
    lora_dropout: float = setting(0.05, "Dropout on the LoRA input (with --lora).")
    lora_targets: str = setting("q_proj,v_proj", "Modules given an adapter, comma-separated, or all-linear "
                                                 "(with --lora).")
    quantize: str | None = setting(None, "4bit: QLoRA, the frozen base in 4-bit NF4 (bitsandbytes, CUDA only; "
                                         "with --lora).")

    def validate(self) -> None:
        from alpaca_train import lora

        for name in ("data", "model", "out"):
            if not getattr(self, name):
                raise UserError(f"--{name} is required")
        if self.lr is None:
            self.lr = lora.DEFAULT_LR if self.lora else lora.FULL_LR
        positive = {"epochs": self.epochs, "effective-batch-size": self.effective_batch_size,
                    "micro-batch-size": self.micro_batch_size, "max-length": self.max_length}
        for name, value in positive.items():
            if value is None or value < 1:
                raise UserError(f"--{name} must be at least 1, got {value}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive finite number, got {self.lr}")
        for name, value in {"max-grad-norm": self.max_grad_norm, "weight-decay": self.weight_decay}.items():
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{name} must be a finite number >= 0, got {value}")
        at_least_one = {"max-steps": self.max_steps, "stop-after-steps": self.stop_after_steps,
                        "logging-steps": self.logging_steps}
        for name, value in at_least_one.items():
            if value is not None and value < 1:
                raise UserError(f"--{name} must be at least 1, got {value}")
        if not 0 <= self.val_fraction < 1:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.eval_steps < 0:
            raise UserError(f"--eval-steps must be 0 (epoch ends only) or more, got {self.eval_steps}")
        if self.save_steps < 0:
            raise UserError(f"--save-steps must be 0 (final model only) or more, got {self.save_steps}")
        choices = {"precision": ("auto", "bf16", "fp32"), "batching": ("padfree", "padded", "grouped"),
                   "pad_token": ("eos", "add"), "lr_scheduler": ("cosine", "linear", "constant"),
                   "fsdp": ("auto", "on", "off"), "report_to": ("none", "tensorboard", "wandb")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)}: expected one of {', '.join(allowed)}")
        lora.validate_settings(self)
        _check_model_refs(self)


def _check_model_refs(cfg: TrainConfig) -> None:
    """--model and --tokenizer written as paths must be such folders: one line at once, never a Hub look-up."""
    refuse_missing_model_path(cfg.model, f"--model {cfg.model}")
    if cfg.tokenizer:
        refuse_missing_model_path(cfg.tokenizer, f"--tokenizer {cfg.tokenizer}", kind="tokenizer")


@dataclass
class TrainResult:
    out: Path
    global_step: int
    total_steps: int
    losses: list[float] = field(default_factory=list)  # mean token loss of each step run in this call
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    lrs: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    stopped_early: bool = False


# ------------------------------------------------------------------------------------------ helpers
class _Dist:
    def __init__(self):
        import torch
        import torch.distributed as dist

        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.local_rank}") if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.initialised_here = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            self.initialised_here = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def sum(self, value: float) -> float:
        if self.world_size == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return float(t.item())

    def close(self) -> None:
        if self.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _log(dist: _Dist, message: str) -> None:
    if dist.is_main:
        print(f"alpaca-train: {message}", file=sys.stderr, flush=True)


def _latest_checkpoint(out: Path) -> Path | None:
    found = []
    for path in out.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if m and (path / TRAINER_STATE).is_file():
            found.append((int(m.group(1)), path))
    return max(found)[1] if found else None


def _resolve_resume(cfg: TrainConfig) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "latest":
        found = _latest_checkpoint(Path(cfg.out))
        if found is None:
            raise UserError(f"--resume latest: no checkpoint-N with {TRAINER_STATE} under {cfg.out}")
        return found
    path = Path(cfg.resume)
    if not (path / TRAINER_STATE).is_file():
        raise UserError(f"--resume {cfg.resume}: not a checkpoint directory (no {TRAINER_STATE})")
    return path


def _options_for_lineage(cfg: TrainConfig, world_size: int, accumulation: int, precision: str,
                         batching_note: str) -> dict[str, Any]:
    keep = {k: v for k, v in dataclasses.asdict(cfg).items()
            if k not in {"data", "model", "out", "tokenizer", "store", "resume", "cache_dir"}}
    keep.update({"world_size": world_size, "gradient_accumulation_steps": accumulation,
                 "precision_used": precision, "optimizer": "AdamW (torch)", "loss": batching_note})
    return keep


# --------------------------------------------------------------------------------------------- train
@dataclass
class _Run:
    """Everything `_fit` needs, made once by `_setup`."""

    source: Any
    tokenizer: Any
    tokenized: Any
    model: Any
    optimizer: Any
    scheduler: Any
    parallel: str  # single | ddp | fsdp
    autocast: Any
    steps_per_epoch: int
    total_steps: int
    global_step: int
    lineage: dict[str, Any]
    validation: Any = None  # tokenized held-out examples (None: no validation)


def train(cfg: TrainConfig) -> TrainResult:
    """Train on a dataset revision; each rank of a torchrun launch calls this."""
    cfg.validate()
    dist = _Dist()
    try:
        run = _setup(cfg, dist)
        return _fit(cfg, dist, run)
    finally:
        dist.close()


RUN_MARKERS = ("alpaca_lineage.json", "train_log.jsonl")


def _check_out(out: Path, resuming: bool) -> None:
    """--out is a folder this run may write: never a file, and never an earlier run's (unless resuming it)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    if resuming or not out.is_dir():
        return
    earlier = [name for name in RUN_MARKERS if (out / name).exists()] + sorted(p.name for p in out.glob("checkpoint-*"))
    if earlier:
        raise UserError(f"--out {out}: holds an earlier training run ({earlier[0]}); continue it with --resume latest "
                        "or choose another folder")


def _parallel_mode(cfg: TrainConfig, world: int) -> str:
    if cfg.fsdp == "on" and world == 1:
        raise UserError("--fsdp on needs several processes: use `alpaca-train launch --nproc N`")
    if world == 1:
        return "single"
    if cfg.quantize and cfg.fsdp != "off":
        raise UserError(f"--quantize {cfg.quantize} with several processes: only with --fsdp off (DDP)")
    return "ddp" if cfg.fsdp == "off" else "fsdp"  # several processes always synchronise their gradients


def _setup(cfg: TrainConfig, dist: _Dist) -> _Run:
    """Data, tokenizer, model (sharded or replicated), optimizer, schedule and the lineage base."""
    import torch
    from transformers import AutoTokenizer, get_scheduler

    from alpaca_data.model_loading import tokenizer_source
    from alpaca_train import data as D
    from alpaca_train.lineage import base_model_origin, code_version
    from alpaca_train.modeling import setup_pad_token
    from alpaca_train.prompts import TEMPLATE_VERSION

    out = Path(cfg.out)
    resume_dir = _resolve_resume(cfg)
    _check_out(out, resuming=resume_dir is not None)
    world = dist.world_size
    micro_world = cfg.micro_batch_size * world
    if cfg.effective_batch_size % micro_world:
        raise UserError(f"--effective-batch-size {cfg.effective_batch_size} is not a multiple of "
                        f"micro-batch size {cfg.micro_batch_size} x world size {world}")
    accumulation = cfg.effective_batch_size // micro_world
    parallel = _parallel_mode(cfg, world)
    cuda = dist.device.type == "cuda"
    if cfg.precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    else:
        precision = cfg.precision
    torch.manual_seed(cfg.seed)

    source = D.load_source(cfg.data, cfg.store)
    tok_id = cfg.tokenizer or tokenizer_source(cfg.model, f"--model {cfg.model}")
    _check_model_refs(cfg)
    if cfg.lora:
        from alpaca_train.lora import check_targets_early

        check_targets_early(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_id)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer {tok_id}: {one_line(exc)}") from exc
    pad_info = setup_pad_token(tokenizer, None, cfg.pad_token)
    train_records, val_records, validation_info = _validation_split(cfg, source)

    def tokenize(records, cache_id):
        if dist.is_main:  # rank 0 tokenises and caches; the others then read the cache
            data = D.load_or_tokenize(records, cache_id, tokenizer, cfg.max_length, cfg.cache_dir)
        dist.barrier()
        if not dist.is_main:
            data = D.load_or_tokenize(records, cache_id, tokenizer, cfg.max_length, cfg.cache_dir,
                                      write=cfg.cache_dir == "")
        return data

    tokenized = tokenize(train_records, validation_info["train_cache_id"])
    validation = tokenize(val_records, validation_info["cache_id"]) if val_records else None
    if validation is not None and not len(validation):
        validation = None
    stats = tokenized.stats
    _log(dist, f"data {source.ref} ({source.kind}, revision {source.revision_id[:12]}): {stats['examples']} "
               f"examples, {stats['dropped']} dropped, {stats['prompt_truncated']} prompts and "
               f"{stats['response_truncated']} responses truncated to {cfg.max_length} tokens"
               f"{' (cache hit)' if tokenized.cache_hit else ''}; validation: "
               f"{len(validation) if validation is not None else 0} examples ({validation_info['held_out']})")

    model, autocast, adapter = _load_model(cfg, dist, resume_dir, tokenizer, parallel, precision)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 and "norm" not in name.lower() else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon)
    spe = D.steps_per_epoch(len(tokenized), cfg.effective_batch_size)
    total_steps = cfg.max_steps or cfg.epochs * spe
    warmup_steps = math.ceil(cfg.warmup_ratio * total_steps)
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=warmup_steps,
                              num_training_steps=total_steps)
    global_step = 0
    if resume_dir is not None:
        global_step = _load_training_state(resume_dir, cfg, source, model, optimizer, scheduler)
        _log(dist, f"resumed from {resume_dir} at step {global_step}/{total_steps}, lr {scheduler.get_last_lr()[0]:.3e}")

    training = _options_for_lineage(cfg, world, accumulation, precision,
                                    "sum of response-token CE / trained tokens of the global step")
    training.update(steps_per_epoch=spe, total_steps=total_steps, warmup_steps=warmup_steps, parallel=parallel)
    lineage = {
        "dataset": source.lineage(),
        "base_model": {"id": cfg.model, **base_model_origin(cfg.model)},
        **({"adapter": adapter} if adapter else {}),
        "tokenizer": {"id": tok_id, "fingerprint": D.tokenizer_fingerprint(tokenizer), "pad": pad_info,
                      "eos_token_id": tokenizer.eos_token_id, "vocab_size": len(tokenizer)},
        "tokenization": {**stats, "template_version": TEMPLATE_VERSION,
                         "truncation_version": D.TRUNCATION_VERSION, "cache": tokenized.cache_path},
        "training": training,
        "validation": {k: v for k, v in validation_info.items() if not k.endswith("cache_id")} | {
            "examples": len(validation) if validation is not None else 0, "losses": []},
        "code": code_version(),
        "output_dir": str(out),
    }
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        shown = {"fsdp": ", FSDP full shard", "ddp": ", DDP (replicated)", "single": ""}[parallel]
        if adapter:
            shown += (f", LoRA r {cfg.lora_r} alpha {cfg.lora_alpha:g} on {cfg.lora_targets}: "
                      f"{adapter['trainable_parameters']:,} of {adapter['total_parameters']:,} parameters trained "
                      f"({adapter['trainable_share']:.3%})")
        _log(dist, f"{len(tokenized)} examples, {spe} steps/epoch, {total_steps} steps, warmup {warmup_steps}, "
                   f"accumulation {accumulation} x micro-batch {cfg.micro_batch_size} x world {world}, "
                   f"{precision}, batching {cfg.batching}{shown}")
    return _Run(source, tokenizer, tokenized, model, optimizer, scheduler, parallel, autocast, spe, total_steps,
                global_step, lineage, validation)


def _validation_split(cfg: TrainConfig, source) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(training records, validation records, what the lineage says about them, with the tokenisation cache
    ids of both sides: `train_cache_id`, `cache_id`)."""
    from alpaca_train import data as D
    from alpaca_train.validation import split_validation

    if cfg.val_data:
        other = D.load_source(cfg.val_data, cfg.store, option="--val-data")
        return source.records, other.records, {"held_out": f"--val-data {cfg.val_data}", "ref": other.ref,
                                               "revision_id": other.revision_id, "cache_id": other.revision_id,
                                               "train_cache_id": source.revision_id}
    train, held = split_validation(source.records, cfg.val_fraction)
    split = f"{source.revision_id}:train-val@{cfg.val_fraction}"
    info = {"held_out": f"{cfg.val_fraction:.0%} of the revision by record-key hash" if cfg.val_fraction else "none",
            "fraction": cfg.val_fraction, "records": len(held), "cache_id": f"{split}:val",
            "train_cache_id": f"{split}:train" if held else source.revision_id}
    return train, held, info


def _load_model(cfg: TrainConfig, dist: _Dist, resume_dir: Path | None, tokenizer, parallel: str, precision: str):
    """(model ready to train, autocast context or None, the LoRA lineage entry or None)."""
    import torch

    from alpaca_data.model_loading import load_causal_lm
    from alpaca_train import lora
    from alpaca_train.loading import build_sharded, checkpoint_files
    from alpaca_train.modeling import apply_fsdp, setup_pad_token

    sharded_resume = resume_dir is not None and (resume_dir / SHARDS_DIR).is_dir()
    # a sharded checkpoint's weights are loaded with its optimizer state (`_load_training_state`)
    load_from = cfg.model if sharded_resume or resume_dir is None else str(resume_dir)
    if (parallel == "fsdp" and cfg.pad_token == "eos" and not cfg.lora and Path(load_from).is_dir()
            and checkpoint_files(Path(load_from))):
        # memory-safe: meta-device build, shard, then each rank reads only its own rows of the weights
        def prepare(model):
            if cfg.gradient_checkpointing:
                model.gradient_checkpointing_enable()
            model.config.use_cache = False

        model = build_sharded(load_from, dist.device, precision == "bf16", cfg.attn_implementation, dist.rank,
                              dist.world_size, prepare=prepare, load_weights=not sharded_resume)
        setup_pad_token(tokenizer, model, cfg.pad_token)
        model.train()
        return model, None, None
    kwargs: dict[str, Any] = {"dtype": torch.float32, **lora.quantization_kwargs(cfg)}
    if cfg.quantize:  # bitsandbytes places the 4-bit weights on the GPU as it loads them
        kwargs["device_map"] = {"": dist.device}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    # a peft adapter folder as --model is its base with the adapter merged in (alpaca_data.model_loading)
    model = load_causal_lm(load_from, label=f"--model {load_from}" if load_from == cfg.model else f"--resume {load_from}",
                           **kwargs)
    setup_pad_token(tokenizer, model, cfg.pad_token)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    adapter = None
    if cfg.lora:  # base frozen, a fresh adapter trained (resume restores it from the checkpoint's shards)
        model = lora.apply_lora(model, cfg, gradient_checkpointing=cfg.gradient_checkpointing)
        adapter = lora.lineage_entry(cfg, model)
    autocast = None
    if parallel == "fsdp":  # fully_shard moves each unit to the GPU as it shards it: no full fp32 copy on a GPU
        model = apply_fsdp(model, dist.device, bf16=precision == "bf16")
    else:
        if not cfg.quantize:
            model.to(dist.device)
        if precision == "bf16":
            autocast = torch.autocast(device_type=dist.device.type, dtype=torch.bfloat16)
        if parallel == "ddp":  # every rank keeps a full copy; gradients are averaged before each step
            device_ids = [dist.device.index] if dist.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    model.train()
    return model, autocast, adapter


def _fit(cfg: TrainConfig, dist: _Dist, run: _Run) -> TrainResult:
    """The optimizer steps from `run.global_step` to the end (or `--stop-after-steps`), saving on the way."""
    reporter = Reporter(cfg.report_to, Path(cfg.out), dataclasses.asdict(cfg)) \
        if dist.is_main and cfg.report_to != "none" else None
    try:
        return _steps(cfg, dist, run, reporter)
    finally:
        if reporter is not None:
            reporter.close()


def _steps(cfg: TrainConfig, dist: _Dist, run: _Run, reporter) -> TrainResult:
    import contextlib

    import torch

    from alpaca_train import data as D
    from alpaca_train.modeling import token_losses
    from alpaca_train.validation import validation_loss

    out, world, model, spe = Path(cfg.out), dist.world_size, run.model, run.steps_per_epoch
    tokenized = run.tokenized
    collate = D.make_collator(cfg.batching, run.tokenizer.pad_token_id)
    result = TrainResult(out=out, global_step=run.global_step, total_steps=run.total_steps)
    log_path = out / "train_log.jsonl"
    started = time.perf_counter()
    tokens_seen = 0
    first_step, last_line = run.global_step, started
    from alpaca_data.progress import progress_interval

    interval = progress_interval()

    def sync_gradients(last: bool):
        """Gradients cross ranks once per optimizer step, on its last micro-batch."""
        if run.parallel == "fsdp":
            model.set_requires_gradient_sync(last)
        elif run.parallel == "ddp" and not last:
            return model.no_sync()
        return contextlib.nullcontext()

    while result.global_step < run.total_steps:
        epoch, step_in_epoch = divmod(result.global_step, spe)
        order = D.epoch_order(len(tokenized), cfg.seed, epoch)
        plan = D.plan_step(order, step_in_epoch, cfg.effective_batch_size, cfg.micro_batch_size, dist.rank,
                           world, tokenized.response_lens, tokenized.lengths, grouped=cfg.batching == "grouped")
        denominator = plan.label_tokens / world  # FSDP and DDP average gradients over ranks
        loss_sum = 0.0
        for k, micro in enumerate(plan.micro_batches):
            weight = 1.0 if micro else 0.0  # a rank with nothing left runs a zero-weight dummy pass
            batch = collate(tokenized.examples(micro or [int(order[0])]))
            with sync_gradients(k == len(plan.micro_batches) - 1):
                ce, _ = token_losses(model, batch, dist.device, run.autocast)
                (ce.sum() * (weight / denominator)).backward()
            loss_sum += float(ce.detach().sum()) * weight
            tokens_seen += int(batch["input_ids"].numel()) if micro else 0
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm) \
            if cfg.max_grad_norm and cfg.max_grad_norm > 0 else None
        if grad_norm is not None and hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        step_loss = dist.sum(loss_sum) / plan.label_tokens
        if not math.isfinite(step_loss) or (grad_norm is not None and not math.isfinite(float(grad_norm))):
            _stop_on_non_finite(result, step_loss, grad_norm)  # before the step: no NaN reaches the weights
        lr = run.scheduler.get_last_lr()[0]
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        result.global_step += 1
        step = result.global_step
        result.losses.append(step_loss)
        result.lrs.append(lr)
        logged = step % max(1, cfg.logging_steps) == 0 or step == run.total_steps
        now = time.perf_counter()
        if dist.is_main and (logged or now - last_line >= interval):  # a line at least every interval
            elapsed = now - started
            record = {"step": step, "epoch": round(step / spe, 4), "loss": round(step_loss, 6),
                      "lr": lr, "grad_norm": None if grad_norm is None else round(float(grad_norm), 6),
                      "tokens_per_s_rank0": round(tokens_seen / elapsed, 1) if elapsed > 0 else None,
                      **_memory(dist)}
            if logged:
                _append_log(log_path, record, reporter)
            _log(dist, _step_line(record, run.total_steps, elapsed / max(1, step - first_step)))
            last_line = now
        due = (cfg.eval_steps and step % cfg.eval_steps == 0) or step % spe == 0 or step == run.total_steps
        if run.validation is not None and due:
            val_loss = validation_loss(model, run.validation, collate, cfg.micro_batch_size, dist.rank, world,
                                       dist.device, run.autocast, dist.sum)
            result.val_losses.append((step, val_loss))
            run.lineage["validation"]["losses"].append({"step": step, "epoch": round(step / spe, 4),
                                                        "loss": round(val_loss, 6)})
            if dist.is_main:
                record = {"step": step, "epoch": round(step / spe, 4), "val_loss": round(val_loss, 6)}
                _append_log(log_path, record, reporter)
                _log(dist, f"step {step}/{run.total_steps}: validation loss {val_loss:.4f}")
        if cfg.save_steps and step % cfg.save_steps == 0 and step < run.total_steps:
            result.checkpoint = out / f"checkpoint-{step}"
            _save_checkpoint(result.checkpoint, final=False, run=run, dist=dist, cfg=cfg, global_step=step)
        if cfg.stop_after_steps and step >= cfg.stop_after_steps and step < run.total_steps:
            target = out / f"checkpoint-{step}"
            if result.checkpoint != target:
                _save_checkpoint(target, final=False, run=run, dist=dist, cfg=cfg, global_step=step)
            result.checkpoint = target
            result.stopped_early = True
            _log(dist, f"stopped after step {step}; resume with --resume {target}")
            return result
    _save_checkpoint(out, final=True, run=run, dist=dist, cfg=cfg, global_step=result.global_step)
    result.checkpoint = out
    curve = out / "loss_curve.png"
    _log(dist, f"saved {out}" + (f"; wrote the loss curve {curve}" if curve.is_file() else ""))
    return result


def _step_line(record: dict[str, Any], total_steps: int, seconds_per_step: float) -> str:
    """`step 5/20 (epoch 0.25): loss 1.2345, lr 2.00e-05, 11.8 s/step, ETA 2m57s` (the whole record is in
    train_log.jsonl)."""
    from alpaca_data.progress import fmt_duration

    eta = fmt_duration(seconds_per_step * (total_steps - record["step"]))
    pace = f"{seconds_per_step:.1f} s/step" if seconds_per_step >= 0.1 else f"{1 / max(seconds_per_step, 1e-6):.1f} steps/s"
    return (f"step {record['step']}/{total_steps} (epoch {record['epoch']:g}): loss {record['loss']:.4f}, "
            f"lr {record['lr']:.2e}, {pace}, ETA {eta}")


def _append_log(path: Path, record: dict[str, Any], reporter=None) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    if reporter is not None:
        reporter.log(record)


def _memory(dist: _Dist) -> dict[str, float]:
    """Peak memory so far on this rank: host RSS and, on a GPU, allocated device memory (MiB)."""
    import resource

    import torch

    peak = {"peak_rss_mib_rank0": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if dist.device.type == "cuda":
        peak["peak_gpu_mib_rank0"] = round(torch.cuda.max_memory_allocated(dist.device) / 2**20, 1)
    return peak


def _stop_on_non_finite(result: TrainResult, loss: float, grad_norm) -> None:
    kept = f"the last good checkpoint is {result.checkpoint}" if result.checkpoint else "no checkpoint was written"
    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {float(grad_norm)}"
    raise UserError(f"step {result.global_step + 1}: {what}; training stopped before the update ({kept}); "
                    "try a lower --lr or --max-grad-norm")


def _save_checkpoint(directory: Path, *, final: bool, run: _Run, dist: _Dist, cfg: TrainConfig,
                     global_step: int) -> None:
    """Every rank takes part in gathering the full state dict (offloaded to CPU, kept on rank 0 only);
    rank 0 writes an ordinary `from_pretrained` directory plus lineage, card and trainer state."""
    import torch
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    from alpaca_train.lineage import write_card, write_lineage
    from alpaca_train.plots import plot_losses

    model = run.model
    lora = cfg.lora  # an adapter: only its (trainable) weights are gathered and saved, the base stays where it is
    if final or lora:  # an ordinary from_pretrained folder, gathered on rank 0 alone (offloaded to its CPU)
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                      ignore_frozen_params=lora))
    if not final:  # every rank writes its own shards of the weights and optimizer state
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        if dist.is_main and directory.exists():  # left by a killed run (resume restarts before it): start clean
            shutil.rmtree(directory)
        dist.barrier()

        model_state, optim_state = get_state_dict(model, run.optimizer,
                                                  options=StateDictOptions(ignore_frozen_params=lora))
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=str(directory / SHARDS_DIR),
                 no_dist=dist.world_size == 1)
    if dist.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        plain = model.module if run.parallel == "ddp" else model
        if lora:  # every checkpoint, intermediate too, is a peft adapter folder
            from alpaca_train.lora import save_adapter

            save_adapter(plain, directory, state)
        elif final:
            plain.save_pretrained(directory, state_dict=state, safe_serialization=True, max_shard_size="5GB")
        run.tokenizer.save_pretrained(directory)
        payload = dict(run.lineage)
        payload["checkpoint"] = {"global_step": global_step, "total_steps": run.total_steps, "final": final,
                                 "epoch": round(global_step / run.steps_per_epoch, 4)}
        write_lineage(directory, payload)
        write_card(directory, payload)
        plot_losses(Path(cfg.out) / "train_log.jsonl", directory / "loss_curve.png")
        if not final:
            with atomic_file(directory / TRAINER_STATE) as handle:  # written last: marks the checkpoint whole
                torch.save({"global_step": global_step, "format": "dcp", "world_size": dist.world_size,
                            "scheduler": run.scheduler.state_dict(), "revision_id": run.source.revision_id,
                            "total_steps": run.total_steps, "config": dataclasses.asdict(cfg),
                            "torch_rng": torch.get_rng_state()}, handle)
    dist.barrier()


_MUST_MATCH = ("effective_batch_size", "epochs", "seed", "max_length", "max_steps", "lr", "lr_scheduler",
               "warmup_ratio", "lora", "lora_r", "lora_alpha", "lora_targets")


def _load_training_state(resume_dir: Path, cfg: TrainConfig, source, model, optimizer, scheduler) -> int:
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    try:  # tensors and plain containers only: a checkpoint folder from elsewhere cannot run code here
        state = torch.load(resume_dir / TRAINER_STATE, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise UserError(f"--resume {resume_dir}: {TRAINER_STATE} is not a trainer state this tool wrote "
                        f"({str(error).splitlines()[0][:160]})") from None
    if state["revision_id"] != source.revision_id:
        raise UserError(f"--resume {resume_dir}: trained on revision {state['revision_id'][:12]}, "
                        f"but --data {cfg.data} is revision {source.revision_id[:12]}")
    saved = state.get("config", {})
    changed = [k for k in _MUST_MATCH if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        raise UserError(f"--resume {resume_dir}: options differ from the interrupted run: "
                        + ", ".join(f"{k} {saved[k]} -> {getattr(cfg, k)}" for k in changed))
    if state.get("format") == "dcp":  # each rank reads its own shards, whatever world size wrote them
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        # LoRA: the adapter's weights only (the frozen base was loaded from --model; dcp.load checks every key)
        options = StateDictOptions(ignore_frozen_params=cfg.lora, strict=not cfg.lora)
        model_state, optim_state = get_state_dict(model, optimizer, options=options)
        shards = {"model": model_state, "optim": optim_state}
        dcp.load(shards, checkpoint_id=str(resume_dir / SHARDS_DIR), no_dist=not torch.distributed.is_initialized())
        set_state_dict(model, optimizer, model_state_dict=shards["model"], optim_state_dict=shards["optim"],
                       options=options)
    else:  # a full optimizer state from an earlier version of this tool
        set_optimizer_state_dict(model, optimizer, optim_state_dict=state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
    scheduler.load_state_dict(state["scheduler"])
    if "torch_rng" in state:
        torch.set_rng_state(state["torch_rng"])
    return int(state["global_step"])

