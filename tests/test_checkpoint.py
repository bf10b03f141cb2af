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
    with pytest.raises(ck.CheckpointError, match=f"disk is full at {tmp_path}; nothing labeled was lost"):
        ck.save_checkpoint(tmp_path, state(2))
    monkeypatch.undo()
    assert ck.latest_checkpoint(tmp_path).name == "step-00000001"
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["step"] == 1
    assert not list(tmp_path.glob(".step-*"))  # no half-written folder left behind


def test_same_step_rewrite_never_leaves_no_checkpoint(tmp_path, monkeypatch) -> None:
    """Issue 19: the old folder of a step was deleted before the new one was renamed in; a process killed
    between the two left nothing loadable. Now a kill at each rename of the rewrite leaves a checkpoint
    that loads (after :func:`recover_checkpoints`, which the session runs on open)."""
    real_replace = ck.os.replace
    for kill_at in (1, 2):  # the 1st rename (old aside) or the 2nd (new in)
        root = tmp_path / f"kill-{kill_at}"
        ck.save_checkpoint(root, state(5))
        calls = []

        def replace(src, dst, kill_at=kill_at, calls=calls):
            calls.append((src, dst))
            if len(calls) == kill_at:
                raise KeyboardInterrupt  # stands for SIGKILL: nothing after this line runs (no cleanup)
            real_replace(src, dst)

        monkeypatch.setattr(ck.os, "replace", replace)
        with pytest.raises(KeyboardInterrupt):
            ck.save_checkpoint(root, state(5, time=2.0))
        monkeypatch.undo()
        assert ck.had_checkpoint(root)
        ck.recover_checkpoints(root)
        path = ck.latest_checkpoint(root)
        assert path is not None and path.name == "step-00000005", sorted(p.name for p in root.iterdir())
        back = ck.load_checkpoint(path)
        # Killed before the old one moved: the old copy. Killed between the renames: the new (complete) copy.
        assert back["time"] == (1.0 if kill_at == 1 else 2.0)


def test_same_step_rewrite_replaces_and_cleans_up(tmp_path) -> None:
    ck.save_checkpoint(tmp_path, state(5))
    ck.save_checkpoint(tmp_path, state(5, time=2.0))
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["time"] == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "step-00000005"]


def test_recovery_skips_a_half_written_copy(tmp_path) -> None:
    ck.save_checkpoint(tmp_path, state(5))
    (tmp_path / "step-00000005").rename(tmp_path / ".step-00000005.old-1-1")
    half = tmp_path / ".step-00000005.tmp-2-2"
    half.mkdir()
    (half / "state.json").write_text('{"step": 5')  # killed mid-write
    assert ck.latest_checkpoint(tmp_path) is None and ck.had_checkpoint(tmp_path)
    assert [p.name for p in ck.recover_checkpoints(tmp_path)] == ["step-00000005"]
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["step"] == 5


def test_a_first_checkpoint_killed_mid_write_is_not_a_lost_one(tmp_path) -> None:
    (tmp_path / ".step-00000003.tmp-1-1").mkdir()
    assert not ck.had_checkpoint(tmp_path) and ck.recover_checkpoints(tmp_path) == []


def test_saves_from_several_threads_take_turns(tmp_path) -> None:
    """A periodic checkpoint and one asked for run in two threads: they shared the LATEST temporary file and
    the same-step rename, and one failed (FileNotFoundError) in the long kill run."""
    import threading

    errors: list[BaseException] = []
    for round_ in range(6):
        barrier = threading.Barrier(4)

        def save(step: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                ck.save_checkpoint(tmp_path, state(step))
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=save, args=(10 + round_ + k % 2,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path))["step"] in (15, 16)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
