"""The work queue of a team: leases on images, on both engines (SQLite and a real PostgreSQL server).

Expiry is tested with real time and short leases, never by asserting that a short lease is still live:
a slow machine can only make a lease look older, so a test that needs a live lease gives it a minute.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from livetrain_widgets.engine import store as store_mod
from livetrain_widgets.engine.annotation import AnnotationError
from livetrain_widgets.engine.store import SCHEMA_VERSION, AnnotationStore, LeaseLost

from .test_store import REPO, add, det, old_sqlite_project, subprocess_env, table_names

LIVE = 60.0  # seconds: a lease that must not expire during a test
SHORT = 0.1  # seconds: a lease that must expire before ...
EXPIRED = 0.3  # ... this much sleep


def lease_rows(store: AnnotationStore) -> int:
    return int(store._query("SELECT COUNT(*) FROM leases")[0][0])


# ------------------------------------------------------------------------------------ leasing
def test_leases_follow_the_project_order_and_never_share_an_image(store: AnnotationStore) -> None:
    ids = add(store, 4)
    a = store.lease_next("ann", LIVE)
    b = store.lease_next("bob", LIVE)
    assert a is not None and b is not None
    assert (a.image_id, a.holder, b.image_id, b.holder) == (ids[0], "ann", ids[1], "bob")
    assert a.token != b.token and a.renewals == 0 and a.ttl_s == LIVE
    assert a.expires_at == pytest.approx(a.acquired_at + LIVE)
    assert abs(a.acquired_at - time.time()) < 30  # the database's clock, on this very machine here
    store.submit(ids[2], det())  # labeled (by someone working alone): never offered
    c = store.lease_next("cat", LIVE)
    assert c is not None and c.image_id == ids[3]
    assert store.lease_next("dan", LIVE) is None
    assert store.active_leases() == [a, b, c]
    assert store.lease_of(ids[1]) == b
    assert store.lease_of(ids[2]) is None


def test_after_and_skip(store: AnnotationStore) -> None:
    ids = add(store, 5)

    def next_id(**kw: object) -> int | None:
        lease = store.lease_next("ann", LIVE, **kw)  # type: ignore[arg-type]
        return None if lease is None else lease.image_id

    assert next_id(after=ids[2]) == ids[3]
    assert next_id(after=ids[4]) == ids[0]  # wraps around
    assert next_id(skip=[ids[1], ids[2]]) == ids[4]
    assert next_id(skip=[ids[1]]) == ids[2]
    assert next_id(skip=[ids[1]]) is None
    assert next_id(after=ids[3]) == ids[1]
    assert next_id() is None


def test_release_returns_the_image(store: AnnotationStore) -> None:
    ids = add(store, 2)
    a = store.lease_next("ann", LIVE)
    assert a is not None
    assert store.release(a) is True
    assert store.release(a) is False  # twice is harmless
    assert store.lease_of(ids[0]) is None and store.active_leases() == []
    b = store.lease_next("bob", LIVE)
    assert b is not None and b.image_id == ids[0]
    with pytest.raises(LeaseLost, match="'bob' holds the image now") as lost:
        store.submit(ids[0], det(), lease=a)
    assert (lost.value.image_id, lost.value.holder) == (ids[0], "bob")
    with pytest.raises(LeaseLost):
        store.renew(a)
    assert store.annotation_history(ids[0]) == [] and store.lease_of(ids[0]) == b


def test_renew_keeps_a_lease_past_its_first_expiry(store: AnnotationStore) -> None:
    (i,) = add(store, 1)
    a = store.lease_next("ann", SHORT)
    assert a is not None
    r = store.renew(a, ttl_s=LIVE)
    assert (r.token, r.acquired_at, r.renewals, r.ttl_s) == (a.token, a.acquired_at, 1, LIVE)
    assert r.expires_at > a.expires_at
    time.sleep(EXPIRED)
    assert store.lease_of(i) == r  # alive only thanks to the renewal
    assert store.lease_next("bob", LIVE) is None
    r2 = store.renew(r)  # again, for its own ttl
    assert (r2.renewals, r2.ttl_s) == (2, LIVE) and r2.expires_at >= r.expires_at


def test_an_expired_lease_returns_its_image_and_its_holder_cannot_submit(store: AnnotationStore) -> None:
    ids = add(store, 2)
    a = store.lease_next("ann", SHORT)
    b = store.lease_next("bob", LIVE)
    assert a is not None and b is not None and b.image_id == ids[1]
    time.sleep(EXPIRED)
    assert store.lease_of(ids[0]) is None  # ann went away: nobody is labeling it
    assert store.active_leases() == [b]
    c = store.lease_next("cat", LIVE)  # the image is back in the queue, and cat takes it over
    assert c is not None and c.image_id == ids[0] and c.acquired_at >= a.expires_at
    with pytest.raises(LeaseLost, match="'cat' holds the image now"):
        store.submit(ids[0], det(), lease=a)  # ann comes back too late
    with pytest.raises(LeaseLost):
        store.renew(a)
    assert store.release(a) is False and store.lease_of(ids[0]) == c
    assert store.submit(ids[0], det(k=2), lease=c) == 1
    (only,) = store.annotation_history(ids[0])
    assert only.user == "cat" and only.annotation.labels.tolist() == [2]


def test_an_expired_lease_nobody_took_is_still_honoured(store: AnnotationStore) -> None:
    """The documented choice: a slow annotator was not replaced, so their work is kept."""
    ids = add(store, 2)
    a = store.lease_next("ann", SHORT)
    b = store.lease_next("bob", SHORT)
    assert a is not None and b is not None
    time.sleep(EXPIRED)
    assert store.active_leases() == []
    assert store.submit(ids[0], det(), lease=a) == 1
    revived = store.renew(b, ttl_s=LIVE)
    assert store.lease_of(ids[1]) == revived and revived.renewals == 1
    assert lease_rows(store) == 1


def test_a_leased_submission_releases_and_names_the_holder(store: AnnotationStore) -> None:
    ids = add(store, 3)
    a = store.lease_next("ann", LIVE)
    assert a is not None and a.image_id == ids[0]
    with pytest.raises(ValueError, match="lease is for image"):
        store.submit(ids[1], det(), lease=a)
    with pytest.raises(AnnotationError):  # a refused submission leaves the lease where it was
        store.submit(ids[0], det(w=10), lease=a)
    assert store.lease_of(ids[0]) == a
    assert store.submit(ids[0], det(), lease=a) == 1
    assert store.lease_of(ids[0]) is None and lease_rows(store) == 0
    assert store.annotation_history(ids[0])[0].user == "ann"  # the holder, unless told otherwise
    with pytest.raises(LeaseLost, match="released or already used") as lost:
        store.submit(ids[0], det(), lease=a)
    assert lost.value.holder is None
    b = store.lease_next("bob", LIVE)
    assert b is not None and b.image_id == ids[1]  # the labeled image is not offered again
    assert store.submit(ids[1], det(), lease=b, user="bob@lab", source="prelabel_edited") == 1
    assert store.annotation_history(ids[1])[0].user == "bob@lab"
    assert store.submit(ids[0], det(k=1)) == 2  # without a lease, as when labeling alone


def test_bad_arguments(store: AnnotationStore) -> None:
    add(store, 1)
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl_s"):
            store.lease_next("ann", ttl)
    for name in ("", "a\x00b"):
        with pytest.raises(ValueError):
            store.lease_next(name, LIVE)
    a = store.lease_next("ann", LIVE)
    assert a is not None
    with pytest.raises(ValueError, match="ttl_s"):
        store.renew(a, ttl_s=0)
    assert lease_rows(store) == 1


def test_lease_times_come_from_the_database_clock(store: AnnotationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Annotators' machines disagree about the time. One running an hour ahead leases an image with a
    short lease and goes away: the image must come back after that short lease on the database's clock,
    not an hour later."""
    (i,) = add(store, 1)
    real_time = time.time
    monkeypatch.setattr(store_mod, "time", SimpleNamespace(time=lambda: real_time() + 3600))
    a = store.lease_next("ann", SHORT)
    monkeypatch.undo()
    assert a is not None and abs(a.acquired_at - real_time()) < 30
    time.sleep(EXPIRED)
    b = store.lease_next("bob", LIVE)
    assert b is not None and b.image_id == i


# ---------------------------------------------------------------------------------- migration
def test_a_version_1_store_gains_leases_and_keeps_its_data(location: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:1])
    with AnnotationStore(location) as s:
        ids = add(s, 3)
        s.submit(ids[0], det(), user="ann")
        s.set_meta("classes", ["cell"])
        assert s._conn().schema_version() == 1 and "leases" not in table_names(s)
    monkeypatch.undo()
    with AnnotationStore(location) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION == 2
        assert s.image_ids() == ids and s.get_meta("classes") == ["cell"]
        assert [(v.version, v.user) for v in s.annotation_history(ids[0])] == [(1, "ann")]
        lease = s.lease_next("bob", LIVE)
        assert lease is not None and lease.image_id == ids[1]
        assert s.integrity_check() == "ok"


def test_an_old_sqlite_project_file_migrates(tmp_project: Path) -> None:
    """A file as the SQLite-only store wrote it (schema version 1, before PostgreSQL)."""
    path = old_sqlite_project(tmp_project, images=2)
    with AnnotationStore(path) as s:
        assert s._conn().schema_version() == SCHEMA_VERSION
        assert s.annotation_history(7)[0].user == "ann"
        lease = s.lease_next("bob", LIVE)
        assert lease is not None and lease.image_id == 8
        assert s.submit(8, det(), lease=lease) == 1


# -------------------------------------------------------------------------------- concurrency
_ANNOTATOR = """
import random, sys, time
from livetrain_widgets.engine.annotation import Annotation
from livetrain_widgets.engine.store import AnnotationStore, LeaseLost
location, worker, ttl, hang_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
name, rng = f"w{worker}", random.Random(worker)
def say(*parts):
    print(*parts, flush=True)
with AnnotationStore(location) as store:
    say("ready")
    sys.stdin.readline()  # all start at once
    # Generous: it bounds only a failure (an image that never comes back); on a loaded CI machine four
    # processes polling the store can take far longer than the 1 s lease to see it expire.
    done, deadline = 0, time.monotonic() + 300
    while True:
        lease = store.lease_next(name, ttl)
        if lease is None:
            if not store.unlabeled_ids():
                break
            if time.monotonic() > deadline:
                sys.exit(f"{name}: images {store.unlabeled_ids()} never came back to the queue")
            time.sleep(0.05)  # the rest are leased; one may come back when its lease expires
            continue
        say("leased", lease.image_id, lease.token, repr(lease.acquired_at), repr(lease.expires_at))
        if done == hang_at:
            say("holding", lease.image_id)
            time.sleep(3600)  # killed here, mid-image
        time.sleep(rng.uniform(0, 0.02))  # drawing
        try:
            lease = store.renew(lease)  # the heartbeat
            say("renewed", lease.image_id, lease.token, repr(lease.expires_at))
            time.sleep(rng.uniform(0, 0.02))
            box = [[worker, lease.image_id % 40, worker + 3, lease.image_id % 40 + 5]]
            version = store.submit(lease.image_id, Annotation(64, 48, boxes=box, labels=[worker]), lease=lease)
        except LeaseLost as exc:
            say("lost", lease.image_id, lease.token, repr(str(exc)))
            continue
        say("submitted", lease.image_id, lease.token, version)
        done += 1
"""


def _annotators(location: str, victim_ttl: float, ttl: float, n: int) -> tuple[list[str], list[str]]:
    """Run ``n`` annotator processes from one start; worker 0 leases a second image and is killed with
    SIGKILL holding it. Returns each worker's stdout lines and stderr."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _ANNOTATOR, location, str(w), str(victim_ttl if w == 0 else ttl),
             "1" if w == 0 else "-1"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=subprocess_env(), cwd=REPO,
        )
        for w in range(n)
    ]
    try:
        for p in procs:  # wait until each has imported and opened the store
            assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.communicate()[1]
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        victim, lines = procs[0], [[] for _ in procs]  # type: list[list[str]]
        assert victim.stdout is not None
        for line in victim.stdout:
            lines[0].append(line.strip())
            if line.startswith("holding"):
                victim.send_signal(signal.SIGKILL)
                break
        errs = []
        for w, p in enumerate(procs):
            out, err = p.communicate(timeout=400)
            lines[w] += out.splitlines()
            errs.append(err)
        assert victim.returncode == -signal.SIGKILL, errs[0][-3000:]
        for p, err in zip(procs[1:], errs[1:], strict=True):
            assert p.returncode == 0, err[-3000:]
        return ["\n".join(w) for w in lines], errs
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=30)


def test_annotator_processes_label_every_image_once_and_a_killed_ones_image_comes_back(
    location: str, tmp_project: Path
) -> None:
    """Four annotator processes share 40 images; one is killed (SIGKILL) mid-image. Every image is
    labeled exactly once, every acknowledged submission is in the store as sent, no two leases on one
    image overlap, and the killed annotator's image returns when its lease expires and is labeled by
    another."""
    n_images, workers, victim_ttl = 40, 4, 1.0
    tmp_project.mkdir()
    with AnnotationStore(location) as s:
        ids = add(s, n_images)
    outs, _ = _annotators(location, victim_ttl, ttl=30.0, n=workers)

    leases: dict[str, dict[str, object]] = {}  # token -> image, worker, acquired, expires
    submitted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # image -> [(worker, version)]
    held: int | None = None
    for worker, out in enumerate(outs):
        for line in out.splitlines():
            kind, *f = line.split(maxsplit=4)
            if kind == "leased":
                leases[f[1]] = {"image": int(f[0]), "worker": worker, "acquired": float(f[2]),
                                "expires": float(f[3])}
            elif kind == "renewed":
                leases[f[1]]["expires"] = max(float(f[2]), leases[f[1]]["expires"])  # type: ignore[call-overload]
            elif kind == "submitted":
                submitted[int(f[0])].append((worker, int(f[2])))
            elif kind == "holding":
                held = int(f[0])
            elif kind == "lost":  # a worker's lease is only lost when a lease_next gave its image away
                pytest.fail(f"worker {worker} lost a live lease: {line}\n{out}")
    assert held is not None, outs[0]
    # Every image exactly once: none twice, none lost; each as its acknowledged submitter sent it.
    assert sorted(submitted) == ids and all(len(v) == 1 for v in submitted.values()), submitted
    with AnnotationStore(location) as s:
        assert s.unlabeled_ids() == [] and s.active_leases() == [] and lease_rows(s) == 0
        for image in ids:
            ((worker, version),) = submitted[image]
            (only,) = s.annotation_history(image)
            assert (only.version, only.user, version) == (1, f"w{worker}", 1)
            assert only.annotation.boxes[0].tolist() == [worker, image % 40, worker + 3, image % 40 + 5]
    # Never two annotators on one image at once: per image, each lease starts after the previous ended.
    by_image: dict[int, list[dict[str, object]]] = defaultdict(list)
    for lease in leases.values():
        by_image[lease["image"]].append(lease)  # type: ignore[index]
    for image, given in by_image.items():
        given.sort(key=lambda g: g["acquired"])  # type: ignore[arg-type,return-value]
        for before, after in itertools.pairwise(given):
            assert after["acquired"] >= before["expires"], (image, given)  # type: ignore[operator]
    # The killed annotator's image came back after its lease expired, and another annotator labeled it.
    assert [g["worker"] for g in by_image[held]][:1] == [0] and len(by_image[held]) == 2
    assert submitted[held][0][0] != 0
    assert sum(len(g) for g in by_image.values()) == n_images + 1

