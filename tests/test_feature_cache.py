"""The frozen trunk's feature cache (issue 21 A): memory bound, invalidation, and that a hit gives exactly
what computing afresh gives, through the embedded detector's training loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.models._feature_cache import FeatureCache, fingerprint
from livetrain_widgets.models._preprocess import normalise, pad_batch, resize_image, target_size
from livetrain_widgets.models.embedded import EmbeddedModel


def _entry(nbytes: int) -> tuple[dict[int, torch.Tensor], tuple[int, int]]:
    t = torch.zeros(nbytes // 4)
    return {-1: t, 8: t}, (1, 1)  # one tensor under two keys counts once


def test_lru_stays_within_its_bytes_and_evicts_the_least_recently_used() -> None:
    cache = FeatureCache(max_bytes=1000)
    calls: list[str] = []

    def make(name: str):
        return lambda: calls.append(name) or _entry(400)

    cache.get("a", make("a"))
    cache.get("b", make("b"))
    assert cache.nbytes == 800 and len(cache) == 2
    cache.get("a", make("a"))  # a hit: "a" becomes the most recent
    cache.get("c", make("c"))  # 1200 > 1000: "b", the least recently used, goes
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.nbytes == 800 <= cache.max_bytes
    assert calls == ["a", "b", "c"]
    assert cache.stats()["hits"] == 1 and cache.stats()["evictions"] == 1
    cache.get("huge", lambda: _entry(4000))
    assert "huge" not in cache and cache.nbytes <= 1000  # bigger than the bound: computed, never kept


def test_zero_bytes_computes_every_time() -> None:
    cache = FeatureCache(0)
    n = []
    for _ in range(3):
        cache.get("k", lambda: n.append(1) or _entry(8))
    assert len(n) == 3 and len(cache) == 0


def test_a_new_stamp_empties_the_cache() -> None:
    cache = FeatureCache(10_000)
    cache.validate("w1")
    cache.get("a", lambda: _entry(100))
    cache.validate("w1")
    assert "a" in cache
    cache.validate("w2")
    assert len(cache) == 0 and cache.nbytes == 0 and cache.invalidations == 1


def test_fingerprint_tells_images_apart_by_content() -> None:
    a = np.zeros((20, 30, 3), np.uint8)
    b = a.copy()
    b[10, 10, 1] = 1
    assert fingerprint(a) == fingerprint(a.copy()) != fingerprint(b)
    assert fingerprint(a) != fingerprint(np.zeros((30, 20, 3), np.uint8))


def _data() -> tuple[list[np.ndarray], list[Annotation]]:
    rng = np.random.default_rng(0)
    images, targets = [], []
    for i in range(3):
        h, w = 90 + 10 * i, 120
        images.append(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        targets.append(Annotation(w, h, boxes=[[10, 12, 40, 50], [60, 30, 100, 80]], labels=[0, 1]))
    return images, targets


def _model(**kw: object) -> EmbeddedModel:
    kw.setdefault("seed", 0)
    m = EmbeddedModel("detection", ["a", "b"], pretrained=False, input_size=96, **kw)  # type: ignore[arg-type]
    return m.train()


@pytest.mark.parametrize("freeze_stride", [8, 32])
def test_cache_hits_give_the_losses_and_gradients_of_computing_afresh(freeze_stride: int) -> None:
    images, targets = _data()
    cached, fresh = _model(freeze_stride=freeze_stride), _model(freeze_stride=freeze_stride, feature_cache_mb=1)
    fresh.load_state_dict(cached.state_dict())
    fresh.feature_cache.max_bytes = 0  # the same path, never keeping anything: every step computes afresh
    for step in range(5):  # 3 images x (3 scales x 4 flips): repeats come within a few steps
        torch.manual_seed(step)  # drop-connect in the trainable blocks draws from torch's generator
        a = cached.loss(images, targets)
        torch.manual_seed(step)
        b = fresh.loss(images, targets)
        assert a.item() == b.item()
        ga = torch.autograd.grad(a, [p for p in cached.parameters() if p.requires_grad], allow_unused=True)
        gb = torch.autograd.grad(b, [p for p in fresh.parameters() if p.requires_grad], allow_unused=True)
        assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb, strict=True))
    assert cached.feature_cache.hits > 0 and fresh.feature_cache.hits == 0


def test_cached_features_are_the_trunk_of_the_flipped_resized_image() -> None:
    images, targets = _data()
    m = _model(freeze_stride=32)
    m.loss(images, targets)
    (key, ((feats, size), _)), *_ = m.feature_cache._entries.items()
    _, h, w, hflip, vflip = key
    img = next(i for i in images if fingerprint(i) == key[0])
    assert (h, w) == size and (h, w) in [target_size(*img.shape[:2], 96, s) for s in m.options["scales"]]
    t = resize_image(img, (h, w))
    t = t.flip(-1) if hflip else t
    t = t.flip(-2) if vflip else t
    with torch.no_grad():
        direct = m.backbone.forward_frozen(pad_batch([normalise(t)]).contiguous(memory_format=torch.channels_last))
    for k, v in feats.items():
        assert v.dtype == torch.float16
        torch.testing.assert_close(v.float(), direct[k][0].to(torch.float16).float())


def test_without_augmentation_the_cached_loss_is_the_pixel_paths() -> None:
    """Scale 1, no flip, no crop: the cached path sees what the full forward pass sees (to float16)."""
    images, targets = _data()
    a, b = _model(freeze_stride=32, augment=False), _model(freeze_stride=32, augment=False, feature_cache_mb=0)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a.loss(images[:1], targets[:1]), b.loss(images[:1], targets[:1]), rtol=2e-3, atol=1e-4)


def test_loading_other_frozen_weights_invalidates_the_cache() -> None:
    images, targets = _data()
    m = _model(freeze_stride=8)
    m.loss(images, targets)
    assert len(m.feature_cache) > 0
    other = _model(freeze_stride=8, seed=1)
    state = m.state_dict()
    stem = "backbone.conv_stem.weight"
    state[stem] = other.state_dict()[stem] + 1.0
    m.load_state_dict(state)  # copies into the frozen stem in place: its version counter moves
    stamp_entries = len(m.feature_cache)
    m.loss(images[:1], targets[:1])
    assert stamp_entries > 1 and len(m.feature_cache) == 1 and m.feature_cache.invalidations == 1


def test_cache_is_bounded_by_the_option_and_not_saved() -> None:
    m = _model(freeze_stride=32, feature_cache_mb=1)
    assert m.feature_cache.max_bytes == 1 << 20
    images, targets = _data()
    for _ in range(10):
        m.loss(images, targets)
    assert m.feature_cache.nbytes <= 1 << 20
    assert not any("cache" in k for k in m.state_dict())
    with pytest.raises(ValueError, match="feature cache"):
        EmbeddedModel("segmentation", ["a"], pretrained=False, feature_cache_mb=8)


def test_an_upscaled_image_is_cropped_back_to_the_unscaled_size() -> None:
    """A 4:3 image at scale 1.25 trains on a crop of the unscaled image's size (96x128 at input 128), not a
    128x128 square, which cost a third more per step and padded the whole batch to it."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
    m = EmbeddedModel("detection", ["a"], pretrained=False, input_size=128, scales=(1.25,), seed=0).train()
    for _ in range(4):  # the crop's place and the flips are random; its size is not
        low, boxes, _ = m.cached_batch([img], [Annotation(120, 90, boxes=[[10, 10, 60, 50]], labels=[0])])
        assert tuple(low[32].shape[-2:]) == (3, 4) and tuple(low[8].shape[-2:]) == (12, 16)
        assert boxes[0].size == 0 or (boxes[0][:, 2].max() <= 128 and boxes[0][:, 3].max() <= 96)


def test_an_image_keeps_scale_one_for_its_first_draws() -> None:
    """``scale_after``: an image's first draws use only the scale nearest 1 (its 4 flips fill the cache
    first), then every scale."""
    images, targets = _data()
    m = _model(freeze_stride=32, scales=(0.8, 1.0, 1.25), scale_after=3)
    sizes = []
    for _ in range(12):
        m.cached_batch(images[:1], targets[:1])
        sizes.append({(h, w) for (_, h, w, _, _) in m.feature_cache._entries})
    one = {target_size(*images[0].shape[:2], 96, 1.0)}
    assert sizes[2] == one  # three draws: scale 1 only
    assert len(sizes[-1]) > 1  # later draws jitter the scale
