"""Hugging Face families on tiny random checkpoints written to tmp folders (no network, no downloads).

Each architecture is built from a small config, saved with transformers' ``save_pretrained`` together
with an image processor (and a tokenizer built from a vocabulary written here), then loaded through
``create_hf_model`` exactly as a user's Hub checkpoint would be.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported anywhere below

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import _require

transformers = _require.module("transformers")
_require.module("peft")

from livetrain_widgets.engine.annotation import Annotation  # noqa: E402
from livetrain_widgets.models import create_model, load_model  # noqa: E402
from livetrain_widgets.models.hf import create_hf_model  # noqa: E402
from tests.hf_fixtures import _offline, _one_thread  # noqa: E402, F401  (autouse fixtures for this module)
from tests.hf_fixtures import clip_tokenizer as _clip_tokenizer  # noqa: E402

T = transformers
# peft 0.21 still asks transformers 5 for the deprecated name; nothing this code can change
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
H, W = 97, 131  # non-square on purpose: coordinates must come back in these pixels
CLASSES = ["cat", "dog"]


# ----------------------------------------------------------------------------- tiny checkpoints
def _processor(module: str, cls: str, **kw: object) -> object:
    mod = __import__(f"transformers.models.{module}.image_processing_pil_{module}", fromlist=[cls])
    return getattr(mod, cls)(**kw)


def _swin(**kw: object) -> object:
    return T.SwinConfig(image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                        window_size=4, **kw)


def _bert_tokenizer() -> object:
    """WordPiece vocab with BERT's ids for [CLS]/[SEP]/"."/"?": Grounding DINO hard-codes them."""
    vocab = [f"[unused{i}]" for i in range(1100)]
    for i, tok in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".",
                   1029: "?"}.items():
        vocab[i] = tok
    for i, word in enumerate(["cat", "dog", "bird"]):
        vocab[200 + i] = word
    return T.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})


def _rt_detr() -> tuple[object, list[object]]:
    backbone = T.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                                    out_features=["stage2", "stage3", "stage4"])
    cfg = T.RTDetrConfig(backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 16, 32],
                         encoder_ffn_dim=32, encoder_attention_heads=2, d_model=16,
                         decoder_in_channels=[16] * 3, decoder_ffn_dim=32, decoder_layers=1,
                         decoder_attention_heads=2, num_queries=20, num_denoising=10, num_labels=5)
    proc = _processor("rt_detr", "RTDetrImageProcessorPil", size={"height": 64, "width": 64})
    return T.RTDetrForObjectDetection(cfg), [proc]


def _rt_detr_v2() -> tuple[object, list[object]]:
    model, extras = _rt_detr()
    kw = {k: v for k, v in model.config.to_dict().items() if k != "model_type"}
    cfg = T.RTDetrV2Config(**{**kw, "decoder_layers": 2})  # v2 ties its per-layer box heads: needs two
    return T.RTDetrV2ForObjectDetection(cfg), extras


def _conditional_detr() -> tuple[object, list[object]]:
    backbone = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1],
                              out_features=["stage4"])
    cfg = T.ConditionalDetrConfig(backbone_config=backbone, use_timm_backbone=False,
                                  use_pretrained_backbone=False, num_queries=20, encoder_layers=1,
                                  decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=16,
                                  encoder_attention_heads=2, decoder_attention_heads=2, num_labels=5)
    proc = _processor("conditional_detr", "ConditionalDetrImageProcessorPil",
                      size={"shortest_edge": 64, "longest_edge": 96})
    return T.ConditionalDetrForObjectDetection(cfg), [proc]


def _grounding(mm: bool) -> Callable[[], tuple[object, list[object]]]:
    def build() -> tuple[object, list[object]]:
        text = T.BertConfig(vocab_size=1100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32)
        kw = dict(backbone_config=_swin(out_indices=[2, 3, 4]), text_config=text, num_queries=20,
                  encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=32,
                  encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=32,
                  encoder_n_points=2, decoder_n_points=2)
        if mm:
            model = T.MMGroundingDinoForObjectDetection(T.MMGroundingDinoConfig(**kw))
        else:
            model = T.GroundingDinoForObjectDetection(T.GroundingDinoConfig(**kw))
        proc = _processor("grounding_dino", "GroundingDinoImageProcessorPil",
                          size={"shortest_edge": 64, "longest_edge": 96})
        return model, [proc, _bert_tokenizer()]

    return build


def _mask2former() -> tuple[object, list[object]]:
    swin = _swin(out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = T.Mask2FormerConfig(backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
                              encoder_feedforward_dim=32,
                              encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=32,
                              num_queries=10, train_num_points=256, num_labels=7)
    proc = _processor("mask2former", "Mask2FormerImageProcessorPil",
                      size={"shortest_edge": 64, "longest_edge": 96})
    return T.Mask2FormerForUniversalSegmentation(cfg), [proc]


def _segformer() -> tuple[object, list[object]]:
    cfg = T.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                            patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[2, 2],
                            decoder_hidden_size=16, num_labels=4)
    proc = _processor("segformer", "SegformerImageProcessorPil", size={"height": 64, "width": 64})
    return T.SegformerForSemanticSegmentation(cfg), [proc]


def _clip() -> tuple[object, list[object]]:
    tok = _clip_tokenizer()
    cfg = T.CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    proc = _processor("clip", "CLIPImageProcessorPil", size={"shortest_edge": 32},
                      crop_size={"height": 32, "width": 32})
    return T.CLIPModel(cfg), [proc, tok]


def _vit() -> tuple[object, list[object]]:
    cfg = T.ViTConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                      image_size=32, patch_size=8, num_labels=3)
    proc = _processor("vit", "ViTImageProcessorPil", size={"height": 32, "width": 32})
    return T.ViTForImageClassification(cfg), [proc]


#: name -> (builder, task, create options)
SPECS: dict[str, tuple[Callable[[], tuple[object, list[object]]], str, dict[str, object]]] = {
    "rt_detr": (_rt_detr, "detection", {}),
    "rt_detr_v2": (_rt_detr_v2, "detection", {}),
    "conditional_detr": (_conditional_detr, "detection", {}),
    "grounding_dino": (_grounding(False), "detection", {}),
    "mm_grounding_dino": (_grounding(True), "detection", {}),
    "mask2former": (_mask2former, "segmentation", {}),
    "mask2former_semantic": (_mask2former, "segmentation", {"mode": "semantic"}),
    "segformer": (_segformer, "segmentation", {}),
    "clip": (_clip, "classification", {}),
    "vit": (_vit, "classification", {}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    made: dict[str, str] = {}

    def get(name: str) -> str:
        builder = SPECS[name][0]
        key = builder.__name__ if name != "mm_grounding_dino" else name
        if key not in made:
            torch.manual_seed(0)
            model, extras = builder()
            folder = tmp_path_factory.mktemp(key)
            model.save_pretrained(str(folder))
            for extra in extras:
                extra.save_pretrained(str(folder))
            made[key] = str(folder)
        return made[key]

    return get


def _sample(task: str, seed: int = 0) -> tuple[np.ndarray, Annotation]:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    masks = np.zeros((2, H, W), bool)
    masks[0, 10:50, 15:70] = True
    masks[1, 55:90, 80:125] = True
    img[masks[0]] = (220, 40, 40)
    img[masks[1]] = (40, 40, 220)
    if task == "classification":
        return img, Annotation(W, H, category=seed % 2)
    ann = Annotation.from_masks(masks, [0, 1])
    if task == "detection":
        ann = Annotation(W, H, boxes=ann.boxes, labels=ann.labels)
    return img, ann


def _make(checkpoints: Callable[[str], str], name: str, **kw: object) -> object:
    _, task, options = SPECS[name]
    extra = {"min_score": 0.0} if task != "classification" else {}
    return create_hf_model(checkpoints(name), task, CLASSES, **{**options, **extra, **kw})


def _check_predictions(preds: list[Annotation], task: str) -> None:
    assert len(preds) == 2
    for p in preds:
        assert isinstance(p, Annotation)
        assert (p.width, p.height) == (W, H)
        if task == "classification":
            assert p.category in (0, 1)
            assert p.category_scores is not None and p.category_scores.shape == (2,)
            assert abs(float(p.category_scores.sum()) - 1) < 1e-4
            continue
        assert p.scores is not None and len(p.scores) == len(p.boxes)
        assert np.all((p.scores >= 0) & (p.scores <= 1))
        assert np.all((p.labels >= 0) & (p.labels < len(CLASSES)))
        assert np.all(p.boxes[:, [0, 2]] >= 0) and np.all(p.boxes[:, [0, 2]] <= W)
        assert np.all(p.boxes[:, [1, 3]] >= 0) and np.all(p.boxes[:, [1, 3]] <= H)
        if task == "segmentation":
            assert p.masks is not None and p.masks.shape == (len(p.boxes), H, W)
        else:
            assert len(p.boxes) > 0  # min_score 0: a random detector still ranks its queries


def _same(a: list[Annotation], b: list[Annotation]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_array_equal(x.labels, y.labels)
        if x.scores is not None:
            np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)
        if x.masks is not None:
            assert y.masks is not None and (x.masks != y.masks).sum() <= 1e-3 * x.masks.size
        assert x.category == y.category
        if x.category_scores is not None:
            np.testing.assert_allclose(x.category_scores, y.category_scores, atol=1e-5)


# ---------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(SPECS))
def test_train_predict_and_round_trip(checkpoints: Callable[[str], str], name: str, tmp_path: Path) -> None:
    task = SPECS[name][1]
    model = _make(checkpoints, name, hflip=False)
    data = [_sample(task, 0), _sample(task, 1)]
    images, targets = [d[0] for d in data], [d[1] for d in data]
    opt = torch.optim.AdamW(model.param_groups(1e-3))
    model.train()
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    losses = []
    for _ in range(4):
        loss = model.loss(images, targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert len(set(losses)) > 1, losses
    after = [p for p in model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))

    model.eval()
    with torch.no_grad():
        preds = model.predict(images)
    _check_predictions(preds, task)

    folder = model.save_pretrained(tmp_path / "saved")
    assert (folder / "hf" / "config.json").is_file() and (folder / "hf" / "model.safetensors").is_file()
    assert (folder / "hf" / "preprocessor_config.json").is_file()
    if name in ("grounding_dino", "mm_grounding_dino", "clip"):
        assert (folder / "hf" / "tokenizer_config.json").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    again = load_model(folder).eval()
    with torch.no_grad():
        _same(preds, again.predict(images))
    # the engine's ``create_model`` finds the saved folder too, and checks classes
    assert type(create_model(folder, task, CLASSES)) is type(model)
    # the transformers export opens with plain from_pretrained
    config = T.AutoConfig.from_pretrained(str(folder / "hf"))
    assert config.model_type == model.hf_config["model_type"]


@pytest.mark.parametrize("name", ["rt_detr", "grounding_dino", "mask2former", "segformer", "clip", "vit"])
def test_lora(checkpoints: Callable[[str], str], name: str, tmp_path: Path) -> None:
    task = SPECS[name][1]
    full = _make(checkpoints, name).trainable_parameter_count()
    model = _make(checkpoints, name, lora={"r": 4}, hflip=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    count = model.trainable_parameter_count()
    print(f"{name}: LoRA trains {count} of {full} parameters")
    assert 0 < count < full
    assert any("lora_" in n for n in trainable)
    heads = ("class_embed", "bbox_embed", "enc_score_head", "enc_bbox_head", "denoising_class_embed",
             "class_predictor", "classifier", "logit_scale", "visual_projection")
    assert all("lora_" in n or any(h in n for h in heads) for n in trainable), trainable
    assert not any("text_model" in n or "text_backbone" in n for n in trainable)

    img, ann = _sample(task)
    opt = torch.optim.AdamW(model.param_groups(1e-2))
    model.train()
    for _ in range(2):
        loss = model.loss([img], [ann])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss)
    model.eval()
    with torch.no_grad():
        preds = model.predict([img, img])

    # trainer checkpoints: state_dict into a fresh model rebuilt from the config
    fresh = type(model).from_config(model.config())
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    with torch.no_grad():
        _same(preds, fresh.predict([img, img]))
    # export: LoRA merged into the transformers folder, reload predicts the same
    again = load_model(model.save_pretrained(tmp_path / "saved")).eval()
    assert again.lora == model.lora
    with torch.no_grad():
        _same(preds, again.predict([img, img]))


def test_param_groups_give_backbone_a_smaller_rate(checkpoints: Callable[[str], str]) -> None:
    model = _make(checkpoints, "rt_detr")
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_grounding_dino_prompt_maps_phrases_to_classes(checkpoints: Callable[[str], str]) -> None:
    model = _make(checkpoints, "grounding_dino")
    # "cat. dog." -> [CLS] cat . dog . [SEP]: one token per class, in class order
    assert model.extra["input_ids"] == [101, 200, 1012, 201, 1012, 102]
    assert model.label_map.tolist() == [[False, True, False, False, False, False],
                                        [False, False, False, True, False, False]]
    # a dot inside a name would split it into two phrases: it becomes a space
    dotted = create_hf_model(checkpoints("grounding_dino"), "detection", ["Cat.dog", "bird"])
    assert dotted.extra["input_ids"] == [101, 200, 201, 1012, 202, 1012, 102]
    assert dotted.label_map.sum(1).tolist() == [2, 1]


def test_wrong_task_and_options_are_refused(checkpoints: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="for detection, not segmentation"):
        create_hf_model(checkpoints("rt_detr"), "segmentation", CLASSES)
    with pytest.raises(ValueError, match="unknown options"):
        create_hf_model(checkpoints("vit"), "classification", CLASSES, no_such_option=1)
    with pytest.raises(ValueError, match="unknown LoRA settings"):
        create_hf_model(checkpoints("vit"), "classification", CLASSES, lora={"rank": 4})


def test_canvas_mapping_round_trips_boxes_and_masks() -> None:
    """Targets go onto the padded canvas and predictions come back through it: the two must agree
    for every image of a batch with mixed sizes (the second one is padded)."""
    from livetrain_widgets.models._hf_base import flip, make_batch, resize_masks, to_original
    from livetrain_widgets.models._hf_detection import decode_boxes, encode_boxes

    cfg = {"mean": [0.5] * 3, "std": [0.5] * 3, "rescale": 1 / 255, "fixed": None,
           "shortest_edge": 64, "longest_edge": 96}
    sizes = [(H, W), (50, 200)]
    batch = make_batch([np.zeros((*s, 3), np.uint8) for s in sizes], cfg, torch.device("cpu"))
    assert batch.canvas[0] % 32 == 0 and batch.canvas[1] % 32 == 0
    for i, (h, w) in enumerate(sizes):
        masks = np.zeros((1, h, w), bool)
        masks[0, h // 5 : h // 2, w // 3 : w - 3] = True
        ann = Annotation.from_masks(masks, [1])
        back = decode_boxes(encode_boxes(ann, batch.sizes[i], batch.canvas), batch.canvas_in_original(i), (h, w))
        np.testing.assert_allclose(back.numpy(), ann.boxes, atol=1.5)
        canvas_masks = resize_masks(masks, batch.sizes[i], batch.canvas)
        again = to_original(canvas_masks, batch, i, mode="nearest-exact")[0].numpy() > 0.5
        assert (again & masks[0]).sum() / (again | masks[0]).sum() > 0.9
        # padding is marked in the pixel mask
        assert batch.pixel_mask[i].sum() == batch.sizes[i][0] * batch.sizes[i][1]
        # a flip moves boxes with the pixels
        _, flipped = flip(np.zeros((h, w, 3), np.uint8), ann)
        np.testing.assert_allclose(flipped.boxes, Annotation.from_masks(flipped.masks, [1]).boxes)


def test_zero_shot_static_strategy_of_the_study(checkpoints: Callable[[str], str]) -> None:
    """`livetrain simulate --strategy static:model=FOLDER,k=0`: a Grounding DINO prompted with the class
    names pre-labels every image from the first one and never trains (random weights here: the code path,
    not the quality)."""
    from livetrain_widgets.study.dataset import Item, StudyData
    from livetrain_widgets.study.simulate import Strategy, StudyConfig, run_study

    items = []
    for seed in range(4):
        img, ann = _sample("detection", seed)
        items.append(Item(f"s{seed}", lambda img=img: img, ann))
    data = StudyData("detection", list(CLASSES), items[:3], items[3:])
    cfg = StudyConfig(eval_at=[], offline_reference=False, threshold=0.0)
    res = run_study(data, [Strategy.parse(f"static:model={checkpoints('grounding_dino')},k=0"),
                           Strategy.parse("manual")], cfg, progress=False)
    zs = res["strategies"][f"static:model={checkpoints('grounding_dino')},k=0"]
    assert [r["offered"] for r in zs["records"]] == [True, True, True]
    assert {r["model_step"] for r in zs["records"]} == {0} and zs["retrains"] == []
    assert zs["heldout"] is not None and zs["summary"]["training_steps"] == 0
