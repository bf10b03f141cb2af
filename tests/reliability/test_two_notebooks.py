"""The same project opened from two notebooks at once: a clear refusal, never a corrupted store.

Two real Jupyter kernels: the first labels continuously with a live session; the second tries again and
again to open the same project, as a person would by running the cell in another notebook. Every try
is refused with a message that says what to do; the first notebook's labels go on landing. When the
first kernel is killed (no clean close), the second opens the project at once (the OS lock dies with
its holder) and finds every label the first acknowledged, in a store that passes SQLite's integrity
check. A second test shows the store itself stays whole when two processes write to it at once (a
script that bypasses the session, say).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from livetrain_widgets.engine.store import AnnotationStore

from .. import _require
from ..test_kernel import _execute
from .report import record, scale

jupyter_client = _require.module("jupyter_client")
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kernel


def _kernel(cwd: Path):
    km = jupyter_client.KernelManager()
    km.kernel_cmd = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    km.start_kernel(cwd=str(cwd), env={**os.environ, "PYTHONPATH": str(REPO)})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def test_second_notebook_is_refused_and_the_store_stays_whole(tmp_path: Path) -> None:
    project = tmp_path / "project"
    first, second = _kernel(tmp_path), _kernel(tmp_path)
    try:
        km_a, kc_a = first
        _, kc_b = second
        r = _execute(kc_a, f"""
            import asyncio
            from tests.tiny_model import TinyClassifier, two_class_images
            from livetrain_widgets import Annotation, LiveAnnotator, SessionConfig, TrainerConfig
            images, labels = two_class_images(60)
            app = LiveAnnotator(images, "classification", ["left", "right"], project={str(project)!r},
                                model=TinyClassifier(), plots=False,
                                config=SessionConfig(trainer=TrainerConfig(batch_size=4, checkpoint_every_s=0.5)))
            acked = []
            async def label():  # a labeler who never stops: a submission every 20 ms, round and round
                while True:
                    for i, c in zip(app.session.image_ids, labels):
                        await app.session.submit(i, Annotation(16, 16, category=c))
                        acked.append(i)
                        await asyncio.sleep(0.02)
            labeling = asyncio.get_running_loop().create_task(label())
        """)
        assert r["error"] is None, r["error"]
        tries = scale(5, 40)
        refusals = []
        for _ in range(tries):
            r = _execute(kc_b, f"""
                from tests.tiny_model import TinyClassifier, two_class_images
                from livetrain_widgets import LiveAnnotator
                app = LiveAnnotator(two_class_images(4)[0], "classification", ["left", "right"],
                                    project={str(project)!r}, model=TinyClassifier(), plots=False)
            """)
            refusals.append(r["error"] or "")
        assert all("ProjectLockedError" in e and "is open in another process" in e for e in refusals), refusals[0]
        assert all("close that session first" in e for e in refusals)
        r = _execute(kc_a, "print(len(acked), app.session.state.step, app.session.state.error)")
        n_acked, steps, error = r["stdout"].split()
        assert int(n_acked) > 0 and int(steps) > 0 and error == "None", r  # the first notebook went on
        # The first kernel dies without closing anything; the second can open the project now.
        r = _execute(kc_a, "print(len(acked))")
        acked = int(r["stdout"])
        km_a.signal_kernel(signal.SIGKILL)
        for _ in range(200):
            if not km_a.is_alive():
                break
            time.sleep(0.05)
        r = _execute(kc_b, f"""
            from livetrain_widgets import LiveSession
            s = LiveSession({str(project)!r}, model=TinyClassifier())
            print(s.store.integrity_check(), sum(len(s.store.annotation_history(i)) for i in s.store.image_ids()))
            import asyncio
            await s.close()
        """)
        assert r["error"] is None, r["error"]
        status, versions = r["stdout"].split()
        assert status == "ok" and int(versions) >= acked, r["stdout"][:500]  # every acknowledged one
    finally:
        for km, kc in (first, second):
            kc.stop_channels()
            if km.is_alive():
                km.shutdown_kernel(now=True)
    record("faults", "same project opened from a second notebook (real kernels) while the first labels", tries,
           "each refused: 'ProjectLockedError: … is open in another process (pid …); close that session "
           f"first'; the first went on ({n_acked} submissions, {steps} steps); after killing the first kernel the "
           "second opens it, integrity ok", 0)


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from livetrain_widgets import Annotation
    from livetrain_widgets.engine.store import AnnotationStore
    store = AnnotationStore({path!r})
    ids = store.image_ids()
    for k in range({n}):
        store.submit(ids[k % len(ids)], Annotation(16, 16, category={who}), source="manual", user="w{who}")
    print("DONE", flush=True)
""")


def test_two_processes_writing_one_store_at_once(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with AnnotationStore(path) as store:
        for k in range(10):
            store.add_image(tmp_path / f"{k}.png", width=16, height=16, sha256=f"{k:064x}", nbytes=1)
    n = scale(200, 1000)
    procs = []
    for who in (0, 1):
        script = tmp_path / f"w{who}.py"
        script.write_text(WRITER.format(repo=str(REPO), path=str(path), n=n, who=who))
        procs.append(subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True))
    t0 = time.monotonic()
    outs = [p.communicate(timeout=300)[0] for p in procs]
    seconds = time.monotonic() - t0
    assert all(p.returncode == 0 and "DONE" in out for p, out in zip(procs, outs, strict=True))
    with AnnotationStore(path) as store:
        assert store.integrity_check() == "ok"
        versions = [v for i in store.image_ids() for v in store.annotation_history(i)]
        assert len(versions) == 2 * n  # every write from both processes, none lost or merged
        assert sorted(v.user for v in versions) == ["w0"] * n + ["w1"] * n
        for i in store.image_ids():  # versions stay a gapless sequence per image
            numbers = [v.version for v in store.annotation_history(i)]
            assert numbers == list(range(1, len(numbers) + 1))
    record("faults", "two processes writing label versions into one store at once (bypassing the session)",
           2 * n, f"all {2 * n} versions present, version numbers gapless, integrity ok ({seconds:.1f} s)", 0)
