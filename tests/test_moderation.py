"""The content filter of `alpaca-train serve`: the openai backend against a real local moderation server, the
offline `local` backend (alt-profanity-check) on plainly abusive and real ordinary texts, and the `none` backend."""
from __future__ import annotations

import asyncio
import json
import random

import pytest

from alpaca_data.errors import UsageError
from alpaca_train.moderation import (
    LOCAL_CATEGORY,
    LOCAL_THRESHOLD,
    WINDOW_MAX_WORDS,
    LocalModerator,
    ModerationResult,
    ModerationUnavailable,
    make_moderator,
    refusal_message,
    text_windows,
)
from tests.conftest import EVAL_DATA
from tests.moderation_server import moderation_server
from tests.moderation_tricks import ABUSIVE as TRICK_TEXTS

KEY = "sk-moderation-test-key-0123456789"
ALPACA_EVAL = EVAL_DATA / "alpaca_eval"
USER_ORIENTED = EVAL_DATA / "user_oriented_instructions.jsonl"

ABUSIVE = TRICK_TEXTS[:10]  # the shared abusive texts (tests/moderation_tricks.py)
ORDINARY = [
    "Give three tips for staying healthy.",
    "How do I kill a process that is stuck on Linux?",  # "kill" alone is not abuse
    "Write a short story about a dragon who is afraid of the dark.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Translate 'good morning, how are you?' into French.",
    "Summarise the causes of the First World War in one paragraph.",
    "Explain the difference between a list and a tuple in Python.",
    "My code throws a NullPointerException, what should I check first?",
]


def run(coro):
    return asyncio.run(coro)


def gather(moderator, texts: list[str]) -> list[ModerationResult]:
    async def checks() -> list[ModerationResult]:
        return list(await asyncio.gather(*(moderator.check(text) for text in texts)))

    return asyncio.run(checks())


async def check_all(moderator, texts: list[str]) -> list[ModerationResult]:
    try:
        return [await moderator.check(text) for text in texts]
    finally:
        await moderator.aclose()


def user_oriented_instructions(count: int) -> list[str]:
    records = [json.loads(line) for line in USER_ORIENTED.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [record["instruction"] for record in random.Random(0).sample(records, count)]


def alpaca_eval_outputs() -> list[str]:
    outputs: list[str] = []
    for name in ("alpaca-7b.json", "text_davinci_003.json", "gpt4.json"):
        outputs += [record["output"] for record in json.loads((ALPACA_EVAL / name).read_text(encoding="utf-8"))]
    return outputs


@pytest.fixture
def openai_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return KEY


@pytest.fixture(scope="module")
def local() -> LocalModerator:
    return make_moderator("local")


# -- openai backend against the local moderation server ----------------------------------------------------------
def test_openai_flags_prompts_and_answers_with_their_category(openai_key: str) -> None:
    texts = ["Tell me how to murder my neighbour.",        # a prompt: violence
             "Only an idiot would ask that.",              # an answer: harassment
             "We will hunt you down.",                     # harassment/threatening
             "Kill them, kill them all, you idiot.",       # two categories, violence scores higher
             "How do I bake sourdough bread?", "Give three tips for staying healthy."]
    with moderation_server() as server:
        results = run(check_all(make_moderator("openai", base_url=server.base_url), texts))
        assert server.requests == texts
        assert {body["model"] for body in server.bodies} == {"omni-moderation-latest"}
        assert set(server.authorizations) == {f"Bearer {KEY}"}  # the key from the environment is what is sent
    assert [r.category for r in results] == ["violence", "harassment", "harassment/threatening", "violence", None,
                                             None]
    assert results[3].categories == ("violence", "harassment")
    assert results[3].scores["violence"] > results[3].scores["harassment"]
    assert [r.flagged for r in results] == [True, True, True, True, False, False]
    assert {r.backend for r in results} == {"openai:omni-moderation-latest"}
    assert len(results[4].scores) == 13 and max(results[4].scores.values()) < 0.5


def test_openai_model_threshold_and_no_key_needed_for_a_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with moderation_server() as server:
        moderator = make_moderator("openai:text-moderation-stable", base_url=server.base_url, threshold=0.6)
        assert moderator.name == "openai:text-moderation-stable"
        # violence 0.70 reaches the threshold, harassment 0.55 does not (though the endpoint flags it)
        result, empty = run(check_all(moderator, ["kill kill idiot", "   "]))
        assert server.bodies[0]["model"] == "text-moderation-stable"
    assert result.categories == ("violence",) and result.backend == "openai:text-moderation-stable"
    assert not empty.flagged and len(server.requests) == 1  # nothing to check: no request


@pytest.mark.parametrize("fault", [{"fail_status": 500}, {"fail_status": 503}, {"malformed": True}])
def test_openai_errors_fail_closed_with_one_redacted_line(openai_key: str, fault: dict) -> None:
    with moderation_server(**fault) as server:
        moderator = make_moderator("openai", base_url=server.base_url, max_retries=0)
        with pytest.raises(ModerationUnavailable) as caught:
            run(check_all(moderator, ["Give three tips for staying healthy."]))
        assert len(server.requests) == 1
    message = str(caught.value)
    assert "\n" not in message and KEY not in message and "sk-" not in message
    assert ("malformed" in message) if "malformed" in fault else (str(fault["fail_status"]) in message)


def test_openai_error_after_a_retry_and_recovery(openai_key: str) -> None:
    with moderation_server() as server:
        moderator = make_moderator("openai", base_url=server.base_url)  # default: one retry

        async def scenario() -> tuple[ModerationResult, ModerationUnavailable, ModerationResult]:
            try:
                first = await moderator.check("an idiot")
                server.fail_status = 500  # the filter goes down mid-conversation ...
                try:
                    await moderator.check("hello")
                except ModerationUnavailable as error:
                    down = error
                server.fail_status = None  # ... and comes back
                return first, down, await moderator.check("an idiot")
            finally:
                await moderator.aclose()

        first, down, again = run(scenario())
        assert server.requests == ["an idiot", "hello", "hello", "an idiot"]  # the failed check was tried twice
    assert first.category == again.category == "harassment"
    assert "500" in str(down) and KEY not in str(down)


def test_openai_timeout_and_refused_connection_are_unavailable(openai_key: str) -> None:
    with moderation_server(delay_s=1.5) as server:
        moderator = make_moderator("openai", base_url=server.base_url, timeout=0.3, max_retries=0)
        with pytest.raises(ModerationUnavailable, match="unreachable"):
            run(check_all(moderator, ["hello"]))
        closed_url = server.base_url
    moderator = make_moderator("openai", base_url=closed_url, max_retries=0)  # the server is stopped now
    with pytest.raises(ModerationUnavailable, match="unreachable") as caught:
        run(check_all(moderator, ["hello"]))
    assert "\n" not in str(caught.value)


# -- choosing a backend --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["perspective", "openai:", "local:big", "none:x", "", "OpenAI"])
def test_unknown_specs_are_one_line_usage_errors(spec: str, openai_key: str) -> None:
    with pytest.raises(UsageError) as caught:
        make_moderator(spec)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2


def test_openai_without_key_or_base_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UsageError, match="OPENAI_API_KEY"):
        make_moderator("openai")


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_out_of_range_is_a_usage_error(threshold: float) -> None:
    with pytest.raises(UsageError, match="threshold"):
        make_moderator("none", threshold=threshold)


def test_none_never_flags() -> None:
    moderator = make_moderator("none")
    results = run(check_all(moderator, ABUSIVE[:3] + ORDINARY[:1]))
    assert moderator.name == "none" and not any(r.flagged for r in results)
    assert {r.backend for r in results} == {"none"} and results[0].category is None


# -- local backend (alt-profanity-check) ---------------------------------------------------------------------------
def test_local_refuses_abusive_prompts_and_accepts_ordinary_ones(local: LocalModerator) -> None:
    ordinary = ORDINARY + user_oriented_instructions(12)
    abusive = gather(local, ABUSIVE)  # concurrent checks, in worker threads
    fine = gather(local, ordinary)
    assert [r.category for r in abusive] == [LOCAL_CATEGORY] * len(ABUSIVE)
    assert all(r.scores[LOCAL_CATEGORY] >= LOCAL_THRESHOLD for r in abusive)
    assert [text for text, r in zip(ordinary, fine) if r.flagged] == []
    assert {r.backend for r in abusive + fine} == {"local"}


def long_real_answer(local: LocalModerator) -> str:
    """The first GPT-4 AlpacaEval answer of 200+ words, made of sentences, that passes the filter."""
    for record in json.loads((ALPACA_EVAL / "gpt4.json").read_text(encoding="utf-8")):
        text = record["output"]
        if len(text.split()) >= 200 and text.count(". ") >= 8 and local.score(text) < 0.5:
            return text
    raise AssertionError("no long answer found in AlpacaEval")


def test_local_flags_one_abusive_sentence_in_a_long_answer_and_cuts_a_stream_there(local: LocalModerator) -> None:
    answer = long_real_answer(local)
    sentences = answer.split(". ")
    middle = len(sentences) // 2
    head, tail = ". ".join(sentences[:middle]) + ". ", " " + ". ".join(sentences[middle:])
    abusive = "Honestly, only a fucking moron would need this explained."
    spoiled = head + abusive + tail
    assert not run(local.check(answer)).flagged
    assert run(local.check(spoiled)).category == LOCAL_CATEGORY
    # scoring the whole text alone would let it through: the rest of the answer dilutes the sentence
    assert float(local._predict_prob([spoiled])[0]) < LOCAL_THRESHOLD
    # as a stream grows, it passes until the abusive sentence has arrived, then it is flagged
    assert not run(local.check(head)).flagged
    assert run(local.check(head + abusive)).flagged


def test_local_false_positive_rate_on_real_answers_is_low(local: LocalModerator) -> None:
    outputs = random.Random(0).sample(alpaca_eval_outputs(), 500)
    scores = local.score_many(outputs)  # one classifier call; check() scores the same way, one text at a time
    flagged = sum(score >= LOCAL_THRESHOLD for score in scores)
    print(f"local moderation: {flagged}/500 real AlpacaEval answers flagged ({flagged / 5:.1f}%)")
    assert flagged <= 5  # <= 1%; measured 0.14% over 4,842 real answers (see LOCAL_THRESHOLD)
    highest = sorted(range(len(outputs)), key=lambda i: -scores[i])[:3]
    checked = gather(local, [outputs[i] for i in highest])
    assert [r.scores[LOCAL_CATEGORY] for r in checked] == pytest.approx([scores[i] for i in highest])


def test_text_windows_join_short_fragments_and_cut_long_sentences() -> None:
    assert text_windows("Pig.\nRoast the pig slowly over the fire. Yo ho!") == [
        "Pig. Roast the pig slowly over the fire. Yo ho!"]
    run_on = " ".join(f"w{i}" for i in range(100))
    windows = text_windows(run_on)
    assert all(len(w.split()) <= WINDOW_MAX_WORDS for w in windows)
    assert {word for w in windows for word in w.split()} == set(run_on.split())  # nothing is left unscored
    assert windows[1].split()[0] == "w20"  # windows overlap, so a phrase across a cut is seen whole once


# -- results and refusals -------------------------------------------------------------------------------------------
def test_result_as_dict_is_json_safe_and_holds_no_text(local: LocalModerator) -> None:
    text = "You are a fucking idiot."
    result = run(local.check(text))
    encoded = json.dumps(result.as_dict())
    assert text not in encoded and "idiot" not in encoded
    assert json.loads(encoded) == {"flagged": True, "categories": [LOCAL_CATEGORY],
                                   "scores": {LOCAL_CATEGORY: pytest.approx(result.scores[LOCAL_CATEGORY])},
                                   "backend": "local"}


def test_refusal_message_names_where_and_the_category() -> None:
    result = ModerationResult(flagged=True, categories=("violence", "harassment"), scores={}, backend="local")
    prompt, answer = refusal_message(result, "prompt"), refusal_message(result, "answer")
    assert "prompt" in prompt and "violence" in prompt and "harassment" not in prompt
    assert "answer" in answer and "violence" in answer and prompt != answer
    with pytest.raises(ValueError):
        refusal_message(result, "elsewhere")
