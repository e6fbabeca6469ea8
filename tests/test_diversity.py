"""Verb/object diversity with the real spaCy model on the real seed tasks."""
from __future__ import annotations

import json

from alpaca_data.analyze.diversity import first_verb_and_object, load_parser
from tests.conftest import SEEDS


def test_root_verb_and_direct_object():
    nlp = load_parser()
    assert first_verb_and_object(nlp("Write a short poem about the sea.")) == ("write", "poem")
    assert first_verb_and_object(nlp("What is the capital of France?"))[0] is None


def test_diversity_command_on_seed_tasks(cli, tmp_path):
    cli("import", SEEDS, "-d", "seeds")
    plot = tmp_path / "verbs.png"
    result = cli("diversity", "seeds", "--json", "--plot", plot)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["instructions"] == 175
    assert summary["top"][0]["verb"] == "write"
    assert summary["distinct_root_verbs"] > 30
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
