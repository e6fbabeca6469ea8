"""Generation settings, each declared once: the `generate` command's options, its TOML config, the run's
identity (what a resumed run must share) and the manifest's recipe all come from these dataclasses.

`TeacherSettings`, `Decoding` and `RequestLimits` are shared by every command that sends requests to a
model (self-instruct generation, evaluation outputs, LLM judging).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alpaca_data.cli_options import nested, required, setting
from alpaca_data.errors import UsageError, refuse_missing_model_path
from alpaca_data.store.refs import NAME_PATTERN


def _check(rules: list[tuple[bool, str]]) -> None:
    for ok, message in rules:
        if not ok:
            raise UsageError(message)


@dataclass(kw_only=True)
class TeacherSettings:
    spec: str = required("openai:MODEL, hf:PATH or demo.", "--teacher")
    api: str = setting("chat", "chat or completions endpoint (hf: chat applies the model's chat template).")
    base_url: str | None = setting(None, "OpenAI-compatible endpoint (default $OPENAI_BASE_URL).")
    send_seed: bool = setting(True, "Send each request's seed (--no-send-seed for servers that refuse one).")
    request_batch_size: int = setting(
        1, "hf: prompts generated together. A batch is a fixed group of consecutive requests sampled with one "
           "seed, so the output never depends on timing.")

    def validate(self) -> None:
        _check([(self.api in ("chat", "completions"), f"--api {self.api!r}: expected chat or completions"),
                (self.request_batch_size >= 1, "--request-batch-size must be at least 1")])
        if self.spec.strip().startswith("hf:"):  # before a run folder exists or anything loads: one line at once
            path = self.spec.strip()[3:]
            refuse_missing_model_path(path, f"hf:{path}")


@dataclass(kw_only=True)
class Decoding:
    temperature: float = setting(1.0, "Sampling temperature.")
    top_p: float = setting(1.0, "Nucleus sampling mass.")
    max_tokens: int = setting(3072, "Most tokens per answer (a budget reserves this much for every request).")
    stop: tuple[str, ...] = setting(("\n20", "20.", "20."), "Stop strings (repeatable).")
    frequency_penalty: float = setting(0.0, "OpenAI frequency penalty.")
    presence_penalty: float = setting(0.0, "OpenAI presence penalty.")

    def validate(self) -> None:
        _check([(self.max_tokens >= 1, "--max-tokens must be at least 1"),
                (self.temperature >= 0, "--temperature must be 0 or more"),
                (0 < self.top_p <= 1, "--top-p must be in (0, 1]")])

    def as_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "stop": list(self.stop), "frequency_penalty": self.frequency_penalty,
                "presence_penalty": self.presence_penalty}


BATCH_RETRY = ("batch", "realtime")


@dataclass(kw_only=True)
class BatchSettings:
    """Batch mode (alpaca_data/generate/batching.py): requests go through the provider's Batch API at its batch
    price instead of one HTTP call each; the answers, and so the data, are the same."""

    batch: bool = setting(False, "Send requests through the OpenAI Batch API (half price; results within 24 h); "
                                 "kill-safe: --resume picks the batches up where they are.")
    batch_max_requests: int = setting(50_000, "Most requests in one batch file (the provider's limit).")
    batch_max_bytes: int = setting(200_000_000, "Most bytes in one batch file (the provider's limit).")
    batch_poll: float = setting(30.0, "Seconds before the first status check of a batch (then backs off, x1.5, up "
                                      "to --batch-poll-max).")
    batch_poll_max: float = setting(600.0, "Most seconds between two status checks of a batch.")
    batch_first_wave: float = setting(8.0, "generate: tasks a request is expected to keep, to size the first wave "
                                           "(later waves use the keep rate so far): higher sends fewer requests but "
                                           "may need one more wave.")
    batch_retry: str = setting("batch", "How requests of an expired, failed or cancelled batch and failed lines are "
                                        "retried: batch (in a new batch) or realtime.")
    batch_window: str = setting("24h", "The batches' completion window.", hidden=True)
    batch_cancel: bool = setting(False, "Cancel the open batches of the run these settings name (or --run-dir) "
                                        "and stop; --resume later sends their requests again.")

    def validate(self) -> None:
        _check([(self.batch_max_requests >= 1, "--batch-max-requests must be at least 1"),
                (self.batch_max_bytes >= 1024, "--batch-max-bytes must be at least 1024"),
                (self.batch_poll > 0, "--batch-poll must be positive"),
                (self.batch_first_wave > 0, "--batch-first-wave must be positive"),
                (self.batch_poll_max >= self.batch_poll, "--batch-poll-max must be at least --batch-poll"),
                (self.batch_retry in BATCH_RETRY, f"--batch-retry {self.batch_retry!r}: expected batch or realtime")])


@dataclass(kw_only=True)
class RequestLimits:
    concurrency: int = setting(8, "Requests in flight at most.", "-c")
    rpm: float | None = setting(None, "Requests per minute limit.")
    tpm: float | None = setting(None, "Tokens per minute limit.")
    max_cost: float | None = setting(None, "Never spend more than this (USD): each request's worst case is reserved "
                                           "before it is sent; the run stops cleanly and can resume.")
    price_table: str | None = setting(None, "TOML/JSON file: model -> {input, output} USD per 1M tokens.")
    timeout: float = setting(120.0, "Per-request timeout in seconds.")
    max_retries: int = setting(5, "Retries per request (429, 5xx, timeouts, malformed answers).")
    max_requests: int | None = setting(None, "Give up after this many requests (generate: default 4*N+16).")
    backoff_base: float = setting(0.5, "First retry delay in seconds (doubles, with jitter).", hidden=True)
    batching: BatchSettings = nested(BatchSettings)

    def validate(self) -> None:
        self.batching.validate()
        _check([(self.concurrency >= 1, "--concurrency must be at least 1"),
                (self.max_retries >= 0, "--max-retries must be 0 or more"),
                (self.timeout > 0, "--timeout must be positive"),
                (self.rpm is None or self.rpm > 0, "--rpm must be positive"),
                (self.tpm is None or self.tpm > 0, "--tpm must be positive"),
                (self.max_cost is None or self.max_cost > 0, "--max-cost must be positive"),
                (self.max_requests is None or self.max_requests >= 1, "--max-requests must be at least 1"),
                (self.backoff_base >= 0, "--backoff-base must be 0 or more")])


@dataclass(kw_only=True)
class GenerateConfig:
    seeds: str = required("Seed tasks: a self-instruct seed file or any Alpaca-format file.")
    num: int = required("Number of tasks to keep.", "-n")
    dataset: str = required("Dataset to commit the revision to.", "-d")
    teacher: TeacherSettings = nested(TeacherSettings)
    seed: int = setting(0, "Run seed: fixes every prompt and request seed.")
    num_prompt_instructions: int = setting(3, "Demonstrations per prompt.", "-k")
    machine_demos: int = setting(0, "How many demonstrations come from tasks kept so far.")
    machine_lag: int = setting(64, "Machine demonstrations come from requests at least this many indices back.")
    rules: str = setting("default", "Heuristic rule spec, e.g. default,-blacklist (see `alpaca-data rules`).")
    rouge_threshold: float = setting(0.7, "Drop a task when its ROUGE-L F to the pool exceeds this.")
    resume: bool = setting(False, "Continue the newest unfinished run with these settings (failed requests are "
                                  "sent again).")
    run_dir: str | None = setting(None, "Run folder (default <store>/runs/<dataset>/<run-id>).")
    message: str = setting("", "Revision message.", "-m")
    decoding: Decoding = nested(Decoding)
    limits: RequestLimits = nested(RequestLimits)
    demo_options: dict[str, Any] = field(default_factory=dict)  # the demo server's fault injection (tests)

    def validate(self) -> None:
        _check([(bool(NAME_PATTERN.fullmatch(self.dataset or "")),
                 f"--dataset {self.dataset!r}: invalid dataset name (letters, digits, . _ -; no paths)"),
                (self.num >= 1, "--num must be at least 1"),
                (self.num_prompt_instructions >= 1, "--num-prompt-instructions must be at least 1"),
                (0 <= self.machine_demos <= self.num_prompt_instructions,
                 "--machine-demos must be between 0 and --num-prompt-instructions"),
                (self.machine_lag >= 0, "--machine-lag must be 0 or more"),
                (0 < self.rouge_threshold <= 1, "--rouge-threshold must be in (0, 1]")])
        self.teacher.validate()
        self.decoding.validate()
        self.limits.validate()
