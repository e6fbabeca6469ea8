"""The generation prompt: the project's own template, seed tasks, and per-request prompt building.

A request's prompt is a pure function of (run seed, request index) and, when machine-generated
demonstrations are mixed in, of the tasks kept from requests at least `lag` indices earlier. That is
what makes a run reproducible under any concurrency and across kill/resume.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpaca_data.errors import UserError
from alpaca_data.records import KNOWN_ALIASES

NO_INPUT = "<noinput>"
NUM_TASKS = 20

PROMPT_TEMPLATE = """\
We are collecting a varied set of tasks to teach a language model to follow instructions. \
Write {num_tasks} tasks in total. Each task has an instruction, an input and an output.

Follow these rules:
1. Vary the verbs, so that instructions do not keep opening the same way.
2. Vary the kind of task: open questions, brainstorming, rewriting, classification, summarising, \
extraction, step-by-step reasoning, short coding problems, advice, creative writing and more.
3. Write in English only.
4. Keep each instruction to one or two sentences; mix direct requests with questions.
5. Give an input only when the task needs concrete material to work on, such as a passage, a list, a \
short table or a piece of code. Make it realistic and under 100 words. When the instruction stands on \
its own, write "{no_input}" as the input.
6. Make the output a correct, complete answer to the instruction and input, under 100 words.
7. Every task must be doable with text alone: nothing that needs seeing an image, hearing audio, or \
acting in the world (sending, booking, calling, setting reminders).

Continue the numbered list in exactly the same format until task {num_tasks}.

Tasks:
"""

DEMO_FORMAT = "{n}. Instruction: {instruction}\n{n}. Input:\n{input}\n{n}. Output:\n{output}\n###\n"


def template_hash() -> str:
    """Identity of the prompt format (template + demonstration layout), recorded in manifests."""
    payload = PROMPT_TEMPLATE + "\x1f" + DEMO_FORMAT + "\x1f" + NO_INPUT
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SeedTask:
    id: str
    instruction: str
    input: str
    output: str
    is_classification: bool = False


def load_seed_tasks(path: str | Path) -> list[SeedTask]:
    """Seed tasks from a self-instruct seed file ({id, name, instruction, instances[], is_classification})
    or any Alpaca-format file the validator reads (JSON, JSONL, Parquet, CSV; `response` taken for `output`).
    A seed task with several instances is shown by its first one, as in self-instruct."""
    from alpaca_data.validate import load_valid_records

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: seed file not found")
    report, records = load_valid_records(str(path), dict(KNOWN_ALIASES))
    if report.problems:
        more = f" (and {report.problem_count - 1} more; see `alpaca-data validate {path}`)" if report.problem_count > 1 else ""
        raise UserError(f"{report.problems[0]}{more}")
    tasks: list[SeedTask] = []
    seen: set[str] = set()
    for number, record in enumerate(records):
        task_id = str(record.get("seed_id") or f"{path.stem}_{number}")
        if task_id in seen:
            continue
        seen.add(task_id)
        tasks.append(SeedTask(id=task_id, instruction=record["instruction"].strip(), input=record["input"].strip(),
                              output=record["output"].strip(),
                              is_classification=bool(record.get("is_classification", False))))
    return tasks


@dataclass
class Prompt:
    index: int
    text: str
    seed_ids: list[str]
    demo_instructions: list[str]
    num_demos: int
    machine_demos: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def messages(self) -> list[dict[str, str]]:
        """The same prompt for chat endpoints: one user turn."""
        return [{"role": "user", "content": self.text}]


def format_demo(n: int, instruction: str, input_text: str, output: str) -> str:
    input_text = input_text.strip() or NO_INPUT
    return DEMO_FORMAT.format(n=n, instruction=instruction.strip(), input=input_text, output=output.strip())


def request_rng(seed: int | str, index: int, salt: str = "") -> random.Random:
    return random.Random(f"{seed}:{index}{salt}")


def build_prompt(index: int, seed: int | str, seeds: Sequence[SeedTask], num_demos: int = 3, *,
                 machine_pool: Sequence[dict[str, Any]] = (), machine_demos: int = 0) -> Prompt:
    """Prompt for request `index`: `num_demos` demonstrations then the open "{k+1}. Instruction:".

    `machine_pool` must hold only tasks whose content is already fixed for this index (the engine
    passes tasks kept from requests at least `lag` indices earlier), so the prompt stays a pure function.
    """
    if num_demos < 1:
        raise UserError("--num-prompt-instructions must be at least 1")
    rng = request_rng(seed, index)
    n_machine = min(machine_demos, len(machine_pool), num_demos)
    n_seed = min(num_demos - n_machine, len(seeds))
    chosen_seeds = rng.sample(list(seeds), n_seed)
    demos: list[tuple[str, str, str, str]] = [(s.id, s.instruction, s.input, s.output) for s in chosen_seeds]
    if n_machine:
        machine_rng = request_rng(seed, index, ":machine")
        for task in machine_rng.sample(list(machine_pool), n_machine):
            demos.append((str(task.get("request_id", "machine")), task["instruction"], task.get("input", ""),
                          task["output"]))
        rng.shuffle(demos)
    text = PROMPT_TEMPLATE.format(num_tasks=NUM_TASKS, no_input=NO_INPUT)
    for n, (_, instruction, input_text, output) in enumerate(demos, 1):
        text += format_demo(n, instruction, input_text, output)
    text += f"{len(demos) + 1}. Instruction:"
    return Prompt(index=index, text=text, seed_ids=[d[0] for d in demos],
                  demo_instructions=[d[1] for d in demos], num_demos=len(demos), machine_demos=n_machine)


def request_seed(seed: int | str, index: int) -> int:
    """Per-request sampling seed sent to the teacher (OpenAI `seed`), a pure function of (seed, index)."""
    digest = hashlib.sha256(f"{seed}:{index}:sampling".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
