"""`alpaca-data generate` (self-instruct with a teacher) and `alpaca-data demo-teacher` (the demo server)."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from alpaca_data.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    app.command("demo-teacher")(demo_teacher)


def generate(
    seeds: Path = typer.Option(..., "--seeds", help="Seed tasks (self-instruct JSONL)."),
    num: int = typer.Option(..., "--num", "-n", help="Number of tasks to keep."),
    teacher: str = typer.Option(..., "--teacher", help="openai:MODEL, hf:PATH or demo."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset to commit the revision to."),
    api: str = typer.Option("chat", "--api", help="chat or completions endpoint (hf: chat uses the chat template)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", help="Requests in flight at most."),
    rpm: float | None = typer.Option(None, "--rpm", help="Requests per minute limit."),
    tpm: float | None = typer.Option(None, "--tpm", help="Tokens per minute limit."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Stop cleanly (resumable) at this cost in USD."),
    seed: int = typer.Option(0, "--seed", help="Run seed: fixes every prompt."),
    resume: bool = typer.Option(False, "--resume", help="Continue the newest unfinished run with these settings."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Run folder (default <store>/runs/<dataset>/<run-id>)."),
    num_prompt_instructions: int = typer.Option(3, "--num-prompt-instructions", "-k", help="Demonstrations per prompt."),
    machine_demos: int = typer.Option(0, "--machine-demos", help="How many demonstrations come from kept machine tasks."),
    machine_lag: int = typer.Option(64, "--machine-lag", help="Machine demos come from requests at least this many indices back."),
    request_batch_size: int = typer.Option(1, "--request-batch-size", help="hf: prompts per generate() batch."),
    timeout: float = typer.Option(120.0, "--timeout", help="Per-request timeout in seconds."),
    max_retries: int = typer.Option(5, "--max-retries", help="Retries per request (429, 5xx, timeouts, malformed)."),
    max_requests: int | None = typer.Option(None, "--max-requests", help="Give up after this many requests (default 4*N+16)."),
    price_table: Path | None = typer.Option(None, "--price-table", help="TOML/JSON: model -> {input, output} USD per 1M tokens."),
    message: str = typer.Option("", "--message", "-m", help="Revision message."),
    store: Path | None = typer.Option(None, "--store", help="Store folder (default $ALPACA_STORE or ./alpaca-store)."),
    temperature: float = typer.Option(1.0, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    max_tokens: int = typer.Option(3072, "--max-tokens"),
    rules: str = typer.Option("default", "--rules", help="Heuristic rule spec, e.g. default,-blacklist."),
    rouge_threshold: float = typer.Option(0.7, "--rouge-threshold", help="Drop when ROUGE-L F to the pool exceeds this."),
    no_request_seed: bool = typer.Option(False, "--no-request-seed", help="Do not send a per-request `seed`."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress display."),
) -> None:
    """Generate instruction data with self-instruct and commit it as a revision."""
    from alpaca_data.generate.progress import Progress
    from alpaca_data.generate.run import GenerateConfig, run_generation
    from alpaca_data.progress import is_quiet

    quiet = quiet or is_quiet()
    live = not quiet and sys.stderr.isatty()

    cfg = GenerateConfig(
        seeds=str(seeds), num=num, teacher=teacher, dataset=dataset, api=api, base_url=base_url,
        concurrency=concurrency, rpm=rpm, tpm=tpm, max_cost=max_cost, seed=seed, resume=resume,
        run_dir=str(run_dir) if run_dir else None, num_prompt_instructions=num_prompt_instructions,
        machine_demos=machine_demos, machine_lag=machine_lag, request_batch_size=request_batch_size,
        timeout=timeout, max_retries=max_retries, max_requests=max_requests,
        price_table=str(price_table) if price_table else None, message=message,
        store=str(store) if store else None, quiet=quiet, temperature=temperature, top_p=top_p,
        max_tokens=max_tokens, rules=rules, rouge_threshold=rouge_threshold, send_seed=not no_request_seed)
    try:
        with Progress(target=num, quiet=not live, title=f"generate {dataset} with {teacher}") as progress:
            result = run_generation(cfg, progress=progress)
    except KeyboardInterrupt:
        print("interrupted: answers so far are journalled; run the same command with --resume to continue",
              file=sys.stderr)
        raise typer.Exit(130) from None
    stats = result.stats
    if result.status == "budget_exhausted":
        print(f"budget reached: ${stats.cost_usd:.4f} of ${max_cost} spent, kept {result.kept}/{num}; nothing "
              f"committed. Continue with --resume and a higher --max-cost (run folder {result.run_dir})",
              file=sys.stderr)
        raise typer.Exit(3)
    note = "" if result.status == "done" else f" (stopped: {result.status}; only {result.kept} of {num} kept)"
    print(f"{dataset}@{result.revision_id[:12]}: {min(result.kept, num)} tasks from {stats.requests_answered} "
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
) -> None:
    """Serve the deterministic OpenAI-compatible demo teacher (stats at /_demo/stats)."""
    from alpaca_data.generate.demo_server import DemoConfig, DemoServer

    for name, rate in (("429", fault_429_rate), ("5xx", fault_5xx_rate), ("timeout", fault_timeout_rate),
                       ("truncate", truncate_rate), ("malformed", malformed_rate)):
        if not 0 <= rate <= 1:
            raise UserError(f"--{name} rate must be between 0 and 1", exit_code=2)
    if fault_429_rate + fault_5xx_rate + fault_timeout_rate + malformed_rate > 1:
        raise UserError("fault rates add up to more than 1", exit_code=2)
    config = DemoConfig(seed=seed, latency_ms=latency_ms, fault_429_rate=fault_429_rate,
                        fault_5xx_rate=fault_5xx_rate, fault_timeout_rate=fault_timeout_rate,
                        truncate_rate=truncate_rate, malformed_rate=malformed_rate, retry_after_s=retry_after,
                        timeout_sleep_s=timeout_sleep)
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
