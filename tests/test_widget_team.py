"""A team's LiveAnnotator driven headless: two annotators, one trainer, a real PostgreSQL store.

The trainer is a :class:`TeamTrainer` on the test's event loop (no Ray: the handle is the only
difference, and ``tests/test_team*.py`` cover the actor); each annotator is a whole LiveAnnotator fed
the messages a browser would send, as in ``test_widget_app``. What is checked is what a team relies
on: no image open in two notebooks at once, who labeled what in the store, the trainer learning from
everyone, a lapsed hold refused by name, and labeling on while the trainer is away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livetrain_widgets import SessionConfig, TrainerConfig
from livetrain_widgets.engine.ahead import AheadConfig
from livetrain_widgets.engine.store import AnnotationStore
from livetrain_widgets.engine.team import LocalTrainer, TeamSession, TeamTrainer, TrainerUnavailable
from livetrain_widgets.widgets.app import LiveAnnotator

from .test_widget_app import act, settle
from .test_widget_canvas import custom, update
from .tiny_model import TinyClassifier, two_class_images

IMAGES, LABELS = two_class_images(12)
CLASSES = ["left", "right"]


def fast_config() -> SessionConfig:
    return SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, offer_min_steps=5),
                         ahead=AheadConfig(images=8))


@pytest.fixture
async def trainer(tmp_path: Path, postgres_url: str) -> AsyncIterator[TeamTrainer]:
    tr = TeamTrainer(tmp_path / "trainer", postgres_url, "classification", CLASSES,
                     model=TinyClassifier("classification", CLASSES), config=fast_config(), poll_s=0.1)
    tr.session.add_images(IMAGES)
    yield tr
    await tr.close()


@pytest.fixture
def db(postgres_url: str) -> Iterator[AnnotationStore]:
    """The store as a third party sees it (another annotator's process, an admin)."""
    with AnnotationStore(postgres_url) as s:
        yield s


async def annotator(trainer: Any, url: str, user: str, **kw: Any) -> LiveAnnotator:
    app = LiveAnnotator(backend=trainer, store=url, user=user, config=fast_config(), **kw)
    await settle(app)
    return app


async def until(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.05)


def label_of(image_id: int, app: LiveAnnotator) -> int:
    return LABELS[app.session.image_ids.index(image_id)]


async def submit(app: LiveAnnotator) -> int:
    image_id = app.image_id
    update(app.canvas, {"category": label_of(image_id, app)})
    act(app, "submit")
    await settle(app)
    return image_id


async def test_two_annotators_never_share_an_image_see_each_other_and_both_train_the_model(
        trainer: TeamTrainer, postgres_url: str, db: AnnotationStore) -> None:
    # Built back to back, both read the store before either leased anything: both want the first image.
    alice = LiveAnnotator(backend=trainer, store=postgres_url, user="alice", config=fast_config())
    bob = LiveAnnotator(backend=trainer, store=postgres_url, user="bob", config=fast_config())
    assert alice.team and bob.team and alice.plots is None and bob.plots is None
    await settle(alice)
    await settle(bob)
    ids = alice.session.image_ids
    assert {alice.image_id, bob.image_id} == {ids[0], ids[1]}
    # the one that lost the race (either: both claims are threads) was told who had it, and where it went
    winner, loser = (alice, bob) if alice.image_id == ids[0] else (bob, alice)
    assert loser.panel.error == (f"{winner.session.user} is labeling {db.image(ids[0]).name}; "
                                 f"opened {db.image(ids[1]).name} instead")
    assert winner.panel.error == ""
    assert {(x.holder, x.image_id) for x in db.active_leases()} == {("alice", alice.image_id), ("bob", bob.image_id)}

    mine: dict[str, list[int]] = {"alice": [], "bob": []}
    for _ in range(3):
        for app, who in ((alice, "alice"), (bob, "bob")):
            mine[who].append(await submit(app))
            assert alice.image_id != bob.image_id and min(alice.image_id, bob.image_id) >= 0
            assert app.panel.error == "", app.panel.error  # it submitted: the notice of its first open went
    assert not set(mine["alice"]) & set(mine["bob"])
    for who, done in mine.items():
        for i in done:
            (version,) = db.annotation_history(i)
            assert version.user == who and version.annotation.category == label_of(i, alice)

    # Each one's panel names the other and the image they are on.
    for app, other in ((alice, bob), (bob, alice)):
        await app.session.poll()
        app.panel.refresh(app.session)
        assert app.panel.team == f"Also labeling: {other.session.user} (image {other.image_id})"
        assert app.panel.labeled == 6 and app.panel.total == 12

    # The one trainer learns from both, and the quality the panels show is its, shared.
    await until(lambda: trainer.session.trainer.num_samples == 6, what="the trainer to take in 6 labels")
    await trainer.session.wait_steps(20, timeout=30)
    await alice.session.poll()
    assert alice.session.state.step >= 20
    assert alice.session.state.quality == trainer.session.evaluator.ema

    # A name leaves with its notebook: alice closes, her image is free and bob no longer sees her.
    left = alice.image_id
    await alice.close()
    assert db.lease_of(left) is None
    await bob.session.poll()
    bob.panel.refresh(bob.session)
    assert bob.panel.team == "Nobody else is labeling now"
    await bob.close()


async def test_an_image_someone_holds_is_skipped_with_a_word_and_nothing_free_is_said(
        trainer: TeamTrainer, postgres_url: str, db: AnnotationStore) -> None:
    alice = await annotator(trainer, postgres_url, "alice")
    ids = alice.session.image_ids
    assert alice.image_id == ids[0] and alice.panel.error == ""
    # Bob takes the next image in another notebook now: alice's session has not seen it yet.
    db.lease_image(ids[1], "bob", 60)
    assert not alice.session.is_labeled(ids[1])
    act(alice, "skip")
    await settle(alice)
    assert alice.image_id == ids[2]
    assert alice.panel.error == f"bob is labeling {db.image(ids[1]).name}; opened {db.image(ids[2]).name} instead"
    assert db.lease_of(ids[1]).holder == "bob" and db.lease_of(ids[2]).holder == "alice"
    assert db.lease_of(ids[0]) is None  # the image she left went back to the queue
    # Back to an image bob holds: not opened either.
    db.lease_image(ids[0], "bob", 60)
    act(alice, "back")
    await settle(alice)
    assert alice.image_id not in (ids[0], ids[1]) and db.lease_of(alice.image_id).holder == "alice"
    assert alice.panel.error.startswith(f"bob is labeling {db.image(ids[0]).name}; opened ")

    # Everything else held: Skip says so and alice stays where she is, with her hold.
    here = alice.image_id
    for i in ids:
        if i != here and db.lease_of(i) is None:
            db.lease_image(i, "carol", 60)
    act(alice, "skip")
    await settle(alice)
    assert alice.image_id == here and db.lease_of(here).holder == "alice"
    assert "no other image is free" in alice.panel.error
    await alice.close()


async def test_a_submission_after_the_hold_went_to_someone_else_is_refused_by_name(
        trainer: TeamTrainer, postgres_url: str, db: AnnotationStore) -> None:
    # A short hold and a slow heartbeat: alice's lease lapses while she draws (a laptop asleep).
    session = TeamSession(postgres_url, trainer, user="alice", config=fast_config(), lease_ttl_s=1.0, poll_s=60)
    alice = LiveAnnotator(session=session)
    await settle(alice)
    image_id = alice.image_id
    assert db.lease_of(image_id).holder == "alice"
    update(alice.canvas, {"category": 1})
    await until(lambda: db.lease_of(image_id) is None, timeout=10, what="alice's lease to lapse")
    db.lease_image(image_id, "bob", 60)  # bob opens it in his notebook
    act(alice, "submit")
    await settle(alice)
    assert alice.panel.error.startswith(f"Not saved: bob is labeling {db.image(image_id).name} now")
    assert alice.image_id == image_id and alice.canvas.category == 1  # her label is still there
    assert db.annotation(image_id) is None and db.labeled_count() == 0
    await alice.close()


class FlakyTrainer:
    """The trainer behind a line that can be cut: while ``down``, every call raises TrainerUnavailable,
    as the Ray handle does while the actor restarts."""

    def __init__(self, trainer: TeamTrainer) -> None:
        self.inner = LocalTrainer(trainer)
        self.down = False
        self.calls = 0

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        self.calls += 1
        if self.down:
            raise TrainerUnavailable("the trainer is restarting (test)")
        return await self.inner.call(method, *args, timeout=timeout, **kwargs)

    def notify(self) -> None:
        if self.down:
            raise TrainerUnavailable("the trainer is restarting (test)")
        self.inner.notify()


async def test_while_the_trainer_is_away_the_panel_says_reconnecting_and_labels_still_save(
        trainer: TeamTrainer, postgres_url: str, db: AnnotationStore) -> None:
    line = FlakyTrainer(trainer)
    alice = await annotator(line, postgres_url, "alice")
    await alice.session.poll()
    assert alice.session.reachable and "Reconnecting" not in alice.panel.status
    line.down = True
    # The heartbeat and the panel's watcher notice by themselves, no refresh asked for.
    await until(lambda: "Reconnecting" in alice.panel.status, timeout=10, what="the panel to say Reconnecting")
    assert alice.session.state.reconnecting and alice.panel.error == ""

    act(alice, "predict")  # no pre-labels to be had: nothing shown, no error
    await settle(alice)
    assert alice.panel.error == "" and not alice.canvas.category_scores
    first = await submit(alice)
    assert alice.panel.error == "" and alice.image_id != first and alice.image_id >= 0
    (version,) = db.annotation_history(first)
    assert version.user == "alice" and version.annotation.category == label_of(first, alice)
    assert "Reconnecting" in alice.panel.status

    # The line comes back: the panel stops saying so, and the trainer has the label from the store.
    line.down = False
    await until(lambda: "Reconnecting" not in alice.panel.status, timeout=10, what="the panel to reconnect")
    await until(lambda: trainer.session.trainer.num_samples == 1, what="the trainer to take in the label")
    await alice.close()


async def test_team_arguments_are_checked(trainer: TeamTrainer, postgres_url: str, monkeypatch) -> None:
    with pytest.raises(ValueError, match="no live plots"):
        LiveAnnotator(backend=trainer, store=postgres_url, user="alice", plots=True)
    with pytest.raises(ValueError, match="holds a 'classification' project"):
        LiveAnnotator(backend=trainer, store=postgres_url, task="detection")
    with pytest.raises(ValueError, match="needs backend="):
        LiveAnnotator(store=postgres_url)
    with pytest.raises(ValueError, match="no project folder"):
        LiveAnnotator(backend=trainer, store=postgres_url, project="runs/x")
    # A Ray address goes through ray_trainer.connect(backend, store), whose handle the session uses.
    from livetrain_widgets.engine import ray_trainer

    asked: list[tuple[str, str]] = []

    def connect(backend: str, store: str) -> LocalTrainer:
        asked.append((backend, store))
        return LocalTrainer(trainer)

    monkeypatch.setattr(ray_trainer, "connect", connect)
    # Images given to a team's app join the project for everyone, through the trainer.
    more, _ = two_class_images(2, seed=7)
    app = await annotator("ray://head:10001", postgres_url, "dora", images=more)
    assert asked == [("ray://head:10001", postgres_url)] and app.session.user == "dora"
    assert len(app.session.image_ids) == len(trainer.session.image_ids) == 14
    assert app.image_id == app.session.image_ids[0] and app.panel.error == ""
    # The trainer is the team's: an annotator's panel does not stop it.
    custom(app.panel, {"type": "action", "action": "stop"})
    await settle(app)
    assert trainer.running and "started and stopped where it is served" in app.panel.error
    await app.close()
