"""The README is executed: every command of its ```bash blocks runs, in order, as a newcomer would type it
(in a fresh folder holding the repository's tests/ data, on the default ./alpaca-store), so a command that
drifted from the code fails here. Sizes are made small (a walk, not a benchmark: `--num`, `--max-steps`,
`--limit`); the demo teacher and judge and the tiny model stand in for real ones.

A line is left out only for a reason listed in SKIPPED (the network, a key, GPUs, an interactive page, a
placeholder the reader fills in); the test also checks that most lines are walked, so the rules cannot quietly
swallow the README. ```console blocks are transcripts of recorded runs with their output, not walked.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

SKIPPED = (  # (pattern, why)
    (re.compile(r"openai:(?!\S*\s.*--base-url)"), "a hosted model: needs a key and the network"),
    (re.compile(r"--moderation openai"), "the OpenAI moderation endpoint: needs a key and the network"),
    (re.compile(r"\byou/"), "a repository on the Hugging Face Hub (tests/test_hub_local.py walks the local Hub)"),
    (re.compile(r"^export HF_|^python tests/hub_server\.py"), "the local Hub server steps (test_hub_local.py)"),
    (re.compile(r"\blaunch --nproc"), "torchrun on several GPUs"),
    (re.compile(r"\beval rate\b"), "an interactive page for people (tests/test_eval_rate_browser.py)"),
    (re.compile(r"\b(PATH|MODEL|KEY|TOKEN)\b"), "a placeholder the reader fills in"),
    (re.compile(r"^make\b"), "make targets (CI runs `make test`; quickstart is its own script)"),
)
SMALLER = (  # (pattern, replacement): the same command at a walking size
    (re.compile(r"--num \d+"), "--num 12"),
    (re.compile(r"--max-steps \d+"), "--max-steps 2"),
)
LIMITED = re.compile(r"\beval (generate|judge)\b")


def readme_commands(text: str) -> list[str]:
    commands, block = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            block = line[3:].strip() if block is None else None
            continue
        if block != "bash":
            continue
        line = re.sub(r"\s{2,}#.*$", "", line).strip()
        if line.startswith("$ "):
            line = line[2:]
        if line and not line.startswith("#"):
            commands.append(line)
    return commands


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPPED if pattern.search(command)), None)


def walking_size(command: str) -> str:
    for pattern, replacement in SMALLER:
        command = pattern.sub(replacement, command)
    if LIMITED.search(command) and "--limit" not in command:
        command += " --limit 3"
    if "eval generate" in command and "--max-tokens" not in command:
        command += " --max-tokens 8"
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Background:
    """A README command that serves until stopped (`alpaca-train serve`): started, waited for, stopped at the end."""

    def __init__(self, command: str, env: dict, cwd: Path):
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.output: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if "serving " in line:
                self.ready.set()
        self.ready.set()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def test_every_readme_command_runs(tmp_path):
    commands = readme_commands(README.read_text(encoding="utf-8"))
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    port = _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "120",
           "ALPACA_EVAL_DATA": str(ROOT / "tests" / "data" / "eval"), "ALPACA_WATERMARK_KEY": "readme-walk-key-0123",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ALPACA_STORE", None)
    walked, skipped, failures, servers = [], [], [], []
    try:
        for command in commands:
            reason = skip_reason(command)
            if reason:
                skipped.append((command, reason))
                continue
            command = walking_size(command).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            if re.match(r"alpaca-train serve\b", command):
                server = Background(f"{command} --port {port}", env, tmp_path)
                servers.append(server)
                assert server.ready.wait(180) and server.process.poll() is None, "".join(server.output)
                walked.append(command)
                continue
            started = time.monotonic()
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                  timeout=600)
            walked.append(command)
            if done.returncode != 0:
                last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
                failures.append(f"{command}\n    exit {done.returncode} after {time.monotonic() - started:.1f} s: "
                                f"{last[0]}")
    finally:
        for server in servers:
            server.stop()
    assert not failures, "README commands that fail:\n" + "\n".join(failures)
    assert len(walked) >= 30 and len(walked) > len(skipped), (walked, skipped)


def test_the_walk_leaves_out_only_what_it_must():
    """The skip rules applied to a few lines, so a rule that swallows too much shows here."""
    assert skip_reason("alpaca-data generate --num 300 --teacher openai:gpt-4o-mini --dataset mine")
    assert not skip_reason("alpaca-data eval generate --model openai:t1 --base-url http://127.0.0.1:8000/v1")
    assert not skip_reason("alpaca-data generate --seeds tests/data/seeds/alpaca_seed_tasks.jsonl --num 300")
    assert not skip_reason("alpaca-train --data mine@main --model models/tiny --out runs/t1 --max-steps 20")
    assert walking_size("alpaca-data eval judge a b --judge demo") == "alpaca-data eval judge a b --judge demo --limit 3"
    assert shlex.split(walking_size("alpaca-data generate --num 300"))[-1] == "12"
