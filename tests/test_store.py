"""The versioned store through the real CLI: import, refs, log, tag, diff, export, fsck."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from alpaca_data.schema import validate_manifest
from alpaca_data.store import Store
from tests.conftest import CORPORA, SEEDS, load_corpus, snapshot


def test_import_prints_id_last_and_identical_content_creates_nothing(cli, store_path):
    first = cli("import", CORPORA / "alpaca_zh_10000.json", "--dataset", "zh", "-m", "chinese")
    assert first.returncode == 0, first.stderr
    revision_id = first.last_line
    assert len(revision_id) == 64
    before = snapshot(store_path)
    again = cli("import", CORPORA / "alpaca_zh_10000.json", "--dataset", "zh")
    assert again.returncode == 0 and again.last_line == revision_id
    assert "nothing new" in again.stderr
    assert snapshot(store_path) == before


def test_revision_id_is_a_content_hash_independent_of_store_and_format(tmp_path, cli):
    records = load_corpus("gsm8k_train_alpaca.json")[:300]
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r, indent=None) for r in records) + "\n")
    from tests.conftest import run_cli

    id_a = run_cli("import", tmp_path / "a.json", "-d", "x", store=tmp_path / "s1").last_line
    id_b = run_cli("import", tmp_path / "b.jsonl", "-d", "other", store=tmp_path / "s2").last_line
    assert id_a == id_b
    reordered = records[1:] + records[:1]
    (tmp_path / "c.json").write_text(json.dumps(reordered))
    assert run_cli("import", tmp_path / "c.json", "-d", "x", store=tmp_path / "s1").last_line != id_a


def test_chinese_corpus_round_trips_intact(cli, tmp_path):
    original = load_corpus("alpaca_zh_10000.json")
    revision_id = cli("import", CORPORA / "alpaca_zh_10000.json", "-d", "zh").last_line
    out = tmp_path / "zh.json"
    assert cli("export", "zh@main", "--format", "json", "-o", out).returncode == 0
    assert json.loads(out.read_text(encoding="utf-8")) == original
    assert "，" in out.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes
    assert cli("import", out, "-d", "zh2").last_line == revision_id


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_export_formats_round_trip(fmt, cli, tmp_path):
    revision_id = cli("import", "--map", "response=output", CORPORA / "gpteacher_roleplay.json", "-d", "rp").last_line
    out = tmp_path / f"rp.{fmt}"
    assert cli("export", "rp", "-f", fmt, "-o", out).returncode == 0
    assert cli("import", out, "-d", "rp-again").last_line == revision_id


def test_seed_tasks_import_with_provenance(cli, store_path):
    assert cli("import", SEEDS, "-d", "seeds").returncode == 0
    records = Store.open(store_path).read_records("seeds")
    assert len(records) == 175
    assert all(r["source"] == "seed" and r["seed_id"] for r in records)


def test_manifest_records_lineage_recipe_and_stats(cli, store_path):
    cli("import", CORPORA / "gsm8k_train_alpaca.json", "-d", "gsm", "-m", "first")
    shown = cli("show", "gsm@main", "--json")
    manifest = json.loads(shown.stdout)
    assert validate_manifest(manifest) == []
    count = len(load_corpus("gsm8k_train_alpaca.json"))
    assert manifest["record_count"] == count and manifest["parents"] == []
    assert manifest["recipe"]["command"] == "import"
    assert manifest["recipe"]["sources"][0]["path"] == "gsm8k_train_alpaca.json"
    assert len(manifest["recipe"]["sources"][0]["sha256"]) == 64
    assert manifest["stats"]["with_input"] == 0
    assert manifest["stats"]["words"]["output"]["mean"] > 10
    table = pq.read_table(store_path / "datasets" / "gsm" / "revisions" / manifest["id"] / "data.parquet")
    assert table.column_names[:3] == ["instruction", "input", "output"] and table.num_rows == count


def test_refs_log_tag_and_parents(cli, tmp_path):
    records = load_corpus("gsm8k_train_alpaca.json")[:50]
    (tmp_path / "v1.json").write_text(json.dumps(records[:40]))
    (tmp_path / "v2.json").write_text(json.dumps(records[10:]))
    v1 = cli("import", tmp_path / "v1.json", "-d", "g").last_line
    v2 = cli("import", tmp_path / "v2.json", "-d", "g").last_line
    assert cli("tag", f"g@{v1[:8]}", "v1").returncode == 0
    assert json.loads(cli("show", "g@v1", "--json").stdout)["id"] == v1
    assert json.loads(cli("show", "g", "--json").stdout)["id"] == v2
    assert json.loads(cli("show", "g@main", "--json").stdout)["parents"] == [v1]
    assert json.loads(cli("show", v2[:10], "--json").stdout)["id"] == v2  # bare id prefix
    log = json.loads(cli("log", "g", "--json").stdout)
    assert [entry["id"] for entry in log] == [v2, v1]
    assert log[0]["main"] and log[1]["tags"] == ["v1"]
    moved = cli("tag", "g@main", "v1")
    assert moved.returncode == 1 and "tag already exists and points to" in moved.stderr
    for bad_ref in ("g@nope", "missing@main", "g@zzzz"):
        result = cli("show", bad_ref)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_diff_counts_added_removed_changed(cli, tmp_path):
    records = load_corpus("gsm8k_train_alpaca.json")[:30]
    changed = [dict(r) for r in records[2:]] + [{"instruction": "Name a prime.", "input": "", "output": "7"}]
    changed[0]["output"] = "a different answer"
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.json").write_text(json.dumps(changed))
    cli("import", tmp_path / "a.json", "-d", "d")
    cli("tag", "d@main", "a")
    cli("import", tmp_path / "b.json", "-d", "d")
    result = json.loads(cli("diff", "d@a", "d@main", "--json").stdout)
    assert (result["added"], result["removed"], result["changed"], result["unchanged"]) == (1, 2, 1, 27)
    assert result["examples"]["added"][0]["instruction"] == "Name a prime."
    text = cli("diff", "d@a", "d@main").stdout
    assert "1 added, 2 removed, 1 changed, 27 unchanged" in text


def test_fsck_detects_tampering_and_missing_files(cli, store_path):
    revision_id = cli("import", CORPORA / "alpaca_zh_10000.json", "-d", "zh").last_line
    assert cli("fsck").returncode == 0
    folder = store_path / "datasets" / "zh" / "revisions" / revision_id
    data = folder / "data.parquet"
    original = data.read_bytes()
    data.write_bytes(original[:-100] + bytes(100))
    result = cli("fsck")
    assert result.returncode == 1 and "data.parquet does not match its hash" in result.stderr
    data.write_bytes(original)
    manifest = folder / "manifest.json"
    text = manifest.read_text()
    count = len(load_corpus("alpaca_zh_10000.json"))
    assert f'"record_count": {count}' in text
    manifest.write_text(text.replace(f'"record_count": {count}', f'"record_count": {count - 1}'))
    assert "manifest.json does not match its hash" in cli("fsck").stderr
    manifest.write_text(text)
    data.unlink()
    result = cli("fsck")
    assert result.returncode == 1 and "data.parquet is missing" in result.stderr
    data.write_bytes(original)
    assert cli("fsck").returncode == 0


def test_export_errors_leave_no_file(cli, tmp_path):
    cli("import", SEEDS, "-d", "seeds")
    assert cli("export", "seeds", "-f", "xml", "-o", tmp_path / "x.xml").returncode == 2
    missing_dir = cli("export", "seeds", "-o", tmp_path / "no" / "x.json")
    assert missing_dir.returncode == 1 and "no such directory" in missing_dir.stderr
    assert not (tmp_path / "x.xml").exists()


def test_commands_on_a_missing_store_do_not_create_it(tmp_path):
    from tests.conftest import run_cli

    result = run_cli("log", "x", store=tmp_path / "nowhere")
    assert result.returncode == 1 and "no store here" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_fsck_on_a_held_lock_gives_one_line(cli, store_path):
    """Regression: fsck waiting on a held lock ended in a filelock.Timeout traceback."""
    from filelock import FileLock

    cli("import", SEEDS, "-d", "s")
    with FileLock(str(store_path / "lock")):
        result = cli("fsck", env={"ALPACA_LOCK_TIMEOUT": "0.5"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "another process has held its lock" in result.stderr and "ALPACA_LOCK_TIMEOUT" in result.stderr


def test_commit_result_copies_and_pickles(store_path):
    """Regression: CommitResult recursed forever on copy and pickle."""
    import copy
    import pickle

    store = Store.open(store_path)
    result = store.commit("d", [{"instruction": "Say hi.", "input": "", "output": "Hi."}], recipe={"command": "t"})
    for clone in (copy.copy(result), copy.deepcopy(result), pickle.loads(pickle.dumps(result))):
        assert clone.id == result.id and clone.created and clone.manifest.data == result.manifest.data
