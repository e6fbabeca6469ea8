"""The demo server's flags journal (issue 19, item 9) is the project's one journal type: read by `\\n` only (an
answer holding U+2028 is one flag), a torn last line skipped, a damaged middle line reported with file and line
while the rest is exported, and secrets masked on write like the generation journal."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from alpaca_data.store import Store
from alpaca_train.serve.flags import FlagJournal, export_flags
from tests.conftest import ROOT

SEPARATORS = "line\u2028separator, paragraph\u2029separator, next-line\u0085and a form\x0cfeed"


def _flag(answer: str, **extra) -> dict:
    return {"instruction": "Say something.", "input": "", "answer": answer, "reason": "incorrect", "comment": "",
            "model": "tiny", "lineage": {}, "moderation": None, "watermark_z": None, **extra}


def _outputs(store, dataset: str) -> list[str]:
    return [record["output"] for record in Store.open(store).read_records(f"{dataset}@main")]


def test_an_answer_holding_unicode_line_separators_stays_one_flag(tmp_path):
    journal = FlagJournal(tmp_path / "flags.jsonl")
    journal.append(_flag(SEPARATORS))
    journal.append(_flag("plain answer"))
    journal.close()
    assert len((tmp_path / "flags.jsonl").read_text(encoding="utf-8").splitlines()) == 2  # escaped on write
    # a file written before this change holds the separators raw: read by "\n" only, it is still two flags
    raw = "".join(json.dumps(_flag(text), ensure_ascii=False) + "\n" for text in (SEPARATORS, "plain answer"))
    (tmp_path / "old.jsonl").write_text(raw, encoding="utf-8")
    for name in ("flags.jsonl", "old.jsonl"):
        export_flags(FlagJournal(tmp_path / name), name.split(".")[0], store_path=str(tmp_path / "store"))
        assert _outputs(tmp_path / "store", name.split(".")[0]) == [SEPARATORS, "plain answer"]


def test_torn_last_line_is_skipped_and_a_damaged_middle_line_is_reported(tmp_path):
    path = tmp_path / "flags.jsonl"
    good = [json.dumps(_flag(f"answer {n}")) for n in range(3)]
    path.write_text(f"{good[0]}\n{{\"answer\": \"half a fl\x00ag\n{good[1]}\n{good[2]}\n{good[0][:40]}", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "alpaca_train", "flags", "export", "--flags-file", str(path),
                             "--dataset", "flags"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "ALPACA_STORE": str(tmp_path / "store")})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert warnings == [f"warning: {path}:2: not JSON; line skipped"]  # the torn last line (5) is not damage
    assert result.stdout.startswith("flags@") and "3 flags" in result.stdout
    assert _outputs(tmp_path / "store", "flags") == ["answer 0", "answer 1", "answer 2"]
    # the server opening the file again cuts the torn line off, so the next flag starts on a line of its own
    journal = FlagJournal(path)
    journal.append(_flag("answer 3"))
    journal.close()
    assert [f["answer"] for f in journal.read(on_damage=None)] == ["answer 0", "answer 1", "answer 2", "answer 3"]


def test_flags_journal_masks_known_secrets_and_keeps_lookalike_words(tmp_path, monkeypatch):
    secret = "k3y-flags-test-998877"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    answer = f"Teach basic cooking skills. Bearer securities are bearer bonds. Try sk-learn-contrib. Key: {secret}"
    journal = FlagJournal(tmp_path / "flags.jsonl")
    record = journal.append(_flag(answer, comment=f"it printed {secret}"))
    journal.close()
    text = (tmp_path / "flags.jsonl").read_text(encoding="utf-8")
    assert secret not in text
    (written,) = journal.read()
    assert written == record
    assert written["answer"] == answer.replace(secret, "***") and written["comment"] == "it printed ***"
