"""`alpaca-train --data user/name@rev`: a Hub dataset (our fake Hub on 127.0.0.1) becomes a store revision
whose id and Hub commit are what the training lineage records."""
from __future__ import annotations

from tests.conftest import run_cli
from tests.test_hub import hub, hub_env, import_small  # noqa: F401  (the module-scoped fake Hub fixture)


def test_hub_ref_is_pulled_into_the_store_and_traced(hub, tmp_path, monkeypatch):  # noqa: F811
    env = hub_env(hub.url, tmp_path / "hf-home")
    publisher = tmp_path / "publisher"
    revision_id = import_small(tmp_path, publisher, 40)
    pushed = run_cli("push", "small@main", "--repo", "alice/train-me", "--tag", "v1", store=publisher, env=env)
    assert pushed.returncode == 0, pushed.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    from alpaca_train import data as D

    trainer_store = tmp_path / "trainer-store"
    source = D.load_source("alice/train-me@v1", store_path=trainer_store)
    assert source.kind == "hub" and source.revision_id == revision_id
    assert source.extra["hub"]["commit"] == pushed.last_line and source.extra["hub"]["verified"]
    assert len(source.records) == 40 and set(source.records[0]) == {"instruction", "input", "output"}
    lineage = source.lineage()
    assert lineage["revision_id"] == revision_id and len(lineage["manifest_hash"]) == 64
