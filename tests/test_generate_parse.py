"""Prompt building and response parsing, on realistic (drifted) teacher outputs."""
from __future__ import annotations

from pathlib import Path

import pytest

from alpaca_data.generate.parse import normalise_input, parse_response
from alpaca_data.generate.prompt import NO_INPUT, build_prompt, load_seed_tasks, template_hash

SEEDS = Path(__file__).resolve().parent / "data" / "seeds" / "alpaca_seed_tasks.jsonl"


@pytest.fixture(scope="module")
def seeds():
    return load_seed_tasks(SEEDS)


def test_prompt_is_a_pure_function_of_seed_and_index(seeds):
    a = build_prompt(7, 42, seeds, 3)
    assert a.text == build_prompt(7, 42, seeds, 3).text
    assert a.text != build_prompt(8, 42, seeds, 3).text
    assert a.text != build_prompt(7, 43, seeds, 3).text
    assert a.text.endswith("\n###\n4. Instruction:")
    assert "1. Instruction: " in a.text and "3. Output:\n" in a.text and "5. Instruction" not in a.text
    assert len(a.seed_ids) == 3 and all(s.startswith("seed_task_") for s in a.seed_ids)
    assert a.messages() == [{"role": "user", "content": a.text}]
    assert len(template_hash()) == 64


def test_prompt_marks_empty_inputs_and_mixes_machine_demos(seeds):
    prompt = build_prompt(0, 0, seeds, 5)
    blank = [s for s in seeds if s.id in prompt.seed_ids and not s.input]
    assert prompt.text.count(f"Input:\n{NO_INPUT}\n") == len(blank)
    pool = [{"instruction": f"Machine task number {i} here.", "input": "", "output": "x", "request_id": f"r{i}"}
            for i in range(10)]
    mixed = build_prompt(3, 0, seeds, 3, machine_pool=pool, machine_demos=2)
    assert mixed.machine_demos == 2 and mixed.num_demos == 3
    assert sum(1 for s in mixed.seed_ids if s.startswith("r")) == 2
    assert mixed.text == build_prompt(3, 0, seeds, 3, machine_pool=pool, machine_demos=2).text


COMPLETION = """ Rewrite the sentence so that it uses the active voice.
4. Input:
The cake was eaten by the children.
4. Output:
The children ate the cake.
###
5. Instruction: Name three rivers in Africa.
5. Input:
<noinput>
5. Output:
The Nile, the Congo and the Niger.
###
6. Instruction: Write a haiku about a quiet library at dusk.
6. Input:
<noinput>
6. Output:
Pages hold their breath"""

CHAT_BOLD = """Sure! Here are some more tasks following the same format:

**4. Instruction:** Classify the following sentence as a question, command or statement.
**4. Input:** Close the window before you leave.
**4. Output:** Command.

---

**5. Instruction:** Give two synonyms for the word "happy".
**5. Input:** <noinput>
**5. Output:**
Cheerful and joyful.

---

**6. Instruction:** Explain what a budget deficit is in one sentence.
**6. Input:** None
**6. Output:** A budget deficit occurs when a government spends more money than it takes in during a year.

I hope these tasks are helpful! Let me know if you'd like more."""

CHAT_HEADINGS = """### Task 4
**Instruction:** Suggest a fun weekend activity for a family with teenagers.

**Input:** N/A

**Output:**
Try an escape room: it needs teamwork, it is screen-free and it takes about an hour.

### Task 5
**Instruction:** Convert the list into a comma-separated sentence.
**Input:**
- apples
- pears
- plums
**Output:**
We bought apples, pears and plums.
"""

CHAT_UNNUMBERED = """Here are the next tasks.

Instruction: Translate "good morning" into Spanish.
Input: <noinput>
Output: Buenos días.


Instruction: Find the verb in the sentence.
Input: The dog barked loudly.
Output: barked

Instruction: Write a function that doubles a number.
Output:
```python
def double(x):
    return 2 * x
```"""

CHAT_CODE_AND_NUMBERS = """4. Instruction: Give the first five square numbers.
4. Input:
<noinput>
4. Output:
1. 1
2. 4
3. 9
4. 16
5. 25
###
5. Instruction: Identify the error in the code.
5. Input:
for i in range(3) print(i)
5. Output:
A colon is missing after `range(3)`:
```
for i in range(3):
    print(i)
```
###
6. Instruction:
6. Input:
<noinput>
6. Output:
Something.
###
7. Instruction: Describe the colour of the sky at noon on a clear day.
7. Input:
<noinput>
###"""


def test_completion_continuation_and_truncation():
    result = parse_response(COMPLETION, "length", open_index=4)
    assert [t["instruction"] for t in result.tasks] == [
        "Rewrite the sentence so that it uses the active voice.", "Name three rivers in Africa."]
    assert result.tasks[0]["input"] == "The cake was eaten by the children."
    assert result.tasks[1]["input"] == ""
    assert result.failures == {"truncated": 1}
    full = parse_response(COMPLETION, "stop", open_index=4)
    assert len(full.tasks) == 3 and full.tasks[2]["output"] == "Pages hold their breath"


def test_chat_bold_labels_preamble_and_closing_remark():
    result = parse_response(CHAT_BOLD, "stop")
    assert [t["instruction"] for t in result.tasks] == [
        "Classify the following sentence as a question, command or statement.",
        "Give two synonyms for the word \"happy\".",
        "Explain what a budget deficit is in one sentence."]
    assert [t["input"] for t in result.tasks] == ["Close the window before you leave.", "", ""]
    assert result.tasks[0]["output"] == "Command."
    assert result.tasks[1]["output"] == "Cheerful and joyful."
    assert result.tasks[2]["output"].endswith("during a year.")
    assert "hope" not in result.tasks[2]["output"] and result.normalised["closing_remark"] == 1
    assert not result.failures


def test_chat_heading_blocks_and_multiline_inputs():
    result = parse_response(CHAT_HEADINGS, "stop")
    assert len(result.tasks) == 2
    assert result.tasks[0] == {"instruction": "Suggest a fun weekend activity for a family with teenagers.",
                               "input": "", "output": "Try an escape room: it needs teamwork, it is screen-free "
                                                      "and it takes about an hour."}
    assert result.tasks[1]["input"] == "- apples\n- pears\n- plums"
    assert result.tasks[1]["output"] == "We bought apples, pears and plums."


def test_chat_unnumbered_labels_and_missing_input_label():
    result = parse_response(CHAT_UNNUMBERED, "stop")
    assert [t["instruction"] for t in result.tasks] == [
        "Translate \"good morning\" into Spanish.", "Find the verb in the sentence.",
        "Write a function that doubles a number."]
    assert result.tasks[2]["input"] == ""
    assert result.tasks[2]["output"].startswith("```python\ndef double(x):") and result.tasks[2]["output"].endswith("```")
    assert result.normalised["missing_input_label"] == 1


def test_failures_are_counted_by_reason():
    result = parse_response(CHAT_CODE_AND_NUMBERS, "stop")
    assert [t["instruction"] for t in result.tasks] == ["Give the first five square numbers.",
                                                        "Identify the error in the code."]
    assert result.tasks[0]["output"] == "1. 1\n2. 4\n3. 9\n4. 16\n5. 25"
    assert "print(i)\n```" in result.tasks[1]["output"]
    assert result.failures == {"empty_instruction": 1, "missing_output": 1}
    assert parse_response("", "stop").failures == {"empty_response": 1}
    assert parse_response("I'm sorry, I can't help with that.", "stop", continuation=False).failures == {"no_tasks": 1}


@pytest.mark.parametrize("marker", ["<noinput>", "<No Input>", "None", "N/A", "no input", "(none)", "-", "**<noinput>**"])
def test_no_input_markers(marker):
    assert normalise_input(marker) == ("", True)


def test_real_input_is_kept():
    assert normalise_input("  None of the above  ") == ("None of the above", False)


# What SmolLM2-135M-Instruct wrote as an `hf:` teacher (scripts/real_model_tour.sh, seed 1), verbatim.
SMOLLM2_PLURAL_LABELS = (
    "6. Instructions:\nIn which type of work do you need to help someone learn a language?\n2. Input:\n"
    "A person should help me understand the importance of this task. I would like to know how well I can "
    "assist me here on this task. I need your assistance with my upcoming class.\n2. Output:\nThe task seems "
    "very simple, I have no ideas. I see no other ways to assist you here. Please go to the office later by the "
    "11 o'clock window. Do not leave your home till 11 o'clock.")


def test_a_real_small_model_writes_plural_labels():
    result = parse_response(SMOLLM2_PLURAL_LABELS, "stop", open_index=4)
    assert [task["instruction"] for task in result.tasks] == [
        "In which type of work do you need to help someone learn a language?"]
    assert result.tasks[0]["input"].startswith("A person should help me")
    assert result.tasks[0]["output"].endswith("till 11 o'clock.")
    assert not result.failures
