"""The `local` content filter reads disguised words (issue 19, item 13): full-width letters, Cyrillic/Greek
lookalikes, spaced or dotted letters and zero-width characters are undone before classifying, and real answers
(plain or disguised) are still not refused. Figures over the full shared data: benchmarks/moderation_tricks.py."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alpaca_train.moderation import LOCAL_CATEGORY, LOCAL_THRESHOLD, LocalModerator, make_moderator
from alpaca_train.moderation_text import normalise
from tests.moderation_tricks import ABUSIVE, TRICKS

# 150 real answers (AlpacaEval outputs of Alpaca-7B, text-davinci-003 and GPT-4; GPTeacher codegen): tests/data/README.md
REAL_ANSWERS = Path(__file__).with_name("data") / "moderation_real_answers.jsonl"


@pytest.fixture(scope="module")
def local() -> LocalModerator:
    return make_moderator("local")


def real_answers() -> list[str]:
    return [json.loads(line)["output"] for line in REAL_ANSWERS.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("trick", list(TRICKS))
def test_every_disguised_abusive_text_is_refused(local: LocalModerator, trick: str) -> None:
    disguised = [TRICKS[trick](text) for text in ABUSIVE]
    missed = [text for text, score in zip(disguised, local.score_many(disguised)) if score < LOCAL_THRESHOLD]
    assert missed == []
    result = asyncio.run(local.check(disguised[0]))  # the server's path scores the same way
    assert result.flagged and result.category == LOCAL_CATEGORY


def test_real_answers_plain_or_disguised_are_not_refused(local: LocalModerator) -> None:
    answers = real_answers()
    # not "spaced, no word gaps": a whole answer run together loses its sentence breaks, and the classifier then
    # scores longer windows (the benchmark measures it: under 1% over real answers)
    for trick, disguise in ((name, TRICKS[name]) for name in TRICKS if name != "spaced, no word gaps"):
        scores = local.score_many([disguise(text) for text in answers])
        flagged = [text[:80] for text, score in zip(answers, scores) if score >= LOCAL_THRESHOLD]
        assert flagged == [], trick


def test_normalise_undoes_disguises_and_leaves_real_text_alone() -> None:
    assert normalise("ｙｏｕ\u3000ａｒｅ") == "you are"
    assert normalise("i\u200bd\u200ci\u200do\u2060t\ufeff s\u00adt") == "idiot st"
    assert normalise("уоu аrе") == "you are"  # Cyrillic у о а е among Latin letters
    assert normalise("f\u0338u\u0338c\u0338k") == "fuck"  # combining marks on Latin letters
    assert normalise("y o u  a r e  a n  i d i o t") == "you are an idiot" and normalise("f.u.c.k y.o.u") == "fuck you"
    assert normalise("s-t-u-p-i-d, i d i o t") == "stupid idiot"
    assert normalise("youareanidiot") == "youareanidiot"  # only letters spaced out are joined
    assert normalise("y o u a r e a n i d i o t", {"you", "are", "an", "idiot"}) == "you are an idiot"
    assert normalise("a s p h a l t", {"a", "sp", "halt"}) == "asphalt"  # syllables are not words
    # real Cyrillic and Greek words (a letter with no Latin twin) stay; ordinary text is unchanged
    assert normalise("Привет, мир! Καλημέρα") == "Привет, мир! Καλημέρα"
    text = "Use a, b and c. Then x = y + 1. Dr. J. Smith said I am fine."
    assert normalise(text) == text
