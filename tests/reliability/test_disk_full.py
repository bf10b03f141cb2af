"""A full disk while writing a checkpoint, an export and a label: a clear error where the person looks
(the panel and ``session.state``), the previous checkpoint and export intact, labeling going on.

The project lives on a real 64 MB tmpfs, mounted in a private mount namespace (``unshare``), so the
kernel answers ENOSPC exactly as a full laptop disk would; nothing is simulated in Python. The scenario
runs in that child process and reports what it saw as JSON; the assertions are here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .report import record
from .tmpfs import run_on_private_tmpfs

CHILD = textwrap.dedent("""
    import asyncio, errno, json, os, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.test_widget_canvas import custom, update
    from tests.tiny_model import TinyClassifier, two_class_images
    import numpy as np
    from livetrain_widgets import LiveAnnotator, LiveSession, SessionConfig, TrainerConfig
    from livetrain_widgets.engine.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

    disk = Path(sys.argv[1])
    filler = disk / "filler"
    report = {{}}

    def fill(leave):
        # Write until the kernel says ENOSPC, then give back ``leave`` bytes.
        with open(filler, "ab") as f:
            try:
                while True:
                    f.write(b"x" * (1 << 20))
                    f.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        try:
            with open(filler, "ab") as f:  # the last partial megabyte
                while True:
                    f.write(b"x" * 4096)
                    f.flush()
        except OSError:
            pass
        os.truncate(filler, max(0, filler.stat().st_size - leave))

    async def settle(app):
        await asyncio.sleep(0)
        await app.wait_idle()

    async def label(app, category):
        update(app.canvas, {{"category": category}})
        custom(app.canvas, {{"type": "action", "action": "submit", "image_id": app.canvas.image_id}})
        await settle(app)

    def category(image):
        w = image.shape[1] // 2
        return int(image[:, w:].mean() > image[:, :w].mean())

    async def main():
        images, _ = two_class_images(30)
        cfg = SessionConfig(trainer=TrainerConfig(batch_size=4, lr=1e-2, checkpoint_every_s=1e9))
        app = LiveAnnotator(images, "classification", ["left", "right"], project=disk / "p",
                            model=TinyClassifier(hidden=20_000), config=cfg, plots=False)
        s = app.session
        await settle(app)
        for _ in range(4):
            await label(app, category(s.image(app.image_id)))
        await s.wait_steps(10, timeout=60)
        await s.checkpoint()
        good = latest_checkpoint(disk / "p" / "checkpoints")
        s.export("coco", disk / "export")
        exported = (disk / "export" / "annotations.json").read_bytes()

        # 1. Nearly full: a checkpoint (~12 MB) cannot be written, a label still can.
        fill(leave=512 << 10)
        try:
            await s.checkpoint()
            report["checkpoint_raised"] = None
        except CheckpointError as exc:
            report["checkpoint_raised"] = str(exc)
        app.panel.refresh(s)
        report["checkpoint_error"] = s.state.error
        report["panel_status"] = app.panel.status
        after = latest_checkpoint(disk / "p" / "checkpoints")
        report["latest_unchanged"] = after == good
        report["previous_loads"] = load_checkpoint(after)["step"]
        report["temporary_left"] = [p.name for p in (disk / "p" / "checkpoints").glob(".*")]
        before = s.store.labeled_count()
        for _ in range(2):
            await label(app, category(s.image(app.image_id)))
        report["labeled_while_nearly_full"] = s.store.labeled_count() - before
        steps = s.state.step
        await s.wait_steps(5, timeout=60)
        report["trained_while_full"] = s.state.step - steps
        report["error_still_shown"] = s.state.error == report["checkpoint_error"]

        # 2. Completely full: the export and the label are refused with a message; nothing stored is touched.
        fill(leave=0)
        try:
            s.export("coco", disk / "export")
            report["export_error"] = None
        except Exception as exc:
            report["export_error"] = f"{{type(exc).__name__}}: {{exc}}"
        report["export_intact"] = (disk / "export" / "annotations.json").read_bytes() == exported
        before = s.store.labeled_count()
        shown = app.image_id
        c = category(s.image(shown))
        await label(app, c)
        report["full_submit_error"] = app.panel.error
        report["full_labeled_delta"] = s.store.labeled_count() - before
        report["canvas_kept_label"] = app.image_id == shown and app.canvas.category == c
        # Images handed in as arrays, a model export, a new project: a sentence, no temporary file left.
        report["full_errors"] = {{}}
        for what, call in [
            ("add_images", lambda: s.add_images([np.full((16, 16, 3), 7, np.uint8)])),
            ("export_model", lambda: s.export_model(disk / "model")),
            ("new_project", lambda: LiveSession(disk / "new", "classification", ["a", "b"],
                                                model=TinyClassifier(hidden=8))),
        ]:
            try:
                call()
                report["full_errors"][what] = None
            except OSError as exc:
                report["full_errors"][what] = f"{{type(exc).__name__}}: {{exc}}"
        report["tmp_left"] = [str(p.relative_to(disk)) for p in disk.rglob("*") if ".tmp" in p.name]

        # 3. Space freed: the same label goes in, a checkpoint is written, the error clears.
        filler.unlink()
        await label(app, c)
        report["after_free_labeled_delta"] = s.store.labeled_count() - before
        await s.checkpoint()
        report["error_after_free"] = s.state.error
        report["new_checkpoint_step"] = int(latest_checkpoint(disk / "p" / "checkpoints").name.split("-")[1])
        report["good_step"] = int(good.name.split("-")[1])
        report["integrity"] = s.store.integrity_check()
        report["labeled_total"] = s.store.labeled_count()

        # 4. Full again when the notebook closes: close() says the final checkpoint was not written (it
        # returned as if it had been), and still releases the project.
        await s.wait_steps(3, timeout=60)
        fill(leave=0)
        try:
            await app.close()
            report["close_raised"] = None
        except CheckpointError as exc:
            report["close_raised"] = str(exc)
        filler.unlink()
        again = LiveSession(disk / "p", model=TinyClassifier(hidden=20_000), config=cfg)
        report["reopened_labeled"] = again.store.labeled_count()
        report["reopened_step"] = again.state.step
        await again.close()
        print("REPORT", json.dumps(report), flush=True)

    asyncio.run(main())
""")


@pytest.mark.slow
def test_disk_full_while_checkpointing_exporting_and_labeling(tmp_path: Path) -> None:
    mount, r = run_on_private_tmpfs(tmp_path, CHILD, "a real small disk")

    # The checkpoint: a clear error raised to the caller and shown in the state and the panel, the previous
    # one intact and loadable.
    sentence = "the disk is full at {}; nothing labeled was lost"
    assert sentence.format(mount / "p" / "checkpoints") in r["checkpoint_raised"], r["checkpoint_raised"]
    assert r["checkpoint_error"].endswith(r["checkpoint_raised"])
    assert "previous checkpoint is intact" in r["checkpoint_error"]
    assert "disk is full" in r["panel_status"]
    assert r["latest_unchanged"] and r["previous_loads"] == r["good_step"]
    assert r["temporary_left"] == [], "a failed checkpoint must not leave its partial folder using space"
    # The export: an error naming the cause, the previous file untouched.
    assert r["export_error"] and "disk is full" in r["export_error"], r["export_error"]
    assert r["export_intact"]
    # Labeling and training go on; the error stays on screen until a checkpoint succeeds.
    assert r["labeled_while_nearly_full"] == 2 and r["trained_while_full"] >= 5 and r["error_still_shown"]
    # No space at all: the submission is refused with a message, nothing stored changes, the canvas keeps
    # the label so the person can submit it again.
    assert "disk is full" in r["full_submit_error"] and r["full_labeled_delta"] == 0 and r["canvas_kept_label"]
    # Space back: the same label is saved, a checkpoint is written, the error is gone.
    assert r["after_free_labeled_delta"] == 1 and r["error_after_free"] is None
    assert r["new_checkpoint_step"] > r["good_step"] and r["integrity"] == "ok" and r["labeled_total"] == 7
    # Everything else that writes into the project on a full disk: the sentence, and nothing left behind.
    assert r["full_errors"] == {
        "add_images": "DiskFullError: could not save an image handed in as an array: "
                      + sentence.format(mount / "p" / "images"),
        "export_model": "DiskFullError: could not export the model: " + sentence.format(mount / "model"),
        "new_project": "DiskFullError: could not open the project: " + sentence.format(mount / "new"),
    }, r["full_errors"]
    assert r["tmp_left"] == []
    # close() on a full disk: raised (the final checkpoint is missing), the project released, no label lost.
    assert r["close_raised"] and sentence.format(mount / "p" / "checkpoints") in r["close_raised"]
    assert f"resumes from step {r['new_checkpoint_step']}" in r["close_raised"]
    assert r["reopened_labeled"] == 7 and r["reopened_step"] == r["new_checkpoint_step"]

    record("faults", "disk full (real 64 MB tmpfs) during a checkpoint write", 1,
           "CheckpointError raised by checkpoint(); 'the disk is full at … nothing labeled was lost … previous "
           "checkpoint is intact' in state and panel until a checkpoint succeeds; "
           "previous checkpoint loads; no partial folder left", 0)
    record("faults", "disk full during an export", 1,
           "OSError 'could not export to … the disk is full; files exported there before are intact'; "
           "previous file intact", 0)
    record("faults", "disk full during a submission", 1,
           "refused with 'the disk is full … everything saved before is safe' in the panel; canvas keeps the "
           "label; saved once space is freed", 0)
    record("faults", "disk full while adding an image array, exporting the model, creating a project", 3,
           "DiskFullError 'could not …: the disk is full at <folder>; nothing labeled was lost'; no *.tmp left", 0)
    record("faults", "disk full at close() (final checkpoint)", 1,
           "CheckpointError raised after the project is released ('the disk is full at …; nothing labeled was "
           "lost … resumes from step N'); reopened: every label, the last checkpoint", 0)
