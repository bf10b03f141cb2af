"""The correction mode's engine: LoRA helpers, the embedded stream model, StreamSession, click edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from livetrain_widgets.engine.annotation import Annotation, AnnotationError
from livetrain_widgets.engine.stream import StreamSession, apply_clicks, frame_quality
from livetrain_widgets.models import _lora
from livetrain_widgets.models.embedded import EmbeddedModel
from livetrain_widgets.models.stream import AdapterConfig, Click, create_stream_model

H, W = 48, 64


def _frames(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[Annotation]]:
    """Bright discs on a dark, noisy background: a stream where the same object drifts to the right."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    frames, truths = [], []
    for i in range(n):
        cx, cy = 18 + 3 * i, 24
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2
        img = rng.integers(0, 60, (H, W, 3)).astype(np.uint8)
        img[disc] = 200
        frames.append(img)
        truths.append(Annotation.from_masks(disc[None], [0]))
    return frames, truths


@pytest.fixture(scope="module")
def base() -> EmbeddedModel:
    torch.manual_seed(0)
    return EmbeddedModel("segmentation", ["disc"], input_size=64, semantic=True, seed=0)  # ImageNet backbone


def _stream_model(base: EmbeddedModel, **adapter: object):
    torch.manual_seed(0)
    return create_stream_model(base, adapter=AdapterConfig(**adapter))  # type: ignore[arg-type]


def test_lora_branch_is_the_layer_minus_its_base() -> None:
    conv = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1))
    conv = _lora.inject_lora(conv, ["0"], rank=2, alpha=4, dropout=0.0)
    layer = next(_lora.lora_layers(conv))
    with torch.no_grad():
        for p in _lora.lora_parameters(conv):
            p.normal_()
    x = torch.randn(1, 8, 5, 7)
    torch.testing.assert_close(layer(x), layer.base_layer(x) + _lora.lora_branch(layer, x))


def test_inject_lora_refuses_targets_that_match_nothing() -> None:
    with pytest.raises(ValueError, match="no submodule matches"):
        _lora.inject_lora(torch.nn.Sequential(torch.nn.Linear(2, 2)), ["nothing"], rank=1, alpha=1, dropout=0)


def test_only_the_adapter_trains_and_the_base_model_is_untouched(base: EmbeddedModel) -> None:
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = _stream_model(base)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)
    assert model.num_adapter_parameters() == sum(p.numel() for p in model.adapter_parameters()) > 0
    frames, truths = _frames(2)
    s = StreamSession(model, frames)
    s.correct(truths[0])
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_cached_forward_matches_a_full_forward_through_the_peft_layers(base: EmbeddedModel) -> None:
    """The decomposition (base output cached per frame + low-rank residual) is the same network."""
    model = _stream_model(base)
    with torch.no_grad():
        for p in model.adapter_parameters():
            p.normal_(std=0.05)
    model.eval()
    enc = model.encode(_frames(1)[0][0])
    fast = model._logits(enc)
    x = enc.x
    body = model.head.body
    full = model.head.classes(body[5](body[4](body[3](x))))
    full = torch.nn.functional.interpolate(full, size=enc.padded, mode="bilinear", align_corners=False)
    torch.testing.assert_close(fast, full[:, :, : enc.valid[0], : enc.valid[1]])


def test_a_correction_trains_the_adapter_and_helps_the_next_frame(base: EmbeddedModel) -> None:
    frames, truths = _frames(4)
    model = _stream_model(base, epochs=40, lr=1e-2, fit=0.99)
    s = StreamSession(model, frames)
    q_before = frame_quality(StreamSession(_stream_model(base), frames[1:]).working(), truths[1])
    assert q_before < 0.5  # the base never saw a disc
    rec = s.correct(truths[0])
    assert rec.corrected and rec.full and rec.update is not None
    assert rec.update.loss_last < rec.update.loss_first
    assert s.stats()["updates"] == 1 and s.stats()["last_update_seconds"] > 0
    q_after = frame_quality(s.working(), truths[1])
    assert q_after > q_before + 0.3  # one correction teaches it (~0.87)


def test_accept_untouched_is_not_a_correction_and_does_not_train(base: EmbeddedModel) -> None:
    frames, _ = _frames(2)
    s = StreamSession(_stream_model(base), frames)
    rec = s.accept()
    assert not rec.corrected and rec.update is None and s.index == 1
    assert s.stats()["accepted"] == 1 and s.stats()["corrections"] == 0


def test_clicks_edit_locally_and_accepting_them_is_a_correction(base: EmbeddedModel) -> None:
    frames, _ = _frames(2)
    s = StreamSession(_stream_model(base), frames, click_radius=12)
    edited = s.click(18, 24, positive=True)
    assert edited.masks is not None and edited.masks[0][24, 18]
    rec = s.accept()
    assert rec.corrected and not rec.full and rec.clicks == 1 and rec.update is not None
    assert s.labels[0] is not None and s.labels[0].masks[0][24, 18]


def test_reset_restores_the_base_prediction_and_save_load_round_trips(base: EmbeddedModel, tmp_path) -> None:
    frames, truths = _frames(3)
    model = _stream_model(base, lr=1e-2)
    s = StreamSession(model, frames)
    untrained = model.predict(model.encode(frames[1])).probability
    s.correct(truths[0])
    adapted = s.prediction().probability
    assert not np.allclose(adapted, untrained)
    s.save_adapter(tmp_path / "discs")
    s.save_adapter(tmp_path / "discs")  # its own adapter: replaced, as asked
    theirs = tmp_path / "peft"  # another tool's files under the same names are not
    theirs.mkdir()
    (theirs / "adapter.json").write_text('{"r": 8}')
    (theirs / "adapter.safetensors").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError, match="not replaced"):
        s.save_adapter(theirs)
    assert (theirs / "adapter.safetensors").read_bytes() == b"someone else's"
    s.reset_adapter()
    np.testing.assert_allclose(s.prediction().probability, untrained, atol=1e-6)
    s.load_adapter(tmp_path / "discs")
    np.testing.assert_allclose(s.prediction().probability, adapted, atol=1e-6)
    assert s.adapter_name == "discs"
    other = EmbeddedModel("segmentation", ["a", "b"], pretrained=False, input_size=64, semantic=True)
    with pytest.raises(ValueError, match="classes"):
        StreamSession(create_stream_model(other), frames).load_adapter(tmp_path / "discs")


def test_new_stream_resets_the_adapter(base: EmbeddedModel, tmp_path) -> None:
    frames, truths = _frames(3)
    s = StreamSession(_stream_model(base, lr=1e-2), frames)
    s.correct(truths[0])
    s.new_stream(frames[1:], save_as="first", folder=tmp_path)
    assert (tmp_path / "first" / "adapter.safetensors").is_file()
    assert s.index == 0 and len(s) == 2 and s.stats()["updates"] == 0
    assert all(float(p.detach().abs().sum()) == 0 for n, p in s.model.named_parameters() if "lora_B" in n)


def test_bad_corrections_are_refused_before_anything_changes(base: EmbeddedModel) -> None:
    frames, _ = _frames(2)
    s = StreamSession(_stream_model(base), frames)
    with pytest.raises(AnnotationError, match="frame is"):
        s.correct(Annotation(10, 10))
    with pytest.raises(AnnotationError, match="unknown class"):
        s.correct(Annotation.from_masks(np.ones((1, H, W), bool), [3]))
    with pytest.raises(ValueError, match="unknown class"):
        s.click(3, 3, label=5)
    assert s.index == 0 and s.stats()["updates"] == 0
    s.accept()
    s.accept()
    with pytest.raises(IndexError, match="finished"):
        s.prediction()


def test_classification_stream_learns_a_corrected_label() -> None:
    torch.manual_seed(0)
    base = EmbeddedModel("classification", ["a", "b", "c"], input_size=64)  # random weights give ~0 features
    model = create_stream_model(base, adapter=AdapterConfig(rank=8, lr=3e-2))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (20, 20, 3)).astype(np.uint8) for _ in range(2)]
    s = StreamSession(model, frames)
    wrong = int(np.argmin(s.prediction().annotation.category_scores))
    rec = s.correct(Annotation(20, 20, category=wrong))
    assert rec.update is not None and rec.update.stopped == "fit" and rec.update.fit == 1.0
    s.reset_adapter()
    with pytest.raises(ValueError, match="clicks correct masks"):
        s.click(1, 1)


def test_frame_quality() -> None:
    a = np.zeros((1, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros((1, 4, 4), bool)
    b[0, :1] = True
    assert frame_quality(Annotation.from_masks(a, [0]), Annotation.from_masks(b, [0])) == pytest.approx(0.5)
    empty = Annotation(4, 4, masks=np.zeros((0, 4, 4), bool))
    assert frame_quality(empty, empty) == 1.0
    assert frame_quality(empty, Annotation.from_masks(b, [0])) == 0.0
    scores = np.array([0.1, 0.5, 0.3, 0.1])
    pred = Annotation(4, 4, category=1, category_scores=scores)
    assert frame_quality(pred, Annotation(4, 4, category=0), top_k=3) == 1.0  # a tie goes to the lower index
    assert frame_quality(pred, Annotation(4, 4, category=3), top_k=3) == 0.0
    assert frame_quality(pred, Annotation(4, 4, category=0), top_k=2) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-5, 40), st.floats(-5, 40), st.booleans()), min_size=1, max_size=4),
    st.integers(0, 2**31 - 1),
)
def test_click_edits_stay_local_and_never_touch_far_pixels(clicks, seed) -> None:
    rng = np.random.default_rng(seed)
    masks = rng.random((2, 32, 32)) < 0.3
    masks[1] &= ~masks[0]
    working = Annotation.from_masks(masks, [0, 1])
    prob = rng.random((2, 32, 32)).astype(np.float32)
    radius = 5.0
    edited = apply_clicks(working, prob, [Click(x, y, p) for x, y, p in clicks], label=1, radius=radius)
    before, after = working.semantic_map(), edited.semantic_map()
    yy, xx = np.mgrid[:32, :32]
    near = np.zeros((32, 32), bool)
    for x, y, _ in clicks:
        cx, cy = np.clip(round(x), 0, 31), np.clip(round(y), 0, 31)
        near |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    assert np.array_equal(before[~near], after[~near])
    last = clicks[-1]
    cx, cy = int(np.clip(round(last[0]), 0, 31)), int(np.clip(round(last[1]), 0, 31))
    assert (after[cy, cx] == 2) if last[2] else (after[cy, cx] == 0)


def test_a_live_session_hands_out_a_frozen_copy_for_the_correction_mode(base: EmbeddedModel, tmp_path) -> None:
    from livetrain_widgets.engine.session import LiveSession

    session = LiveSession(tmp_path / "p", "segmentation", ["disc"], model=base)
    try:
        model = session.correction_model(AdapterConfig(rank=2))
        assert model.adapter_config.rank == 2 and model.classes == ["disc"]
        frames, truths = _frames(2)
        StreamSession(model, frames).correct(truths[0])
        # the live model keeps its own weights and gets no LoRA layers
        assert not any("lora_" in n for n, _ in session.trainer.model.named_parameters())
    finally:
        session.close()


def test_the_guard_takes_back_an_update_that_spoils_the_confirmed_frames(base: EmbeddedModel) -> None:
    frames, truths = _frames(4)
    everything = Annotation.from_masks(np.ones((1, H, W), bool), [0])  # a "correction" unlike the stream
    kept = {}
    for guard in (2, 0):
        model = _stream_model(base, lr=3e-2, guard=guard)
        s = StreamSession(model, frames)
        s.correct(truths[0])
        s.correct(truths[1])
        before = model.adapter_state()
        rec = s.correct(everything)
        kept[guard] = rec.update
        after = model.adapter_state()
        unchanged = all(torch.equal(before[k], after[k]) for k in before)
        assert unchanged == (guard > 0)
        assert s.stats()["reverted"] == (1 if guard else 0) and s.stats()["updates"] == 3
    assert kept[2].stopped == "reverted" and kept[2].guard_after < kept[2].guard_before - 0.02
    assert kept[0].stopped != "reverted" and kept[0].guard_before is None


def test_embedded_adapter_targets_are_checked_and_a_subset_works(base: EmbeddedModel) -> None:
    with pytest.raises(ValueError, match="subset of"):
        _stream_model(base, target_modules=["head.body.0"])  # its output is cached: it cannot adapt
    model = _stream_model(base, target_modules=["head.classes"], lr=1e-2)
    assert {n.split(".lora_")[0] for n, _ in model.named_parameters() if "lora_" in n} == {"head.classes"}
    frames, truths = _frames(2)
    rec = StreamSession(model, frames).correct(truths[0])
    assert rec.update is not None and rec.update.loss_last < rec.update.loss_first
