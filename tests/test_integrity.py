"""The store's guarantees under attack: corrupt bytes, hostile SQL, bad refs, concurrent writers, echoed secrets,
bad names and files, damaged manifests, leftovers. Each test reproduces what an operator could do to a store."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from alpaca_data.store import Store
from tests.conftest import CORPORA, ROOT, SEEDS, run_cli, snapshot


def _revision_dir(store: Path, dataset: str) -> Path:
    return next((store / "datasets" / dataset / "revisions").iterdir())


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------------------ 1. reads verify


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_a_flipped_bit_is_never_read_as_data(cli, store_path, tmp_path, where):
    cli("import", SEEDS, "-d", "s")
    clean = Store.open(store_path).resolve("s@main").id
    data = _revision_dir(store_path, "s") / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[int(len(raw) * where)] ^= 0x04
    data.write_bytes(bytes(raw))
    before = snapshot(store_path)
    for command in (["export", "s@main", "-o", tmp_path / "out.json"], ["filter", "s@main", "--no-rouge"],
                    ["dedup", "s@main"], ["sql", "SELECT count(*) FROM records", "--rev", "s@main"],
                    ["card", "s@main"], ["diff", "s@main", "s@main"],
                    ["export", "s@main", "--hub-layout", tmp_path / "hub"]):
        _one_line_error(cli(*command), f"s@{clean[:12]}", "fsck")
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "hub").exists()
    assert snapshot(store_path) == before  # `filter` stored nothing from the damaged bytes
    from alpaca_train.tiny import make_tiny_llama

    make_tiny_llama(tmp_path / "tiny", layers=1, hidden=16)  # a real model folder: the data is what must be refused
    trained = subprocess.run([sys.executable, "-m", "alpaca_train", "--data", "s@main", "--model", str(tmp_path / "tiny"),
                              "--out", str(tmp_path / "run")], capture_output=True, text=True,
                             env={**os.environ, "ALPACA_STORE": str(store_path)}, timeout=120)
    assert trained.returncode == 1 and "fsck" in trained.stderr and "Traceback" not in trained.stderr
    fsck = cli("fsck")
    assert fsck.returncode == 1 and "data.parquet does not match its hash" in fsck.stdout + fsck.stderr


# ------------------------------------------------------------------------------ 2. SQL cannot change the store


def test_no_sql_statement_changes_the_store(cli, store_path, tmp_path):
    cli("import", SEEDS, "-d", "s")
    revision = _revision_dir(store_path, "s")
    main = store_path / "datasets" / "s" / "refs" / "main"
    before = snapshot(store_path)
    hostile = [
        f"COPY (SELECT 1 AS x) TO '{revision / 'data.parquet'}' (FORMAT parquet)",
        f"COPY (SELECT 1 AS x) TO '{store_path / 'datasets'}' (FORMAT parquet, PARTITION_BY (x), OVERWRITE)",
        f"ATTACH '{revision / 'evil.db'}' AS evil",
        f"ATTACH '{revision / 'evil.db'}' AS evil; CREATE TABLE evil.t AS SELECT 1",
        f"COPY (SELECT '/tmp/elsewhere') TO '{main}' (FORMAT csv, HEADER false)",
        "SELECT 1; DROP VIEW records",
        "CREATE TABLE t AS SELECT * FROM records",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "PRAGMA version",
        f"EXPORT DATABASE '{store_path / 'dump'}'",
    ]
    for statement in hostile:
        result = cli("sql", statement, "--rev", "s@main")
        _one_line_error(result, "read-only")
        assert result.returncode == 2
    inside = cli("sql", "SELECT 1 AS x", "-o", revision / "x.csv")
    _one_line_error(inside, "inside the store")
    assert snapshot(store_path) == before
    outside = cli("sql", "SELECT count(*) AS n FROM records", "--rev", "s@main", "-o", tmp_path / "n.csv")
    assert outside.returncode == 0 and (tmp_path / "n.csv").read_text() == "n\n175\n"


# ------------------------------------------------------------------------------ 3. refs are ids inside the dataset


@pytest.mark.parametrize("content", [b"/tmp/x\n", b"../../other/datasets/s/revisions/abc\n", b"\xff\xfe\x00garbage",
                                     b"not-a-revision-id\n", b"a" * 64 + b"\n"])
def test_a_damaged_main_ref_is_refused_reported_and_repaired(cli, store_path, content):
    first = cli("import", SEEDS, "-d", "s").last_line
    (store_path / "datasets" / "s" / "refs" / "main").write_bytes(content)
    for command in (["show", "s@main"], ["export", "s@main", "-o", store_path.parent / "o.json"],
                    ["import", CORPORA / "gsm8k_train_alpaca.json", "-d", "s"]):
        _one_line_error(cli(*command), "ref main", "fsck --repair")
    assert cli("log", "s").returncode == 0  # the revisions themselves are intact
    fsck = cli("fsck")
    assert fsck.returncode == 1 and "s: ref main" in fsck.stdout + fsck.stderr
    repaired = cli("fsck", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert Store.open(store_path).main_id("s") == first
    assert cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "s").returncode == 0


def test_tags_are_names_not_ids_and_temporaries_are_never_tags(cli, store_path):
    revision = cli("import", SEEDS, "-d", "s").last_line
    for tag in ("abcd", revision[:12], revision):
        _one_line_error(cli("tag", "s@main", tag), "may not look like a revision id")
    tags = store_path / "datasets" / "s" / "refs" / "tags"
    tags.mkdir(parents=True, exist_ok=True)
    leftover = tags / f".v1.tmp-{_dead_pid()}-0badc0de"
    leftover.write_text("half")
    (tags / "bad").write_bytes(b"\x00\x01")
    assert "v1" not in Store.open(store_path).tags("s") and not any(".tmp-" in t for t in Store.open(store_path).tags("s"))
    assert cli("tag", "s@main", "v1").returncode == 0
    assert not leftover.exists()  # the next write of that ref cleaned it
    _one_line_error(cli("show", "s@bad"), "ref tags/bad", "--force")
    assert cli("tag", "s@main", "bad", "--force").returncode == 0
    assert cli("show", "s@bad").returncode == 0


# ------------------------------------------------------------------------------ 4. no lost updates


def test_a_step_never_moves_main_past_a_concurrent_import(store_path, tmp_path):
    base = run_cli("import", SEEDS, "-d", "conc", store=store_path).last_line
    env = {**os.environ, "ALPACA_STORE": str(store_path)}
    raced = subprocess.run([sys.executable, "-m", "tests.racing_cli", "after-data", "filter", "conc@main", "--no-rouge",
                            "--", "-q", "import", str(CORPORA / "gsm8k_train_alpaca.json"), "-d", "conc"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert raced.returncode == 1 and "moved" in raced.stderr and "--force" in raced.stderr, raced.stderr
    store = Store.open(store_path)
    main = store.resolve("conc@main")
    assert main.data["recipe"]["command"] == "import" and main.parents == [base]  # the import stays on main
    filtered = raced.stdout.strip().splitlines()[-1]
    assert store.load("conc", filtered).parents == [base]  # the step's revision is kept, off main
    forced = subprocess.run([sys.executable, "-m", "tests.racing_cli", "after-data", "filter", f"conc@{base[:12]}",
                             "--no-rouge", "--rules", "none", "--force", "--", "-q", "tag", "conc@main", "seen"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0, forced.stderr
    assert Store.open(store_path).main_id("conc") == forced.stdout.strip().splitlines()[-1]


# ------------------------------------------------------------------------------ 5. secrets never leave memory


class _EchoingTeacher(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that fails every request, echoing the headers it got in the error body."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"message": f"bad request from {dict(self.headers)}", "type": "server_error"}})
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


def test_a_key_echoed_by_the_teacher_is_never_written_or_shown(cli, store_path):
    secret = "k3y-that-looks-like-nothing-7781"  # not shaped like sk-...: masked because it is the configured key
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingTeacher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cli("generate", "--seeds", SEEDS, "--num", "3", "--teacher", "openai:echo", "--dataset", "e",
                     "--base-url", f"http://127.0.0.1:{server.server_port}/v1", "--max-retries", "1",
                     "--max-requests", "4", "--concurrency", "2", env={"OPENAI_API_KEY": secret})
    finally:
        server.shutdown()
    assert result.returncode == 1
    journal = next((store_path / "runs" / "e").glob("*/journal.jsonl")).read_text()
    assert "***" in journal  # the echoed header is there, masked
    everything = result.stdout + result.stderr + "".join(
        p.read_text(errors="replace") for p in store_path.rglob("*") if p.is_file())
    assert secret not in everything


# ------------------------------------------------------------------------------ 7. names before anything else


def test_a_bad_dataset_name_is_refused_before_any_request_or_file(cli, store_path, tmp_path):
    for name in ("../../x", str(tmp_path / "abs"), "a/b"):
        result = cli("generate", "--seeds", SEEDS, "--num", "3", "--teacher", "openai:m", "--dataset", name,
                     "--base-url", "http://127.0.0.1:9/v1", env={"OPENAI_API_KEY": "sk-unused-000000"})
        _one_line_error(result, "invalid dataset name")
        assert result.returncode == 2
    assert not store_path.exists() or not list(store_path.rglob("runs/*"))
    assert not (tmp_path / "abs").exists() and not (store_path.parent / "x").exists()


# ------------------------------------------------------------------------------ 8-9. files and records


def test_unbounded_and_special_files_are_refused(cli, tmp_path):
    _one_line_error(cli("validate", "/dev/zero"), "device")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _one_line_error(cli("validate", fifo), "FIFO")
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop)
    _one_line_error(cli("validate", loop), "symbolic link loop")
    utf16 = tmp_path / "utf16.json"
    utf16.write_bytes(json.dumps([{"instruction": "Hi there.", "input": "", "output": "Hello."}]).encode("utf-16"))
    _one_line_error(cli("validate", utf16), "UTF-16")
    spread = tmp_path / "one.json"
    spread.write_text(json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi."}, indent=2))
    _one_line_error(cli("validate", spread), "one JSON object spread over several lines")


@pytest.mark.parametrize("records, needle", [
    ([{"instruction": "Count it.", "input": "", "output": "1", "n": 2**70}], "64"),
    ([{"instruction": "Count it.", "input": "", "output": "1", "tag": 1},
      {"instruction": "Count more.", "input": "", "output": "2", "tag": "x"}], "tag"),
    ([{"instruction": "Count it.", "input": "", "output": "1", "": 1}], "field name is empty"),
    ([{"instruction": "Count it.", "input": "", "output": "1", "a\u0000b": 1}], "NUL"),
    ([{"instruction": "\u200b\u200b", "input": "", "output": "1"}], "no visible characters"),
])
def test_validate_refuses_exactly_what_import_would(cli, store_path, tmp_path, records, needle):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    validated = cli("validate", path)
    assert validated.returncode == 1 and needle in validated.stderr and "Traceback" not in validated.stderr
    imported = cli("import", path, "-d", "r")
    assert imported.returncode == 1 and "Traceback" not in imported.stderr and "r" not in Store.open(
        store_path).datasets()


# ------------------------------------------------------------------------------ 10. damage stays where it is


@pytest.mark.parametrize("damage", [b"{", b"{}"])
def test_a_damaged_revision_breaks_only_itself(cli, store_path, tmp_path, damage):
    cli("import", SEEDS, "-d", "good")
    cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "bad")
    (_revision_dir(store_path, "bad") / "manifest.json").write_bytes(damage)
    assert cli("datasets").returncode == 0
    query = cli("sql", "SELECT count(*) AS n FROM records", "--rev", "good@main", "-f", "json")
    assert query.returncode == 0 and json.loads(query.stdout) == [{"n": 175}]
    assert cli("export", "good@main", "-o", tmp_path / "good.json").returncode == 0
    _one_line_error(cli("export", "bad@main", "-o", tmp_path / "bad.json"), "bad@", "fsck")
    assert not (tmp_path / "bad.json").exists()
    log = cli("log", "bad")
    assert "Traceback" not in log.stderr


# ------------------------------------------------------------------------------ 12. leftovers


def test_leftovers_of_killed_writers_are_cleaned_and_never_shown(cli, store_path, tmp_path):
    cli("import", SEEDS, "-d", "s")
    out = tmp_path / "out.json"
    stale = tmp_path / f".out.json.tmp-{_dead_pid()}-deadbeef"
    stale.write_text("half an export")
    assert cli("export", "s@main", "-o", out).returncode == 0
    assert out.exists() and not stale.exists()
    refused = cli("generate", "--seeds", SEEDS, "--num", "3", "--teacher", "openai:m", "--dataset", "g",
                  "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0", env={"OPENAI_API_KEY": "sk-x-000000"})
    assert refused.returncode == 1
    state = json.loads(next((store_path / "runs" / "g").glob("*/run.json")).read_text())
    assert state["status"] == "failed" and "cannot reach" in state["error"]


class _NotAHub(http.server.BaseHTTPRequestHandler):
    """A proxy's HTML page where the Hub should be."""

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Please log in to the captive portal</body></html>")

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, *args) -> None:
        pass


def test_a_hub_answer_that_is_not_json_is_one_line(cli, store_path):
    cli("import", SEEDS, "-d", "s")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotAHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "HF_HUB_DISABLE_XET": "1",
           "HF_TOKEN": "hf_NotARealToken0000"}
    try:
        before = snapshot(store_path)
        for command in (["pull", "you/x@main", "-d", "copy"], ["push", "s@main", "--repo", "you/x"]):
            _one_line_error(cli(*command, env=env), "did not answer like a Hugging Face Hub")
        assert snapshot(store_path) == before
    finally:
        server.shutdown()
