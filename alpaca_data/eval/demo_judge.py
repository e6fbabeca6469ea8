"""An offline, deterministic stand-in judge for `eval judge --judge demo` (stdlib HTTP server on 127.0.0.1).

It answers the project's own pairwise prompt (`alpaca_data.eval.judge_prompt`) in the exact format
`parse_verdict` reads, so the whole evaluation pipeline runs without an API key. It is a transparent heuristic,
not a quality judgment; everything it writes says "demo-judge". The rule, applied to each output on its own
(so it has no position bias: swapping the outputs swaps the verdict):

    score = coverage + 0.3 * substance - 0.6 * repetition - 0.2 * truncated      (an empty output scores -1)

- coverage: the share of the instruction's content words (3+ letters, not a stop word, crudely stemmed) that
  the output contains;
- substance: min(words, 40) / 40, so a one-word answer scores below a real one but length past 40 words earns
  nothing (the judge must not simply prefer the longer answer);
- repetition: the share of the output's word trigrams that repeat an earlier one (a looping model scores low);
- truncated: 1 when the output stops mid-sentence (last line of 8+ words ending in a letter, comma or hyphen).

The output with the higher score is preferred; scores within TIE_MARGIN are a tie. The answer is one
sentence giving both scores and the reasons, then `Preferred: 1|2|tie`. A prompt that is not the project's
judge prompt gets an answer without a verdict line (unparseable), as a real judge's refusal would be.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from alpaca_data.eval.judge_prompt import INPUT_BLOCK, USER
from alpaca_data.generate.demo_batches import BatchService
from alpaca_data.generate.demo_server import MODEL_PATHS, JSONHandler, LocalServer
from alpaca_data.generate.tokens import count_tokens

DEMO_JUDGE_MODEL = "alpaca-demo-judge"
TIE_MARGIN = 0.05
SUBSTANCE_WORDS = 40
WEIGHTS = {"substance": 0.3, "repetition": 0.6, "truncated": 0.2}
EMPTY_SCORE = -1.0
TRUNCATION_LINE_WORDS = 8

# Function words and the boilerplate verbs of instructions: covering them says nothing about the content.
STOP_WORDS = frozenset("""
a about above after again against all also an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers him
his how i if in into is it its itself just me more most my no nor not now of off on once only or other our ours out
over own same she should so some such than that the their theirs them then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your yours
please write give given following make provide use using create based one two three etc way thing things sure
""".split())

_WORD = re.compile(r"\w+")
_CONTENT = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ing", "ed", "es", "s", "ly")


def _template_pattern() -> re.Pattern[str]:
    """A regex built from judge_prompt.USER itself, so the demo judge follows any edit of the prompt text."""
    pieces = re.split(r"\{(\w+)\}", USER)
    before_input, _, after_input = INPUT_BLOCK.partition("{input}")
    pattern = ""
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            pattern += re.escape(piece)
        elif piece == "input_block":
            pattern += f"(?:{re.escape(before_input)}(?P<input>.*?){re.escape(after_input)})?"
        else:  # the last output is greedy: the template's fixed tail closes it
            pattern += f"(?P<{piece}>.*{'' if piece == 'second' else '?'})"
    return re.compile(pattern, re.DOTALL)


_PROMPT = _template_pattern()


@dataclass(frozen=True)
class JudgeCase:
    instruction: str
    input: str
    first: str
    second: str


def parse_judge_prompt(text: str) -> JudgeCase | None:
    """The instruction, input and both outputs of a prompt built by JudgePrompt; None for any other text."""
    match = _PROMPT.search(text or "")
    if match is None:
        return None
    return JudgeCase(match["instruction"], match["input"] or "", match["first"], match["second"])


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:6]


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _CONTENT.findall(text.lower()) if len(w) >= 3 and w not in STOP_WORDS}


@dataclass(frozen=True)
class AnswerScore:
    score: float
    covered: int
    wanted: int
    words: int
    repetition: float
    truncated: bool

    @property
    def empty(self) -> bool:
        return self.words == 0

    def flaws(self) -> list[str]:
        if self.empty:
            return ["is empty"]
        flaws = []
        if self.repetition >= 0.2:
            flaws.append(f"repeats itself ({self.repetition:.0%} of its word trigrams)")
        if self.truncated:
            flaws.append("looks cut off")
        return flaws


def _repetition(words: list[str]) -> float:
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    return 1 - len(set(trigrams)) / len(trigrams) if trigrams else 0.0


def _truncated(text: str) -> bool:
    last_line = text.rstrip().rsplit("\n", 1)[-1]
    ends_open = bool(last_line) and (last_line[-1].isalpha() or last_line[-1] in ",-")
    return ends_open and len(_WORD.findall(last_line)) >= TRUNCATION_LINE_WORDS


def score_answer(instruction: str, answer: str) -> AnswerScore:
    """The demo rule for one output (see the module docstring); pure and deterministic."""
    words = [w.lower() for w in _WORD.findall(answer)]
    wanted = content_words(instruction)
    covered = len(wanted & content_words(answer))
    if not words:
        return AnswerScore(EMPTY_SCORE, 0, len(wanted), 0, 0.0, False)
    coverage = covered / len(wanted) if wanted else 0.0
    repetition, truncated = _repetition(words), _truncated(answer)
    score = (coverage + WEIGHTS["substance"] * min(len(words), SUBSTANCE_WORDS) / SUBSTANCE_WORDS
             - WEIGHTS["repetition"] * repetition - WEIGHTS["truncated"] * truncated)
    return AnswerScore(round(score, 4), covered, len(wanted), len(words), round(repetition, 4), truncated)


def verdict(case: JudgeCase) -> tuple[str, str]:
    """("1" | "2" | "tie", a one-sentence reason) for a parsed judge prompt."""
    one, two = score_answer(case.instruction, case.first), score_answer(case.instruction, case.second)
    if abs(one.score - two.score) < TIE_MARGIN:
        choice = "tie"
    else:
        choice = "1" if one.score > two.score else "2"
    notes = [f"Output {n} {flaw}" for n, s in (("1", one), ("2", two)) for flaw in s.flaws()]
    reason = (f"Demo judge (a word-coverage heuristic, not a quality judgment): Output 1 scores {one.score:.2f} "
              f"and Output 2 scores {two.score:.2f}, covering {one.covered} and {two.covered} of the instruction's "
              f"{one.wanted} content words" + ("; " + ", ".join(notes) if notes else "")
              + (f", within {TIE_MARGIN} of each other." if choice == "tie" else "."))
    return choice, reason


def answer_text(prompt: str) -> str:
    """What the demo judge says to a prompt: a reason and the verdict line, or no verdict for a foreign prompt."""
    case = parse_judge_prompt(prompt)
    if case is None:
        return ("The demo judge only reads alpaca-kit's pairwise judge prompt (alpaca_data.eval.judge_prompt); "
                "this prompt is not one, so it gives no verdict.")
    choice, reason = verdict(case)
    return f"{reason}\nPreferred: {choice}"


# ---------------------------------------------------------------------------------------------- the server
def _prompt_of(body: dict[str, Any], chat: bool) -> str:
    if chat:
        messages = body.get("messages") or []
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    prompt = body.get("prompt") or ""
    return str(prompt[0] if isinstance(prompt, list) and prompt else prompt)


def _cut(text: str, max_tokens: Any) -> tuple[str, str]:
    """Honour max_tokens as a real server would (a cut answer loses its verdict line: unparseable)."""
    try:
        limit = int(max_tokens)
    except (TypeError, ValueError):
        return text, "stop"
    tokens = list(re.finditer(r"\w+|[^\w\s]", text))
    if limit <= 0 or len(tokens) <= limit:
        return text, "stop"
    return text[: tokens[limit - 1].end()], "length"


class _Handler(JSONHandler):
    server_version = "alpaca-demo-judge/1"
    server: _Server

    def do_GET(self) -> None:
        if self.path.rstrip("/") in MODEL_PATHS:
            self._models(DEMO_JUDGE_MODEL)
        elif self.path.startswith("/_demo/stats"):
            self._json(200, {"requests": self.server.owner.requests, **self.batches.stats()})
        elif not self._batch_get():
            self._not_found()

    def do_POST(self) -> None:
        if self._batch_post():
            return
        request = self._completion_request()
        if request is None:
            return
        path, body = request
        self._json(*self.server.owner.answer(path, body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: DemoJudgeServer


class DemoJudgeServer(LocalServer):
    """A running demo judge, shaped like DemoServer: `with DemoJudgeServer() as judge: judge.base_url`."""

    thread_name = "demo-judge"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, batch_seconds: float = 0.0,
                 batch_faults: tuple[str, ...] = ()):
        self.requests = 0  # answered requests, batch lines included (for tests)
        self.lock = threading.Lock()
        self.batches = BatchService(self.answer, batch_seconds, batch_faults)
        super().__init__(_Server((host, port), type("DemoJudgeHandler", (_Handler,), {"batches": self.batches})))
        self.httpd.owner = self

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The verdict for one request (realtime or a batch line)."""
        chat = path.rstrip("/").endswith("chat/completions")
        prompt = _prompt_of(body, chat)
        text, finish = _cut(answer_text(prompt), body.get("max_tokens") or body.get("max_completion_tokens"))
        with self.lock:
            self.requests += 1
        usage = {"prompt_tokens": count_tokens(prompt), "completion_tokens": count_tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model") or DEMO_JUDGE_MODEL
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            return 200, {"id": "chatcmpl-demo-judge", "object": "chat.completion", "created": 0, "model": model,
                         "choices": [choice], "usage": usage}
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return 200, {"id": "cmpl-demo-judge", "object": "text_completion", "created": 0, "model": model,
                     "choices": [choice], "usage": usage}
