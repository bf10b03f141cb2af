"""Hugging Face models by name: ``create_hf_model("PekingU/rtdetr_r18vd", "detection", classes)``.

The architecture comes from the checkpoint's ``model_type``; the families live in ``_hf_*.py``:

- detection (``hf-detection``): RT-DETR (v1/v2), Conditional DETR, Grounding DINO, MM Grounding DINO
  (zero-shot: the class names are the prompt);
- segmentation (``hf-segmentation``): Mask2Former (instance or semantic), SegFormer (semantic pixels;
  instances are connected components);
- classification: CLIP (``hf-clip``, zero-shot from "a photo of a {name}") and ViT or any other
  ``AutoModelForImageClassification`` model (``hf-classification``, new linear head).

Images are resized and normalised here (PIL + torch, following the checkpoint's image processor config)
rather than by the processors, whose fast variants need torchvision and whose slow ones would run
per-image numpy on the training path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._hf_base import HFLiveModel, hub_config
from ._hf_classification import HFClassificationModel, HFClipModel
from ._hf_detection import DETR_TYPES, GROUNDED_TYPES, HFDetectionModel
from ._hf_segmentation import MODEL_TYPES as SEGMENTATION_TYPES
from ._hf_segmentation import HFSegmentationModel
from .base import LiveModel

__all__ = ["HFClassificationModel", "HFClipModel", "HFDetectionModel", "HFLiveModel",
           "HFSegmentationModel", "create_hf_model"]

#: model_type -> (task, family class); classification falls back to HFClassificationModel
_FAMILIES: dict[str, tuple[str, type[HFLiveModel]]] = {
    **{t: ("detection", HFDetectionModel) for t in DETR_TYPES + GROUNDED_TYPES},
    **{t: ("segmentation", HFSegmentationModel) for t in SEGMENTATION_TYPES},
    "clip": ("classification", HFClipModel),
}
_NEEDS_TOKENIZER = (*GROUNDED_TYPES, "clip")


def create_hf_model(
    name_or_path: str,
    task: str,
    classes: Sequence[str],
    *,
    lora: bool | dict[str, Any] = False,
    config_overrides: dict[str, Any] | None = None,
    **options: Any,
) -> LiveModel:
    """Load a transformers checkpoint (Hub name or local folder) as a :class:`LiveModel`.

    ``lora``: ``True`` or a dict with ``r``, ``alpha``, ``dropout``, ``target_modules`` (peft); the
    class heads stay fully trainable. ``config_overrides``: keyword arguments for the transformers
    config (e.g. ``num_queries``). ``options`` are family settings (``image_size``, ``hflip``,
    ``backbone_lr_scale``, ``min_score``, ``max_detections``, ``mode`` for segmentation, ``prompt``
    for CLIP, ...); unknown ones raise.
    """
    try:
        from transformers import AutoImageProcessor, AutoTokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Hugging Face models need `pip install livetrain-widgets[hf]`") from e

    config = hub_config(name_or_path, **(config_overrides or {}))
    model_type = config.model_type
    expected, family = _FAMILIES.get(model_type, ("classification", HFClassificationModel))
    if expected != task:
        raise ValueError(f"{name_or_path} is a {model_type!r} model, which livetrain uses for "
                         f"{expected}, not {task}")
    backbone_type = getattr(getattr(config, "backbone_config", None), "model_type", "")
    if backbone_type == "timm_backbone":
        _require("timm", f"{name_or_path} uses a timm backbone")
    processor = AutoImageProcessor.from_pretrained(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path) if model_type in _NEEDS_TOKENIZER else None
    return family.create(name_or_path, task, classes, config=config, processor=processor,
                         tokenizer=tokenizer, lora=lora, options=options)


def _require(module: str, why: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{why}; install `{module}` (it needs torchvision) or pick a checkpoint "
                          "with a transformers backbone")
