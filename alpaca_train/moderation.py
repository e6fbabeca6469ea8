"""The content filter of `alpaca-train serve`: every prompt and every answer is checked by one `Moderator`.

Backends (`make_moderator(spec)`):
    openai[:MODEL]  OpenAI's moderation endpoint through the openai SDK (default model omni-moderation-latest);
                    key from $OPENAI_API_KEY, not needed when a base_url points at a local server
    local           offline: alt-profanity-check, a linear SVM over ~200k human-labelled comments that scores
                    offensive or abusive language (profanity, insults, slurs). It knows nothing of threats,
                    self-harm or sexual content as such, so its one category is called `offensive`. It reads
                    the text undone of full-width letters, lookalikes, invisible characters and spaced letters
                    (`moderation_text.normalise`; catch rates in BENCHMARKS.md).
    none            never flags

A backend that cannot answer raises `ModerationUnavailable` (one redacted line): the server fails closed.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from alpaca_data.errors import UsageError
from alpaca_data.secrets import redact
from alpaca_train.moderation_text import normalise

DEFAULT_OPENAI_MODEL = "omni-moderation-latest"
LOCAL_CATEGORY = "offensive"
# Measured on 4,842 real answers from ../shared/data (AlpacaEval outputs of Alpaca-7B, text-davinci-003 and GPT-4,
# Self-Instruct predictions, GPTeacher roleplay), whole text and windows scored: 0.14% flagged at 0.8 (0.43% at 0.7,
# 0.10% at 0.9); 14 plainly abusive sentences put into 300 long real answers: 99.0% flagged at 0.8 (100% at 0.7,
# 91.7% at 0.9; 0.3% when only the whole text is scored). 0.8 keeps both error rates low.
LOCAL_THRESHOLD = 0.8
WINDOW_MIN_WORDS = 3  # fragments shorter than this ("Pig", "Yo ho!") score noisily alone: join them to a neighbour
WINDOW_MAX_WORDS = 40  # a long run-on sentence is scored in overlapping windows of this many words
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_ERROR_CHARS = 300


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: tuple[str, ...]  # flagged categories, highest score first
    scores: dict[str, float] = field(default_factory=dict)  # category -> score
    backend: str = "none"

    @property
    def category(self) -> str | None:
        return self.categories[0] if self.categories else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe, for logs and flags; never the text that was checked."""
        return {"flagged": self.flagged, "categories": list(self.categories),
                "scores": {name: round(float(score), 6) for name, score in self.scores.items()},
                "backend": self.backend}


class ModerationUnavailable(Exception):
    """The backend is down or gave an answer we cannot read: the caller must refuse (fail closed)."""


class Moderator(Protocol):
    name: str

    async def check(self, text: str) -> ModerationResult: ...

    async def aclose(self) -> None: ...


def refusal_message(result: ModerationResult, where: str) -> str:
    """What the user is told when the prompt is refused or the answer is cut."""
    category = result.category or "unspecified"
    if where == "prompt":
        return f"Sorry, I can't answer this: the prompt was flagged by the content filter (category: {category})."
    if where == "answer":
        return f"The answer was stopped: it was flagged by the content filter (category: {category})."
    raise ValueError(f"where must be 'prompt' or 'answer', not {where!r}")


def _one_line(error: BaseException) -> str:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return redact(text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…")


# -- none --------------------------------------------------------------------------------------------------------
class NoModerator:
    name = "none"

    async def check(self, text: str) -> ModerationResult:
        return ModerationResult(flagged=False, categories=(), scores={}, backend=self.name)

    async def aclose(self) -> None:
        return None


# -- local -------------------------------------------------------------------------------------------------------
def text_windows(text: str) -> list[str]:
    """The sentences of `text` (short ones joined to the next, long ones cut into overlapping windows), so one
    abusive sentence in a long answer is scored on its own instead of being diluted by the rest."""
    sentences: list[list[str]] = []
    for piece in _SENTENCE_END.split(text):
        words = piece.split()
        if not words:
            continue
        if sentences and len(sentences[-1]) < WINDOW_MIN_WORDS:
            sentences[-1].extend(words)
        else:
            sentences.append(words)
    if len(sentences) > 1 and len(sentences[-1]) < WINDOW_MIN_WORDS:
        sentences[-2].extend(sentences.pop())
    windows: list[str] = []
    step = WINDOW_MAX_WORDS // 2
    for words in sentences:
        starts = range(0, max(len(words) - step, 1), step) if len(words) > WINDOW_MAX_WORDS else (0,)
        windows.extend(" ".join(words[start:start + WINDOW_MAX_WORDS]) for start in starts)
    return windows


def _classifier_words() -> frozenset[str] | None:
    """The words the classifier knows plus English stop words (which it drops), for splitting joined letters."""
    try:
        from profanity_check.profanity_check import vectorizer
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return frozenset(vectorizer.vocabulary_) | ENGLISH_STOP_WORDS
    except (ImportError, AttributeError):  # another packaging of the model: joined letters stay one word
        return None


class LocalModerator:
    """alt-profanity-check: the highest score over the whole text and each of its windows."""

    name = "local"

    def __init__(self, threshold: float = LOCAL_THRESHOLD):
        try:
            from profanity_check import predict_prob  # loads the SVM and vectorizer once (about a second)
        except ImportError as error:
            raise UsageError(f"moderation backend local needs the alt-profanity-check package ({error})") from None
        self._predict_prob = predict_prob
        self.threshold = threshold
        self._known_words = _classifier_words()

    def score(self, text: str) -> float:
        return self.score_many([text])[0]

    def score_many(self, texts: list[str]) -> list[float]:
        """Each text's score, from one classifier call (its fixed cost, ~10 ms, dwarfs the per-text work)."""
        pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            text = normalise(text, self._known_words)  # what the words are, however they were disguised
            windows = [text, *text_windows(text)]
            pieces += windows
            owners += [index] * len(windows)
        best = [0.0] * len(texts)
        for index, score in zip(owners, self._predict_prob(pieces) if pieces else ()):
            best[index] = max(best[index], float(score))
        return best

    async def check(self, text: str) -> ModerationResult:
        if not text.strip():
            return ModerationResult(flagged=False, categories=(), scores={LOCAL_CATEGORY: 0.0}, backend=self.name)
        try:
            score = await asyncio.to_thread(self.score, text)
        except Exception as error:  # the classifier itself failed: fail closed, one line
            raise ModerationUnavailable(f"local moderation failed: {_one_line(error)}") from None
        flagged = score >= self.threshold
        return ModerationResult(flagged=flagged, categories=(LOCAL_CATEGORY,) if flagged else (),
                                scores={LOCAL_CATEGORY: score}, backend=self.name)

    async def aclose(self) -> None:
        return None


# -- openai ------------------------------------------------------------------------------------------------------
def parse_moderation_payload(payload: Any, threshold: float | None) -> tuple[bool, tuple[str, ...], dict[str, float]]:
    """(flagged, flagged categories by score, scores) from a moderation answer; ValueError when it is malformed.
    With a threshold, a category is flagged when its score reaches it; without one, the endpoint's flags count."""
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ValueError("the answer has no results")
    result = results[0]
    flags, raw_scores = result.get("categories"), result.get("category_scores")
    if not isinstance(flags, dict) or not isinstance(raw_scores, dict):
        raise ValueError("the result has no categories or category_scores")
    scores: dict[str, float] = {}
    for name, value in raw_scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"category_scores[{name!r}] is not a number")
        scores[str(name)] = float(value)
    if threshold is None:
        flagged_names = [str(name) for name, value in flags.items() if value is True]
        flagged = result.get("flagged")
        if not isinstance(flagged, bool):
            raise ValueError("the result has no flagged field")
        flagged = flagged or bool(flagged_names)
    else:
        flagged_names = [name for name, score in scores.items() if score >= threshold]
        flagged = bool(flagged_names)
    flagged_names.sort(key=lambda name: -scores.get(name, 0.0))
    return flagged, tuple(flagged_names), scores


class OpenAIModerator:
    """OpenAI's moderation endpoint (or any server speaking it); the first result's flags and scores."""

    def __init__(self, model: str = DEFAULT_OPENAI_MODEL, *, api_key: str, base_url: str | None = None,
                 timeout: float = 10.0, threshold: float | None = None, max_retries: int = 1):
        import openai

        self.model = model
        self.name = f"openai:{model}"
        self.threshold = threshold
        self._openai = openai
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout,
                                          max_retries=max_retries)

    async def check(self, text: str) -> ModerationResult:
        if not text.strip():
            return ModerationResult(flagged=False, categories=(), scores={}, backend=self.name)
        try:
            raw = await self._client.moderations.with_raw_response.create(model=self.model, input=text)
            payload = json.loads(raw.text)
        except self._openai.APIStatusError as error:
            raise ModerationUnavailable(f"moderation endpoint answered {error.status_code}: "
                                        f"{_one_line(error)}") from None
        except (self._openai.OpenAIError, ValueError) as error:
            raise ModerationUnavailable(f"moderation endpoint unreachable or unreadable: {_one_line(error)}") from None
        try:
            flagged, categories, scores = parse_moderation_payload(payload, self.threshold)
        except ValueError as error:
            raise ModerationUnavailable(f"moderation endpoint gave a malformed answer: {_one_line(error)}") from None
        return ModerationResult(flagged=flagged, categories=categories, scores=scores, backend=self.name)

    async def aclose(self) -> None:
        await self._client.close()


# -- choosing one ------------------------------------------------------------------------------------------------
def _check_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0.0 < threshold <= 1.0:
        raise UsageError(f"moderation threshold must be in (0, 1], not {threshold}")


def make_moderator(spec: str, *, base_url: str | None = None, timeout: float = 10.0,
                   threshold: float | None = None, max_retries: int = 1) -> Moderator:
    """"openai", "openai:MODEL", "local" or "none"; UsageError (one line) for anything else, or for openai with
    neither $OPENAI_API_KEY nor a base_url (a local server needs no key; $OPENAI_BASE_URL counts as one).
    `threshold`: local's flagging score (default LOCAL_THRESHOLD); for openai, flag categories scoring at least this
    instead of trusting the endpoint's own flags. `max_retries`: the SDK's retries of a failed request."""
    _check_threshold(threshold)
    kind, _, model = (spec or "").strip().partition(":")
    if kind == "none" and not model:
        return NoModerator()
    if kind == "local" and not model:
        return LocalModerator(LOCAL_THRESHOLD if threshold is None else threshold)
    if kind == "openai":
        if ":" in spec and not model.strip():
            raise UsageError("moderation backend openai:MODEL needs a model name after the colon")
        if timeout <= 0:
            raise UsageError(f"moderation timeout must be positive, not {timeout}")
        api_key = os.environ.get("OPENAI_API_KEY")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if not api_key and not base_url:
            raise UsageError("moderation backend openai needs OPENAI_API_KEY in the environment (or the base URL of "
                             "a local moderation server)")
        return OpenAIModerator(model.strip() or DEFAULT_OPENAI_MODEL, api_key=api_key or "no-key-needed",
                               base_url=base_url, timeout=timeout, threshold=threshold, max_retries=max_retries)
    raise UsageError(f"unknown moderation backend {spec!r}: use openai, openai:MODEL, local or none")
