"""Training refuses nonsense with one line, before anything is trained or written (integrity issue, item 11)."""
from __future__ import annotations

import pytest

from alpaca_data.errors import UserError
from alpaca_train.trainer import TrainConfig, train
from tests.conftest import snapshot
from tests.train_fixtures import *


def _cfg(tmp_path, data, model, **kw) -> TrainConfig:
    base = {"data": str(data), "model": str(model), "out": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache"),
            "max_length": 96, "effective_batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "max_steps": 2,
            "logging_steps": 100}
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("setting, value, message", [
    ("lr", float("inf"), "--lr must be a positive finite number"),
    ("lr", float("nan"), "--lr must be a positive finite number"),
    ("max_steps", -1, "--max-steps must be at least 1"),
    ("max_steps", 0, "--max-steps must be at least 1"),
    ("max_grad_norm", float("nan"), "--max-grad-norm must be a finite number"),
    ("save_steps", -2, "--save-steps must be 0"),
])
def test_nonsense_settings_are_refused_before_training(tmp_path, records_file, tiny_model_dir, setting, value, message):
    with pytest.raises(UserError, match=message):
        train(_cfg(tmp_path, records_file, tiny_model_dir, **{setting: value}))
    assert not (tmp_path / "out").exists()


def test_out_must_be_a_new_folder_or_a_resumed_run(tmp_path, records_file, tiny_model_dir):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        train(_cfg(tmp_path, records_file, tiny_model_dir, out=str(tmp_path / "file")))
    train(_cfg(tmp_path, records_file, tiny_model_dir, max_steps=2, stop_after_steps=1))
    before = snapshot(tmp_path / "out")
    with pytest.raises(UserError, match="holds an earlier training run"):
        train(_cfg(tmp_path, records_file, tiny_model_dir, max_steps=2))
    assert snapshot(tmp_path / "out") == before  # nothing appended or overwritten
    resumed = train(_cfg(tmp_path, records_file, tiny_model_dir, max_steps=2, resume="latest"))
    assert resumed.global_step == 2


def test_a_non_finite_loss_stops_before_the_update_and_keeps_the_last_checkpoint(tmp_path, records_file,
                                                                                 tiny_model_dir):
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    cfg = _cfg(tmp_path, records_file, tiny_model_dir, lr=1e30, max_grad_norm=0.0, max_steps=6, save_steps=1,
               warmup_ratio=0.0, lr_scheduler="constant")
    with pytest.raises(UserError, match=r"step \d+: (loss|gradient norm) .*training stopped.*checkpoint-\d") as caught:
        train(cfg)
    checkpoint = caught.value.args[0].split("last good checkpoint is ")[1].split(")")[0]
    dcp_to_torch_save(f"{checkpoint}/shards", tmp_path / "last_good.pt")
    weights = torch.load(tmp_path / "last_good.pt", weights_only=True)["model"]
    assert not (tmp_path / "out" / "model.safetensors").exists()  # no final model labelled as trained
    assert weights and all(bool(tensor.isfinite().all()) for tensor in weights.values())
