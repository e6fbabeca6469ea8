"""`alpaca-data generate` (self-instruct with a teacher) and `alpaca-data demo-teacher` (the demo server)."""
from __future__ import annotations

import sys

import typer

from alpaca_data.cli_options import config_command
from alpaca_data.commands._request_runs import STOPPED_EXIT, resumable_on_interrupt
from alpaca_data.errors import UserError
from alpaca_data.generate.config import GenerateConfig


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("demo-teacher")(demo_teacher)


@config_command(GenerateConfig)
def generate(cfg: GenerateConfig) -> None:
    """Generate instruction data with self-instruct and commit it as a revision."""
    from alpaca_data.generate.progress import Progress
    from alpaca_data.generate.run import run_generation
    from alpaca_data.progress import is_quiet

    title = f"generate {cfg.dataset} with {cfg.teacher.spec}"
    with resumable_on_interrupt("answers"), Progress(target=cfg.num, quiet=is_quiet(), title=title) as progress:
        result = run_generation(cfg, progress=progress)
    stats = result.stats
    if result.cancelled is not None:
        print(f"cancelled {len(result.cancelled)} open batches of run {result.run_dir.name}"
              + (f": {', '.join(result.cancelled)}" if result.cancelled else "")
              + "; --resume collects what they answered and sends the rest again")
        return
    if result.status == "budget_exhausted":
        print(f"budget reached: ${stats.cost_usd:.4f} of ${cfg.limits.max_cost} spent, kept {result.kept}/{cfg.num}; "
              f"nothing committed. Continue with --resume and a higher --max-cost (run folder {result.run_dir})",
              file=sys.stderr)
        raise typer.Exit(STOPPED_EXIT)
    note = "" if result.status == "done" else f" (stopped: {result.status}; only {result.kept} of {cfg.num} kept)"
    print(f"{cfg.dataset}@{result.revision_id[:12]}: {min(result.kept, cfg.num)} tasks from {stats.requests_answered} "
          f"requests ({stats.requests_failed} failed), {stats.prompt_tokens + stats.completion_tokens:,} tokens, "
          f"${stats.cost_usd:.4f}{note}")


def demo_teacher(
    port: int = typer.Option(8089, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    latency_ms: float = typer.Option(0.0, "--latency-ms", help="Delay before each answer."),
    fault_429_rate: float = typer.Option(0.0, "--fault-429-rate"),
    fault_5xx_rate: float = typer.Option(0.0, "--fault-5xx-rate"),
    fault_timeout_rate: float = typer.Option(0.0, "--fault-timeout-rate"),
    truncate_rate: float = typer.Option(0.0, "--truncate-rate", help="Answers cut short with finish_reason length."),
    malformed_rate: float = typer.Option(0.0, "--malformed-rate", help="200 responses with a broken JSON body."),
    retry_after: float = typer.Option(1.0, "--retry-after", help="Retry-After seconds sent with 429s."),
    timeout_sleep: float = typer.Option(60.0, "--timeout-sleep", help="How long a timeout fault stalls."),
    seed: int = typer.Option(0, "--seed"),
    batch_seconds: float = typer.Option(0.0, "--batch-seconds", help="Batch API: a batch completes this many "
                                        "seconds after it is created."),
    batch_faults: str = typer.Option("", "--batch-faults", help="Batch API: how the first batches end, in "
                                     "creation order (comma-separated: expired, failed, ok)."),
    output_suffix: str = typer.Option("", "--output-suffix",
                                      help="Text appended to every task's output (e.g. 'basic cooking skills')."),
) -> None:
    """Serve the deterministic OpenAI-compatible demo teacher (stats at /_demo/stats)."""
    from alpaca_data.generate.demo_server import DemoConfig, DemoServer

    for name, rate in (("429", fault_429_rate), ("5xx", fault_5xx_rate), ("timeout", fault_timeout_rate),
                       ("truncate", truncate_rate), ("malformed", malformed_rate)):
        if not 0 <= rate <= 1:
            raise UserError(f"--{name} rate must be between 0 and 1", exit_code=2)
    if batch_seconds < 0:
        raise UserError("--batch-seconds must be 0 or more", exit_code=2)
    if any(f.strip() not in ("expired", "failed", "ok") for f in batch_faults.split(",") if f.strip()):
        raise UserError(f"--batch-faults {batch_faults!r}: expected expired, failed or ok, comma-separated", exit_code=2)
    if fault_429_rate + fault_5xx_rate + fault_timeout_rate + malformed_rate > 1:
        raise UserError("fault rates add up to more than 1", exit_code=2)
    config = DemoConfig(seed=seed, latency_ms=latency_ms, fault_429_rate=fault_429_rate,
                        fault_5xx_rate=fault_5xx_rate, fault_timeout_rate=fault_timeout_rate,
                        truncate_rate=truncate_rate, malformed_rate=malformed_rate, retry_after_s=retry_after,
                        timeout_sleep_s=timeout_sleep, output_suffix=output_suffix, batch_seconds=batch_seconds,
                        batch_faults=tuple(f.strip() for f in batch_faults.split(",") if f.strip()))
    try:
        server = DemoServer(config, host=host, port=port)
    except OSError as error:
        raise UserError(f"{host}:{port}: cannot listen: {error.strerror or error}") from None
    print(f"demo teacher on {server.base_url} (model alpaca-demo-teacher); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
