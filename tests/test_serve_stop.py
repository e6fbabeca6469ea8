"""Stop strings never reach the client, not even their first characters (issue 19 item 12), and each row's
text is decoded a few tokens at a time, not whole again at every step (issue 18 item 3).

The engine runs a tiny random LLaMA with GPT-2's real BPE tokenizer, greedily, so its answer can be read
once without stop strings and then asked for again with a stop string chosen to straddle a token boundary:
the tokens before the boundary end with the stop string's first characters, which must stay held back.
"""
from __future__ import annotations

import asyncio
import time

import openai
import pytest

from alpaca_train.serve.engine import BatchEngine, GenerationRequest, Sampling
from tests.serve_fixtures import ServeProcess

GREEDY = Sampling(temperature=0.0, top_p=1.0)


class CountingTokenizer:
    """The real tokenizer, counting the token ids the engine asks it to decode."""

    def __init__(self, tokenizer):
        self._tokenizer, self.decoded = tokenizer, 0

    def decode(self, ids, **kwargs):
        self.decoded += len(ids)
        return self._tokenizer.decode(ids, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from alpaca_train.tiny import gpt2_tokenizer, make_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = gpt2_tokenizer()
    model = make_tiny_llama(folder, tokenizer=tokenizer, layers=2, hidden=64, seed=3)
    model.eval()
    return folder, model, tokenizer


@pytest.fixture(scope="module")
def engine(tiny):
    _, model, tokenizer = tiny
    counting = CountingTokenizer(tokenizer)
    engine = BatchEngine(model, counting, max_batch_size=4)
    engine.counting = counting
    yield engine
    engine.close()


def generate(engine: BatchEngine, prompt: str, max_tokens: int, stop: tuple[str, ...] = ()):
    """(the text deltas streamed, the finishing event, the row's token ids) for one request."""
    async def run():
        ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        request = GenerationRequest(ids, max_tokens, GREEDY, stop, time.monotonic() + 120, asyncio.get_running_loop())
        engine.submit(request)
        deltas = []
        while True:
            event = await asyncio.wait_for(request.queue.get(), 120)
            if event.kind == "text":
                deltas.append(event.text)
            else:
                return deltas, event, list(request.token_ids)
    return asyncio.run(run())


def straddling_stop(pieces: list[str]) -> tuple[str, int]:
    """A stop string made of the end of one token's text and the start of the next one's, whose first
    occurrence in the answer is there; and where it starts."""
    text = "".join(pieces)
    offset = 0
    for first, second in zip(pieces, pieces[1:]):
        offset += len(first)
        if len(first.strip()) >= 2 and len(second.strip()) >= 2:
            stop = first[-2:] + second[:3]
            if text.find(stop) == offset - 2:
                return stop, offset - 2
    raise AssertionError(f"no token boundary to put a stop string across in {pieces!r}")


def test_the_start_of_a_stop_string_is_held_back_until_known(engine):
    prompt = "Below is an instruction. Write a story about a lighthouse keeper."
    deltas, done, ids = generate(engine, prompt, 40)
    assert done.finish_reason == "length" and len(ids) == 40
    tokenizer = engine.tokenizer
    pieces = [tokenizer.decode([token], skip_special_tokens=True, clean_up_tokenization_spaces=False) for token in ids]
    stop, start = straddling_stop(pieces)
    whole = "".join(deltas)
    stopped, done, _ = generate(engine, prompt, 40, stop=(stop,))
    # today's main sent the token holding the stop string's first characters before the next token showed
    # the stop string: the answer ended with them (' Overt scale' instead of ' Overt sc')
    assert "".join(stopped) == whole[:start] and done.finish_reason == "stop", (stop, stopped)
    # a stop string that never completes: what was held back goes out at the end, nothing is lost
    unfinished = whole[-2:] + "\x00never"
    held, done, _ = generate(engine, prompt, 40, stop=(unfinished,))
    assert "".join(held) == whole and done.finish_reason == "length"


def test_each_step_decodes_a_few_tokens_not_the_whole_row(engine):
    before = engine.counting.decoded
    deltas, done, ids = generate(engine, "Tell a long story about the sea.", 160)
    decoded = engine.counting.decoded - before
    assert len(ids) == 160 and done.finish_reason == "length"
    full = engine.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert "".join(deltas) == full
    # today's main decoded the whole row at every step: 1 + 2 + ... + 160 = 12,880 token ids
    assert decoded <= 8 * len(ids), decoded


def test_stop_prefix_length():
    from alpaca_train.serve.engine import stop_prefix_length

    assert stop_prefix_length(" Overt scale", ("aleok",)) == 3
    assert stop_prefix_length(" Overt scal", ("aleok", "cal!")) == 3
    assert stop_prefix_length("abc", ("xyz",)) == 0
    assert stop_prefix_length("ab", ("abc", "b")) == 2  # a whole stop string is found, not held
    assert stop_prefix_length("", ("abc",)) == 0


def test_served_answers_leave_out_the_whole_stop_string_streamed_and_whole(tiny):
    folder, _, _ = tiny
    with ServeProcess(folder, "--moderation", "none", "--watermark", "off") as server:
        api = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
        name = api.models.list().data[0].id
        prompt = "The lighthouse keeper said"
        pieces = [c.choices[0].text for c in api.completions.create(
            model=name, prompt=prompt, max_tokens=32, temperature=0, stream=True) if c.choices and c.choices[0].text]
        stop, start = straddling_stop(pieces)
        expected = "".join(pieces)[:start]
        whole = api.completions.create(model=name, prompt=prompt, max_tokens=32, temperature=0, stop=[stop])
        assert whole.choices[0].text == expected and whole.choices[0].finish_reason == "stop", stop
        streamed = "".join(c.choices[0].text for c in api.completions.create(
            model=name, prompt=prompt, max_tokens=32, temperature=0, stop=[stop], stream=True) if c.choices)
        assert streamed == expected
