"""Progress without a terminal: long commands write plain lines to stderr (done/total, rate, ETA) at least every
ALPACA_PROGRESS_INTERVAL seconds when stderr is not a TTY; `--quiet` silences them. And the three pictures:
integer step ticks on the loss curve, a legend entry for the sunburst's pale wedges, the eval chart's win rate and
judge clear of its legend."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alpaca_data.progress import LineProgress, fmt_duration, progress_bar, track
from tests.judge_server import JudgeServer, cli_in_process

SEEDS = Path(__file__).resolve().parent / "data" / "seeds" / "alpaca_seed_tasks.jsonl"


@pytest.fixture
def fast_lines(monkeypatch):
    monkeypatch.setenv("ALPACA_PROGRESS_INTERVAL", "0")


@pytest.fixture
def cli_here(store_path, monkeypatch, capsys):
    return cli_in_process(store_path, monkeypatch, capsys)


def test_a_plain_line_says_done_of_total_rate_and_eta():
    lines = LineProgress("eval generate", 252, interval=0)
    lines.started -= 50
    lines.update(0)
    lines.update(40, note="4 in flight")
    assert lines.line().startswith("eval generate: 40/252 items, 0.8/s, ETA 4m2")
    assert fmt_duration(265) == "4m25s" and fmt_duration(3720) == "1h02m" and fmt_duration(None) == "-"
    slow = LineProgress("train", 20, unit="steps", interval=0)
    slow.started -= 120
    slow.update(0)
    slow.update(10)
    assert slow.line() == "train: 10/20 steps, 12.0 s/step, ETA 2m00s"


def test_lines_are_throttled_to_the_interval_and_close_with_the_total(capsys, monkeypatch):
    monkeypatch.setenv("ALPACA_PROGRESS_INTERVAL", "3600")
    assert list(track(range(5000), "pass")) == list(range(5000))
    assert capsys.readouterr().err == ""  # short work under the interval stays silent
    monkeypatch.setenv("ALPACA_PROGRESS_INTERVAL", "0")
    with progress_bar("pass", 3) as tick:
        for _ in range(3):
            tick()
    err = capsys.readouterr().err.splitlines()
    assert err[:3] == [line for line in err[:3] if re.match(r"pass: [123]/3 items, ", line)]
    assert err[-1].startswith("pass: 3/3 items in ")


def test_eval_generate_without_a_terminal_prints_progress_lines_and_quiet_silences_them(cli_here, fast_lines):
    with JudgeServer(models=[{"id": "m", "object": "model", "created": 0, "owned_by": "tests"}]) as server:
        args = ("eval", "generate", "--model", "openai:m", "--base-url", server.base_url, "--set", "user-oriented",
                "--limit", "6", "--max-tokens", "8")
        made = cli_here(*args, "-d", "loud")
        assert made.returncode == 0, made.stderr
        lines = [line for line in made.stderr.splitlines() if line.startswith("eval generate openai:m: ")]
        assert lines and all(re.search(r": \d/6 items(, [\d.]+ ?(/s|s/item), ETA |\s+in )", line) for line in lines)
        assert lines[-1].startswith("eval generate openai:m: 6/6 items in ")
        quiet = cli_here("--quiet", *args, "-d", "quiet")
        assert quiet.returncode == 0, quiet.stderr
        assert "items" not in quiet.stderr


def test_generate_validate_and_export_print_lines_without_a_terminal(cli_here, tmp_path, fast_lines):
    made = cli_here("generate", "--seeds", SEEDS, "--num", "5", "--teacher", "demo", "--dataset", "gen")
    assert made.returncode == 0, made.stderr
    assert re.search(r"^generate gen with demo: [0-5]/5 tasks kept, ", made.stderr, re.M)
    assert re.search(r"^generate gen with demo: 5/5 tasks kept in ", made.stderr, re.M)
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": str(i)}) + "\n"
                               for i in range(3000)))
    checked = cli_here("validate", records)
    assert checked.returncode == 0, checked.stderr
    assert re.search(rf"^validating {re.escape(str(records))}: [\d.]+/[\d.]+ MB, ", checked.stderr, re.M)
    exported = cli_here("export", "gen@main", "-o", tmp_path / "gen.json")
    assert exported.returncode == 0, exported.stderr
    assert re.search(r"^export gen@\w+: 5/5 records in ", exported.stderr, re.M)


# ------------------------------------------------------------------------------------------------ the pictures
def _texts(figure) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def test_the_loss_curve_has_integer_step_ticks():
    from alpaca_train.plots import loss_figure

    figure = loss_figure([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.7}, {"step": 2, "val_loss": 1.9}],
                         "run: loss")
    figure.canvas.draw()
    axes = figure.axes[0]
    ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert all("." not in label.get_text() for label in axes.get_xticklabels() if label.get_text())


def test_the_sunburst_names_its_pale_wedges_and_keeps_inner_labels_apart():
    from collections import Counter

    from alpaca_data.analyze.diversity import OTHER_LABEL, VerbNounStats, verb_noun_figure

    verbs = Counter({"write": 400, "give": 200, "create": 120, **{f"verb{i}": 6 for i in range(17)}})
    pairs = Counter({("write", "poem"): 90, ("write", "story"): 60, ("give", "example"): 50,
                     **{(f"verb{i}", "thing"): 3 for i in range(17)}})
    stats = VerbNounStats(total=sum(verbs.values()), pairs=pairs, verbs=verbs)
    figure = verb_noun_figure(stats)
    figure.canvas.draw()
    axes = figure.axes[0]
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert OTHER_LABEL in legend and "write (400)" in legend and "verb16 (6)" in legend
    renderer = figure.canvas.get_renderer()
    inner = [t for t in axes.texts if t.get_text() in verbs]
    assert {t.get_text() for t in inner} >= {"write", "give", "create"}
    boxes = [t.get_window_extent(renderer) for t in inner]
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlaps


def test_the_eval_chart_shows_the_win_rate_and_judge_with_the_legend_clear_of_the_title():
    from alpaca_data.eval.plots import report_figure

    report = {"model": "tiny", "baseline": "davinci", "wins": 9, "ties": 2, "losses": 9, "win_rate": 50.0,
              "standard_error": 11.2, "annotators": ["weighted_alpaca_eval_gpt4_turbo"],
              "categories": [{"category": "a", "wins": 5, "ties": 1, "losses": 4, "win_rate": 55.0},
                             {"category": "b", "wins": 4, "ties": 1, "losses": 5, "win_rate": 45.0}]}
    figure = report_figure(report)
    figure.canvas.draw()
    texts = " | ".join(_texts(figure))
    assert "win rate 50.0% ± 11.2" in texts and "judge: weighted_alpaca_eval_gpt4_turbo" in texts
    assert "55.0%" in texts and "45.0%" in texts  # per category
    renderer = figure.canvas.get_renderer()
    title = figure.axes[0].title.get_window_extent(renderer)
    legend = figure.legends[0].get_window_extent(renderer)
    assert not title.overlaps(legend) and not figure.axes[0].get_window_extent(renderer).overlaps(legend)



def test_a_heartbeat_speaks_every_interval_during_one_long_step(monkeypatch):
    import io
    import time

    from alpaca_data.progress import heartbeat

    monkeypatch.setenv("ALPACA_PROGRESS_INTERVAL", "0.01")
    out = io.StringIO()
    with heartbeat("import-gguf: reading m.gguf", stream=out):
        deadline = time.monotonic() + 10
        while out.getvalue().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # waits on the condition: two lines written
    assert re.match(r"import-gguf: reading m\.gguf: \d+s elapsed\n", out.getvalue())
    quiet = io.StringIO()
    with heartbeat("x", stream=quiet, enabled=False):
        pass
    assert quiet.getvalue() == ""
