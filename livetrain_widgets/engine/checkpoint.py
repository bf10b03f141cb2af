"""Checkpoints: the whole training state as one explicit mapping, written atomically.

A checkpoint is a folder ``checkpoints/step-00001234/`` holding

- ``model.safetensors``: the model's weights (no pickles);
- ``optimizer.pt``: the optimizer's ``state_dict`` (plain tensors and numbers), read back with
  ``torch.load(weights_only=True)``, which refuses arbitrary objects;
- ``state.json``: everything else (step, sampler, plateau detector, evaluator, threshold tuner, trainer
  counters, model architecture config).

It is written into a temporary folder, fsynced, and renamed into place, then ``LATEST`` is replaced
atomically. A process killed at any point leaves either the previous checkpoint or the new one, never
a half-written one that ``LATEST`` points to. The same step saved twice (Stop right after a periodic
save) moves the old folder aside, renames the new one in, and only then removes the old one; a kill
between the two renames leaves both complete copies beside an empty name, and :func:`recover_checkpoints`
(run when a project opens) renames a complete one back. Loading rejects unknown or missing keys, so a checkpoint
from an incompatible version fails loudly instead of resuming half its state; only keys added later
(``OPTIONAL_KEYS``) may be missing, and the session starts those parts afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ._disk import disk_full
from ._state import check_keys

FORMAT_VERSION = 1
#: The keys of a training state, all required.
STATE_KEYS = frozenset(
    {"format", "step", "time", "model", "model_config", "optimizer", "sampler", "plateau", "evaluator", "trainer"}
)
#: Keys added after format 1 was first written: a checkpoint from before lacks them and still loads.
OPTIONAL_KEYS = frozenset({"tuner"})
_TENSOR_KEYS = ("model", "optimizer")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read, with the reason."""


def _check(state: dict[str, Any], what: str) -> None:
    try:
        check_keys({k: v for k, v in state.items() if k not in OPTIONAL_KEYS}, STATE_KEYS, what)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # not supported on some platforms/filesystems
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


#: one writer at a time per checkpoint folder, within this process (the project lock keeps other processes
#: out): a periodic checkpoint and one asked for run in two threads, and they shared ``.LATEST.tmp-<pid>``
#: and the rename of a same-step folder (one failed with FileNotFoundError)
_writers: dict[Path, threading.Lock] = {}
_writers_guard = threading.Lock()


def _writer(root: Path) -> threading.Lock:
    with _writers_guard:
        return _writers.setdefault(root.resolve(), threading.Lock())


def save_checkpoint(root: str | os.PathLike[str], state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` (see ``STATE_KEYS``) under ``root``; keep the newest ``keep`` checkpoints. Safe to
    call from several threads: the writes take turns."""
    _check(state, "training")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _writer(root):
        return _save(root, state, keep)


def _save(root: Path, state: dict[str, Any], keep: int) -> Path:
    name = f"step-{int(state['step']):08d}"
    final = root / name
    old: Path | None = None
    tmp = root / f".{name}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        tmp.mkdir()
        model = {k: v.detach().contiguous().cpu() for k, v in state["model"].items()}
        save_file(model, str(tmp / "model.safetensors"))
        torch.save(state["optimizer"], tmp / "optimizer.pt")
        meta = {k: v for k, v in state.items() if k not in _TENSOR_KEYS}
        (tmp / "state.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():
            _fsync_file(f)
        _fsync_dir(tmp)
        if final.exists():  # the same step saved twice (e.g. stop right after a periodic save)
            # Moved aside, not deleted, until the new one is in: deleting first left no checkpoint at all
            # to a process killed before the rename (the project reopened with untrained weights).
            old = root / f".{name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(final, old)
        os.replace(tmp, final)
        latest_tmp = root / f".LATEST.tmp-{os.getpid()}"
        latest_tmp.write_text(name)
        _fsync_file(latest_tmp)
        os.replace(latest_tmp, root / "LATEST")
        _fsync_dir(root)
    except Exception as exc:  # OSError, and safetensors' / torch's own errors wrapping one
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            if final.exists():  # the new one is in; only LATEST (naming the same folder) failed
                shutil.rmtree(old, ignore_errors=True)
            else:  # the new one never made it in: the old one goes back
                os.replace(old, final)
        for stale in root.glob(".LATEST.tmp-*"):
            stale.unlink(missing_ok=True)
        reason = f"the disk is full at {root}" if disk_full(exc) else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(
            f"could not write checkpoint {final}: {reason}; nothing labeled was lost (labels are saved apart "
            "from checkpoints) and the previous checkpoint is intact"
        ) from exc
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    latest = (root / "LATEST").read_text().strip() if (root / "LATEST").exists() else None
    for old in done[:-keep] if keep > 0 else []:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    for stale in [*root.glob(".step-*.tmp-*"), *root.glob(".step-*.old-*")]:  # left by a process killed mid-write
        shutil.rmtree(stale, ignore_errors=True)


def had_checkpoint(root: str | os.PathLike[str]) -> bool:
    """Whether a checkpoint was ever written under ``root`` (``LATEST``, or a folder complete or not)."""
    root = Path(root)
    # A ``.tmp-`` folder alone is a first checkpoint killed mid-write: none was ever complete.
    return (root / "LATEST").exists() or any(root.glob("step-*")) or any(root.glob(".step-*.old-*"))


def recover_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Put back complete checkpoints that a killed process left under a temporary name.

    A process killed while replacing a checkpoint of the same step leaves the new copy (``.tmp-``) and the
    old one (``.old-``) and no ``step-…`` folder. Each such name gets back the first copy that loads,
    the newer one first. Call it while holding the project's lock (nothing else writes here). Returns the
    folders put back.
    """
    root = Path(root)
    back: list[Path] = []
    names = {p.name[1:].split(".", 1)[0] for p in root.glob(".step-*") if p.is_dir()}
    for name in sorted(names):
        final = root / name
        if final.exists():
            continue
        newest_first = sorted(root.glob(f".{name}.tmp-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = newest_first + sorted(root.glob(f".{name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for candidate in candidates:
            try:
                load_checkpoint(candidate)
            except CheckpointError:
                continue  # half-written: killed before it was complete
            os.replace(candidate, final)
            _fsync_dir(root)
            back.append(final)
            break
    return back


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    """The folder ``LATEST`` names, or the newest complete one if ``LATEST`` is missing."""
    root = Path(root)
    latest = root / "LATEST"
    if latest.exists():
        path = root / latest.read_text().strip()
        if (path / "state.json").exists():
            return path
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint folder back into the mapping ``save_checkpoint`` was given."""
    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        model = load_file(str(path / "model.safetensors"), device=str(map_location))
        optimizer = torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True)
    except Exception as exc:  # OSError, JSON, safetensors' and weights-only unpickling's own errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"could not read checkpoint {path}: {type(exc).__name__}: {first[:300]}. If that folder was damaged "
            "or replaced, move it out of checkpoints/ to resume from the one before; the labels are in "
            "labels.sqlite either way"
        ) from exc
    state = {**meta, "model": model, "optimizer": optimizer}
    _check(state, f"{path}: checkpoint")
    if state["format"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state['format']}, expected {FORMAT_VERSION}")
    return state
