"""The Hub tour against the local Hub server shipped for the tests (issue 20, item 6): push works without
HF_HUB_DISABLE_XET (Xet is off by default away from huggingface.co), and when a server answers with an HTTP error
the message says so (status and URL), not "cannot reach"."""
from __future__ import annotations

import json

from tests.conftest import run_cli
from tests.hub_server import FakeHub

TOKEN = "hf_LoCaLhUbToKeN0123456789"


def test_push_and_pull_against_the_local_hub_without_setting_xet(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)  # as a newcomer has it
    records = tmp_path / "one.json"
    records.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}]), encoding="utf-8")
    store = tmp_path / "store"
    revision = run_cli("-q", "import", records, "-d", "one", store=store).last_line
    with FakeHub({TOKEN: "alice"}) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home"),
               "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        pushed = run_cli("-q", "push", "one@main", "--repo", "alice/one", store=store, env=env)
        assert pushed.returncode == 0, pushed.stderr
        pulled = run_cli("-q", "pull", "alice/one@main", "--dataset", "copy", store=tmp_path / "other", env=env)
        assert pulled.returncode == 0 and pulled.last_line == revision, pulled.stderr

        forced = run_cli("-q", "push", "one@main", "--repo", "alice/two", store=store,
                         env={**env, "HF_HUB_DISABLE_XET": "0"})  # the user's own setting wins
        assert forced.returncode == 1
        assert forced.stderr.strip().splitlines()[-1] == (
            f"error: the Hub at {hub.url} answered 404 Not Found for {hub.url}/api/datasets/alice/two/"
            "xet-write-token/main (a Hub without Xet storage: set HF_HUB_DISABLE_XET=1)")
