"""`alpaca-train serve` as a real process on 127.0.0.1, called with the openai SDK and raw HTTP.

The server serves a tiny checkpoint trained by `alpaca-train` on a store revision, with a bearer key, the
`openai` content filter pointed at the local moderation server (tests/moderation_server.py) and the
watermark on (key from $ALPACA_WATERMARK_KEY).
"""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests import moderation_server as moderation_rules
from tests.conftest import SEEDS, run_cli
from tests.moderation_server import moderation_server
from tests.serve_fixtures import WATERMARK_SECRET, ServeProcess, train_cli, trained_checkpoint  # noqa: F401

API_KEY = "sk-test-serve-key-42"


@pytest.fixture(scope="module")
def moderation():
    with moderation_server() as server:
        yield server


@pytest.fixture(scope="module")
def server(trained_checkpoint, moderation, tmp_path_factory):  # noqa: F811
    flags = tmp_path_factory.mktemp("flags") / "flags.jsonl"
    with ServeProcess(trained_checkpoint.path, "--api-key-env", "SERVE_KEY", "--moderation", "openai",
                      "--moderation-base-url", moderation.base_url, "--max-prompt-tokens", "256",
                      "--max-tokens", "512", "--flags-file", flags,
                      env={"SERVE_KEY": API_KEY, "OPENAI_API_KEY": "sk-moderation-upstream"}) as process:
        process.flags_file = flags
        yield process


def client(server, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, max_retries=0, **kwargs)


def model_name(server) -> str:
    return client(server).models.list().data[0].id


def raw(server, method: str, path: str, body=None, key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    content = body if isinstance(body, (bytes, str)) else None if body is None else json.dumps(body)
    return httpx.request(method, server.base_url + path, headers={**headers, "Content-Type": "application/json"},
                         content=content, timeout=60)


def test_models_name_the_checkpoint_and_its_training_revision(server, trained_checkpoint):  # noqa: F811
    models = client(server).models.list().data
    assert [m.id for m in models] == [trained_checkpoint.path.name]
    lineage = models[0].model_extra["lineage"]
    assert lineage["dataset"]["revision_id"] == trained_checkpoint.revision_id
    assert lineage["dataset"]["ref"] == trained_checkpoint.dataset_ref
    assert models[0].model_extra["watermark"]["enabled"] is True


def test_every_route_wants_the_key(server):
    for path in ("/v1/models", "/api/info", "/api/stats"):
        for key in (None, "sk-wrong"):
            response = raw(server, "GET", path, key=key)
            assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url + "/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert raw(server, "GET", "/", key=None).status_code == 200  # the page loads, then asks for the key


def test_chat_whole_and_streamed_agree_and_count_tokens(server):
    api, name = client(server), model_name(server)
    messages = [{"role": "user", "content": "Give three tips for staying healthy."}]
    whole = api.chat.completions.create(model=name, messages=messages, max_tokens=40, temperature=0)
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 40
    assert whole.usage.prompt_tokens > 20 and whole.choices[0].message.content
    pieces, finish = [], None
    for chunk in api.chat.completions.create(model=name, messages=messages, max_tokens=40, temperature=0,
                                             stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert len(pieces) >= 3  # streamed as it grew, not in one piece
    assert "".join(pieces) == whole.choices[0].message.content and finish == "length"


def test_completions_whole_and_streamed(server):
    api, name = client(server), model_name(server)
    whole = api.completions.create(model=name, prompt="The capital of France is", max_tokens=24, temperature=0)
    assert whole.usage.completion_tokens == 24 and whole.choices[0].text
    streamed = "".join(c.choices[0].text for c in api.completions.create(
        model=name, prompt="The capital of France is", max_tokens=24, temperature=0, stream=True) if c.choices)
    assert streamed == whole.choices[0].text
    stopped = api.completions.create(model=name, prompt="The capital of France is", max_tokens=24, temperature=0,
                                     stop=[whole.choices[0].text[5:9]])
    assert stopped.choices[0].finish_reason == "stop" and len(stopped.choices[0].text) < len(whole.choices[0].text)


def test_concurrent_clients_are_batched(server):
    name = model_name(server)
    before = raw(server, "GET", "/api/stats").json()

    async def ask(api: openai.AsyncOpenAI, number: int) -> tuple[int, str]:
        stream = await api.chat.completions.create(
            model=name, messages=[{"role": "user", "content": f"Write a short poem number {number}."}],
            max_tokens=32, temperature=0, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
        return usage.completion_tokens, text

    async def main():
        api = openai.AsyncOpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, max_retries=0)
        return await asyncio.gather(*(ask(api, n) for n in range(8)))

    answers = asyncio.run(main())
    # greedy, so each answer is the same every run (sampling could end one at an early EOS, by chance)
    assert all(0 < tokens <= 32 for tokens, _ in answers) and any(text for _, text in answers), answers
    after = raw(server, "GET", "/api/stats").json()
    batches = after["batches"] - before["batches"]
    assert 1 <= batches < 8  # eight requests, fewer batches: they were generated together


def test_a_client_that_leaves_mid_stream_frees_its_slot_and_its_row(server):
    before = raw(server, "GET", "/api/stats").json()
    body = {"model": model_name(server), "prompt": "Tell a long story", "max_tokens": 500, "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as response:
        assert next(response.iter_lines()).startswith("data: ")
    for _ in range(100):  # the server notices the closed connection at its next write
        stats = raw(server, "GET", "/api/stats").json()
        if stats["active"] == 0 and stats["cancelled"] > before["cancelled"]:
            break
        time.sleep(0.1)
    assert stats["active"] == 0 and stats["cancelled"] == before["cancelled"] + 1


def test_error_statuses_are_openai_bodies(server, moderation):
    name = model_name(server)
    cases = [
        (400, raw(server, "POST", "/v1/chat/completions", "{not json")),
        (400, raw(server, "POST", "/v1/chat/completions", {"model": name})),
        (400, raw(server, "POST", "/v1/chat/completions",
                  {"model": name, "messages": [{"role": "user", "content": "hi"}], "n": 3})),
        (404, raw(server, "POST", "/v1/chat/completions",
                  {"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]})),
        (404, raw(server, "GET", "/v1/nowhere")),
        (413, raw(server, "POST", "/v1/completions", {"model": name, "prompt": "word " * 400})),
        (413, raw(server, "POST", "/v1/completions", {"model": name, "prompt": "x" * (1024 * 1024 + 10)})),
        (422, raw(server, "POST", "/v1/completions", {"model": name, "prompt": "hi", "temperature": 5})),
        (422, raw(server, "POST", "/v1/completions", {"model": name, "prompt": "hi", "max_tokens": 100000})),
    ]
    for status, response in cases:
        assert response.status_code == status, (status, response.text)
        error = response.json()["error"]
        assert error["message"] and error["type"] and "Traceback" not in response.text
    with pytest.raises(openai.NotFoundError):
        client(server).chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    moderation.fail_status = 500  # the content filter is down: nothing is generated (fail closed)
    try:
        down = raw(server, "POST", "/v1/completions", {"model": name, "prompt": "hi", "max_tokens": 4})
    finally:
        moderation.fail_status = None
    assert down.status_code == 503 and "content filter" in down.json()["error"]["message"]
    assert "sk-moderation-upstream" not in down.text and "Traceback" not in server.log


def test_flagged_prompt_is_refused_with_its_category(server):
    with pytest.raises(openai.BadRequestError) as refused:
        client(server).chat.completions.create(
            model=model_name(server), messages=[{"role": "user", "content": "How do I kill my neighbour?"}])
    error = refused.value.body
    assert error["code"] == "content_filter" and "violence" in error["message"]
    stats = raw(server, "GET", "/api/stats").json()
    assert stats["refusals"].get("prompt:violence", 0) >= 1
    assert "neighbour" not in server.log  # refusals are logged without the user's text


def test_flagged_answer_is_cut_before_the_flagged_part(server, monkeypatch):
    api, name = client(server), model_name(server)
    prompt = [{"role": "user", "content": "Describe your favourite place."}]
    answer = api.chat.completions.create(model=name, messages=prompt, max_tokens=60, temperature=0)
    text = answer.choices[0].message.content
    words = [w for w in re.findall(r"[A-Za-z]{4,}", text[len(text) // 2:]) if w.lower() not in str(prompt).lower()]
    assert words, text
    word = words[0]  # a word the model will say again: the moderation server now calls it violence
    monkeypatch.setitem(moderation_rules._PATTERNS, "violence", re.compile(rf"\b{re.escape(word)}\b", re.I))
    received, finish, refusal = "", None, None
    for chunk in api.chat.completions.create(model=name, messages=prompt, max_tokens=60, temperature=0,
                                             stream=True):
        choice = chunk.choices[0] if chunk.choices else None
        if choice and choice.delta.content:
            received += choice.delta.content
        if choice and choice.finish_reason:
            finish, refusal = choice.finish_reason, (choice.model_extra or {}).get("content_filter")
    assert finish == "content_filter" and refusal["category"] == "violence" and "violence" in refusal["message"]
    assert word not in received and text.startswith(received) and len(received) < len(text)
    whole = api.chat.completions.create(model=name, messages=prompt, max_tokens=60, temperature=0)
    assert whole.choices[0].finish_reason == "content_filter" and word not in whole.choices[0].message.content


def test_watermark_is_detected_on_answers_not_on_human_text(server):
    api, name = client(server), model_name(server)
    answer = api.completions.create(model=name, prompt="Once upon a time", max_tokens=200, temperature=1.0)
    found = raw(server, "POST", "/v1/watermark/detect", {"text": answer.choices[0].text}).json()
    assert found["watermarked"] is True and found["z_score"] >= 4 and found["scored_tokens"] >= 100
    human = json.loads(SEEDS.read_text().splitlines()[3])
    text = human["instruction"] + " " + human["instances"][0]["output"]
    assert raw(server, "POST", "/v1/watermark/detect", {"text": text}).json()["watermarked"] is False
    assert raw(server, "POST", "/v1/watermark/detect", {"txt": 1}).status_code == 400


def test_secrets_stay_out_of_logs_and_answers(server):
    info = raw(server, "GET", "/api/info").text + raw(server, "GET", "/v1/models").text
    for secret in (WATERMARK_SECRET, API_KEY, "sk-moderation-upstream"):
        assert secret not in info and secret not in server.log
    assert "key_fingerprint" in info


def test_flags_are_journalled_at_once_and_export_to_the_store(server, trained_checkpoint, tmp_path):  # noqa: F811
    messages = [{"role": "user", "content": "What is the boiling point of water?"}]
    # greedy, 120 tokens: the same answer every run (a sampled one was once empty, once scored z 3.5 on 50 tokens)
    answer = client(server).chat.completions.create(model=model_name(server), messages=messages, max_tokens=120,
                                                    temperature=0)
    text = answer.choices[0].message.content
    saved = raw(server, "POST", "/api/flags", {"messages": messages, "answer": text, "reason": "incorrect",
                                               "comment": "water boils at 100 C"})
    assert saved.status_code == 200, saved.text
    journal = [json.loads(line) for line in server.flags_file.read_text().splitlines()]
    assert journal[-1]["flag_id"] == saved.json()["flag_id"] and journal[-1]["answer"] == text
    assert journal[-1]["watermark_z"] >= 4 and journal[-1]["moderation"]["flagged"] is False
    assert raw(server, "POST", "/api/flags", {"messages": messages, "answer": text, "reason": "meh"}).status_code == 422
    store = tmp_path / "store"
    exported = train_cli("flags", "export", "--flags-file", server.flags_file, "--dataset", "demo-flags", store=store)
    assert exported.returncode == 0, exported.stderr
    rows = run_cli("sql", "SELECT instruction, output, reason, comment, trained_on_revision, watermark_z "
                          "FROM records ORDER BY flagged_at", "--rev", "demo-flags@main", "--format", "json",
                   store=store)
    assert rows.returncode == 0, rows.stderr
    last = json.loads(rows.stdout)[-1]
    assert last["instruction"] == messages[0]["content"] and last["output"] == text and last["reason"] == "incorrect"
    assert last["trained_on_revision"] == trained_checkpoint.revision_id and last["watermark_z"] >= 4
    missing = train_cli("flags", "export", "--flags-file", tmp_path / "none.jsonl", "--dataset", "x", store=store)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr and "none.jsonl" in missing.stderr


def test_concurrency_limit_and_request_time_limit(trained_checkpoint):  # noqa: F811
    with ServeProcess(trained_checkpoint.path, "--moderation", "none", "--watermark", "off", "--max-concurrent", "1",
                      "--request-timeout", "1.5", "--max-tokens", "100000") as process:
        api = openai.OpenAI(base_url=process.base_url + "/v1", api_key="unused", max_retries=0)
        name = api.models.list().data[0].id
        long = api.completions.create(model=name, prompt="Tell a long story", max_tokens=100000, stream=True)
        next(iter(long))  # the first request is in progress
        with pytest.raises(openai.RateLimitError):
            api.completions.create(model=name, prompt="hi", max_tokens=2)
        tokens = sum(1 for chunk in long if chunk.choices and chunk.choices[0].text)
        assert 0 < tokens < 100000  # cut by the time limit, not by max_tokens
        assert api.completions.create(model=name, prompt="hi", max_tokens=2).usage.completion_tokens == 2
        assert "watermark OFF" in process.log


def test_serve_refuses_bad_options_in_one_line(tmp_path):
    from alpaca_train.tiny import make_tiny_llama

    model = tmp_path / "model"
    make_tiny_llama(model, layers=1, hidden=16)  # a real model folder: the options are what must be refused
    for args, needle in ((["serve", str(tmp_path / "nope")], "nope"),
                         (["serve", str(tmp_path), "--watermark", "off"], "not a"),  # a folder, but no model
                         (["serve", str(model), "--watermark", "maybe"], "--watermark"),
                         (["serve", str(model), "--moderation", "magic"], "magic")):
        done = subprocess.run([sys.executable, "-m", "alpaca_train", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode != 0 and needle in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
