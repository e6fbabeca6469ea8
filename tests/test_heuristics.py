"""Heuristic rules: each rule on real records from the corpus samples in tests/data, on hand-written ones, and
on counter-examples it must leave alone; then RuleSet specs, ordering and reports."""
from __future__ import annotations

import copy
import functools
import json

import pytest

from alpaca_data.errors import UsageError
from alpaca_data.filters.ruleset import RULES, RuleSet
from alpaca_data.filters.steps import Pipeline, PipelineResult, Verdict
from alpaca_data.records import key_of
from tests.conftest import SEEDS
from tests.conftest import corpus_records as _load


@functools.cache
def _seeds() -> tuple[dict, ...]:
    path = SEEDS
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        task = json.loads(line)
        instance = task["instances"][0]
        out.append({"instruction": task["instruction"], "input": instance["input"],
                    "output": instance["output"]})
    return tuple(out)


def corpus(name: str) -> list[dict]:
    return [dict(r) for r in _load(name)]


def find(records, *, field="instruction", contains=None, startswith=None, endswith=None, equals=None):
    """The first real record whose field matches (so tests name data by content, not position)."""
    for record in records:
        text = record[field]
        if ((contains is None or contains in text) and (startswith is None or text.startswith(startswith))
                and (endswith is None or text.endswith(endswith)) and (equals is None or text == equals)):
            return dict(record)
    raise AssertionError(f"no record with {field} matching {contains or startswith or endswith or equals!r}")


def only(name: str, **params) -> RuleSet:
    spec = ",".join([name, *(f"{name}.{k}={v}" for k, v in params.items())])
    return RuleSet.from_spec(spec)


def rec(instruction="Give three tips for staying healthy.", input="", output="Eat well, sleep, move.", **extra):
    return {"instruction": instruction, "input": input, "output": output, **extra}


def dropped_by(ruleset: RuleSet, record: dict) -> str | None:
    return ruleset.check(record).reason


# --------------------------------------------------------------------------------------------
# Alpaca's own rules


def test_too_short_real_seed_and_counter_example():
    rules = only("too_short")
    assert dropped_by(rules, find(_seeds(), equals="Complete the lyrics.")) == "too_short"
    assert dropped_by(rules, rec("Summarize this.")) == "too_short"
    assert dropped_by(rules, rec("")) == "too_short"
    # exactly four words is kept (<= 3 drops), counted with str.split like Alpaca
    assert dropped_by(rules, find(_seeds(), equals="Answer the following question.")) is None
    assert dropped_by(rules, rec("Rank   the\tfollowing universities.")) is None


def test_too_short_counts_cjk_characters_only_when_asked():
    zh = find(corpus("alpaca_zh_10000"), startswith="平安健康保险股份有限公司总部在哪里")
    assert dropped_by(only("too_short"), zh) == "too_short"  # one "word" for str.split
    assert dropped_by(only("too_short", count_cjk="true"), zh) is None
    assert dropped_by(only("too_short", count_cjk="true"), rec("你好吗")) == "too_short"


def test_too_long_real_gsm8k_and_param():
    long_problem = find(corpus("gsm8k_train_alpaca"),
                        startswith="A man is trying to maximize the amount of money he saves each month")
    assert len(long_problem["instruction"].split()) > 150
    assert dropped_by(only("too_long"), long_problem) == "too_long"
    assert dropped_by(only("too_long", max_words=300), long_problem) is None
    assert dropped_by(only("too_long"), rec(" ".join(["word"] * 150))) is None
    assert dropped_by(only("too_long"), rec(" ".join(["word"] * 151))) == "too_long"


def test_blacklist_real_examples():
    rules = only("blacklist")
    files = find(corpus("gsm8k_train_alpaca"), startswith="Brennan was researching his school project")
    outcome = rules.check(files)
    assert outcome.reason == "blacklist" and "file" in outcome.detail
    music = find(corpus("gpteacher_roleplay"), startswith="Take the role of a music historian")
    assert dropped_by(rules, music) == "blacklist"
    assert dropped_by(rules, rec("Please go to the store and describe it.")) == "blacklist"
    assert dropped_by(rules, rec("Please GO  TO the store and describe it.")) == "blacklist"
    assert dropped_by(rules, rec("Draw a cat using ASCII characters.")) == "blacklist"


def test_blacklist_whole_words_only():
    rules = only("blacklist")
    # real records: "mapped", "filename", "profile", "graphic novels" must not count as map/file/graph
    mapped = find(corpus("gpteacher_roleplay"), contains="who has just mapped out the fictional continent")
    filename = find(corpus("gpteacher_codegen"), contains="appended to the filename")
    profile = find(corpus("gpteacher_codegen"), contains="retrieve a user's profile given their username")
    graphic = find(corpus("gsm8k_train_alpaca"), startswith="Miles is going to spend 1/6 of a day reading")
    for record in (mapped, filename, profile, graphic):
        assert dropped_by(rules, record) is None, record["instruction"]
    assert dropped_by(rules, rec("Explain what a hash mapping is in computer science.")) is None
    assert dropped_by(rules, rec("Explain why we should not forego tourism.")) is None  # "go to" inside words
    # only the instruction is checked by default, like Alpaca; fields can widen it
    in_input = rec("Summarise the following text for a child.", input="The file was lost.")
    assert dropped_by(rules, in_input) is None
    assert dropped_by(only("blacklist", fields="instruction|input"), in_input) == "blacklist"
    assert dropped_by(only("blacklist", words="video|audio"), rec("Describe the file format.")) is None


def test_write_a_program_exact_prefix():
    rules = only("write_a_program")
    seed = find(_seeds(), startswith="Write a program to compute the sum of integers")
    assert dropped_by(rules, seed) == "write_a_program"
    js = find(corpus("gpteacher_codegen"), startswith="Write a program in JavaScript that calculates the factorial")
    assert dropped_by(rules, js) == "write_a_program"
    python = find(corpus("gpteacher_codegen"), startswith="Write a Python program that counts the number of occurrences")
    assert dropped_by(rules, python) is None
    assert dropped_by(RuleSet.default(), python) is None  # survives every default rule
    assert dropped_by(rules, rec("Explain how to write a program that sorts numbers.")) is None


def test_starts_with_punctuation():
    rules = only("starts_with_punctuation")
    dollars = find(corpus("gsm8k_train_alpaca"), startswith="$240 was divided between Kelvin and Samuel")
    assert dropped_by(rules, dollars) == "starts_with_punctuation"
    assert dropped_by(rules, rec('"Quote" this sentence properly.')) == "starts_with_punctuation"
    assert dropped_by(rules, rec("  - Make a list of fruits.")) == "starts_with_punctuation"
    digits = find(corpus("gsm8k_train_alpaca"), startswith="3 families of 4 people shared a vacation rental")
    assert dropped_by(rules, digits) is None
    assert dropped_by(rules, rec("Is 3 > 2? Explain.")) is None
    assert dropped_by(only("starts_with_punctuation", allow="$"), dollars) is None


def test_starts_with_non_ascii():
    rules = only("starts_with_non_ascii")
    cyrillic = find(corpus("gsm8k_train_alpaca"), contains="Senior Center is hosting a bingo night")
    assert cyrillic["instruction"][0] == "\u0410"  # a Cyrillic A that looks like a Latin one
    outcome = rules.check(cyrillic)
    assert outcome.reason == "starts_with_non_ascii" and "U+0410" in outcome.detail
    assert dropped_by(rules, corpus("alpaca_zh_10000")[0]) == "starts_with_non_ascii"
    # non-ASCII later in the instruction is fine
    cat = find(corpus("gpteacher_roleplay"), contains="Explain the concept of Schrödinger's cat")
    pinata = find(corpus("gsm8k_train_alpaca"), contains="unicorn piñata")
    assert dropped_by(rules, cat) is None and dropped_by(rules, pinata) is None


# --------------------------------------------------------------------------------------------
# AlpacaDataCleaned classes


@pytest.mark.parametrize("marker", [
    "<noinput>", "<no input>", "No input", "noinput", "N/A", "n/a", "None", "<none>", "Input: none",
    "  No Input.  ", "[No input]", "(none)", "no_input", "NO-INPUT", "<No input required>", "Not applicable",
    "input: <noinput>", "N / A",
])
def test_noinput_marker_variants(marker):
    record = rec(input=marker)
    outcome = only("noinput_marker").check(record)
    assert outcome.record["input"] == "" and outcome.normalised_by == ("noinput_marker",)
    assert record["input"] == marker  # input not mutated


def test_noinput_marker_real_records_and_counter_examples():
    real = [r for r in corpus("alpaca_zh_10000") if r["input"] == "Noinput"]
    assert len(real) >= 5
    report = Pipeline([only("noinput_marker")]).run(real, progress=False)
    assert report.normalised == {"noinput_marker": len(real)} and not report.rejections
    assert all(r["input"] == "" for r in report.kept)
    rules = only("noinput_marker")
    for text in ("No input validation is done in this code", "None of the above", "No", "NA",
                 "none, one, two", "Input: 5", "nothing to see here", ""):
        outcome = rules.check(rec(input=text))
        assert outcome.record["input"] == text and outcome.normalised_by == (), text


def test_empty_output():
    rules = only("empty_output")
    real = find(corpus("alpaca_zh_10000"), startswith="将日期转换为ISO 8601格式")
    assert real["output"] == ""
    assert dropped_by(rules, real) == "empty_output"
    for output in ("", "   \n", "N/A", "<nooutput>", "<No Output>", "none", "None.", "[N/A]"):
        assert dropped_by(rules, rec(output=output)) == "empty_output", output
    for output in ("None of these options is correct.", "0", "No.", "NaN", "Nothing happens."):
        assert dropped_by(rules, rec(output=output)) is None, output


def test_merged_instructions_real_records():
    rules = only("merged_instructions")
    zh = corpus("alpaca_zh_10000")
    for start in ("生活中最重要的价值观是什么", "分析给定文章", "生成关于勇敢的骑士与邪恶女巫战斗的故事"):
        record = find(zh, startswith=start)
        assert "Instruction:" in record["output"]
        assert dropped_by(rules, record) == "merged_instructions", start


def test_merged_instructions_hand_written():
    rules = only("merged_instructions")
    numbered = rec(output="Paris is the capital of France.\n\n2. Instruction: Name a river.\n2. Input:\n<noinput>\n"
                          "2. Output:\nThe Nile.")
    template = rec(output="Paris.\n\n### Instruction:\nName a river.\n\n### Response:\nThe Nile.")
    labelled = rec(output="Paris.\n\nInstruction: Name a river in Egypt.\nInput: \nOutput: The Nile.")
    io_only = rec(output="Paris.\n\n3. Input: Italy\n3. Output: Rome")
    for record in (numbered, template, labelled, io_only):
        assert dropped_by(rules, record) == "merged_instructions", record["output"]


def test_merged_instructions_counter_examples():
    rules = only("merged_instructions")
    codegen = corpus("gpteacher_codegen")
    # real answers that show a program's "Output:" after the explanation, or start with it
    for record in (find(codegen, startswith="Explain how to add elements to a dictionary in Python"),
                   find(codegen, equals="What is the output of the following JavaScript code snippet? Can you "
                                        "provide an explanation?"),
                   find(codegen, field="output", contains="input: fileStream")):
        assert dropped_by(rules, record) is None, record["instruction"]
    assert dropped_by(rules, rec(output="Instruction: Summarise the article in two sentences.")) is None
    assert dropped_by(rules, rec(output="Example:\nInput: 5\nOutput: 120")) is None
    assert dropped_by(rules, rec(output="1. Preheat the oven.\n2. Mix the flour.")) is None


def test_needs_media_real_records():
    rules = only("needs_media")
    zh = corpus("alpaca_zh_10000")
    jpg = find(zh, field="input", contains="Vincent_van_Gogh_018.jpg")
    markdown = find(zh, field="input", startswith="![alt text](")
    assert dropped_by(rules, jpg) == "needs_media"
    assert dropped_by(rules, markdown) == "needs_media"
    url_tool = find(corpus("gpteacher_toolformer"), field="input",
                    equals="https://en.wikipedia.org/wiki/Artificial_intelligence")
    assert dropped_by(rules, url_tool) == "needs_media"
    # links are a parameter; links to media files and markdown images still count without it
    no_links = only("needs_media", links="false")
    assert dropped_by(no_links, url_tool) is None
    api = find(corpus("gpteacher_codegen"), field="input", equals='URL: "https://jsonplaceholder.typicode.com/todos/1"')
    assert dropped_by(rules, api) == "needs_media" and dropped_by(no_links, api) is None
    assert dropped_by(no_links, jpg) == "needs_media"
    assert dropped_by(no_links, markdown) == "needs_media"


@pytest.mark.parametrize("instruction,input_text", [
    ("Describe the scene in the picture.", "<Picture Attached>"),
    ("Caption this.", "<image>"),
    ("What breed is the dog? [image]", ""),
    ("Identify the plant in the attached photo.", ""),
    ("Summarise the article at https://example.com/news/1 in one line.", ""),
    ("Rate this logo.", "Image attached"),
])
def test_needs_media_hand_written(instruction, input_text):
    assert dropped_by(only("needs_media"), rec(instruction, input_text)) == "needs_media"


def test_needs_media_counter_examples():
    rules = only("needs_media")
    for instruction, input_text in (
        ("Explain how an event listener is attached to a button in JavaScript.", ""),
        ("Write a haiku about a picture-perfect sunset.", ""),
        ("Fix the HTML so the image shows a caption.", '<img src="cat.png" alt="">'),
        ("What does the acronym HTTP stand for?", ""),
    ):
        assert dropped_by(rules, rec(instruction, input_text)) is None, instruction
    # URLs in the output are fine (the rule looks at instruction and input)
    assert dropped_by(rules, rec(output="See https://docs.python.org for details.")) is None


def test_control_characters_real_records():
    rules = only("control_characters")
    crlf = find(corpus("gpteacher_codegen"), field="input", startswith="Input CSV file: movie_data.csv\r\n")
    outcome = rules.check(crlf)
    assert outcome.normalised_by == ("control_characters",)
    assert "\r" not in outcome.record["input"] and outcome.record["input"].count("\n") == 2
    # a poem written with literal "\n" escapes gets real line breaks
    poem = find(corpus("gpteacher_roleplay"), field="output", startswith="In the grand arena, a knight did shine,\\n")
    fixed = rules.check(poem).record["output"]
    assert fixed.startswith("In the grand arena, a knight did shine,\nSir Gallant") and "\\n" not in fixed
    assert "\n\nThe trumpet called" in fixed


def test_control_characters_leaves_code_and_data_alone():
    rules = only("control_characters")
    code_call = find(corpus("gpteacher_toolformer"), field="output", contains="python('def is_prime(n):\\n")
    csv = find(corpus("gpteacher_codegen"), field="input", equals='CSV data: "id,name,age\\n1,John,32\\n2,Jane,28"')
    printf = find(corpus("gpteacher_codegen"), field="output", contains='printf("')
    for record in (code_call, csv, printf):
        outcome = rules.check(record)
        assert outcome.normalised_by == () and outcome.record == record
    assert rules.check(rec(output="Use \\n to end a line in C strings.")).normalised_by == ()


def test_control_characters_hand_written():
    rules = only("control_characters")
    record = rec("Give\x00 three tips\x1b for staying healthy.\ufeff", input="a\x0cb",
                 output="Line one\r\nLine two\rLine\tthree\x85end\x9b")
    outcome = rules.check(record)
    assert outcome.record["instruction"] == "Give three tips for staying healthy."
    assert outcome.record["input"] == "a\nb"
    assert outcome.record["output"] == "Line one\nLine two\nLine\tthree\nend"
    assert record["instruction"].startswith("Give\x00")  # the input record is untouched
    clean = rec(output="Tabs\tand\nnewlines stay.")
    assert rules.check(clean).normalised_by == ()
    assert rules.check(rec(output="First part.\\nSecond part.")).normalised_by == ("control_characters",)
    assert only("control_characters", literal_newlines="false").check(
        rec(output="First part.\\nSecond part.")).normalised_by == ()


def test_empty_code_block():
    rules = only("empty_code_block")
    for output in ("Here is the code:\n```\n```", "```python\n\n```", "``` ```", "Done.\n```js\n   \n```\nBye"):
        assert dropped_by(rules, rec(output=output)) == "empty_code_block", output
    real = find(corpus("gpteacher_codegen"), field="output", startswith="```python\ndef create_dict(keys, values)")
    assert dropped_by(rules, real) is None
    two_blocks = rec(output="```py\nprint(1)\n```\n\n```js\nconsole.log(1)\n```")
    assert dropped_by(rules, two_blocks) is None  # the gap between two blocks is not a block
    assert dropped_by(rules, rec(output="Use ``` to fence code.")) is None
    assert dropped_by(rules, rec(output="```print(1)```")) is None


def test_output_echoes_instruction_is_off_by_default():
    echo = rec("Repeat after me: I love cats.", output="repeat after me:  I love cats.")
    assert "output_echoes_instruction" not in RuleSet.default()
    assert RuleSet.default().check(echo).kept
    rules = RuleSet.from_spec("default,output_echoes_instruction")
    assert dropped_by(rules, echo) == "output_echoes_instruction"
    assert dropped_by(rules, rec("Repeat after me: I love cats.", output="I love cats.")) is None


# --------------------------------------------------------------------------------------------
# RuleSet


def test_default_rules_and_spec_grammar():
    default = RuleSet.default()
    assert default.names == [r.name for r in RULES if r.enabled_by_default]
    assert RuleSet.from_spec(None).names == default.names
    assert RuleSet.from_spec("").names == default.names
    assert RuleSet.from_spec("default").names == default.names
    assert "blacklist" not in RuleSet.from_spec("default,-blacklist")
    assert RuleSet.from_spec("too_long, too_short").names == ["too_short", "too_long"]  # fixed order
    assert RuleSet.from_spec("all").names == [r.name for r in RULES]
    rules = RuleSet.from_spec("default,too_long.max_words=300,output_echoes_instruction")
    assert rules["too_long"].max_words == 300 and "output_echoes_instruction" in rules
    assert RuleSet.from_spec("too_short.max_words=5").names == ["too_short"]  # a setting enables
    assert RuleSet.from_spec("blacklist.words=image | video").names == ["blacklist"]
    assert RuleSet.from_spec("blacklist.words=image | video")["blacklist"].words == ("image", "video")
    assert RuleSet.from_spec("needs_media.links=no")["needs_media"].links is False


@pytest.mark.parametrize("spec,names", [
    ("default,nonsense", "nonsense"),
    ("-nonsense", "nonsense"),
    ("too_long.maxwords=3", "too_long.maxwords"),
    ("nonsense.max_words=3", "nonsense"),
    ("too_long.max_words=lots", "too_long.max_words"),
    ("needs_media.links=maybe", "needs_media.links"),
    ("too_long.max_words", "too_long.max_words"),
])
def test_bad_specs_raise_usage_error(spec, names):
    with pytest.raises(UsageError) as raised:
        RuleSet.from_spec(spec)
    message = str(raised.value)
    assert names in message and "\n" not in message
    assert raised.value.exit_code == 2


def test_describe_lists_every_rule():
    rows = RuleSet.from_spec("too_short,too_long.max_words=300").describe()
    assert [row["name"] for row in rows] == [r.name for r in RULES]
    by_name = {row["name"]: row for row in rows}
    assert by_name["too_long"] == {**by_name["too_long"], "action": "drop", "default": "on", "enabled": True,
                                   "params": {"max_words": 300, "count_cjk": False}}
    assert by_name["blacklist"]["enabled"] is False and "map" in by_name["blacklist"]["params"]["words"]
    assert by_name["noinput_marker"]["action"] == "normalise"
    assert by_name["output_echoes_instruction"]["default"] == "off"
    assert all(row["description"] for row in rows)
    json.dumps(rows)  # plain data for the CLI / docs


def test_check_order_normalise_first_then_first_drop_wins():
    rules = RuleSet.default()
    # "<noinput>" is normalised before drop rules run; too_short comes before blacklist
    record = rec("Draw a map.", input="<noinput>", output="N/A", source="hand")
    outcome = rules.check(record)
    assert isinstance(outcome, Verdict)
    assert outcome.normalised_by == ("noinput_marker",)
    assert outcome.reason == "empty_output"
    assert outcome.record["input"] == "" and outcome.record["source"] == "hand"
    assert record["input"] == "<noinput>"
    assert rules.check(rec("Draw a map.")).reason == "too_short"
    assert rules.check(rec("Please draw a map of the city.")).reason == "blacklist"
    kept = rules.check(record := rec(source="hand"))
    assert kept.kept and kept.record == record and kept.record is not record


def test_apply_report_on_real_records():
    zh = corpus("alpaca_zh_10000")
    original = copy.deepcopy(zh)
    rules = RuleSet.from_spec("default,-starts_with_non_ascii,too_short.count_cjk=true")
    report = Pipeline([rules]).run(zh, progress=False)
    assert isinstance(report, PipelineResult)
    assert zh == original  # nothing mutated
    assert len(report.kept) + len(report.rejections) == len(zh)
    assert report.counts["merged_instructions"] == 3
    assert report.counts["empty_output"] >= 1 and report.counts["needs_media"] >= 2
    assert sum(report.counts.values()) == len(report.rejections)
    assert report.normalised["noinput_marker"] >= 5
    row = next(r for r in report.rejections if r["reason"] == "empty_output")
    assert set(row) == {"reason", "action", "key", "instruction", "input", "output", "score", "most_similar",
                        "index"}
    assert row["action"] == "drop" and row["score"] is None and row["most_similar"] is None
    assert zh[row["index"]]["instruction"] == row["instruction"]
    assert row["key"] == key_of(zh[row["index"]])
    assert report.kept_indices == sorted(report.kept_indices)
    assert [zh[i]["instruction"] for i in report.kept_indices] == [r["instruction"] for r in report.kept]


def test_apply_default_on_english_corpora_keeps_most():
    gsm8k = corpus("gsm8k_train_alpaca")
    report = Pipeline([RuleSet.default()]).run(gsm8k, progress=False)
    assert set(report.counts) <= {"blacklist", "too_long", "starts_with_punctuation", "starts_with_non_ascii"}
    assert 0.9 < len(report.kept) / len(gsm8k) < 1.0


def test_the_substring_shortcuts_decide_as_the_full_scans():
    """blacklist and needs_media test cheap substrings before their regex scans; the verdicts must be those of
    the scans alone, on real records and on the characters IGNORECASE treats specially."""

    from alpaca_data.filters import rules as rules_module
    from tests.conftest import corpus_records

    blacklist, media = rules_module.Blacklist(), rules_module.NeedsMedia()
    tricky = ["Draw a pıcture of a cat", "Describe the ﬁle", "Find the \u212aey on the maſs", "Go\n\n TO the park",
              "See the <IMAGE attached>", "[Vıdeo]", "Look: ![alt](x.png)", "http://example.com/a.JPG please",
              "An attachment <here is an attachment>", "the photos are ATTACHED", "no media here"]
    texts = tricky + [r["instruction"] for name in ("gpteacher_toolformer", "gpteacher_codegen", "alpaca_zh_10000")
                      for r in corpus_records(name)[:300]]

    def full_blacklist(text):
        match = blacklist._pattern.search(text)
        return f"instruction contains {match.group(0)!r}" if match else None

    def full_media(text):
        for pattern in rules_module._MEDIA_PATTERNS:
            if match := pattern.search(text):
                return f"instruction refers to media {match.group(0)[:60]!r}"
        if match := rules_module._LINK.search(text):
            return f"instruction contains link {match.group(0)[:60]!r}"
        return None

    for text in texts:
        record = {"instruction": text, "input": "", "output": "x"}
        assert blacklist.test(record) == full_blacklist(text), text
        assert media.test(record) == full_media(text), text
    assert sum(full_blacklist(t) is not None for t in tricky) >= 4  # the tricky texts do match
