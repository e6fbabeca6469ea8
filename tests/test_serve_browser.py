"""The chat page of `alpaca-train serve`, driven in headless Chromium (Debian's chromium, via Playwright).

The served model is the tiny checkpoint trained by `alpaca-train` with its weights then rigged so that it
answers with HTML markup: the page must show that markup as text. Flow: accept the notice, send a message,
watch the answer stream in, flag it, export the flags and find the flag in the store with SQL.
"""
from __future__ import annotations

import json
import shutil

import pytest

from alpaca_train.prompts import format_prompt
from tests.browser import browser  # noqa: F401  (the fixture)
from tests.conftest import run_cli
from tests.serve_fixtures import ServeProcess, train_cli, trained_checkpoint  # noqa: F401

MARKUP = "<script>window.pwned=1</script>"


def rig_to_answer_markup(source, target) -> None:
    """Copy the checkpoint, then set its weights so that greedy (or sampled: the margin is huge) decoding
    after the Alpaca prompt cycles through MARKUP's tokens: each token's only successor is the next one.

    The attention and MLP outputs are zeroed, so the last position's hidden state is its token's embedding;
    each chain token gets its own basis direction, and the LM head row of its successor points along it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(source, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    last_prompt_token = tokenizer(format_prompt("x"), add_special_tokens=False)["input_ids"][-1]
    chain = [last_prompt_token] + tokenizer(MARKUP, add_special_tokens=False)["input_ids"]
    successor = {token: chain[i + 1] for i, token in enumerate(chain[:-1])}
    successor[chain[-1]] = chain[chain.index(chain[-1]) + 1]  # after the closing ">" the cycle starts again
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        directions = {token: i for i, token in enumerate(dict.fromkeys(chain))}
        for token, direction in directions.items():
            model.model.embed_tokens.weight[token].zero_()
            model.model.embed_tokens.weight[token, direction] = 1.0
        for token, after in successor.items():
            model.lm_head.weight[after, directions[token]] += 100.0
    model.save_pretrained(target)


@pytest.fixture
def rigged_server(trained_checkpoint, tmp_path):  # noqa: F811
    rigged = tmp_path / "alpaca-markup"
    rig_to_answer_markup(trained_checkpoint.path, rigged)
    flags = tmp_path / "flags.jsonl"
    with ServeProcess(rigged, "--moderation", "local", "--flags-file", flags, "--default-max-tokens", "600",
                      "--terms-file", _terms(tmp_path)) as server:
        server.flags_file = flags
        yield server


def _terms(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("Research preview: non-commercial use only. Test terms 7f3a.", encoding="utf-8")
    return path


def test_chat_page_streams_shows_markup_as_text_and_flags_into_the_store(browser, rigged_server, tmp_path,  # noqa: F811
                                                                          trained_checkpoint):  # noqa: F811
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(rigged_server.base_url + "/")
    page.wait_for_selector("#accept:not([disabled])")
    assert "Test terms 7f3a" in page.inner_text("#terms")
    assert page.is_disabled("#prompt")  # nothing can be sent before the notice is accepted
    page.click("#accept")
    assert page.inner_text("#model-name") == "alpaca-markup"
    assert trained_checkpoint.revision_id[:12] in page.inner_text("#lineage")
    assert "gsm-small@main" in page.inner_text("#lineage")
    page.evaluate("""() => {
        window.__lengths = [];
        new MutationObserver(() => {
            const answers = document.querySelectorAll('.message.assistant .text');
            if (answers.length) window.__lengths.push(answers[answers.length - 1].textContent.length);
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
    }""")
    page.fill("#prompt", "Write a haiku about autumn.")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:text-matches('^finished')", timeout=60000)
    answer = page.locator(".message.assistant .text").last.text_content()
    assert answer.startswith(MARKUP) and answer.count("</script>") >= 3
    lengths = [n for n in page.evaluate("window.__lengths") if n]
    assert len(set(lengths)) >= 3 and max(lengths) == len(answer)  # it grew piece by piece: streamed
    assert page.evaluate("document.querySelectorAll('#messages script, #messages b').length") == 0
    assert page.evaluate("typeof window.pwned") == "undefined"  # the markup was never run
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=False)

    page.locator(".message.assistant button.flag").last.click()
    page.locator(".message.assistant .flag-reason").last.select_option("harmful")
    page.locator(".message.assistant .flag-comment").last.fill("answers with script markup")
    page.locator(".message.assistant .flag-submit").last.click()
    page.wait_for_selector(".flagged")
    assert "flagged, thank you" in page.inner_text(".flagged")

    page.fill("#prompt", "Now write a long story.")
    page.click("#send")
    page.wait_for_function("() => document.querySelectorAll('.message.assistant .text')[1]?.textContent.length > 0",
                           polling=20)
    page.click("#stop")
    page.wait_for_selector("#status:text-matches('^finished')")
    assert page.inner_text("#status") == "finished: stopped"
    stopped = page.locator(".message.assistant .text").last.text_content()
    assert 0 < len(stopped) < len(answer)
    assert not errors, errors
    context.close()

    journal = [json.loads(line) for line in rigged_server.flags_file.read_text().splitlines()]
    assert len(journal) == 1 and journal[0]["answer"] == answer and journal[0]["reason"] == "harmful"
    store = tmp_path / "store"
    exported = train_cli("flags", "export", "--flags-file", rigged_server.flags_file, "-d", "chat-flags", store=store)
    assert exported.returncode == 0, exported.stderr
    found = run_cli("sql", "SELECT instruction, output, reason, comment, model FROM records", "--rev",
                    "chat-flags@main", "-f", "json", store=store)
    rows = json.loads(found.stdout)
    assert rows == [{"instruction": "Write a haiku about autumn.", "output": answer, "reason": "harmful",
                     "comment": "answers with script markup", "model": "alpaca-markup"}]
