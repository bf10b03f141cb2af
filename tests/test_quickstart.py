"""The headless quickstart (examples/quickstart_headless.py) runs end to end (with fewer steps)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests import _require

_require.module("skimage")
pytestmark = pytest.mark.slow


async def test_quickstart_runs_and_prelabels_help(tmp_path) -> None:
    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart_headless.py"
    spec = importlib.util.spec_from_file_location("quickstart", path)
    qs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qs)
    score = await qs.main(steps_between=8, out=tmp_path / "qs")
    assert score > 0.3  # pre-labels were shown and mostly right
    assert list((tmp_path / "qs").glob("prelabels_*.png"))
    assert (tmp_path / "qs" / "labels" / "annotations.json").is_file()
    assert (tmp_path / "qs" / "model" / "model.safetensors").is_file()
