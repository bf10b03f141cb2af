"""The team's engine without Ray: ``LiveSession.sync`` following a store that others write,
``TeamTrainer``'s queue of images to predict ahead, and ``TeamSession`` labeling under leases, on both
store engines (SQLite is how a team shares a store on one machine; PostgreSQL is the team's server).
The Ray actor and annotators in processes of their own are ``test_team_ray.py``; the app is
``test_widget_team.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from livetrain_widgets import SessionConfig, TrainerConfig
from livetrain_widgets.engine.ahead import AheadConfig
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.session import SYNC_WINDOW_ROWS
from livetrain_widgets.engine.store import AnnotationStore, LeaseLost
from livetrain_widgets.engine.team import TeamSession, TeamTrainer, TrainerUnavailable

from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(12)
CLASSES = ["left", "right"]


def label(image_id: int) -> Annotation:
    """The true class of an image (ids are 1, 2, ... in IMAGES order)."""
    return Annotation(16, 16, category=LABELS[image_id - 1])


@pytest.fixture
async def trainer(tmp_path: Path, location: str) -> AsyncIterator[TeamTrainer]:
    config = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5),
                           ahead=AheadConfig(images=4))
    tr = TeamTrainer(tmp_path / "trainer", location, "classification", CLASSES,
                     model=TinyClassifier("classification", CLASSES), config=config, poll_s=0.05)
    tr.session.add_images(IMAGES)
    yield tr
    await tr.close()


async def test_sync_trains_on_labels_others_commit_and_judges_their_prelabels(trainer, location, tmp_path) -> None:
    s = trainer.session
    ids = s.image_ids
    with AnnotationStore(location) as other:  # another annotator's connection
        pred = await s.predict(ids[0])
        other.submit(ids[0], label(ids[0]), user="bob", prediction_id=pred.prediction_id)
        other.submit(ids[1], label(ids[1]), user="carol")
        assert s.trainer.num_samples == 0 and not s.is_labeled(ids[0])
        assert sorted(await s.sync()) == [ids[0], ids[1]]
        assert s.trainer.num_samples == 2 and s.is_labeled(ids[0]) and s.is_labeled(ids[1])
        assert [r["prediction_id"] for r in s.evaluator.history] == [pred.prediction_id]
        # Read again (the window below the highest row seen): nothing is applied twice.
        assert await s.sync() == []
        assert s.trainer.num_samples == 2 and len(s.evaluator.history) == 1
        # A new version of a label replaces the one trained on; an image added elsewhere appears.
        other.submit(ids[1], label(ids[0]), user="carol")
        new_id = other.add_image(str(tmp_path / "elsewhere.png"), width=16, height=16, sha256="0" * 64, nbytes=1)
        assert await s.sync() == [ids[1]]
        assert s.trainer._targets[ids[1]].category == LABELS[0]
        assert new_id in s.image_ids and not s.is_labeled(new_id)


async def test_sync_reads_a_window_below_the_highest_row_seen(trainer, location) -> None:
    """A version whose row id is below the highest one already seen (on PostgreSQL: committed after a
    later one) is still taken in, as long as it is within the window."""
    s = trainer.session
    ids = s.image_ids
    with AnnotationStore(location) as other:
        other.submit(ids[0], label(ids[0]))
        other.submit(ids[1], label(ids[1]))
        await s.sync()
        # Pretend the first row had not been visible at that sync: forget it, as if it had committed late.
        del s._applied[ids[0]]
        s._labeled.discard(ids[0])
        s.trainer.remove_sample(ids[0])
        assert await s.sync() == [ids[0]]
        assert s.trainer.num_samples == 2
        assert SYNC_WINDOW_ROWS >= 64


async def test_the_queue_aims_prediction_ahead_at_each_annotators_next_images(trainer, location) -> None:
    s = trainer.session
    ids = s.image_ids
    with AnnotationStore(location) as other:
        other.submit(ids[3], label(ids[3]))
        alice = other.lease_image(ids[2], "alice", 60)
        bob = other.lease_next("bob", 60, after=ids[5])
        assert bob is not None and bob.image_id == ids[6]
        await trainer.sync()
        # alice (on image 2): 4 and 5 (3 is labeled); bob (on 6): 7 and 8; capped at ahead.images = 4
        assert trainer.queue() == [ids[4], ids[5], ids[7], ids[8]]
        other.release(alice)
        other.release(bob)
        await trainer.sync()
        assert trainer.queue() == [ids[0], ids[1], ids[2], ids[4]]  # nobody labeling: the first free ones


async def test_team_sessions_label_under_leases_and_the_trainer_learns_from_all(trainer, location) -> None:
    await trainer.start()
    alice = TeamSession(location, trainer, user="alice", lease_ttl_s=30, poll_s=0.05)
    bob = TeamSession(location, trainer, user="bob", lease_ttl_s=30, poll_s=0.05)
    try:
        a = await alice.claim_next()
        b = await bob.claim_next()
        assert a is not None and b is not None and a != b
        await alice.poll()
        assert alice.is_labeled(b) and not alice.is_labeled(a)  # bob holds b: not alice's next
        assert alice.state.team == [f"bob (image {b})"]
        with pytest.raises(LeaseLost) as lost:
            await alice.claim(b)
        assert lost.value.holder == "bob"
        pred = await alice.predict(a)
        assert pred.prediction_id > 0 and alice.reachable
        await alice.submit(a, label(a))
        await bob.submit(b, label(b))
        assert alice.lease is None and bob.lease is None
        with AnnotationStore(location) as db:
            assert db.annotation_history(a)[0].user == "alice"
            assert db.annotation_history(a)[0].prediction_id == pred.prediction_id
            assert db.annotation_history(b)[0].user == "bob"
            assert db.active_leases() == []
        await trainer.sync()
        assert trainer.session.trainer.num_samples == 2
        assert [r["prediction_id"] for r in trainer.session.evaluator.history] == [pred.prediction_id]
    finally:
        await alice.close()
        await bob.close()


class _Away:
    """A trainer that does not answer (restarting)."""

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        raise TrainerUnavailable("restarting")

    def notify(self) -> None:
        raise ConnectionError("gone")


async def test_without_the_trainer_an_annotator_labels_on_and_is_told_reconnecting(trainer, location) -> None:
    me = TeamSession(location, _Away(), user="alice", poll_s=0.05)
    try:
        image_id = await me.claim_next()
        assert image_id is not None
        await me.poll()
        assert me.state.reconnecting and "Reconnecting" in me.state.message
        pred = await me.predict(image_id)
        assert not pred.offered and len(pred.annotation) == 0
        assert await me.submit(image_id, label(image_id)) == 1  # committed, trainer or not
        with AnnotationStore(location) as db:
            assert db.annotation(image_id) is not None
        # The trainer, back, trains on it.
        assert image_id in await trainer.sync()
    finally:
        await me.close()


async def test_a_lapsed_lease_taken_over_is_refused_and_said(trainer, location) -> None:
    me = TeamSession(location, trainer, user="alice", lease_ttl_s=0.2, poll_s=10)
    try:
        image_id = await me.claim_next()
        await asyncio.sleep(0.4)
        with AnnotationStore(location) as db:
            assert db.lease_image(image_id, "bob", 60).holder == "bob"
            with pytest.raises(LeaseLost):
                await me.submit(image_id, label(image_id))
            assert db.annotation(image_id) is None
        me._renewed = 0.0
        me._lease = None
        await me.poll()
        assert me.state.team == [f"bob (image {image_id})"]
    finally:
        await me.close()


def test_a_store_without_a_project_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="no project"):
        TeamSession(tmp_path / "empty.sqlite", _Away())


async def test_the_heartbeat_brings_the_next_images_prelabels_and_only_what_changed(trainer, location) -> None:
    await trainer.start()
    me = TeamSession(location, trainer, user="alice", poll_s=0.05)
    try:
        first = await me.claim_next()
        await me.predict(first)
        upcoming = me.upcoming(first)
        assert len(upcoming) == 2
        for _ in range(200):  # the trainer predicts them ahead between steps; the heartbeat fetches them
            await me.poll()
            if all(me.kept_prelabel(i) is not None for i in upcoming):
                break
            await asyncio.sleep(0.05)
        kept = {i: me.kept_prelabel(i) for i in upcoming}
        assert all(k is not None for k in kept.values())
        assert kept == {i: trainer.session.kept_prelabel(i) for i in upcoming}
        # asked again with what it has, the trainer sends nothing for an unchanged pre-label
        known = {i: k[1] for i, k in kept.items()}
        assert await trainer.kept(upcoming, known) == {}
    finally:
        await me.close()


async def test_an_annotator_imports_labels_leaving_classes_out_on_purpose(tmp_path, location, data_dir) -> None:
    """`TeamSession.add_images(..., ignore_classes=...)` as `LiveSession.add_images`: a file's classes the project
    does not have are refused, naming them, unless they are named to be left out."""
    from livetrain_widgets.engine.formats import load_labels

    from .tiny_model import ScriptedDetector

    bccd = data_dir / "bccd"
    paths = sorted((bccd / "JPEGImages").glob("*.jpg"))[2:5]
    tr = TeamTrainer(tmp_path / "trainer", location, "detection", ["RBC"], model=ScriptedDetector("detection", ["RBC"]),
                     poll_s=0.05)
    ann = TeamSession(location, tr, user="alice", lease_ttl_s=30, poll_s=0.05)
    try:
        with pytest.raises(ValueError, match=r"'WBC' in .*Nothing was added"):
            await ann.add_images(paths, labels=bccd / "Annotations", format="voc")
        ids = await ann.add_images(paths, labels=bccd / "Annotations", format="voc",
                                   ignore_classes=["WBC", "Platelets"])
        truth = load_labels("voc", bccd / "Annotations", paths, ["RBC"])
        with AnnotationStore(location) as db:
            for i, path in zip(ids, paths, strict=True):
                want = truth.annotations[path.resolve()]
                assert len(db.annotation(i)) == int((want.labels == 0).sum()) > 0
    finally:
        await ann.close()
        await tr.close()
