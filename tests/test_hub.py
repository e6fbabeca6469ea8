"""Push / pull against a Hub look-alike on 127.0.0.1 (tests/hub_server.py), with the real huggingface_hub and
datasets clients in subprocesses (they read HF_ENDPOINT when imported)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_corpus, run_cli, snapshot
from tests.hub_server import FakeHub

TOKEN = "hf_aLiCeSeCrEtToKeN0123456789"


@pytest.fixture(scope="module")
def hub():
    with FakeHub({TOKEN: "alice", "hf_BoBsToKeN0123456789": "bob"}) as server:
        yield server


def hub_env(hub_url: str, home: Path, token: str | None = TOKEN) -> dict:
    env = {"HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "HF_HOME": str(home),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": token or ""}
    return env


@pytest.fixture
def env(hub, tmp_path):
    return hub_env(hub.url, tmp_path / "hf-home")


def small_records() -> list[dict]:
    """Real records (with and without input), a few carrying a provenance column."""
    records = load_corpus("alpaca_zh_10000.json")[:120] + load_corpus("gsm8k_train_alpaca.json")[:80]
    records = [{"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]} for r in records]
    for index in range(0, len(records), 7):
        records[index]["source"] = "corpus"
    return records


def import_small(tmp_path: Path, store: Path, count: int | None = None) -> str:
    path = tmp_path / f"small-{count}.json"
    path.write_text(json.dumps(small_records()[:count], ensure_ascii=False), encoding="utf-8")
    done = run_cli("import", path, "-d", "small", store=store)
    assert done.returncode == 0, done.stderr
    return done.last_line


def assert_no_token(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


LOAD = """
import json, sys
import datasets
from huggingface_hub import HfFileSystem
ds = datasets.load_dataset(sys.argv[1] if len(sys.argv) > 1 else {repo!r}, revision={revision!r}, split="train")
fs = HfFileSystem()
with fs.open("datasets/{repo}/{shard}", "rb", revision={revision!r}) as handle:
    handle.seek(0)
    magic = handle.read(4)  # a ranged read
    handle.seek(-4, 2)
    tail = handle.read(4)
print(json.dumps({{"records": ds.to_list(), "magic": magic.decode(), "tail": tail.decode()}}))
"""


def test_push_load_pull_and_push_again(hub, env, tmp_path):
    store = tmp_path / "store"
    revision_id = import_small(tmp_path, store)
    pushed = run_cli("push", "small@main", "--repo", "alice/small", "--tag", "v1", "--shard-records", "120",
                     store=store, env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert_no_token(pushed.stdout, pushed.stderr)
    commit = pushed.last_line
    repo = hub.repos["alice/small"]
    assert repo.tags == {f"rev-{revision_id[:12]}": commit, "v1": commit} and repo.branches["main"] == commit
    files = sorted(repo.commits[commit].files)
    assert files == [".gitattributes", "README.md", "alpaca_manifest.json", "data/train-00000-of-00002.parquet",
                     "data/train-00001-of-00002.parquet"]
    assert repo.commits[commit].files["data/train-00000-of-00002.parquet"].lfs_sha256  # went through LFS
    assert hub.commit_count("alice/small") == 2 and not hub.unhandled
    meta = json.loads((store / "meta" / "small" / revision_id / "hub.json").read_text())
    assert meta["commit"] == commit and meta["pushes"][0]["repo"] == "alice/small"
    store_files = snapshot(store)
    assert not any(TOKEN.encode() in content for content in store_files.values())
    assert not any(TOKEN.encode() in blob.content for blob in repo.commits[commit].files.values())

    # the real `datasets` client reads the pinned revision (and a ranged read works)
    loaded = run_python(LOAD.format(repo="alice/small", revision="v1", shard="data/train-00000-of-00002.parquet"), env)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    payload = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert payload["magic"] == "PAR1" and payload["tail"] == "PAR1"
    expected = small_records()
    got = [{k: v for k, v in row.items() if v is not None} for row in payload["records"]]
    assert got == expected

    # pull into a fresh store: same revision id, lineage and provenance of the pull
    other = tmp_path / "other-store"
    pulled = run_cli("pull", f"alice/small@rev-{revision_id[:12]}", "--dataset", "copy", store=other, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.last_line == revision_id
    shown = json.loads(run_cli("show", "copy", "--json", store=other).stdout)
    original = json.loads(run_cli("show", "small", "--json", store=store).stdout)
    assert shown["parents"] == original["parents"] and shown["message"] == original["message"]
    assert shown["recipe"]["command"] == "pull" and shown["recipe"]["options"]["repo"] == "alice/small"
    assert shown["recipe"]["options"]["commit"] == commit and shown["extra"]["hub"]["commit"] == commit
    assert all(source["revision"] == commit for source in shown["recipe"]["sources"])
    assert run_cli("fsck", store=other).returncode == 0

    # pushing the same revision again makes no commit (and adds a new tag to the same commit)
    again = run_cli("push", "small", "--repo", "alice/small", "--tag", "v1", "--tag", "stable", store=store, env=env)
    assert again.returncode == 0, again.stderr
    assert again.last_line == commit and hub.commit_count("alice/small") == 2 and repo.tags["stable"] == commit
    assert not any(method == "POST" and path.endswith("/commit/main") for method, path in hub.requests[-12:])

    # a new, smaller revision replaces the shards in one commit (no stale shard is left behind)
    smaller = import_small(tmp_path, store, count=30)
    newer = run_cli("push", "small", "--repo", "alice/small", store=store, env=env)
    assert newer.returncode == 0, newer.stderr
    head = repo.commits[newer.last_line]
    assert hub.commit_count("alice/small") == 3 and repo.tags[f"rev-{smaller[:12]}"] == head.oid
    assert sorted(p for p in head.files if p.startswith("data/")) == ["data/train-00000-of-00001.parquet"]
    taken = run_cli("push", "small", "--repo", "alice/small", "--tag", "v1", store=store, env=env)
    assert taken.returncode == 1 and "tag 'v1' already exists" in taken.stderr
    assert not hub.unhandled  # every request the clients made has a route


def test_hub_layout_folder_loads_with_datasets(tmp_path):
    store = tmp_path / "store"
    revision_id = import_small(tmp_path, store)
    folder = tmp_path / "layout"
    done = run_cli("export", "small", "--hub-layout", folder, "--shard-records", "150", store=store)
    assert done.returncode == 0, done.stderr
    assert done.last_line == revision_id
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "README.md", "alpaca_manifest.json", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
    code = f"""
import json, datasets
print(json.dumps({{"configs": datasets.get_dataset_config_names({str(folder)!r}),
                  "records": datasets.load_dataset({str(folder)!r}, "default", split="train").to_list()}}))
"""
    loaded = run_python(code, {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf-home")})
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    payload = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert payload["configs"] == ["default"]
    assert [{k: v for k, v in row.items() if v is not None} for row in payload["records"]] == small_records()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_failures_are_one_line_leave_the_store_alone_and_never_show_the_token(hub, tmp_path):
    store = tmp_path / "store"
    import_small(tmp_path, store, count=20)
    hub.create_repo("bob/theirs")
    down = f"http://127.0.0.1:{_free_port()}"
    home = tmp_path / "hf-home"
    cases = [
        ("no token", ["push", "small", "--repo", "alice/x"], hub_env(hub.url, home, token=None), "no Hugging Face token"),
        ("bad token", ["push", "small", "--repo", "alice/x"], hub_env(hub.url, home, token="hf_WrOnG0123456789"),
         "refused the token"),
        ("someone else's repo", ["push", "small", "--repo", "bob/theirs"], hub_env(hub.url, home), "403"),
        ("network down", ["push", "small", "--repo", "alice/x"], hub_env(down, home), "cannot reach the Hub"),
        ("pull, network down", ["pull", "alice/small"], hub_env(down, home), "cannot reach the Hub"),
        ("no such repo", ["pull", "alice/nothing-here"], hub_env(hub.url, home), "no such dataset repo"),
        ("no such revision", ["pull", "bob/theirs@v9"], hub_env(hub.url, home), "no such revision"),
        ("not an alpaca repo", ["pull", "bob/theirs"], hub_env(hub.url, home), "no Parquet files"),
    ]
    before = snapshot(store)
    for name, args, env, expected in cases:
        done = run_cli(*args, store=store, env=env)
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (name, done.stderr)
        assert_no_token(done.stdout, done.stderr)
        assert snapshot(store) == before, name
    fresh = tmp_path / "never-created"
    failed = run_cli("pull", "bob/theirs@v9", "--dataset", "x", store=fresh, env=hub_env(hub.url, home))
    assert failed.returncode == 1 and not fresh.exists()
    assert "alice/x" not in hub.repos  # nothing was created by the failed pushes


def test_private_branch_push_and_pull_of_plain_parquet_repo(hub, env, tmp_path):
    import hashlib
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.hub_server import Blob

    store = tmp_path / "store"
    revision_id = import_small(tmp_path, store, count=25)
    done = run_cli("push", "small", "--repo", "alice/hidden", "--private", "--branch", "dev", store=store, env=env)
    assert done.returncode == 0, done.stderr
    repo = hub.repos["alice/hidden"]
    assert repo.private and repo.branches["dev"] == done.last_line and repo.branches["main"] != done.last_line
    anonymous = run_cli("pull", "alice/hidden@dev", store=tmp_path / "anon", env={**env, "HF_TOKEN": ""})
    assert anonymous.returncode == 1 and "no such dataset repo" in anonymous.stderr
    pulled = run_cli("pull", "alice/hidden@dev", store=tmp_path / "mine", env=env)
    assert pulled.returncode == 0 and pulled.last_line == revision_id, pulled.stderr

    # a repo that only holds Parquet under data/ (no alpaca-kit manifest) is validated and imported as is
    buffer = io.BytesIO()
    pq.write_table(pa.table({"instruction": ["Say hi."], "input": [""], "output": ["Hi."]}), buffer)
    plain = hub.create_repo("bob/plain")
    head = plain.add_commit({**plain.commits[plain.branches["main"]].files,
                             "data/train-00000-of-00001.parquet": Blob(buffer.getvalue(), hashlib.sha256(buffer.getvalue()).hexdigest())}, "data", None)
    plain.branches["main"] = head.oid
    imported = run_cli("pull", "bob/plain", "--json", store=tmp_path / "mine", env=env)
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["dataset"] == "plain" and summary["verified"] is False and summary["commit"] == head.oid
