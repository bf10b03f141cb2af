"""The worked example of a custom model (examples/custom_model.py, shown in docs/architecture.md) runs:
it learns through a live session, resumes from its project folder, and exports and reloads."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from livetrain_widgets import LiveSession, load_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_model.py"


def _example():
    spec = importlib.util.spec_from_file_location("custom_model_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_custom_model_example_learns_resumes_and_exports(tmp_path: Path) -> None:
    ex = _example()
    torch.manual_seed(0)
    result = asyncio.run(ex.label_and_train(tmp_path / "project", n_label=10, steps_per_label=4))
    assert result["accuracy"] >= 0.8, result  # stripes: chance is 0.5
    # Reopen the project: the registered family rebuilds the architecture from the checkpoint.
    s = LiveSession(tmp_path / "project")
    assert isinstance(s.trainer.model, ex.SmallCNN) and s.state.step >= result["step"]  # + the step in flight
    assert s.store.labeled_count() == 10
    asyncio.run(s.close())
    # The exported model reloads outside any session and classifies the held-out images by itself.
    model = load_model(result["exported"]).eval()
    got = [p.category for p in model.predict(result["held_out"])]
    assert np.mean(np.array(got) == np.array(result["held_out_labels"])) >= 0.8
    assert model.config() == {"task": "classification", "classes": ["horizontal", "vertical"], "size": 64,
                              "width": 16}
