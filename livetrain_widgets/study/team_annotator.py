"""A simulated annotator of a team's project, as a process of its own: what the team tests and the team
benchmark run 1, 2 or 4 of against one trainer actor.

    python -m livetrain_widgets.study.team_annotator --store URL --backend ADDRESS --user w1 [--truth FILE]

It labels like a person with :class:`~livetrain_widgets.engine.team.TeamSession`: lease the next free
image, ask the trainer for its pre-labels (timed: the latency an annotator waits), look for
``--review`` seconds, submit the true label (from ``--truth``, a JSON map of image name to annotation,
or a box of its own) under the lease, and go on until nothing is left. Every event is one JSON line on
stdout, with this process's monotonic time, so a driver can reconstruct what happened: ``leased``,
``predicted`` (ms, model step, offered, reachable), ``submitted``, ``lost`` (a lease taken over),
``holding`` (``--hang-at N``: it stops mid-image at its N-th image and waits to be killed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="the team's store URL")
    p.add_argument("--backend", default=None, help="Ray address of the cluster the trainer runs on")
    p.add_argument("--name", default=None, help="the trainer actor's name (default: from the store URL)")
    p.add_argument("--user", required=True)
    p.add_argument("--ttl", type=float, default=30.0, help="lease time to live, s")
    p.add_argument("--review", type=float, default=0.5, help="seconds spent on each image (mean)")
    p.add_argument("--truth", default=None, help="JSON: image name -> annotation (Annotation.to_json)")
    p.add_argument("--hang-at", type=int, default=-1, help="stop mid-image at this image (0-based) until killed")
    p.add_argument("--limit", type=int, default=0, help="stop after this many submissions (0: until done)")
    p.add_argument("--deadline", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--wait", action="store_true", help="read one line from stdin before starting")


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


async def label(args: argparse.Namespace) -> int:
    import numpy as np

    from ..engine.annotation import Annotation
    from ..engine.ray_trainer import connect
    from ..engine.store import LeaseLost
    from ..engine.team import TeamSession

    truth = json.loads(Path(args.truth).read_text()) if args.truth else {}
    rng = random.Random(args.user)
    handle = connect(args.backend, args.store, name=args.name)
    session = TeamSession(args.store, handle, user=args.user, lease_ttl_s=args.ttl, poll_s=0.5)
    say("ready")
    if args.wait:
        await asyncio.to_thread(sys.stdin.readline)
    await session.start()
    done, last = 0, None
    deadline = time.monotonic() + args.deadline
    try:
        while not args.limit or done < args.limit:
            image_id = await session.claim_next(after=last)
            if image_id is None:
                if not await asyncio.to_thread(session.store.unlabeled_ids):
                    break
                if time.monotonic() > deadline:
                    say("gave_up", unlabeled=await asyncio.to_thread(session.store.unlabeled_ids))
                    return 1
                await asyncio.sleep(0.1)  # the rest are leased; one comes back if its annotator went away
                continue
            last = image_id
            lease = session.lease
            say("leased", image=image_id, token=lease.token if lease else None)
            if done == args.hang_at:
                say("holding", image=image_id)
                await asyncio.sleep(3600)
            pred = await session.predict(image_id)
            say("predicted", image=image_id, ms=1000 * pred.seconds, step=pred.step, offered=pred.offered,
                ahead=pred.ahead, age=pred.age, reachable=session.reachable, objects=len(pred.annotation))
            await asyncio.sleep(rng.uniform(0.5, 1.5) * args.review)
            rec = session.store.image(image_id)
            if rec.name in truth:
                ann = Annotation.from_json(truth[rec.name])
            else:
                x = float(image_id % max(1, rec.width - 20))
                ann = Annotation(rec.width, rec.height, np.array([[x, 2.0, x + 16, 18.0]]), np.array([image_id % 2]))
            try:
                version = await session.submit(image_id, ann, threshold=0.3)
            except LeaseLost as exc:
                say("lost", image=image_id, why=str(exc))
                continue
            done += 1
            say("submitted", image=image_id, version=version, reachable=session.reachable)
    finally:
        await session.close()
    say("done", submitted=done)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m livetrain_widgets.study.team_annotator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return asyncio.run(label(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
