"""Validation loss on held-out records: chosen by record hash (stable), never trained on, logged, in the card."""
from __future__ import annotations

import json
import re

from alpaca_data.records import key_of
from alpaca_train.trainer import TrainConfig, train
from alpaca_train.validation import split_validation
from tests.train_fixtures import *
from tests.train_fixtures import corpus_sample


def test_the_held_out_share_is_stable_and_disjoint_by_key():
    records = corpus_sample(1500)  # 300 distinct records from each of the five corpus samples
    train_part, held = split_validation(records, 0.1)
    assert split_validation(records, 0.1) == (train_part, held)
    assert split_validation(list(reversed(records)), 0.1)[1] == list(reversed(held))  # by record, not position
    assert 100 < len(held) < 200 and len(train_part) + len(held) == len(records)
    assert not {key_of(r) for r in held} & {key_of(r) for r in train_part}
    repeated = records[:50] + [dict(r, output="another answer") for r in records[:50]]
    train_rep, held_rep = split_validation(repeated, 0.3)
    assert not {key_of(r) for r in held_rep} & {key_of(r) for r in train_rep}  # a task's repeats stay together
    assert split_validation(records, 0.0) == (records, [])


def test_validation_loss_is_logged_carded_and_measured_on_held_out_records(tmp_path, records_file, tiny_model_dir,
                                                                        records64, capsys, monkeypatch):
    capsys.readouterr()
    cfg = TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "out"),
                      cache_dir=str(tmp_path / "cache"), max_length=96, effective_batch_size=4, micro_batch_size=2,
                      lr=1e-3, max_steps=4, eval_steps=2, val_fraction=0.25, logging_steps=1)
    result = train(cfg)
    train_part, held = split_validation(records64, 0.25)
    assert held and [step for step, _ in result.val_losses] == [2, 4]
    lineage = json.loads((tmp_path / "out" / "alpaca_lineage.json").read_text())
    assert lineage["validation"]["examples"] == len(held) and lineage["validation"]["records"] == len(held)
    assert lineage["tokenization"]["records"] == len(train_part)  # the held-out records were not trained on
    assert [row["step"] for row in lineage["validation"]["losses"]] == [2, 4]
    log = [json.loads(line) for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    val_rows = [row for row in log if "val_loss" in row]
    assert [row["val_loss"] for row in val_rows] == [round(loss, 6) for _, loss in result.val_losses]
    assert all("peak_rss_mib_rank0" in row for row in log if "loss" in row)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "## Validation" in card and f"{round(result.val_losses[-1][1], 6)}" in card
    assert (tmp_path / "out" / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err  # stderr is not a terminal here: plain progress lines
    step_line = r"step (\d)/{} \(epoch [\d.]+\): loss [\d.]+, lr \S+, [\d.]+ (?:s/step|steps/s), ETA \S+"
    assert re.findall(step_line.format(4), err) == ["1", "2", "3", "4"]
    assert re.findall(r"step (\d)/4: validation loss [\d.]+", err) == ["2", "4"]
    assert f"wrote the loss curve {tmp_path / 'out' / 'loss_curve.png'}" in err

    other = tmp_path / "val.json"
    other.write_text(json.dumps(records64[:8]))
    monkeypatch.setenv("ALPACA_PROGRESS_INTERVAL", "0")  # a line every interval even when --logging-steps is rarer
    separate = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "out2"), "val_data": str(other),
                                    "max_steps": 2, "eval_steps": 0, "logging_steps": 100}))
    assert re.findall(step_line.format(2), capsys.readouterr().err) == ["1", "2"]
    log = [json.loads(line) for line in (tmp_path / "out2" / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log if "loss" in row] == [2]  # the log file keeps --logging-steps
    lineage = json.loads((tmp_path / "out2" / "alpaca_lineage.json").read_text())
    assert lineage["validation"]["ref"] == str(other) and lineage["validation"]["examples"] == 8
    assert lineage["tokenization"]["records"] == 64 and [s for s, _ in separate.val_losses] == [2]


def test_report_to_tensorboard_writes_the_step_log_and_a_missing_package_is_one_line(tmp_path, records_file,
                                                                                    tiny_model_dir, monkeypatch):
    import sys

    import pytest
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from alpaca_data.errors import UserError

    cfg = TrainConfig(data=str(records_file), model=str(tiny_model_dir), out=str(tmp_path / "tb"),
                      cache_dir=str(tmp_path / "cache"), max_length=96, effective_batch_size=4, micro_batch_size=2,
                      lr=1e-3, max_steps=3, val_fraction=0.25, report_to="tensorboard")
    result = train(cfg)
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [round(e.value, 4) for e in events.Scalars("loss")] == [round(x, 4) for x in result.losses]
    assert [e.step for e in events.Scalars("val_loss")] == [3]
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(UserError, match="pip install wandb"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "wb"), "report_to": "wandb"}))
