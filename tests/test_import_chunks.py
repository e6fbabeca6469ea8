"""The fast JSONL import (alpaca_data.import_chunks: byte ranges, orjson, workers) stores exactly what the
careful reader stores, and leaves every problem to the careful reader's words."""
from __future__ import annotations

import json

import pytest

from alpaca_data import import_chunks
from alpaca_data.importer import import_files
from alpaca_data.store import Store
from alpaca_data.validate import validate_file
from tests.conftest import corpus_records


def _records() -> list[dict]:
    """Real records (English, Chinese, code with `":` in it) and provenance of every kind a column can take."""
    records = [dict(r) for name in ("gpteacher_codegen", "alpaca_zh_10000", "gsm8k_train_alpaca")
               for r in corpus_records(name)[:400]]
    for i, record in enumerate(records):
        if i % 7 == 0:
            record.pop("input", None)  # read as input ""
        if i % 5 == 0:
            record["score"] = i if i < 600 else i + 0.5  # ints in early chunks, floats later: one float column
        if i % 11 == 0:
            record["tags"] = ["a", f"t{i}"] if i % 2 else []
        if i % 13 == 0:
            record["note"] = None
    records[3]["instruction"] += " \u2028 with a line separator \u00a0 and {\"key\": 1}"
    return records


def _write_jsonl(path, records, spaced_line: int | None = None):
    with open(path, "w", encoding="utf-8") as handle:
        for i, record in enumerate(records):
            line = json.dumps(record, ensure_ascii=i % 2 == 0)  # both escaped and raw non-ASCII
            if i == spaced_line:
                line = line.replace('": ', '" : ')
            handle.write(line + ("\n\n" if i % 97 == 0 else "\n"))  # blank lines are skipped


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(import_chunks, "CHUNK_BYTES", 64 * 1024)  # many chunks from a small file
    monkeypatch.setenv("ALPACA_PARALLEL_MIN_ROWS", "0")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_chunks_store_what_the_careful_reader_stores(tmp_path, small_chunks, monkeypatch, workers):
    monkeypatch.setenv("ALPACA_WORKERS", workers)
    records = _records()
    jsonl, array = tmp_path / "records.jsonl", tmp_path / "records.json"
    _write_jsonl(jsonl, records, spaced_line=5)
    array.write_text(json.dumps(records, indent=1), encoding="utf-8")  # a JSON array: the careful reader
    assert len(import_chunks.chunk_ranges(str(jsonl), jsonl.stat().st_size, import_chunks.CHUNK_BYTES)) > 5

    store = Store.open(tmp_path / "store")
    fast = import_files(store, [str(jsonl)], "fast", show_progress=False)
    careful = import_files(store, [str(array)], "careful", show_progress=False)
    assert (fast.reader, careful.reader) == ("chunks", "careful")
    assert fast.result.id == careful.result.id  # the sha256 of the same canonical records
    assert fast.no_input == careful.no_input == len([r for r in records if "input" not in r])
    assert store.read_table(fast.result.manifest).schema == store.read_table(careful.result.manifest).schema
    assert fast.result.manifest.data["stats"] == careful.result.manifest.data["stats"]
    assert store.read_records(fast.result.manifest) == store.read_records(careful.result.manifest)


@pytest.mark.parametrize("bad_line, expected", [
    ('{"instruction": "x", "output": "y", "instruction" : "z"}', "key appears more than once"),
    ('{"instruction": "bell \\u0007", "output": "y"}', "control character U+0007"),
    ('{"instruction": "x", "output": NaN}', "output"),
    ('{"instruction": "x", "output": "y", "score": "high"}', "score: is a string here"),
    ('{"instruction": "x", "output": "y"', "malformed JSON"),
])
def test_a_problem_in_any_chunk_is_worded_by_the_careful_reader(tmp_path, small_chunks, bad_line, expected):
    records = _records()
    path = tmp_path / "records.jsonl"
    _write_jsonl(path, records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(bad_line + "\n")
    store = Store.open(tmp_path / "store")
    outcome = import_files(store, [str(path)], "d", show_progress=False)
    assert not outcome.ok and outcome.reader == "careful"
    report = validate_file(str(path), show_progress=False)
    assert [str(p) for p in outcome.problems] == [str(p) for p in report.problems]
    assert expected in str(outcome.problems[0]) and f"line {len(records) + 1 + len(records[::97])}" in \
        str(outcome.problems[0])
    assert store.datasets() == []  # nothing written


def test_a_wrapper_object_and_seed_tasks_take_the_careful_reader(tmp_path, small_chunks):
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text('{"data": [{"instruction": "a", "output": "b"}]}\n', encoding="utf-8")
    store = Store.open(tmp_path / "store")
    assert import_files(store, [str(wrapped)], "w", show_progress=False).reader == "careful"
    assert not import_chunks.is_plain_jsonl(str(wrapped))


def test_validate_reads_in_chunks_and_reports_what_the_careful_reader_reports(tmp_path, small_chunks):
    from alpaca_data.validate import Validator, validate_files

    path = tmp_path / "records.jsonl"
    _write_jsonl(path, _records())
    fast, = validate_files([str(path)], show_progress=False)
    careful = Validator().check_file(str(path), show_progress=False)
    assert (fast.valid, fast.no_input, fast.sha256, fast.kind, fast.format, fast.problem_count) == \
        (careful.valid, careful.no_input, careful.sha256, careful.kind, careful.format, 0)


def test_a_bad_worker_setting_is_one_line_whatever_the_size(tmp_path):
    from tests.conftest import run_cli

    path = tmp_path / "r.jsonl"
    path.write_text('{"instruction": "Name a colour", "output": "Blue"}\n', encoding="utf-8")
    for value, reason in (("abc", "expected a whole number"), ("0", "expected a number >= 1")):
        refused = run_cli("import", str(path), "-d", "d", store=tmp_path / "store", env={"ALPACA_WORKERS": value})
        assert refused.returncode == 2 and refused.stderr.strip() == f"error: $ALPACA_WORKERS={value!r}: {reason}"
    assert not (tmp_path / "store" / "datasets").exists() or not any((tmp_path / "store" / "datasets").iterdir())


def test_workers_of_a_command_killed_with_sigkill_exit_and_nothing_is_stored(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    path = tmp_path / "records.jsonl"
    _write_jsonl(path, _records() * 60)  # ~72K records: a few seconds of work, even on the fast path
    store = tmp_path / "store"
    env = {**os.environ, "ALPACA_STORE": str(store), "ALPACA_PARALLEL_MIN_ROWS": "0", "ALPACA_WORKERS": "2"}

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "alpaca_data", "-q", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # validate checks on worker processes (import converts on threads of its own process)
    command = start("validate", str(path))
    main = psutil.Process(command.pid)
    deadline, workers = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(workers) < 2 and command.poll() is None:
        workers = [p for p in main.children(recursive=True) if "forkserver" in " ".join(p.cmdline())
                   and p.ppid() != command.pid]
        time.sleep(0.05)
    assert len(workers) >= 2, "validate never started its workers"
    os.kill(command.pid, signal.SIGKILL)
    command.wait()
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers still running after their command was killed: {alive}"

    command = start("import", str(path), "-d", "d")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and command.poll() is None and not any((store / "tmp").glob("*/data.parquet")):
        time.sleep(0.02)
    os.kill(command.pid, signal.SIGKILL)  # mid-write (or, on a very fast machine, just after)
    command.wait()
    if command.returncode == -signal.SIGKILL:
        assert Store.open(store).datasets() == []  # no revision, not even a half-written one
    again = subprocess.run([sys.executable, "-m", "alpaca_data", "-q", "import", str(path), "-d", "d"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert not any((store / "tmp").iterdir())  # the killed write's folder went with the next write
