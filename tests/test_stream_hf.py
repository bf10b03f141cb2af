"""SAM, SAM 2 and CLIP in the correction mode, on tiny random transformers models (no network, no downloads).

The models are built from small configs; the folder tests write them with ``save_pretrained`` and load
them back through ``create_stream_model`` exactly as a user's checkpoint would be.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported anywhere below

from pathlib import Path

import numpy as np
import pytest
import torch

from tests import _require

transformers = _require.module("transformers")
_require.module("peft")

from livetrain_widgets.engine.annotation import Annotation  # noqa: E402
from livetrain_widgets.engine.stream import StreamSession  # noqa: E402
from livetrain_widgets.models.stream import AdapterConfig, Click, Prompt, create_stream_model  # noqa: E402
from tests.hf_fixtures import _offline, _one_thread  # noqa: E402, F401  (autouse fixtures for this module)
from tests.hf_fixtures import clip_tokenizer as _clip_tokenizer  # noqa: E402

T = transformers
# peft 0.21 still asks transformers 5 for the deprecated name; nothing this code can change
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
H, W = 75, 101  # odd and non-square: masks must come back in exactly these pixels
BOX = np.array([20, 15, 80, 60], np.float32)


# ----------------------------------------------------------------------------------- tiny models
def _lively(model: torch.nn.Module) -> torch.nn.Module:
    """transformers' init (std 0.02) leaves a 16-wide mask decoder's logits near 1e-5, where every pixel is
    a coin flip; torch's default init gives logits of order 0.1, so masks and their changes mean something."""
    for mod in model.mask_decoder.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            mod.reset_parameters()
    return model


def _tiny_sam() -> torch.nn.Module:
    cfg = T.SamConfig(
        vision_config=dict(hidden_size=16, output_channels=16, num_hidden_layers=1, num_attention_heads=2,
                           image_size=64, patch_size=8, window_size=4, global_attn_indexes=[0], num_pos_feats=8,
                           mlp_dim=32, initializer_range=0.02),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    return _lively(T.SamModel(cfg))


def _tiny_sam2() -> torch.nn.Module:
    # the global-attention block must not open a pooled stage (Hiera's window arithmetic divides by it)
    hiera = T.Sam2HieraDetConfig(hidden_size=8, image_size=[64, 64], blocks_per_stage=[1, 1, 1, 2],
                                 embed_dim_per_stage=[8, 16, 32, 64], num_attention_heads_per_stage=[1, 1, 1, 1],
                                 window_size_per_stage=[4, 2, 2, 2], global_attention_blocks=[4],
                                 window_positional_embedding_background_size=[2, 2])
    cfg = T.Sam2Config(
        vision_config=dict(backbone_config=hiera, backbone_channel_list=[64, 32, 16, 8],
                           backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=16),
        prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=16, mlp_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                 iou_head_hidden_dim=16),
    )
    return _lively(T.Sam2Model(cfg))


BUILDERS = {"sam": _tiny_sam, "sam2": _tiny_sam2}


def _tiny_clip(tok: object) -> torch.nn.Module:
    cfg = T.CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    return T.CLIPModel(cfg)


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _target() -> Annotation:
    """A blob inside BOX, not what a random decoder predicts."""
    yy, xx = np.ogrid[:H, :W]
    mask = ((yy - 40) / 14) ** 2 + ((xx - 45) / 20) ** 2 <= 1
    return Annotation.from_masks(mask[None], [0])


def _sam_stream(kind: str, **adapter: object) -> object:
    from livetrain_widgets.models._stream_hf import SamStreamModel

    return SamStreamModel(BUILDERS[kind](), ["cell"], AdapterConfig(**adapter))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- SAM
@pytest.mark.parametrize("kind", ["sam", "sam2"])
def test_sam_predicts_in_original_pixels_and_takes_clicks(kind: str) -> None:
    model = _sam_stream(kind)
    assert model.family == kind and model.promptable and model.task == "segmentation"
    enc = model.encode(_image(0))
    pred = model.predict(enc, Prompt(box=BOX))
    ann = pred.annotation
    assert (ann.width, ann.height) == (W, H)
    assert ann.masks is not None and ann.masks.shape[1:] == (H, W)
    assert pred.probability is not None and pred.probability.shape == (1, H, W)
    assert pred.probability.dtype == np.float32
    sure = np.abs(pred.probability[0] - 0.5) > 1e-6  # the mask is logit > 0, i.e. probability > 0.5
    assert np.array_equal((pred.probability[0] > 0.5)[sure], ann.masks.any(0)[sure])

    seen: list[dict[str, object]] = []
    hook = model.sam.prompt_encoder.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    try:
        clicked = model.predict(enc, Prompt(box=BOX, clicks=(Click(30, 30), Click(70, 50, positive=False))))
    finally:
        hook.remove()
    points, labels = seen[-1]["input_points"], seen[-1]["input_labels"]
    assert tuple(points.shape) == (1, 1, 2, 2) and labels.tolist() == [[[1, 0]]]
    # clicks go to the model's 64-pixel input: SAM keeps the aspect ratio (75 rows -> 48), SAM 2 squashes
    rh = int(H * 64 / W + 0.5) if kind == "sam" else 64
    assert np.allclose(points[0, 0, 0].numpy(), [30 * 64 / W, 30 * rh / H])
    assert not np.array_equal(clicked.probability, pred.probability)

    nothing = model.predict(enc, Prompt())
    assert len(nothing.annotation) == 0 and nothing.probability.shape == (1, H, W)


@pytest.mark.parametrize("kind", ["sam", "sam2"])
def test_sam_adapter_is_lora_on_decoder_qkv_only(kind: str) -> None:
    model = _sam_stream(kind, rank=4)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert all(n.startswith("sam.mask_decoder.transformer.") for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trainable} == {"q_proj", "k_proj", "v_proj"}
    # 2 blocks × 3 attentions + the final one, each with q, k, v: rank × (in + out) per projection
    expected = 0
    for name, mod in model.named_modules():
        if name.startswith("sam.mask_decoder.transformer.") and name.endswith(("q_proj", "k_proj", "v_proj")):
            expected += 4 * (mod.in_features + mod.out_features)
    assert model.num_adapter_parameters() == expected > 0


@pytest.mark.parametrize("kind", ["sam", "sam2"])
def test_sam_stream_session_update_reset_and_reload(kind: str, tmp_path: Path) -> None:
    # fit > 1 never stops an update early, so the loss curve of the whole update is seen
    model = _sam_stream(kind, epochs=12, patience=12, fit=2.0, lr=1e-2)
    frames = [_image(1), _image(2)]
    target = _target()
    enc1 = model.encode(frames[1])
    next_box = target.boxes[0]
    base1 = model.predict(enc1, Prompt(box=next_box)).probability
    vision = {n: p.detach().clone() for n, p in model.sam.vision_encoder.named_parameters()}

    session = StreamSession(model, frames)
    session.set_box(BOX)
    first = session.prediction()
    assert first.annotation.width == W
    session.click(45, 40, positive=True)
    rec = session.correct(target)
    assert rec.corrected and rec.full and rec.update is not None
    upd = session.updates[-1]
    assert upd.epochs > 1 and upd.loss_last < upd.loss_first
    assert all(torch.equal(p, vision[n]) for n, p in model.sam.vision_encoder.named_parameters())

    adapted1 = session.prediction().probability  # frame 1, prompted with the corrected frame's box
    assert not np.array_equal(adapted1, base1)
    session.save_adapter(tmp_path / "cells")
    session.reset_adapter()
    assert np.array_equal(session.prediction().probability, base1)
    session.load_adapter(tmp_path / "cells")
    assert np.array_equal(session.prediction().probability, adapted1)


def test_sam_loss_without_box_prompts_with_the_correction() -> None:
    model = _sam_stream("sam")
    enc = model.encode(_image(3))
    model.train()
    loss, fit = model.loss_and_fit(enc, Prompt(), _target())
    loss.backward()
    assert loss.item() > 0 and 0.0 <= fit < 1.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.adapter_parameters())
    model.eval()


# ------------------------------------------------------------------------------------ checkpoints
def test_create_stream_model_from_a_saved_sam_folder(tmp_path: Path) -> None:
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    from livetrain_widgets.models._stream_hf import SamStreamModel

    _tiny_sam().save_pretrained(str(tmp_path / "sam"))
    SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}).save_pretrained(
        str(tmp_path / "sam"))
    model = create_stream_model(str(tmp_path / "sam"), task="segmentation", classes=["cell"])
    assert isinstance(model, SamStreamModel) and model.family == "sam" and model.classes == ["cell"]
    assert model.image["mode"] == "longest" and model.image["size"] == 64
    pred = model.predict(model.encode(_image(4)), Prompt(box=BOX))
    assert pred.probability.shape == (1, H, W)

    with pytest.raises(ValueError, match="does segmentation"):
        create_stream_model(str(tmp_path / "sam"), task="classification", classes=["cell"])
    with pytest.raises(ValueError, match="one object class"):
        create_stream_model(str(tmp_path / "sam"), task="segmentation", classes=["a", "b"])

    T.ViTConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                image_size=32, patch_size=8).save_pretrained(str(tmp_path / "vit"))
    with pytest.raises(ValueError, match="supports model types sam, sam2"):
        create_stream_model(str(tmp_path / "vit"), task="classification", classes=["a"])


def test_a_sam2_video_checkpoint_loads_as_the_image_model(tmp_path: Path) -> None:
    """The Hub's SAM 2.1 repos are ``sam2_video`` checkpoints; the correction mode reads them into Sam2Model."""
    kw = {k: v for k, v in _tiny_sam2().config.to_dict().items()
          if k in ("vision_config", "prompt_encoder_config", "mask_decoder_config")}
    T.Sam2VideoModel(T.Sam2VideoConfig(**kw)).save_pretrained(str(tmp_path / "sam2.1"))
    model = create_stream_model(str(tmp_path / "sam2.1"), task="segmentation", classes=["cell"])
    assert model.family == "sam2" and model.image["mode"] == "square"
    assert model.predict(model.encode(_image(5)), Prompt(box=BOX)).probability.shape == (1, H, W)


# ---------------------------------------------------------------------------------------- CLIP
def test_clip_correction_ranks_the_class_higher() -> None:
    from livetrain_widgets.models._stream_hf import ClipStreamModel, create_hf_stream_model

    classes = ["cat", "dog", "bird"]
    tok = _clip_tokenizer()
    model = create_hf_stream_model(_tiny_clip(tok), task="classification", classes=classes,
                                adapter=AdapterConfig(rank=8, alpha=16, lr=1e-2), tokenizer=tok)
    assert isinstance(model, ClipStreamModel) and model.family == "clip"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and n.startswith("clip.vision_model.") for n in trainable)
    text = {n: p.detach().clone() for n, p in model.clip.text_model.named_parameters()}
    assert not any(p.requires_grad for p in model.clip.text_model.parameters())

    frames = [_image(10 + i, 30, 40) for i in range(3)]
    enc = model.encode(frames[0])
    before = model.predict(enc).annotation.category_scores
    c = int(np.argmin(before))

    session = StreamSession(model, frames)
    assert session.prediction().annotation.category == int(np.argmax(before))
    session.correct(Annotation(40, 30, category=c))
    upd = session.updates[-1]
    assert upd.epochs >= 1 and upd.fit == 1.0  # the session stops once c is on top
    after = model.predict(enc).annotation
    assert after.category_scores[c] > before[c] and after.category == c
    assert all(torch.equal(p, text[n]) for n, p in model.clip.text_model.named_parameters())
    assert session.prediction().annotation.width == 40  # the next frame predicts with the adapter


def test_clip_from_a_trained_hf_clip_model_keeps_its_predictions(tmp_path: Path) -> None:
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from livetrain_widgets.models.hf import create_hf_model

    tok = _clip_tokenizer()
    folder = tmp_path / "clip"
    _tiny_clip(tok).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        str(folder))
    live = create_hf_model(str(folder), "classification", ["cat", "dog"], lora=True)
    with torch.no_grad():  # a "trained" LoRA: non-zero B, so merging it into the copy matters
        for n, p in live.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    live.eval()
    image = _image(20, 30, 40)
    want = live.predict([image])[0].category_scores

    model = create_stream_model(live, task="classification")
    got = model.predict(model.encode(image)).annotation.category_scores
    assert np.allclose(got, want, atol=1e-5)
    assert model.classes == ["cat", "dog"] and model is not live
    # the live model is untouched: still its own LoRA only
    assert all("lora_" not in n or ".default." in n for n, _ in live.named_parameters())
    assert np.allclose(live.predict([image])[0].category_scores, want)
