"""Serving throughput: generated tokens/s with 1, 4 and 16 (`--clients`) concurrent streaming clients against
`alpaca-train serve` (dynamic batching), and against the same server taking one request at a time
(`--max-batch-size 1`) under the largest load. Prints the ratios last. Goal on CPU: >= 4x at 16 clients on the
small LLaMA; >= 3x at 8 clients on SmolLM2-135M-Instruct.

    .venv/bin/python benchmarks/serve_throughput.py                      # a small LLaMA made here (CPU)
    .venv/bin/python benchmarks/serve_throughput.py --model /tmp/smollm2-hf --clients 1,8   # the real model
    .venv/bin/python benchmarks/serve_throughput.py --model PATH --dtype bfloat16   # e.g. a ~0.5B model on a GPU

The default model is a LLaMA of 8 layers, hidden 512 (72M parameters, random weights, 290 MB in fp32): big
enough that its weights do not sit in the CPU cache, as a real model's do not, small enough to run in minutes.
Each client sends `--requests` chat requests one after another (streamed, sampled, `--max-tokens` each) and
counts the completion tokens the server reports. The watermark is on (the default); the content filter is
off so the figure is the model's, not the filter's (`--moderation local` to include it).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


THREADS = {"value": "1"}


def start_server(model: str, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "ALPACA_WATERMARK_KEY": os.environ.get("ALPACA_WATERMARK_KEY", "benchmark-key-0123456789"),
           "OMP_NUM_THREADS": THREADS["value"]}
    process = subprocess.Popen([sys.executable, "-m", "alpaca_train", "serve", model, "--port", "0", *args],
                               stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    for line in process.stderr:
        match = re.search(r"serving \S+ on (http://\S+?) ", line)
        if match:
            return process, match.group(1)
    raise SystemExit(f"the server did not start (exit {process.wait()})")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


async def load(base_url: str, clients: int, requests: int, max_tokens: int) -> tuple[int, float]:
    import openai

    api = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=600)
    name = (await api.models.list()).data[0].id

    async def client(number: int) -> int:
        tokens = 0
        for turn in range(requests):
            stream = await api.chat.completions.create(
                model=name, messages=[{"role": "user", "content": f"Tell story {number}.{turn} about a robot."}],
                max_tokens=max_tokens, temperature=1.0, stream=True, stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.usage:
                    tokens += chunk.usage.completion_tokens
        return tokens

    await client(-1)  # warm-up: first-call costs are not throughput
    before = batch_counts(base_url)
    started = time.perf_counter()
    total = sum(await asyncio.gather(*(client(n) for n in range(clients))))
    elapsed = time.perf_counter() - started
    after = batch_counts(base_url)
    await api.close()
    batches = after[0] - before[0]
    return total, elapsed, (after[1] - before[1]) / batches if batches else 0.0


def batch_counts(base_url: str) -> tuple[int, float]:
    """(batches, rows) the server has generated so far."""
    import httpx

    stats = httpx.get(base_url + "/api/stats", timeout=30).json()
    return stats["batches"], stats["mean_batch_size"] * stats["batches"]


def measure(model: str, clients: int, requests: int, max_tokens: int, serve_args: list[str]) -> float:
    process, url = start_server(model, *serve_args)
    try:
        tokens, seconds, batch = asyncio.run(load(url, clients, requests, max_tokens))
    finally:
        stop_server(process)
    rate = tokens / seconds
    shown = " ".join(serve_args)
    print(f"{clients:>3} clients x {requests} requests, {shown}: {tokens:,} tokens in {seconds:.2f} s = "
          f"{rate:,.0f} tokens/s (mean batch {batch:.1f})", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint folder (default: a tiny LLaMA made in a temp folder)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--moderation", default="none")
    parser.add_argument("--threads", default="1", help="torch threads in the server (OMP_NUM_THREADS): 1 keeps the "
                                                       "figure steady on a shared 2-core machine")
    parser.add_argument("--clients", default="1,4,16", help="client counts to measure, comma-separated")
    parser.add_argument("--no-baseline", action="store_true", help="skip the --max-batch-size 1 run")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    options = parser.parse_args()
    THREADS["value"] = options.threads
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as folder:
        model = options.model
        if model is None:
            from alpaca_train.tiny import make_tiny_llama

            model = str(Path(folder) / "tiny-llama")
            made = make_tiny_llama(model, layers=options.layers, hidden=options.hidden)
            size = sum(p.numel() for p in made.parameters()) / 1e6
            print(f"model: small LLaMA ({options.layers} layers, hidden {options.hidden}, GPT-2 vocabulary, {size:.0f}M "
                  f"parameters), random weights, CPU, {options.threads} torch thread(s)", flush=True)
        common = ["--moderation", options.moderation, "--dtype", options.dtype, "--max-concurrent", "64"]
        counts = sorted({int(n) for n in options.clients.split(",")})
        rates = {n: measure(model, n, options.requests, options.max_tokens, common) for n in counts}
        most = counts[-1]
        one_at_a_time = None if options.no_baseline else measure(
            model, most, options.requests, options.max_tokens, common + ["--max-batch-size", "1"])
    print()
    for n in counts:
        versus = [f"{rates[n] / rates[counts[0]]:.2f}x {counts[0]} client(s)"]
        if one_at_a_time:
            versus.append(f"{rates[n] / one_at_a_time:.2f}x one request at a time under {most} clients")
        print(f"{n:>3} clients: {rates[n]:,.1f} tokens/s = {'; '.join(versus)}")
    if one_at_a_time:
        print(f"ratio at {most} clients: {rates[most] / one_at_a_time:.2f}x vs one request at a time; "
              f"{rates[most] / rates[counts[0]]:.2f}x vs {counts[0]} client(s)")


if __name__ == "__main__":
    main()
