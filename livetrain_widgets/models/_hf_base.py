"""What every Hugging Face family shares: loading, resizing, LoRA, parameter groups and export.

A family subclass names its transformers model class, turns :class:`Annotation` targets into that
model's label format and its outputs back into annotations. Everything else lives here.

Saving follows the engine's protocol: ``livetrain_model.json`` holds the full transformers config
(``hf_config``), the resolved preprocessing and the LoRA settings, so :meth:`from_config` rebuilds the
architecture with no download, and ``model.safetensors`` holds the state dict (LoRA layers included,
so a reloaded model goes on training exactly where it stopped). Next to it, ``hf/`` is a plain
transformers export (``save_pretrained``, safetensors, LoRA merged) that anyone can open with
``from_pretrained``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from ..engine.annotation import Annotation
from .base import CONFIG_NAME, WEIGHTS_NAME, LiveModel, check_model_folder

#: substrings of parameter names that stay trainable under LoRA: heads sized by the class count and
#: the box regressors. Plain ``requires_grad`` rather than peft's ``modules_to_save``: the latter copies
#: modules per path, which would untie heads that DETR-style models share between decoder and output.
HEAD_PATTERNS = (
    "class_embed",
    "bbox_embed",
    "enc_score_head",
    "enc_bbox_head",
    "denoising_class_embed",
    "class_labels_classifier",
    "class_predictor",
    "decode_head.classifier",
    "classifier",
    "logit_scale",
    "visual_projection",
)
#: LoRA on the attention query/value projections of the image side; text encoders stay untouched.
DEFAULT_LORA_TARGETS = r"^(?!.*(text_backbone|text_model|text_projection)).*\.(q_proj|v_proj|query|value)$"
LORA_DEFAULTS: dict[str, Any] = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": None}


def lora_settings(lora: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """Normalise ``lora=True`` / a dict of overrides to one JSON-able dict (``None``: full fine-tune)."""
    if not lora:
        return None
    extra = dict(lora) if isinstance(lora, dict) else {}
    unknown = set(extra) - set(LORA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown LoRA settings {sorted(unknown)}; known: {sorted(LORA_DEFAULTS)}")
    return {**LORA_DEFAULTS, **extra}


def image_settings(processor: Any, task: str, image_size: int | Sequence[int] | None) -> dict[str, Any]:
    """Resize/normalise parameters taken from a transformers image processor (or its config dict).

    Fixed ``height``/``width`` processors (RT-DETR, SegFormer, ViT) give a fixed size; shortest/longest
    edge processors (DETR, Grounding DINO, Mask2Former) keep the aspect ratio for detection and
    segmentation. Classification always squashes the whole image to the crop size: a labeling tool
    must not crop away the part of the image the label may be about.
    """
    get = processor.get if isinstance(processor, dict) else lambda k, d=None: getattr(processor, k, d)
    size = dict(get("size") or {})
    crop = dict(get("crop_size") or {}) if get("do_center_crop", False) else {}
    mean = list(get("image_mean") or [0.5, 0.5, 0.5]) if get("do_normalize", True) else [0.0, 0.0, 0.0]
    std = list(get("image_std") or [0.5, 0.5, 0.5]) if get("do_normalize", True) else [1.0, 1.0, 1.0]
    out: dict[str, Any] = {
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "rescale": float(get("rescale_factor", 1 / 255) if get("do_rescale", True) else 1.0),
        "fixed": None,
        "shortest_edge": None,
        "longest_edge": None,
    }
    if image_size is not None:
        if isinstance(image_size, int):
            size = {"shortest_edge": image_size} if task != "classification" else {}
            crop = {"height": image_size, "width": image_size} if task == "classification" else {}
        else:
            size, crop = {"height": int(image_size[0]), "width": int(image_size[1])}, {}
    if crop:
        out["fixed"] = [int(crop["height"]), int(crop["width"])]
    elif "height" in size and "width" in size:
        out["fixed"] = [int(size["height"]), int(size["width"])]
    elif "shortest_edge" in size and task == "classification":
        out["fixed"] = [int(size["shortest_edge"])] * 2
    elif "shortest_edge" in size:
        out["shortest_edge"] = int(size["shortest_edge"])
        out["longest_edge"] = int(size["longest_edge"]) if size.get("longest_edge") else None
    else:
        raise ValueError(f"cannot tell the input size from the image processor's size {size}")
    return out


def flip(image: np.ndarray, ann: Annotation) -> tuple[np.ndarray, Annotation]:
    """Horizontal flip of an image and its annotation (the one augmentation every family uses)."""
    w = ann.width
    boxes = ann.boxes.copy()
    boxes[:, [0, 2]] = w - ann.boxes[:, [2, 0]]
    masks = None if ann.masks is None else np.ascontiguousarray(ann.masks[:, :, ::-1])
    out = Annotation(w, ann.height, boxes=boxes, labels=ann.labels, masks=masks, category=ann.category)
    return np.ascontiguousarray(image[:, ::-1]), out



def hub_config(name_or_path: str | os.PathLike[str], **overrides: Any) -> Any:
    """``AutoConfig.from_pretrained``, with an error that names the model the user asked for.

    transformers' own message names the Hub endpoint it could not reach, not the model; offline (this
    package's usual setting) that is the first thing a user sees.
    """
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path, **overrides)
    except OSError as exc:
        where = "that folder" if Path(name_or_path).exists() else "the Hugging Face Hub"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise OSError(
            f"could not load the model {str(name_or_path)!r} from {where}: {first} (offline? a Hub model "
            "must be downloaded once with a network connection, or saved to a local folder with "
            "save_pretrained; HF_HUB_OFFLINE=1 uses only what is cached)"
        ) from exc

class Batch:
    """Resized, normalised and padded images plus where each one lies on the padded canvas."""

    def __init__(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor, sizes: list[tuple[int, int]],
                 originals: list[tuple[int, int]]) -> None:
        self.pixel_values = pixel_values
        self.pixel_mask = pixel_mask
        self.sizes = sizes  # (h, w) after resizing, before padding
        self.originals = originals  # (h, w) of the input images

    @property
    def canvas(self) -> tuple[int, int]:
        return int(self.pixel_values.shape[-2]), int(self.pixel_values.shape[-1])

    def canvas_in_original(self, i: int) -> tuple[int, int]:
        """The padded canvas measured in original pixels of image ``i`` (maps canvas-relative output)."""
        (h, w), (rh, rw), (ch, cw) = self.originals[i], self.sizes[i], self.canvas
        return max(1, round(ch * h / rh)), max(1, round(cw * w / rw))


def resized_size(h: int, w: int, cfg: dict[str, Any]) -> tuple[int, int]:
    if cfg["fixed"]:
        return int(cfg["fixed"][0]), int(cfg["fixed"][1])
    scale = cfg["shortest_edge"] / min(h, w)
    if cfg["longest_edge"] and max(h, w) * scale > cfg["longest_edge"]:
        scale = cfg["longest_edge"] / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def make_batch(images: Sequence[np.ndarray], cfg: dict[str, Any], device: torch.device,
               multiple: int = 32) -> Batch:
    """Resize (PIL bilinear, like the slow processors), normalise on the device, pad bottom/right."""
    arrays, sizes = [], []
    for img in images:
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"images must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        rh, rw = resized_size(img.shape[0], img.shape[1], cfg)
        arrays.append(np.array(Image.fromarray(img).resize((rw, rh), Image.BILINEAR)))
        sizes.append((rh, rw))
    pad = 1 if cfg["fixed"] else multiple
    ch = -(-max(s[0] for s in sizes) // pad) * pad
    cw = -(-max(s[1] for s in sizes) // pad) * pad
    pixels = torch.zeros(len(arrays), 3, ch, cw, device=device)
    mask = torch.zeros(len(arrays), ch, cw, dtype=torch.long, device=device)
    mean = torch.tensor(cfg["mean"], device=device).view(3, 1, 1)
    std = torch.tensor(cfg["std"], device=device).view(3, 1, 1)
    for i, (arr, (rh, rw)) in enumerate(zip(arrays, sizes, strict=True)):
        t = torch.from_numpy(arr).to(device).permute(2, 0, 1).float() * cfg["rescale"]
        pixels[i, :, :rh, :rw] = (t - mean) / std
        mask[i, :rh, :rw] = 1
    return Batch(pixels, mask, sizes, [(int(np.shape(im)[0]), int(np.shape(im)[1])) for im in images])


def resize_masks(masks: np.ndarray, size: tuple[int, int], canvas: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) bool masks -> (N, canvas_h, canvas_w) float, resized (nearest) into the top-left corner."""
    out = torch.zeros(len(masks), *canvas)
    if len(masks):
        t = torch.from_numpy(np.ascontiguousarray(masks)).float()[None]
        out[:, : size[0], : size[1]] = nn.functional.interpolate(t, size=size, mode="nearest-exact")[0]
    return out


def to_original(maps: torch.Tensor, batch: Batch, i: int, mode: str = "bilinear") -> torch.Tensor:
    """(K, h, w) maps over the whole padded canvas -> (K, H, W) over the original image ``i``."""
    h, w = batch.originals[i]
    full = nn.functional.interpolate(maps[None].float(), size=batch.canvas_in_original(i), mode=mode)[0]
    return full[:, :h, :w]


class HFLiveModel(LiveModel):
    """Base of the transformers families; ``self.hf`` is the (possibly peft-wrapped) model."""

    #: names of parameter-name prefixes (relative to the transformers model) of the pretrained backbone
    backbone_prefixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, task: str, classes: Sequence[str], *, hf_config: dict[str, Any],
                 image: dict[str, Any], lora: dict[str, Any] | bool | None = None,
                 options: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                 pretrained: str | None = None, tokenizer: Any = None) -> None:
        super().__init__(task, classes)
        self.hf_config = hf_config
        self.image = image
        self.lora = lora_settings(lora)
        self.options = {**self.default_options(), **(options or {})}
        unknown = set(self.options) - set(self.default_options())
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown options {sorted(unknown)}; "
                             f"known: {sorted(self.default_options())}")
        #: family state that must survive a reload but is no tensor (e.g. the tokenized prompt)
        self.extra: dict[str, Any] = dict(extra or {})
        #: things to export into ``hf/`` next to the weights (processor, tokenizer) when known
        self.export_extras: list[Any] = [tokenizer] if tokenizer is not None else []
        self.tokenizer = tokenizer
        model = self.build(pretrained)
        self.hf_config = hf_config_dict(model.config)
        self.hf: nn.Module = self._wrap_lora(model) if self.lora else model
        self.tokenizer = None  # only needed while building; not part of the module

    @classmethod
    def create(cls, name: str, task: str, classes: Sequence[str], *, config: Any, processor: Any,
               tokenizer: Any = None, lora: bool | dict[str, Any] = False,
               options: dict[str, Any] | None = None) -> HFLiveModel:
        """Build from a checkpoint (Hub name or local folder) whose config is already loaded."""
        options = dict(options or {})
        image = image_settings(processor, task, options.pop("image_size", None))
        cls.adapt_config(config, classes)
        model = cls(task, classes, hf_config=hf_config_dict(config), image=image, lora=lora,
                    options=options, pretrained=name, tokenizer=tokenizer)
        model.export_extras.insert(0, processor)
        return model

    @classmethod
    def adapt_config(cls, config: Any, classes: Sequence[str]) -> None:
        """Point the label maps at the user's classes (the head is then re-initialised if it differs)."""
        config.id2label = dict(enumerate(classes))
        config.label2id = {c: i for i, c in enumerate(classes)}
        config.num_labels = len(classes)

    def load_hf(self, auto_class: Any, pretrained: str | None) -> nn.Module:
        """``from_pretrained`` (heads of another size re-initialised) or a random model from the config."""
        config = self.hf_config_object()
        if pretrained is None:  # Auto classes build with from_config, model classes with __init__
            build = getattr(auto_class, "from_config", auto_class)
            return build(config)
        return auto_class.from_pretrained(pretrained, config=config, ignore_mismatched_sizes=True)

    # ------------------------------------------------------------------------------ for subclasses
    def default_options(self) -> dict[str, Any]:
        return {"hflip": True, "backbone_lr_scale": 0.1}

    def build(self, pretrained: str | None) -> nn.Module:
        """The transformers model: from ``pretrained`` (name or folder) or randomly from ``hf_config``."""
        raise NotImplementedError

    def hf_config_object(self) -> Any:
        from transformers import CONFIG_MAPPING

        return CONFIG_MAPPING[self.hf_config["model_type"]].from_dict(dict(self.hf_config))

    # ----------------------------------------------------------------------------------- helpers
    @property
    def core(self) -> nn.Module:
        """The transformers model itself (LoRA layers, if any, are injected into it in place)."""
        return self.hf.get_base_model() if self.lora else self.hf

    def batch(self, images: Sequence[np.ndarray]) -> Batch:
        return make_batch(images, self.image, self.device)

    def augment(self, images: Sequence[np.ndarray], targets: Sequence[Annotation]
                ) -> tuple[list[np.ndarray], list[Annotation]]:
        if len(images) != len(targets):
            raise ValueError(f"got {len(images)} images but {len(targets)} targets")
        out_i, out_t = [], []
        for img, ann in zip(images, targets, strict=True):
            img = np.asarray(img)
            if (ann.height, ann.width) != img.shape[:2]:
                raise ValueError(f"annotation is {ann.width}x{ann.height} but image is "
                                 f"{img.shape[1]}x{img.shape[0]}")
            if self.options["hflip"] and torch.rand(()) < 0.5:
                img, ann = flip(img, ann)
            out_i.append(img)
            out_t.append(ann)
        return out_i, out_t

    def _wrap_lora(self, model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        s = self.lora
        assert s is not None
        cfg = LoraConfig(r=s["r"], lora_alpha=s["alpha"], lora_dropout=s["dropout"],
                         target_modules=s["target_modules"] or DEFAULT_LORA_TARGETS, bias="none")
        # peft looks for heads tied to the word embeddings when the config says
        # ``tie_word_embeddings``; Grounding DINO's ties are box heads and it has no input embeddings
        # to ask about, so the check is skipped for the duration of the wrap.
        config = getattr(model, "config", None)
        tie = getattr(config, "tie_word_embeddings", None)
        if tie and not _has_input_embeddings(model):
            config.tie_word_embeddings = False
        try:
            wrapped = get_peft_model(model, cfg)
        finally:
            if tie is not None:
                config.tie_word_embeddings = tie
        for name, p in wrapped.named_parameters():
            if "lora_" not in name and any(pat in name for pat in HEAD_PATTERNS) and self._trainable(name):
                p.requires_grad_(True)
        return wrapped

    def _trainable(self, name: str) -> bool:
        """Whether a parameter may train at all (e.g. CLIP's text side never does)."""
        return True

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """LoRA: one group. Full fine-tune: the pretrained backbone at ``backbone_lr_scale`` × lr."""
        params = [(n, p) for n, p in self.core.named_parameters() if p.requires_grad]
        if self.lora:
            return [{"params": [p for _, p in params], "lr": lr}]
        back = [p for n, p in params if n.startswith(self.backbone_prefixes)]
        rest = [p for n, p in params if not n.startswith(self.backbone_prefixes)]
        groups = [{"params": rest, "lr": lr}]
        if back:
            groups.append({"params": back, "lr": lr * self.options["backbone_lr_scale"]})
        return groups

    def _keep_eval(self) -> None:
        # Batches of 1-4 images give useless batch statistics; keep pretrained running stats.
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    # ----------------------------------------------------------------------------- save / load
    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state dict as safetensors accepts it: tied weights (DETR heads shared between decoder
        and output) become copies; ``load_state_dict`` writes each copy into the same storage."""
        seen: set[tuple[int, int]] = set()
        out = {}
        for k, v in self.state_dict().items():
            t = v.detach().cpu().contiguous()
            key = (t.untyped_storage().data_ptr(), t.storage_offset())
            out[k] = t.clone() if key in seen else t
            seen.add(key)
        return out

    def config(self) -> dict[str, Any]:
        return {"task": self.task, "classes": self.classes, "hf_config": self.hf_config,
                "image": self.image, "lora": self.lora, "options": self.options, "extra": self.extra}

    def save_pretrained(self, folder: str | os.PathLike[str], *, hf_export: bool = True) -> Path:
        """Engine folder (config + state dict) and, unless ``hf_export=False``, a transformers
        ``hf/`` folder with LoRA merged (costs a copy of the weights on disk)."""
        out = Path(folder)
        check_model_folder(out, (CONFIG_NAME, WEIGHTS_NAME, "hf") if hf_export else (CONFIG_NAME, WEIGHTS_NAME))
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / (CONFIG_NAME + ".tmp")
        tmp.write_text(json.dumps({"family": self.family, **self.config()}, indent=2))
        os.replace(tmp, out / CONFIG_NAME)
        save_file(self.checkpoint_state(), str(out / (WEIGHTS_NAME + ".tmp")))
        os.replace(out / (WEIGHTS_NAME + ".tmp"), out / WEIGHTS_NAME)
        if hf_export:
            model = copy.deepcopy(self.hf).merge_and_unload() if self.lora else self.hf
            model.save_pretrained(str(out / "hf"), safe_serialization=True)
            for extra in self.export_extras:
                extra.save_pretrained(str(out / "hf"))
            if not any(hasattr(e, "image_mean") for e in self.export_extras):
                (out / "hf" / "livetrain_image.json").write_text(json.dumps(self.image, indent=2))
        return out


def _has_input_embeddings(model: nn.Module) -> bool:
    try:
        return model.get_input_embeddings() is not None  # type: ignore[operator]
    except (NotImplementedError, AttributeError):
        return False


def hf_config_dict(config: Any) -> dict[str, Any]:
    """A transformers config as a JSON-safe dict (what ``save_pretrained`` writes to config.json)."""
    return json.loads(config.to_json_string(use_diff=False))
