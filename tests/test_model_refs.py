"""Fast local errors for model, tokenizer and checkpoint arguments (issue 20, items 4 and 7): one check for all of
them; a reference that looks like a path is never looked up on the Hub and a missing one is one line at once;
HF_HUB_OFFLINE is honoured; serve names the missing checkpoint before the port. The real CLIs, in this process."""
from __future__ import annotations

import json
import socket
import time

import pytest

from alpaca_data.errors import UserError, looks_like_path, one_line, refuse_missing_model_path
from tests.conftest import CliResult


@pytest.fixture(name="here")
def here_fixture(tmp_path, monkeypatch):
    """A working folder with a `models/` folder in it (as after `alpaca-train tiny-model models/tiny`), an empty
    Hugging Face cache, and a Hub endpoint that is not there."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "not-a-model").mkdir(parents=True)
    (tmp_path / "models" / "not-a-model" / "notes.txt").write_text("hello", encoding="utf-8")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ALPACA_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture(name="run")
def run_fixture(capsys):
    def invoke(prog: str, *args: str) -> tuple[CliResult, float]:
        if prog == "alpaca-data":
            from alpaca_data.cli import main
        else:
            from alpaca_train.cli import main
        capsys.readouterr()
        started = time.perf_counter()
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
        took = time.perf_counter() - started
        out = capsys.readouterr()
        return CliResult(exit_info.value.code or 0, out.out, out.err), took

    return invoke


def test_what_looks_like_a_path(here):
    for ref in ("models/nothing", "./x", "../x", "~/x", "/abs/x", "a/b/c", "x/", "models"):
        assert looks_like_path(ref), ref
    for ref in ("gpt2", "someone/some-model", "nomodels/x"):
        assert not looks_like_path(ref), ref


def test_train_with_a_missing_model_path_fails_at_once_without_the_hub(here, run):
    records = here / "one.json"
    records.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}]), encoding="utf-8")
    imported, _ = run("alpaca-data", "import", records, "-d", "one")
    assert imported.returncode == 0, imported.stderr
    cases = [(("--model", "models/nothing"), "--model models/nothing: no such model folder"),
             (("--model", "./nothing"), "--model ./nothing: no such model folder"),
             (("--model", "~/no-such-alpaca-model-folder"), "no such model folder"),
             (("--model", "models/not-a-model"), "--model models/not-a-model: not a model folder (no config.json"),
             (("--model", "models/not-a-model", "--tokenizer", "models/none"),
              "--model models/not-a-model: not a model folder")]
    for args, message in cases:
        done, took = run("alpaca-train", "--data", "one@main", *args, "--out", "y", "--max-steps", "1")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert took < 2, (args, took)
    assert not (here / "y").exists()


def test_hub_ids_with_hf_hub_offline_fail_at_once(here, run, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done, took = run("alpaca-train", "--data", "one@main", "--model", "someone/no-such-model", "--out", "y")
    assert done.returncode == 1 and took < 2, done.stderr
    assert done.stderr.strip() == ("error: --model someone/no-such-model: not in the local Hugging Face cache, and "
                                   "HF_HUB_OFFLINE is set (unset it to download it from the Hub, or give a local "
                                   "folder)")
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        refuse_missing_model_path("gpt2", kind="tokenizer")


def test_hf_teachers_and_judges_are_checked_before_anything_runs(here, run):
    judged, took = run("alpaca-data", "eval", "judge", "a@main", "b@main", "--judge", "hf:models/nothing")
    assert judged.returncode == 1 and took < 2
    assert judged.stderr.strip() == "error: hf:models/nothing: no such model folder"
    generated, _ = run("alpaca-data", "generate", "--teacher", "hf:models/not-a-model", "-d", "g", "--num", "1",
                       "--seeds", here / "seeds.jsonl")
    assert generated.returncode == 1
    assert generated.stderr.strip() == "error: hf:models/not-a-model: not a model folder (no config.json in it)"
    outputs, _ = run("alpaca-data", "eval", "generate", "--model", "hf:./gone", "--set", "user-oriented", "-d", "o")
    assert outputs.returncode == 1 and outputs.stderr.strip() == "error: hf:./gone: no such model folder"
    assert not (here / "store" / "runs").exists()


def test_detect_refuses_a_folder_that_is_not_a_model(here, run):
    done, took = run("alpaca-train", "detect", "--model", "models/not-a-model", "some text")
    assert done.returncode == 1 and took < 2
    assert done.stderr.strip() == "error: models/not-a-model: not a model folder (no config.json in it)"


def test_serve_names_the_missing_checkpoint_before_the_busy_port(here, run):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        missing, _ = run("alpaca-train", "serve", "runs/nope", "--port", str(port))
        assert missing.returncode == 1 and missing.stderr.strip() == "error: runs/nope: no such checkpoint folder"
        not_model, _ = run("alpaca-train", "serve", "models/not-a-model", "--port", str(port))
        assert not_model.stderr.strip() == ("error: models/not-a-model: not a checkpoint folder (no config.json "
                                            "in it)")


def test_transformers_errors_are_whole_on_one_line():
    error = OSError("Couldn't instantiate the backend tokenizer from one of: \n(1) a `tokenizers` library "
                    "serialization file, \n(2) a slow tokenizer instance to convert or \n(3) an equivalent slow "
                    "tokenizer class to instantiate and convert. \nYou need to have sentencepiece installed.")
    line = one_line(error)
    assert "\n" not in line and line.startswith("Couldn't instantiate the backend tokenizer from one of: (1)")
    assert line.endswith("You need to have sentencepiece installed.")


def test_a_hub_shaped_ref_fails_at_once_where_the_hub_has_no_address(tmp_path, monkeypatch, run):
    """The issue's own case: `models/nothing` in a folder with no `models/` is shaped like a Hub id. Where the
    Hub's name does not resolve (this machine, CI), it is one line at once instead of a minute of retries."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "https://no-such-hub.invalid")  # .invalid never resolves (RFC 2606)
    monkeypatch.setenv("ALPACA_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    records = tmp_path / "one.json"
    records.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi."}]), encoding="utf-8")
    assert run("alpaca-data", "import", records, "-d", "one")[0].returncode == 0
    done, took = run("alpaca-train", "--data", "one@main", "--model", "models/nothing", "--out", "y",
                     "--max-steps", "1")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and took < 2, (done.stderr, took)
    assert "models/nothing: no such model folder" in lines[0] and "no-such-hub.invalid" in lines[0]
    assert not (tmp_path / "y").exists()
