"""Checkpoints: atomic writes, LATEST, pruning, strict keys, a full disk leaving the previous one."""

from __future__ import annotations

import errno

import pytest
import torch

from livetrain_widgets.engine import checkpoint as ck


def state(step: int, **extra) -> dict:
    w = torch.full((3, 2), float(step))
    opt = {"state": {0: {"step": torch.tensor(float(step)), "exp_avg": w.clone()}},
           "param_groups": [{"lr": 1e-3, "params": [0], "betas": (0.9, 0.999)}]}
    return {"format": ck.FORMAT_VERSION, "step": step, "time": 1.0, "model": {"w": w}, "model_config": {},
            "optimizer": opt, "sampler": {}, "plateau": {}, "evaluator": {}, "trainer": {}, **extra}


def test_round_trip_latest_and_pruning(tmp_path) -> None:
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, state(step), keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-00000002", "step-00000003"]
    path = ck.latest_checkpoint(tmp_path)
    assert path.name == "step-00000003"
    back = ck.load_checkpoint(path)
    assert back["step"] == 3 and torch.equal(back["model"]["w"], torch.full((3, 2), 3.0))
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"], torch.full((3, 2), 3.0))


def test_unknown_or_missing_keys_are_refused(tmp_path) -> None:
    with pytest.raises(ck.CheckpointError, match="unknown keys"):
        ck.save_checkpoint(tmp_path, state(1, extra=1))
    s = state(1)
    del s["sampler"]
    with pytest.raises(ck.CheckpointError, match="missing keys"):
        ck.save_checkpoint(tmp_path, s)


def test_full_disk_leaves_previous_checkpoint(tmp_path, monkeypatch) -> None:
    ck.save_checkpoint(tmp_path, state(1))

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(ck.CheckpointError, match="disk is full"):
        ck.save_checkpoint(tmp_path, state(2))
    monkeypatch.undo()
    assert ck.latest_checkpoint(tmp_path).name == "step-00000001"
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["step"] == 1
    assert not list(tmp_path.glob(".step-*"))  # no half-written folder left behind
