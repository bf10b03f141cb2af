"""Checkpoints, saved models, adapters and Hub-format folders never unpickle arbitrary objects.

A project folder or a model folder is something people pass around (a colleague's checkpoint, a zip
from a forum). Each test plants a pickle whose unpickling would run a command (create a marker file)
where a weights file is expected, loads through the public API, and shows that it is refused with a
message naming the file and that the command never ran. A source scan keeps it that way: no ``pickle``
import, and every ``torch.load`` with ``weights_only=True``.
"""

from __future__ import annotations

import ast
import asyncio
import os
import shutil
from pathlib import Path

import pytest
import torch

from livetrain_widgets import Annotation, LiveSession, load_model
from livetrain_widgets.engine.checkpoint import CheckpointError, latest_checkpoint

from .. import _require
from ..tiny_model import TinyClassifier, two_class_images
from .report import record

PACKAGE = Path(__file__).resolve().parents[2] / "livetrain_widgets"


class Payload:
    """Unpickling this runs ``touch <marker>``: proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def plant(path: Path, marker: Path) -> None:
    path.unlink(missing_ok=True)
    torch.save({"state": Payload(marker), "param_groups": []}, path)  # a valid torch pickle file


@pytest.fixture
def project(tmp_path: Path) -> Path:
    images, labels = two_class_images(4)
    s = LiveSession(tmp_path / "p", "classification", ["left", "right"], model=TinyClassifier())
    for i, c in zip(s.add_images(images), labels, strict=True):
        asyncio.run(s.submit(i, Annotation(16, 16, category=c)))
    asyncio.run(s.close())  # writes a checkpoint
    return tmp_path / "p"


def test_a_pickle_in_a_checkpoint_is_refused(project: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = latest_checkpoint(project / "checkpoints")
    tried = 0
    for name in ("optimizer.pt", "model.safetensors"):
        backup = ckpt / (name + ".bak")
        shutil.copy(ckpt / name, backup)
        plant(ckpt / name, marker)
        with pytest.raises(CheckpointError) as err:
            LiveSession(project, model=TinyClassifier())
        tried += 1
        assert str(ckpt) in str(err.value), "the message must name the checkpoint"
        assert not marker.exists(), f"unpickling {name} ran the planted command"
        os.replace(backup, ckpt / name)
    s = LiveSession(project, model=TinyClassifier())  # the real files back: the project opens again
    assert s.store.labeled_count() == 4
    asyncio.run(s.close())
    record("security", "malicious pickle planted as a checkpoint's optimizer.pt / model.safetensors", tried,
           "refused with CheckpointError naming the checkpoint (torch.load weights_only / safetensors); "
           "planted command never ran; labels untouched", 0)


def test_a_pickle_as_saved_model_or_adapter_is_refused(tmp_path: Path) -> None:
    _require.module("peft")
    from livetrain_widgets import StreamSession, create_stream_model
    from livetrain_widgets.models import create_model

    marker = tmp_path / "pwned"
    model = create_model("embedded", "classification", ["a", "b"], pretrained=False, input_size=64)
    folder = model.save_pretrained(tmp_path / "model")
    plant(folder / "model.safetensors", marker)
    with pytest.raises(Exception, match="not a readable safetensors weights file") as err:
        load_model(folder)
    assert not marker.exists()
    session = StreamSession(create_stream_model(model), [two_class_images(1, size=64)[0][0]])
    adapter = session.save_adapter(tmp_path / "adapter")
    weights = next(adapter.glob("*.safetensors"))
    plant(weights, marker)
    with pytest.raises(Exception, match="not a readable safetensors weights file") as err2:
        session.load_adapter(adapter)
    assert not marker.exists()
    record("security", "malicious pickle as an exported model's / a saved adapter's weights", 2,
           f"refused ({type(err.value).__name__}, {type(err2.value).__name__}): 'not a readable safetensors "
           "weights file', naming it; planted command never ran", "–")


def test_a_pickle_in_a_hub_format_folder_is_refused(tmp_path: Path) -> None:
    transformers = _require.module("transformers")
    from livetrain_widgets.models import create_model

    marker = tmp_path / "pwned"
    cfg = transformers.ViTConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 image_size=32, patch_size=8, num_labels=2)
    folder = tmp_path / "vit"
    transformers.ViTForImageClassification(cfg).save_pretrained(str(folder))
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    (folder / "model.safetensors").unlink()
    plant(folder / "pytorch_model.bin", marker)  # the old pickle format Hub repositories still carry
    with pytest.raises(Exception) as err:
        create_model(str(folder), "classification", ["a", "b"])
    assert not marker.exists(), "transformers unpickled the planted file"
    record("security", "malicious pytorch_model.bin in a Hub-format model folder", 1,
           f"refused ({type(err.value).__name__}: weights-only unpickling); planted command never ran", "–")


def test_the_source_never_unpickles() -> None:
    loads = 0
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib") for n in names), path
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "load" and ast.unparse(node.func.value) == "torch":
                    loads += 1
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert kw.get("weights_only") == "True", f"{path}:{node.lineno}: torch.load without weights_only"
                if node.func.attr == "load" and ast.unparse(node.func.value) in ("np", "numpy"):
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert kw.get("allow_pickle", "False") == "False", f"{path}:{node.lineno}"
    assert loads >= 2  # the checkpoint's optimizer and the embedded weights: the scan sees real calls
    record("security", "source scan: pickle imports, torch.load / np.load calls", loads,
           "no pickle import; every torch.load has weights_only=True", "–")
