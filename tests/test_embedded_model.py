"""The embedded EfficientNet-Lite0 model: shapes, coordinates, overfitting, odd inputs, save/load, BCCD."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.images import load_image
from livetrain_widgets.models import load_model
from livetrain_widgets.models._efficientnet import pretrained_weights_path
from livetrain_widgets.models._preprocess import _MEAN, _STD, prepare
from livetrain_widgets.models.embedded import EmbeddedModel
from tests import _require


def squares_image(h: int, w: int, boxes: np.ndarray) -> np.ndarray:
    img = np.full((h, w, 3), 30, np.uint8)
    for x0, y0, x1, y1 in boxes.astype(int):
        img[y0:y1, x0:x1] = (230, 200, 60)
    return img


def train(model: EmbeddedModel, images: list, targets: list, steps: int, lr: float, batch: int = 2) -> float:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.param_groups(lr))
    model.train()
    rng = np.random.default_rng(0)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = rng.choice(len(images), batch, replace=len(images) < batch)
        loss = model.loss([images[i] for i in idx], [targets[i] for i in idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter)


# ------------------------------------------------------------------------------------ backbone
def test_pretrained_backbone_weights_really_load() -> None:
    file = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    m = EmbeddedModel("detection", ["a"])
    assert torch.equal(m.backbone.blocks[3]._depthwise_conv.weight, file["_blocks.3._depthwise_conv.weight"])
    assert torch.equal(m.backbone.bn0.running_var, file["_bn0.running_var"])
    scratch = EmbeddedModel("detection", ["a"], pretrained=False)
    assert not torch.equal(scratch.backbone.conv_stem.weight, file["_conv_stem.weight"])


def test_backbone_endpoints_and_freezing() -> None:
    m = EmbeddedModel("segmentation", ["a", "b"])
    assert m.backbone.endpoints == {4: 2, 8: 4, 16: 10, 32: 15}
    feats = m.backbone(torch.zeros(1, 3, 64, 96))
    assert {s: tuple(f.shape[-2:]) for s, f in feats.items()} == {
        4: (16, 24), 8: (8, 12), 16: (4, 6), 32: (2, 3)
    }
    # stem and blocks up to stride 8 frozen; the rest trains at 0.1x
    assert not m.backbone.conv_stem.weight.requires_grad
    assert not any(p.requires_grad for p in m.backbone.blocks[4].parameters())
    assert all(p.requires_grad for p in m.backbone.blocks[5].parameters())
    groups = m.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    n_groups = sum(p.numel() for g in groups for p in g["params"])
    assert n_groups == sum(p.numel() for p in m.parameters() if p.requires_grad)
    m.train()
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert bns and not any(b.training for b in bns)
    assert m.head.training


# ------------------------------------------------------------------------------- preprocessing
def test_augmentation_moves_boxes_and_masks_with_the_pixels() -> None:
    H, W = 333, 517
    boxes = np.array([[40, 50, 100, 110], [300, 200, 340, 240], [420, 30, 500, 150]], np.float32)
    img = squares_image(H, W, boxes)
    masks = np.zeros((3, H, W), bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes.astype(int), strict=True):
        m[y0:y1, x0:x1] = True
    for seed in range(12):
        s = prepare(img, 256, boxes=boxes, labels=np.arange(3), masks=masks, rng=np.random.default_rng(seed))
        raw = (s.image * _STD + _MEAN)[0].numpy()  # red channel, 0..255
        assert s.instances is not None and s.instances.shape == raw.shape
        for i, (b, lab) in enumerate(zip(s.boxes, s.labels, strict=True)):
            x0, y0, x1, y1 = np.round(b).astype(int)
            inner = raw[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
            assert inner.size and inner.min() > 150, (seed, b)
            # the instance image follows the same geometry, with instance i + 1 of class labels[i]
            assert (s.instances[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] == i + 1).all()
            assert lab in (0, 1, 2)
        assert (raw[s.instances == 0] < 100).mean() > 0.95


# ----------------------------------------------------------------------------------- detection
def test_detection_overfits_boxes_in_original_pixels_on_odd_sized_image() -> None:
    H, W = 333, 517
    boxes = np.array([[40, 50, 100, 110], [300, 200, 340, 240], [420, 30, 500, 150]], np.float32)
    img = squares_image(H, W, boxes)
    ann = Annotation(W, H, boxes=boxes, labels=[0, 0, 1])
    torch.manual_seed(0)  # the new heads' initial weights
    m = EmbeddedModel("detection", ["square", "tall"], input_size=192, freeze_stride=32, augment=False, seed=0)
    train(m, [img], [ann], steps=100, lr=5e-3)
    pred = m.predict([img])[0]
    assert (pred.width, pred.height) == (W, H)
    assert pred.scores is not None and (pred.scores >= 0.05).all()
    top = pred.filter(0.3)
    assert len(top) == 3
    iou = box_iou(boxes, top.boxes)
    match = iou.argmax(1)
    assert sorted(match.tolist()) == [0, 1, 2]
    # A 192 px input: 1 input px = 2.7 px here, and the heatmap has one cell per 8 input px; within
    # 4 input px after 100 steps on one image (run-to-run thread scheduling moves it by a few px).
    assert np.abs(top.boxes[match] - boxes).max() < 11.0
    assert iou[np.arange(3), match].min() > 0.8
    assert top.labels[match].tolist() == [0, 0, 1]


def test_detection_loss_with_empty_images_and_no_objects() -> None:
    m = EmbeddedModel("detection", ["a", "b"], input_size=128)
    m.train()
    img = np.zeros((50, 70, 3), np.uint8)
    empty = Annotation(70, 50)
    loss = m.loss([img, img], [empty, empty])
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    one = Annotation(70, 50, boxes=[[10, 10, 30, 30]], labels=[1])
    loss = m.loss([img, img], [empty, one])
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="class index"):
        m.loss([img], [Annotation(70, 50, boxes=[[1, 1, 5, 5]], labels=[2])])
    with pytest.raises(ValueError, match="70x50"):
        m.loss([np.zeros((10, 10, 3), np.uint8)], [one])


# -------------------------------------------------------------------------------- segmentation
def touching_discs() -> tuple[np.ndarray, Annotation]:
    H, W = 160, 224
    yy, xx = np.mgrid[:H, :W]
    centres = [(50, 50, 22), (50, 92, 22), (110, 150, 25), (110, 198, 24), (120, 60, 18)]
    d = np.stack([np.hypot(yy - cy, xx - cx) / r for cy, cx, r in centres])
    inside = (d < 1).any(0)
    lab = np.where(inside, d.argmin(0) + 1, 0)  # neighbours touch along a shared border
    img = np.full((H, W, 3), 20, np.uint8)
    img[inside] = (200, 120, 220)
    return img, Annotation.from_label_image(lab)


def test_segmentation_separates_touching_instances() -> None:
    img, ann = touching_discs()
    m = EmbeddedModel("segmentation", ["disc"], input_size=224, freeze_stride=16, augment=False)
    train(m, [img], [ann], steps=70, lr=5e-3)
    pred = m.predict([img])[0]
    assert pred.masks is not None and pred.masks.shape[1:] == (160, 224)
    assert len(pred) == len(ann) == 5
    inter = ann.masks.reshape(5, -1).astype(float) @ pred.masks.reshape(5, -1).T.astype(float)
    union = ann.masks.reshape(5, -1).sum(1)[:, None] + pred.masks.reshape(5, -1).sum(1)[None] - inter
    assert (inter / union).max(1).min() > 0.85
    sem = m.predict([img], semantic=True)[0]
    assert len(sem) == 1 and sem.labels.tolist() == [0]
    gt_union = ann.masks.any(0)
    assert (sem.masks[0] & gt_union).sum() / (sem.masks[0] | gt_union).sum() > 0.9


# ------------------------------------------------------------------------------ classification
def test_classification_overfits_two_classes() -> None:
    rng = np.random.default_rng(0)
    imgs, anns = [], []
    for i in range(8):
        img = rng.integers(0, 60, (40 + 7 * i, 50, 3)).astype(np.uint8)
        if i % 2:
            img[:, ::8] = 255  # vertical stripes
        else:
            img[::8] = 255  # horizontal stripes
        imgs.append(img)
        anns.append(Annotation(50, img.shape[0], category=i % 2))
    m = EmbeddedModel("classification", ["rows", "columns"], input_size=96)
    train(m, imgs, anns, steps=30, lr=3e-3, batch=4)
    preds = m.predict(imgs)
    assert [p.category for p in preds] == [a.category for a in anns]
    for p in preds:
        assert p.category_scores is not None and p.category_scores.shape == (2,)
        assert p.category_scores.sum() == pytest.approx(1.0, abs=1e-5)


# -------------------------------------------------------------------------------- odd inputs
@pytest.mark.parametrize("task", ["detection", "segmentation", "classification"])
def test_odd_images_go_through_predict(task: str, tmp_path: Path) -> None:
    from PIL import Image

    m = EmbeddedModel(task, ["a", "b"], input_size=128)
    grey16 = (np.arange(37 * 53, dtype=np.uint16).reshape(37, 53) * 40).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    Image.fromarray(np.full((20, 9), 128, np.uint8), mode="L").save(tmp_path / "grey.png")
    images = [
        load_image(tmp_path / "g16.png"),
        load_image(tmp_path / "grey.png"),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((1, 300, 3), np.uint8),
        np.full((1300, 1100, 3), 90, np.uint8),
    ]
    for img, pred in zip(images, m.predict(images), strict=True):
        assert (pred.height, pred.width) == img.shape[:2]
        if task == "classification":
            assert pred.category in (0, 1)
        else:
            assert pred.scores is not None and len(pred.scores) == len(pred)
            assert (pred.boxes[:, 2:] <= [pred.width, pred.height]).all() and (pred.boxes >= 0).all()
        if task == "segmentation":
            assert pred.masks is not None and pred.masks.shape == (len(pred), *img.shape[:2])
    with pytest.raises(ValueError, match="uint8"):
        m.predict([np.zeros((4, 4), np.uint8)])


def test_save_pretrained_and_load_model_give_identical_predictions(tmp_path: Path) -> None:
    H, W = 120, 150
    boxes = np.array([[10, 20, 50, 60], [80, 30, 140, 100]], np.float32)
    img = squares_image(H, W, boxes)
    m = EmbeddedModel("detection", ["x", "y"], input_size=128, min_score=0.01)
    train(m, [img], [Annotation(W, H, boxes=boxes, labels=[0, 1])], steps=5, lr=1e-3)
    before = m.predict([img])[0]
    assert len(before) > 0
    m.save_pretrained(tmp_path / "model")
    again = load_model(tmp_path / "model")
    assert isinstance(again, EmbeddedModel) and again.config() == m.config() and not again.training
    assert again.config()["pretrained"] is False
    after = again.predict([img])[0]
    np.testing.assert_array_equal(before.boxes, after.boxes)
    np.testing.assert_array_equal(before.scores, after.scores)
    np.testing.assert_array_equal(before.labels, after.labels)
    with pytest.raises(TypeError):
        EmbeddedModel("detection", ["x"], no_such_option=1)  # type: ignore[call-arg]


# ----------------------------------------------------------------------------------- real data
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def read_voc(path: Path, width: int, height: int) -> Annotation:
    boxes, labels = [], []
    for obj in ET.parse(path).getroot().iter("object"):
        bb = obj.find("bndbox")
        assert bb is not None
        boxes.append([float(bb.findtext(k, "nan")) for k in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(BCCD_CLASSES.index((obj.findtext("name") or "").strip()))
    return Annotation(width, height, boxes=boxes, labels=labels).validate(len(BCCD_CLASSES))


@pytest.mark.slow
def test_bccd_quick_training_finds_real_cells() -> None:
    root = _require.data("bccd", "ImageSets", "Main", "train.txt").parents[2]
    names = (root / "ImageSets" / "Main" / "train.txt").read_text().split()[:6]
    images = [load_image(root / "JPEGImages" / f"{n}.jpg") for n in names]
    anns = [
        read_voc(root / "Annotations" / f"{n}.xml", im.shape[1], im.shape[0])
        for n, im in zip(names, images, strict=True)
    ]
    m = EmbeddedModel("detection", BCCD_CLASSES, input_size=320, seed=0)
    train(m, images[:5], anns[:5], steps=60, lr=3e-3, batch=2)
    pred = m.predict([images[5]])[0]
    assert len(pred) > 0
    good = box_iou(pred.filter(0.3).boxes, anns[5].boxes).max(1) > 0.5
    assert good.sum() >= 3, f"only {good.sum()} of {len(pred.filter(0.3))} confident boxes overlap a cell"


def test_a_seed_fixes_the_new_layers_initial_weights_without_touching_the_global_generator() -> None:
    torch.manual_seed(1)
    a = EmbeddedModel("detection", ["x"], input_size=64, seed=3)
    drawn_after = torch.rand(1)
    torch.manual_seed(2)
    b = EmbeddedModel("detection", ["x"], input_size=64, seed=3)
    c = EmbeddedModel("detection", ["x"], input_size=64, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # another seed, other head weights
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), drawn_after)  # the caller's random stream is as it was
