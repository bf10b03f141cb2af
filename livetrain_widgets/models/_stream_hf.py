"""Transformers models in the correction mode: SAM / SAM 2 (promptable segmentation) and CLIP (zero-shot
classification), each frozen with a peft LoRA adapter where the LIT paper puts it.

- **SAM, SAM 2** (:class:`SamStreamModel`): LoRA on the query/key/value projections of every attention
  layer of the mask decoder's two-way transformer (the paper: "LoRA injected into each attention layer
  of the mask decoder"); the image encoder, prompt encoder, output upscaling, hypernetwork MLPs and the
  IoU head stay frozen. The image encoder, by far the most expensive part, runs once per frame in
  ``encode``; an epoch of an update is one mask-decoder pass over the cached embeddings.
- **CLIP** (:class:`ClipStreamModel`): LoRA on the query/key/value projections of the image encoder's
  attention, the class names embedded once by the frozen text encoder. The vision tower re-runs every
  epoch since the adapter is inside it.

Images are resized and normalised here as the checkpoint's image processor config says (SAM: longest
side to the input size, then zero padding bottom/right; SAM 2: squashed to the square input; CLIP: the
whole image squashed to the crop size), with PIL bilinear like the slow processors, because SAM 2's
processor needs torchvision and the per-frame path should not depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..engine.annotation import Annotation
from . import _lora
from ._hf_base import hub_config, image_settings, make_batch
from .embedded import _check_image
from .stream import AdapterConfig, Click, Prompt, StreamModel, StreamPrediction

#: checkpoint model types loaded as SAM / SAM 2; the Hub's SAM 2.1 repos say ``sam2_video`` (the image and
#: video models share the weights) and load into the image model ``Sam2Model``
SAM_TYPES = {"sam": "sam", "sam2": "sam2", "sam2_video": "sam2"}
SUPPORTED_TYPES = (*SAM_TYPES, "clip")

#: the two-way transformer's attention projections (self-attention, both cross-attentions and the final
#: token-to-image attention); names relative to the stream model
SAM_TARGETS = r"^sam\.mask_decoder\.transformer\..*\.(q_proj|k_proj|v_proj)$"
CLIP_TARGETS = r"^clip\.vision_model\.encoder\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj)$"

#: SAM 2's training weights for its mask losses (focal 20 : dice 1), which the LIT paper reuses
FOCAL_WEIGHT, DICE_WEIGHT = 20.0, 1.0
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def _processor_dict(processor: Any) -> dict[str, Any] | None:
    if processor is None or isinstance(processor, dict):
        return processor
    if hasattr(processor, "to_dict"):
        return dict(processor.to_dict())
    raise TypeError(f"processor must be an image processor or its config dict, got {type(processor).__name__}")


def _load_processor_dict(name_or_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint's image processor config, or ``None`` when it ships none (the defaults then apply)."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        config, _ = ImageProcessingMixin.get_image_processor_dict(str(name_or_path))
    except OSError:
        return None
    return dict(config)


# ------------------------------------------------------------------------------------------- SAM
def _sam_kind(model: Any) -> str | None:
    """"sam" or "sam2" by class: a SAM 2.1 checkpoint loaded into ``Sam2Model`` keeps ``sam2_video`` as its
    config's model type."""
    from transformers import Sam2Model, SamModel

    if isinstance(model, SamModel):
        return "sam"
    return "sam2" if isinstance(model, Sam2Model) else None


def sam_image_settings(processor: dict[str, Any] | None, model_type: str, input_size: int) -> dict[str, Any]:
    """Resize/normalise settings for SAM (``longest`` side + pad) and SAM 2 (``square`` squash).

    The processor decides the mode and the normalisation; the size must be the model's input size,
    since the image encoder's position embeddings are fixed to it.
    """
    get = (processor or {}).get
    size = dict(get("size") or {})
    if "longest_edge" in size:
        mode, edge = "longest", int(size["longest_edge"])
    elif "height" in size and "width" in size:
        if int(size["height"]) != int(size["width"]):
            raise ValueError(f"SAM takes a square input; the image processor resizes to {size}")
        mode, edge = "square", int(size["height"])
    elif not size:
        mode, edge = ("longest" if model_type == "sam" else "square"), input_size
    else:
        raise ValueError(f"cannot tell the input size from the image processor's size {size}")
    if edge != input_size:
        raise ValueError(f"the image processor resizes to {edge} pixels but the model takes {input_size}")
    normalize = get("do_normalize", True)
    return {
        "mode": mode,
        "size": input_size,
        "mean": [float(v) for v in (get("image_mean") or IMAGENET_MEAN)] if normalize else [0.0] * 3,
        "std": [float(v) for v in (get("image_std") or IMAGENET_STD)] if normalize else [1.0] * 3,
        "rescale": float(get("rescale_factor", 1 / 255) if get("do_rescale", True) else 1.0),
    }


@dataclass
class _SamEncoded:
    size: tuple[int, int]  # original (H, W)
    resized: tuple[int, int]  # the image's (h, w) inside the square model input
    #: SAM: (1, C, h, w) image embeddings; SAM 2: [high-res s0, high-res s1, image embeddings]
    embeddings: Any
    #: the last update target in model-input and original pixels (the update reuses one target 40 times)
    _target: tuple[Any, int, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)


def _sigmoid_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """SAM 2's focal loss (mean over pixels); soft targets welcome."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean()


def _dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = logits.sigmoid().flatten()
    target = target.flatten()
    return 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)


def _union(target: Annotation, label: int) -> np.ndarray:
    """(H, W) bool: every mask of class ``label`` in a segmentation correction."""
    if target.masks is None:
        raise ValueError("a segmentation correction needs masks")
    keep = target.labels == label
    if not keep.any():
        return np.zeros((target.height, target.width), bool)
    return target.masks[keep].any(0)


class SamStreamModel(StreamModel):
    """SAM or SAM 2 from transformers as a promptable stream model (see the module docstring).

    ``model``: a ``SamModel`` or ``Sam2Model``; it is adapted in place (peft injects the LoRA layers into
    it), so pass a copy to keep the original untouched. ``classes``: the one object class of the stream.
    ``processor``: the checkpoint's image processor (or its config dict); ``None``: SAM's defaults.

    One mask per prompt, from the decoder's single-mask token (``multimask_output=False``) rather than
    the best of the three multimask outputs by predicted IoU: the stream always has a box (propagated
    from the previous frame), which is unambiguous, and it is that very token the loss trains, so a
    correction shows up in the next prediction instead of possibly losing to an untrained token. For
    the same reason SAM 2's eval-time switch to a multimask token on unstable masks is turned off.
    """

    promptable: ClassVar[bool] = True
    family: ClassVar[str] = "sam"

    def __init__(self, model: nn.Module, classes: Sequence[str] = ("object",), adapter: AdapterConfig | None = None,
                 *, processor: Any = None) -> None:
        model_type = _sam_kind(model)
        if model_type is None:
            raise TypeError(f"expected a transformers SamModel or Sam2Model (the image model; load SAM 2 "
                            f"video checkpoints with Sam2Model), got {type(model).__name__}")
        if len(classes) != 1:
            raise ValueError(f"SAM segments one object class per stream; got classes {list(classes)}")
        super().__init__("segmentation", classes, adapter)
        # the family names the adapter's layout, which differs between SAM and SAM 2 (describe() / load)
        self.family = model_type  # type: ignore[misc]
        self.sam = model.eval()
        self.input_size = int(model.config.prompt_encoder_config.image_size)
        self.image = sam_image_settings(_processor_dict(processor), model_type, self.input_size)
        if model_type == "sam2":
            model.mask_decoder.dynamic_multimask_via_stability = False
        cfg = self.adapter_config
        _lora.inject_lora(self, cfg.target_modules or SAM_TARGETS, rank=cfg.rank, alpha=cfg.alpha,
                          dropout=cfg.dropout)
        self.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], classes: Sequence[str] = ("object",),
                        adapter: AdapterConfig | None = None, *, processor: Any = None,
                        device: str | torch.device | None = None, **hf_kwargs: Any) -> SamStreamModel:
        """A local ``save_pretrained`` folder or a Hub name (``facebook/sam-vit-base``,
        ``facebook/sam2.1-hiera-tiny``); its image processor config is read next to it when present.
        ``device``: where it runs (default: CUDA when present)."""
        from transformers import Sam2Model, SamModel

        model_type = hub_config(name_or_path).model_type
        if model_type not in SAM_TYPES:
            raise ValueError(f"{name_or_path} is a {model_type!r} model, not SAM or SAM 2")
        model_cls = SamModel if SAM_TYPES[model_type] == "sam" else Sam2Model
        model = model_cls.from_pretrained(name_or_path, **hf_kwargs)
        # like the trainer (TrainerConfig.device=None): the GPU when there is one
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if processor is None:
            processor = _load_processor_dict(name_or_path)
        return cls(model, classes, adapter, processor=processor)

    # --------------------------------------------------------------------------------- encode
    @torch.no_grad()
    def encode(self, image: np.ndarray) -> _SamEncoded:
        image = _check_image(image)
        H, W = image.shape[:2]
        S, cfg = self.input_size, self.image
        if cfg["mode"] == "longest":
            scale = S / max(H, W)
            rh, rw = int(H * scale + 0.5), int(W * scale + 0.5)  # the processor's rounding
        else:
            rh, rw = S, S
        arr = np.array(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
        p = next(self.sam.parameters())
        t = torch.from_numpy(arr).to(p.device).permute(2, 0, 1).float() * cfg["rescale"]
        mean = torch.tensor(cfg["mean"], device=p.device).view(3, 1, 1)
        std = torch.tensor(cfg["std"], device=p.device).view(3, 1, 1)
        pixels = torch.zeros(1, 3, S, S, device=p.device)
        pixels[0, :, :rh, :rw] = (t - mean) / std  # SAM pads after normalising, with zeros
        embeddings = self.sam.get_image_embeddings(pixels.to(p.dtype))
        return _SamEncoded((H, W), (rh, rw), embeddings)

    # -------------------------------------------------------------------------------- decoding
    def _decode(self, enc: _SamEncoded, box: np.ndarray | None, clicks: Sequence[Click]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution mask logits (1, 1, h, w) and the predicted IoU for a box and/or clicks (in
        original pixels), which the prompt encoder takes in model-input pixels."""
        (H, W), (rh, rw) = enc.size, enc.resized
        sx, sy = rw / W, rh / H
        dev = next(self.sam.parameters()).device
        boxes = points = labels = None
        if box is not None:
            b = np.asarray(box, np.float64).reshape(4)
            boxes = torch.tensor([[[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy]]], dtype=torch.float32, device=dev)
        if clicks:
            points = torch.tensor([[[[c.x * sx, c.y * sy] for c in clicks]]], dtype=torch.float32, device=dev)
            labels = torch.tensor([[[int(c.positive) for c in clicks]]], dtype=torch.long, device=dev)
        out = self.sam(image_embeddings=enc.embeddings, input_points=points, input_labels=labels,
                       input_boxes=boxes, multimask_output=False)
        return out.pred_masks[:, 0, :1].float(), out.iou_scores[0, 0, 0].float()

    def _frame_logits(self, low: torch.Tensor, enc: _SamEncoded) -> torch.Tensor:
        """Low-res logits -> the image's part of the model input (SAM's post-processing, first half)."""
        S, (rh, rw) = self.input_size, enc.resized
        return F.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)[..., :rh, :rw]

    def _original_logits(self, low: torch.Tensor, enc: _SamEncoded) -> torch.Tensor:
        """Low-res logits -> original pixels, as each model's own post-processing does it: SAM through the
        padded input (the padding is cut), SAM 2 directly (its input is the whole image, squashed)."""
        x = self._frame_logits(low, enc) if self.image["mode"] == "longest" else low
        return F.interpolate(x, size=enc.size, mode="bilinear", align_corners=False)

    # -------------------------------------------------------------------------------- predict
    @torch.no_grad()
    def predict(self, encoded: _SamEncoded, prompt: Prompt | None = None) -> StreamPrediction:
        prompt = prompt or Prompt()
        H, W = encoded.size
        if prompt.box is None and not prompt.clicks:
            empty = Annotation(W, H, masks=np.zeros((0, H, W), bool))
            return StreamPrediction(empty, probability=np.zeros((1, H, W), np.float32))
        low, iou = self._decode(encoded, prompt.box, prompt.clicks)
        logits = self._original_logits(low, encoded)[0, 0]
        mask = (logits > 0).cpu().numpy()  # SAM's mask threshold: logit 0
        prob = logits.sigmoid().cpu().numpy().astype(np.float32)[None]
        # SAM's own quality estimate; the IoU head is frozen, so it does not follow the adapter
        score = float(iou.clamp(0, 1))
        if mask.any():
            ann = Annotation.from_masks(mask[None], [int(prompt.label)], [score])
        else:
            ann = Annotation(W, H, masks=np.zeros((0, H, W), bool))
        return StreamPrediction(ann, probability=prob, extra={"iou_prediction": float(iou)})

    # ----------------------------------------------------------------------------------- loss
    def _targets(self, enc: _SamEncoded, target: Annotation, label: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The correction as (1, 1, h, w) soft coverage in model-input pixels and (H, W) bool in original
        pixels, cached for the update's epochs. Antialiased resizing keeps thin structures as partial
        coverage instead of dropping them, and focal + dice take soft targets as they are."""
        if enc._target is not None and enc._target[0] is target and enc._target[1] == label:
            return enc._target[2], enc._target[3]
        if (target.height, target.width) != enc.size:
            raise ValueError(f"the correction is {target.width}x{target.height}; the frame is "
                             f"{enc.size[1]}x{enc.size[0]}")
        dev = next(self.sam.parameters()).device
        full = torch.from_numpy(_union(target, label)).to(dev)
        frame = F.interpolate(full[None, None].float(), size=enc.resized, mode="bilinear", antialias=True,
                              align_corners=False).clamp(0, 1)
        enc._target = (target, label, frame, full)
        return frame, full

    def loss_and_fit(self, encoded: _SamEncoded, prompt: Prompt | None, target: Annotation
                     ) -> tuple[torch.Tensor, float | None]:
        """20 × focal + 1 × dice on the box-prompted mask, and the IoU of that same mask in original
        pixels (the stream's fit, without a second decoder pass).

        Clicks are left out on purpose: the adapter must produce the corrected mask from the box alone,
        which is all the next frame will get. Without a box, the correction's own box stands in: it is
        the box the stream will prompt the next frame with."""
        label = int(prompt.label) if prompt is not None else 0
        frame_t, full_t = self._targets(encoded, target, label)
        box = prompt.box if prompt is not None else None
        if box is None and full_t.any():
            ys, xs = torch.nonzero(full_t, as_tuple=True)
            box = np.array([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1], np.float32)
        if box is None:
            # nothing to prompt and nothing to find: the empty prediction is already right
            return torch.stack([(p * 0).sum() for p in self.adapter_parameters()]).sum(), 1.0
        low, _ = self._decode(encoded, box, ())
        logits = self._frame_logits(low, encoded)
        loss = FOCAL_WEIGHT * _sigmoid_focal(logits, frame_t) + DICE_WEIGHT * _dice(logits, frame_t)
        with torch.no_grad():
            pred = self._original_logits(low.detach(), encoded)[0, 0] > 0
            union = (pred | full_t).sum()
            fit = float((pred & full_t).sum() / union) if union else 1.0
        return loss, fit

    def loss(self, encoded: _SamEncoded, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        return self.loss_and_fit(encoded, prompt, target)[0]


# ------------------------------------------------------------------------------------------ CLIP
@dataclass
class _ClipEncoded:
    size: tuple[int, int]  # original (H, W)
    pixel_values: torch.Tensor


class ClipStreamModel(StreamModel):
    """Zero-shot CLIP as a stream classifier: the image is scored against the class names' text
    embeddings ("a photo of a {name}", computed once), with LoRA on the image encoder's attention
    query/key/value projections; the text encoder, projections and logit scale stay frozen.

    The LIT paper used rank 8 for classification (4 for segmentation); the rank here is whatever the
    caller's :class:`AdapterConfig` says. The loss is plain cross-entropy over the class prompts (no
    margin term): with one image per update it already moves the corrected class to the top within a
    few epochs, and the session stops as soon as it is there.

    ``model``: a transformers ``CLIPModel``, adapted in place. The class embeddings come from
    ``text_embeds`` (C, projection_dim) when given, else from ``tokenizer``. ``image``: resize settings
    as :func:`._hf_base.image_settings` returns them (default: the vision config's size, CLIP's mean/std).
    """

    family: ClassVar[str] = "clip"

    def __init__(self, model: nn.Module, classes: Sequence[str], adapter: AdapterConfig | None = None, *,
                 tokenizer: Any = None, text_embeds: torch.Tensor | None = None, prompt: str = "a photo of a {}",
                 image: dict[str, Any] | None = None, processor: Any = None) -> None:
        if getattr(getattr(model, "config", None), "model_type", None) != "clip":
            raise TypeError(f"expected a transformers CLIPModel, got {type(model).__name__}")
        super().__init__("classification", classes, adapter)
        self.clip = model.eval()
        self.prompt = prompt
        if image is None:
            proc = _processor_dict(processor)
            if proc is None:
                size = int(model.config.vision_config.image_size)
                proc = {"size": {"height": size, "width": size}, "image_mean": CLIP_MEAN, "image_std": CLIP_STD}
            image = image_settings(proc, "classification", None)
        self.image = image
        dim = int(model.config.projection_dim)
        if text_embeds is None:
            if tokenizer is None:
                raise ValueError("CLIP needs its tokenizer (or precomputed text_embeds) to embed the class names")
            text_embeds = self._embed_classes(tokenizer)
        if tuple(text_embeds.shape) != (len(self.classes), dim):
            raise ValueError(f"text_embeds has shape {tuple(text_embeds.shape)}, expected {(len(self.classes), dim)}")
        p = next(model.parameters())
        self.register_buffer("text_embeds", nn.functional.normalize(text_embeds.detach().float(), dim=-1).to(p.device))
        cfg = self.adapter_config
        _lora.inject_lora(self, cfg.target_modules or CLIP_TARGETS, rank=cfg.rank, alpha=cfg.alpha,
                          dropout=cfg.dropout)
        self.eval()

    @torch.no_grad()
    def _embed_classes(self, tokenizer: Any) -> torch.Tensor:
        enc = tokenizer([self.prompt.format(c) for c in self.classes], padding=True, return_tensors="pt")
        dev = next(self.clip.parameters()).device
        emb = self.clip.get_text_features(**{k: v.to(dev) for k, v in enc.items()})
        return getattr(emb, "pooler_output", emb).float()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], classes: Sequence[str],
                        adapter: AdapterConfig | None = None, *, tokenizer: Any = None, processor: Any = None,
                        prompt: str = "a photo of a {}", device: str | torch.device | None = None,
                        **hf_kwargs: Any) -> ClipStreamModel:
        """A local ``save_pretrained`` folder or a Hub name (``openai/clip-vit-base-patch32``)."""
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(name_or_path, **hf_kwargs)
        # like the trainer (TrainerConfig.device=None): the GPU when there is one
        model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if processor is None:
            processor = _load_processor_dict(name_or_path)
        return cls(model, classes, adapter, tokenizer=tokenizer, prompt=prompt, processor=processor)

    @classmethod
    def from_live(cls, live: Any, adapter: AdapterConfig | None = None) -> ClipStreamModel:
        """A trained ``hf-clip`` model: its CLIP weights (its own LoRA merged in), class embeddings,
        prompt and resize settings. Rebuilt from config and weights rather than deep-copied, so the
        live session's model (and any hooks on it) stays as it is and keeps training."""
        from transformers import CLIPModel

        model = CLIPModel(live.hf_config_object())
        model.load_state_dict(_merged_state(live.core))
        model.to(live.device).eval()
        return cls(model, live.classes, adapter, text_embeds=live.text_embeds.detach().clone(),
                   prompt=live.options.get("prompt", "a photo of a {}"), image=dict(live.image))

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> _ClipEncoded:
        image = _check_image(image)
        p = next(self.clip.parameters())
        batch = make_batch([image], self.image, p.device)
        return _ClipEncoded(image.shape[:2], batch.pixel_values.to(p.dtype))

    def _logits(self, enc: _ClipEncoded) -> torch.Tensor:
        emb = self.clip.get_image_features(pixel_values=enc.pixel_values)
        emb = nn.functional.normalize(getattr(emb, "pooler_output", emb).float(), dim=-1)
        scale = self.clip.logit_scale.float().exp().clamp(max=100)
        return scale * emb @ self.text_embeds.T

    @torch.no_grad()
    def predict(self, encoded: _ClipEncoded, prompt: Prompt | None = None) -> StreamPrediction:
        H, W = encoded.size
        p = self._logits(encoded).softmax(-1)[0].cpu().numpy()
        return StreamPrediction(Annotation(W, H, category=int(p.argmax()), category_scores=p))

    def loss_and_fit(self, encoded: _ClipEncoded, prompt: Prompt | None, target: Annotation
                     ) -> tuple[torch.Tensor, float | None]:
        if target.category is None:
            raise ValueError("a classification correction needs a category")
        logits = self._logits(encoded)
        loss = F.cross_entropy(logits, torch.tensor([int(target.category)], device=logits.device))
        return loss, float(int(logits.detach().argmax(-1)) == int(target.category))

    def loss(self, encoded: _ClipEncoded, prompt: Prompt | None, target: Annotation) -> torch.Tensor:
        return self.loss_and_fit(encoded, prompt, target)[0]


def _merged_state(core: nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict in plain transformers names, any peft LoRA folded into the base weights."""
    state = {k.replace(".base_layer.", "."): v.detach().clone() for k, v in core.state_dict().items()
             if "lora_" not in k}
    layers = set(_lora.lora_layers(core))  # empty without LoRA; peft is only imported if there is some
    for name, layer in core.named_modules():
        if layer in layers:
            for adapter in layer.active_adapters:
                state[f"{name}.weight"] += layer.get_delta_weight(adapter).to(state[f"{name}.weight"].dtype)
    return state


# --------------------------------------------------------------------------------------- factory
def create_hf_stream_model(
    spec: Any, task: str | None = None, classes: Sequence[str] | None = None,
    adapter: AdapterConfig | None = None, **kwargs: Any,
) -> StreamModel:
    """A stream model from a trained ``hf-clip`` model, a transformers model instance (``SamModel``,
    ``Sam2Model``, ``CLIPModel``; adapted in place) or a checkpoint name / local folder.

    ``kwargs`` go to the family: ``processor`` (both), ``tokenizer`` and ``prompt`` (CLIP), and for a
    checkpoint ``device`` plus anything ``from_pretrained`` takes.
    """
    from ._hf_classification import HFClipModel
    from .base import LiveModel

    if isinstance(spec, HFClipModel):
        _check(task, "classification", spec.family)
        if classes is not None and list(spec.classes) != [str(c) for c in classes]:
            raise ValueError(f"the model knows classes {spec.classes}, not {list(classes)}")
        if kwargs:
            raise TypeError(f"unexpected arguments for a trained hf-clip model: {sorted(kwargs)}")
        return ClipStreamModel.from_live(spec, adapter)
    if isinstance(spec, LiveModel):
        raise ValueError(f"the correction mode takes the embedded model, SAM, SAM 2 or CLIP; not a "
                         f"{spec.family!r} model")
    if isinstance(spec, nn.Module):
        model_type = getattr(getattr(spec, "config", None), "model_type", None)
        if _sam_kind(spec) is not None:
            _check(task, "segmentation", _sam_kind(spec))
            return SamStreamModel(spec, _sam_classes(classes), adapter, **kwargs)
        if model_type == "clip":
            _check(task, "classification", model_type)
            return ClipStreamModel(spec, _clip_classes(classes), adapter, **kwargs)
        raise ValueError(f"unsupported model {type(spec).__name__} (model_type {model_type!r}); the correction "
                         f"mode supports model types {', '.join(SUPPORTED_TYPES)}")
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"cannot make a stream model from {type(spec).__name__}")
    model_type = hub_config(spec).model_type
    if model_type in SAM_TYPES:
        _check(task, "segmentation", SAM_TYPES[model_type])
        return SamStreamModel.from_pretrained(spec, _sam_classes(classes), adapter, **kwargs)
    if model_type == "clip":
        _check(task, "classification", model_type)
        return ClipStreamModel.from_pretrained(spec, _clip_classes(classes), adapter, **kwargs)
    raise ValueError(f"{spec} is a {model_type!r} model; the correction mode supports model types "
                     f"{', '.join(SUPPORTED_TYPES)} (and livetrain's embedded model)")


def _check(task: str | None, expected: str, what: str) -> None:
    if task is not None and task != expected:
        raise ValueError(f"a {what!r} model does {expected}, not {task!r}")


def _sam_classes(classes: Sequence[str] | None) -> Sequence[str]:
    return ("object",) if classes is None else classes


def _clip_classes(classes: Sequence[str] | None) -> Sequence[str]:
    if not classes:
        raise ValueError("zero-shot CLIP needs the class names")
    return classes


__all__ = ["ClipStreamModel", "SamStreamModel", "create_hf_stream_model", "sam_image_settings"]
