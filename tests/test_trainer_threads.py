"""TrainerConfig.threads (issue 21 A): training takes the cores other processes leave free."""

from __future__ import annotations

import pytest
import torch

from livetrain_widgets.engine import trainer as trainer_mod
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.trainer import Trainer, TrainerConfig, free_cores

from .tiny_model import TinyClassifier, two_class_images


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _label(c: int) -> Annotation:
    return Annotation(16, 16, category=c)


def _machine(monkeypatch: pytest.MonkeyPatch, cores: int, load: float) -> None:
    monkeypatch.setattr(trainer_mod.os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    monkeypatch.setattr(trainer_mod.os, "getloadavg", lambda: (load, load, load))


@pytest.mark.parametrize(("cores", "load", "own", "free"), [
    (2, 0.0, 0, 2), (2, 0.3, 0, 2), (2, 1.0, 0, 1), (2, 6.0, 0, 1),  # a busy machine: one thread, never 0
    (2, 2.1, 2, 2),  # the load is our own two threads: both cores stay ours
    (16, 4.0, 1, 13), (4, 1.6, 0, 2),
])
def test_free_cores_from_the_load_average(monkeypatch, cores: int, load: float, own: int, free: int) -> None:
    _machine(monkeypatch, cores, load)
    assert free_cores(own) == free


def test_auto_threads_follow_the_load_between_steps(monkeypatch, restore_threads) -> None:
    images, labels = two_class_images(6)
    _machine(monkeypatch, 2, 5.0)
    tr = Trainer(TinyClassifier(), lambda k: images[k], TrainerConfig(batch_size=2, threads="auto", threads_every=3))
    for k in range(4):
        tr.set_sample(k, _label(labels[k]))
    tr.run_steps(1)
    assert tr.threads == 1 and torch.get_num_threads() == 1 and tr.status()["threads"] == 1
    _machine(monkeypatch, 2, 1.0)  # the others stopped: our one busy thread is the whole load
    tr.run_steps(2)
    assert tr.threads == 1  # not re-checked before threads_every steps
    tr.run_steps(2)
    assert tr.threads == 2 and torch.get_num_threads() == 2
    tr.close()


def test_fixed_and_untouched_threads(restore_threads) -> None:
    images, labels = two_class_images(4)
    torch.set_num_threads(2)
    tr = Trainer(TinyClassifier(), lambda k: images[k], TrainerConfig(batch_size=2, threads=None))
    for k in range(3):
        tr.set_sample(k, _label(labels[k]))
    tr.run_steps(2)
    assert torch.get_num_threads() == 2
    tr.config.threads = 1
    tr.run_steps(1)
    assert torch.get_num_threads() == 1 == tr.threads
    with pytest.raises(ValueError, match="threads"):
        TrainerConfig(threads=0)
    tr.close()
