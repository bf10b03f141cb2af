"""Issue 9's figures: 1, 2 and 4 simulated annotators label BCCD against one trainer actor.

    LIVETRAIN_DATA=../shared/data python benchmarks/team_bench.py --annotators 1 2 4 --images 40 --review 3

For each team size: a fresh PostgreSQL database (a throwaway server, as the tests start) and a fresh
trainer actor on a Ray cluster (``--address``, or a local ``ray start --head`` started and stopped
here), serving the embedded detector (ImageNet weights, 320 px) on the first ``--images`` BCCD images.
Each annotator is a process of its own (:mod:`livetrain_widgets.study.team_annotator`) that labels
with the true boxes after ``--review`` seconds per image (0.5x to 1.5x at random). Once half the images
are labeled the actor's process is killed with SIGKILL (``--kill-at 0``: never).

Printed and written to ``--out``/results.json, per team size:
- submissions per minute accepted (all annotators, first start to last submission);
- pre-label latency p50 / p95 per annotator (the round trip an annotator waits, trainer reachable);
- actor training steps per second (while it ran);
- duplicate labels (images with more than one version) and lost ones (submitted, not in the store);
- recovery after the kill: until the restarted actor answered, and until an annotator next got
  pre-labels from it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLASSES = ["RBC", "WBC", "Platelets"]


def _ray_head(tmp: Path) -> tuple[str, Any]:
    """Start a local Ray head that requires a token (as livetrain requires of a cluster), made here and given
    to this process and the annotators it starts in the environment; returns its address and a stopper
    that stops this head's own processes only (``ray stop`` would stop every Ray of the user)."""
    import secrets

    from tests.ray_server import RayCluster

    token = secrets.token_hex(32)
    cluster = RayCluster(tmp / "ray", token=token)
    cluster.start()
    os.environ["RAY_AUTH_TOKEN"] = token  # never printed; the annotators inherit it with os.environ
    return cluster.address, cluster.stop


def _truth(data: Path, n: int, out: Path) -> list[str]:
    from livetrain_widgets.engine.formats import load_labels

    paths = sorted((data / "bccd" / "JPEGImages").glob("*.jpg"))[:n]
    loaded = load_labels("voc", data / "bccd" / "Annotations", paths, CLASSES)
    truth = {Path(p).name: ann.to_json() for p, ann in loaded.annotations.items()}
    out.write_text(json.dumps(truth))
    return [str(p) for p in paths]


def run_team(n: int, args: argparse.Namespace, server: Any, address: str, paths: list[str], truth: Path,
             tmp: Path) -> dict[str, Any]:
    from livetrain_widgets.engine import ray_trainer
    from livetrain_widgets.engine.store import AnnotationStore

    url = server.url(server.create_database())
    name = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    handle = ray_trainer.serve(url, tmp / f"trainer-{n}", "detection", CLASSES, images=paths, address=address,
                               name=name, model_options={"input_size": args.input_size}, num_cpus=args.actor_cpus,
                               detached=False)
    served_s = time.monotonic() - t0
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "livetrain_widgets.study.team_annotator", "--store", url, "--backend", address,
         "--name", name, "--user", f"a{k}", "--review", str(args.review), "--truth", str(truth), "--wait"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        for k in range(n)]
    for p in procs:
        assert p.stdout is not None
        first = json.loads(p.stdout.readline())
        assert first["event"] == "ready", first
    t_go = time.monotonic()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    samples: list[tuple[float, int, int, int]] = []  # (t, step, labeled, pid)
    killed: dict[str, Any] = {}
    while any(p.poll() is None for p in procs):
        try:
            st = handle.call_sync("status", timeout=30)
            samples.append((time.monotonic(), st["state"]["step"], st["state"]["labeled"], st["pid"]))
            if killed and "answered" not in killed and st["pid"] != killed["pid"]:
                killed["answered"] = time.monotonic()
                killed["resumed_step"] = st["resumed_step"]
            if (not killed and args.kill_at > 0 and st["state"]["labeled"] >= args.kill_at * len(paths)):
                # a checkpoint a moment before, as the trainer writes every checkpoint_every_s (120 s)
                # in a real session: the restart resumes from it and re-trains on every label since
                handle.call_sync("checkpoint", timeout=60)
                time.sleep(2.0)
                os.kill(st["pid"], signal.SIGKILL)
                killed.update(pid=st["pid"], t=time.monotonic(), step=st["state"]["step"])
        except ConnectionError:
            pass
        time.sleep(1.0)
    events: list[list[dict[str, Any]]] = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"an annotator failed:\n{err[-3000:]}")
        events.append([json.loads(line) for line in out.splitlines() if line.startswith("{")])
    submitted = [e for ev in events for e in ev if e["event"] == "submitted"]
    t_end = max(e["t"] for e in submitted)
    per = []
    for k, ev in enumerate(events):
        ms = [e["ms"] for e in ev if e["event"] == "predicted" and e["reachable"]]
        per.append({"annotator": f"a{k}", "submitted": sum(e["event"] == "submitted" for e in ev),
                    "latency_ms_p50": float(np.percentile(ms, 50)), "latency_ms_p95": float(np.percentile(ms, 95)),
                    "ahead": sum(1 for e in ev if e["event"] == "predicted" and e.get("ahead")),
                    "predicted": len(ms)})
    # steps per second while the actor ran: step gains between samples of the same process
    gained = dur = 0.0
    for (ta, sa, _, pa), (tb, sb, _, pb) in itertools.pairwise(samples):
        if pa == pb and sb >= sa:
            gained += sb - sa
            dur += tb - ta
    with AnnotationStore(url) as store:
        duplicates = sum(1 for i in store.image_ids() if len(store.annotation_history(i)) > 1)
        labeled = set(store.labeled_ids())
        lost = sum(1 for e in submitted if e["image"] not in labeled)
        unlabeled = len(store.unlabeled_ids())
    recovery: dict[str, Any] = {}
    if killed:
        back = [e["t"] for ev in events for e in ev
                if e["event"] == "predicted" and e["reachable"] and e["t"] > killed["t"]]
        recovery = {"killed_at_step": killed["step"], "resumed_step": killed.get("resumed_step"),
                    "actor_answers_s": killed.get("answered", float("nan")) - killed["t"],
                    "prelabels_back_s": (min(back) - killed["t"]) if back else None,
                    "submitted_while_away": sum(1 for e in submitted if not e["reachable"])}
    ray_trainer.stop(address, url, name=name)
    server.drop_database(url.rsplit("/", 1)[1])
    return {
        "annotators": n, "images": len(paths), "review_s": args.review, "serve_s": served_s,
        "minutes": (t_end - t_go) / 60, "submissions_per_min": len(submitted) / ((t_end - t_go) / 60),
        "per_annotator": per, "actor_steps_per_s": gained / dur if dur else None,
        "duplicates": duplicates, "lost": lost, "unlabeled": unlabeled, "recovery": recovery,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("LIVETRAIN_DATA", str(REPO.parent / "shared" / "data")))
    p.add_argument("--annotators", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--review", type=float, default=3.0, help="mean seconds per image")
    p.add_argument("--kill-at", type=float, default=0.5, help="kill the actor at this share labeled (0: never)")
    p.add_argument("--input-size", type=int, default=320)
    p.add_argument("--actor-cpus", type=float, default=2, help="CPUs Ray gives the actor (its torch threads)")
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start a local head)")
    p.add_argument("--out", default="benchmarks/results/team")
    args = p.parse_args()

    from livetrain_widgets.engine._output_folder import OutputFolder
    from tests.pg_server import running_server

    tmp = Path(tempfile.mkdtemp(prefix="livetrain-team-bench-"))
    out = OutputFolder(args.out, "benchmarks/team_bench.py")  # refused at once if it holds files not its own
    truth = tmp / "truth.json"
    paths = _truth(Path(args.data), args.images, truth)
    stop = None
    address = args.address
    if address is None:
        address, stop = _ray_head(tmp)
    os.environ["RAY_AUTH_MODE"] = "token"
    results = []
    try:
        with running_server() as server:
            for n in args.annotators:
                r = run_team(n, args, server, address, paths, truth, tmp)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        if stop is not None:
            stop()
        shutil.rmtree(tmp, ignore_errors=True)
    out.write("results.json", json.dumps(results, indent=1))
    print("\n| annotators | submissions/min | latency p50 / p95 ms per annotator | actor steps/s | duplicates | lost "
          "| actor answers again (s) | pre-labels back (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        lat = "; ".join(f"{a['latency_ms_p50']:.0f} / {a['latency_ms_p95']:.0f}" for a in r["per_annotator"])
        rec = r["recovery"]
        print(f"| {r['annotators']} | {r['submissions_per_min']:.1f} | {lat} | {r['actor_steps_per_s'] or 0:.2f} | "
              f"{r['duplicates']} | {r['lost']} | {rec.get('actor_answers_s', float('nan')):.1f} | "
              f"{rec.get('prelabels_back_s') or float('nan'):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
