"""`alpaca-train`: fine-tune a causal LM on an Alpaca-style dataset (the Stanford Alpaca recipe).

    alpaca-train --data alpaca@v1 --model PATH_OR_ID --out DIR [options]
    alpaca-train --config train.toml [options]          # options: TOML < flags
    alpaca-train launch --nproc 8 --data ... --model ... --out ...   # torchrun + FSDP full shard

`--data` takes a store ref (`alpaca@v1`, `alpaca@main`, `alpaca@<id prefix>`), a local JSON/JSONL file,
or (not yet supported) a Hub dataset `user/name@rev`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import typer

from alpaca_data.errors import UserError

train_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                        help="Fine-tune a causal LM on an Alpaca-style dataset (Stanford Alpaca's recipe).")
launch_app = typer.Typer(add_completion=False, rich_markup_mode=None)
tiny_app = typer.Typer(add_completion=False, rich_markup_mode=None)


def load_toml(path: str) -> dict[str, Any]:
    from alpaca_train.trainer import TrainConfig

    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"--config {path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"--config {path}: {exc}") from exc
    if isinstance(raw.get("train"), dict):  # either top-level keys or a [train] table
        raw = {**{k: v for k, v in raw.items() if k != "train"}, **raw["train"]}
    known = set(TrainConfig.field_names())
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(f"--config {path}: unknown option {key!r}")
        values[name] = value
    return values


def build_config(flags: dict[str, Any], config_path: str | None):
    """Defaults < TOML file < flags given on the command line."""
    from alpaca_train.trainer import TrainConfig

    values: dict[str, Any] = load_toml(config_path) if config_path else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise UserError(str(exc)) from exc


@train_app.command()
def train_command(
    data: str | None = typer.Option(None, "--data", help="store ref (alpaca@v1), JSON/JSONL file, or user/name@rev"),
    model: str | None = typer.Option(None, "--model", help="base model: local path or Hub id"),
    out: str | None = typer.Option(None, "--out", help="output directory"),
    config: str | None = typer.Option(None, "--config", help="TOML file of options (flags win)"),
    tokenizer: str | None = typer.Option(None, "--tokenizer", help="tokenizer path/id (default: the model's)"),
    store: str | None = typer.Option(None, "--store", help="store directory (default $ALPACA_STORE or ./alpaca-store)"),
    epochs: int | None = typer.Option(None, "--epochs", help="[3]"),
    lr: float | None = typer.Option(None, "--lr", help="peak learning rate [2e-5]"),
    effective_batch_size: int | None = typer.Option(None, "--effective-batch-size",
                                                       help="micro-batch x accumulation x world size [128]"),
    micro_batch_size: int | None = typer.Option(None, "--micro-batch-size", help="examples per forward pass [4]"),
    warmup_ratio: float | None = typer.Option(None, "--warmup-ratio", help="[0.03]"),
    lr_scheduler: str | None = typer.Option(None, "--lr-scheduler", help="cosine | linear | constant [cosine]"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="[0]"),
    max_length: int | None = typer.Option(None, "--max-length", help="tokens per example [512]"),
    max_grad_norm: float | None = typer.Option(None, "--max-grad-norm", help="gradient clipping, 0 = off [1.0]"),
    precision: str | None = typer.Option(None, "--precision", help="auto | bf16 | fp32 [auto: bf16 on capable GPUs]"),
    batching: str | None = typer.Option(None, "--batching",
                                           help="padfree | padded (Alpaca's) | grouped [padfree]"),
    pad_token: str | None = typer.Option(None, "--pad-token", help="eos | add (Alpaca's [PAD] + resize) [eos]"),
    seed: int | None = typer.Option(None, "--seed", help="[42]"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="total optimizer steps (overrides epochs)"),
    save_steps: int | None = typer.Option(None, "--save-steps", help="checkpoint every N steps [0: final only]"),
    stop_after_steps: int | None = typer.Option(None, "--stop-after-steps",
                                                   help="checkpoint and stop at this step; the schedule is unchanged"),
    resume: str | None = typer.Option(None, "--resume", help="checkpoint directory, or 'latest'"),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="tokenisation cache ('' disables)"),
    logging_steps: int | None = typer.Option(None, "--logging-steps", help="[1]"),
    attn_implementation: str | None = typer.Option(None, "--attn-implementation", help="eager | sdpa | flash_attention_2"),
    gradient_checkpointing: bool | None = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
    fsdp: str | None = typer.Option(None, "--fsdp", help="auto | on | off [auto: on with several processes]"),
) -> None:
    """Fine-tune MODEL on DATA and write a from_pretrained directory with alpaca_lineage.json and README.md."""
    flags = dict(locals())
    config_path = flags.pop("config")
    try:
        cfg = build_config(flags, config_path)
        from alpaca_train.trainer import train

        result = train(cfg)
    except UserError as exc:
        typer.echo(f"alpaca-train: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if int(os.environ.get("RANK", "0")) == 0:
        where = result.checkpoint or result.out
        typer.echo(f"{'stopped at' if result.stopped_early else 'done:'} step {result.global_step}/"
                   f"{result.total_steps} -> {where}")


@launch_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def launch_command(
    ctx: typer.Context,
    nproc: int = typer.Option(..., "--nproc", help="processes (GPUs) on this node"),
    nnodes: int = typer.Option(1, "--nnodes"),
    node_rank: int = typer.Option(0, "--node-rank"),
    master_addr: str | None = typer.Option(None, "--master-addr", help="for --nnodes > 1"),
    master_port: int = typer.Option(29500, "--master-port", help="for --nnodes > 1"),
) -> None:
    """Run `alpaca-train` under torchrun with FSDP full shard; the other options are alpaca-train's."""
    if nproc < 1:
        typer.echo("alpaca-train: error: --nproc must be at least 1", err=True)
        raise typer.Exit(2)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        if not master_addr:
            typer.echo("alpaca-train: error: --nnodes > 1 needs --master-addr", err=True)
            raise typer.Exit(2)
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={master_addr}",
                f"--master-port={master_port}"]
    cmd += ["-m", "alpaca_train", *ctx.args]
    raise typer.Exit(subprocess.call(cmd))


@tiny_app.command()
def tiny_model_command(
    out: Path = typer.Argument(..., help="folder to write the model and tokenizer to"),
    layers: int = typer.Option(2, "--layers"),
    hidden: int = typer.Option(64, "--hidden"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a tiny randomly initialised LLaMA with GPT-2's tokenizer (offline), to try the trainer."""
    from alpaca_train.tiny import make_tiny_llama

    try:
        model = make_tiny_llama(out, layers=layers, hidden=hidden, seed=seed)
    except UserError as exc:
        typer.echo(f"alpaca-train: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    typer.echo(f"wrote a {sum(p.numel() for p in model.parameters()):,}-parameter LLaMA to {out}")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "launch":
        launch_app(args=args[1:], prog_name="alpaca-train launch")
    elif args and args[0] == "tiny-model":
        tiny_app(args=args[1:], prog_name="alpaca-train tiny-model")
    else:
        train_app(args=args, prog_name="alpaca-train")


if __name__ == "__main__":
    main()
