"""The demo images the notebooks label: real coins, every one labeled, saved once, usable by the study."""

from __future__ import annotations

import numpy as np
import pytest

from tests import _require

_require.module("skimage")

from livetrain_widgets.demo import coin_instances, coins  # noqa: E402
from livetrain_widgets.engine.images import load_image  # noqa: E402


def test_every_coin_is_one_instance_and_each_tile_keeps_the_visible_ones() -> None:
    photo, inst = coin_instances()
    assert photo.shape == inst.shape == (303, 384)
    assert inst.max() == 24  # the photograph's 4 rows of 6 coins, none merged, no specks
    det, seg = coins(), coins("segmentation")
    assert len(det) == len(seg) == 16 and det.names == seg.names
    for d, s, image in zip(det.annotations, seg.annotations, det.images, strict=True):
        assert (d.width, d.height) == (192, 160) == image.shape[::-1]
        assert 5 <= len(d) <= 9 and d.masks is None and np.array_equal(d.boxes, s.boxes)
        assert s.masks.shape == (len(s), 160, 192) and s.masks.sum(axis=(1, 2)).min() > 200
        # a coin is bright on a dark table: its mask is brighter than the background
        assert image[s.masks.any(0)].mean() > image[~s.masks.any(0)].mean() + 40


def test_save_truth_and_study_split(tmp_path) -> None:
    demo = coins()
    paths = demo.save(tmp_path / "images")
    assert [p.name for p in paths] == demo.names
    assert np.array_equal(load_image(paths[3])[..., 0], demo.images[3])
    before = paths[0].stat().st_mtime_ns
    demo.save(tmp_path / "images")
    assert paths[0].stat().st_mtime_ns == before  # a project's hashed files are not rewritten
    assert demo.truth(str(paths[5])) is demo.annotations[5] and demo.truth("other.png") is None
    data = demo.study_data(holdout=4)
    assert len(data.walk) == 12 and [i.name for i in data.holdout] == demo.names[12:]
    assert np.array_equal(data.walk[0].load(), np.dstack([demo.images[0]] * 3))
    assert data.task == "detection" and data.classes == ["coin"]
    with pytest.raises(ValueError, match="detection' or 'segmentation"):
        coins("classification")
