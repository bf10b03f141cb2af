"""A project on a read-only disk (a mounted share, a write-protected drive): opening it says so in a
sentence, instead of a raw ``EROFS`` from the lock file, and changes nothing there.

Like the full-disk test, the project lives on a real tmpfs in a private mount namespace (``unshare``),
remounted read-only after it was made, so the kernel answers exactly as it would for a read-only drive.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .report import record
from .tmpfs import run_on_private_tmpfs

CHILD = textwrap.dedent("""
    import asyncio, json, subprocess, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.tiny_model import TinyClassifier, two_class_images
    from livetrain_widgets import Annotation, LiveSession

    disk = Path(sys.argv[1])
    report = {{}}

    async def main():
        images, labels = two_class_images(6)
        s = LiveSession(disk / "p", "classification", ["left", "right"], model=TinyClassifier(hidden=8))
        ids = s.add_images(images)
        for i in ids[:3]:
            await s.submit(i, Annotation(16, 16, category=labels[i - ids[0]]))
        await s.close()
        before = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for what, folder in [("existing", disk / "p"), ("new", disk / "q")]:
            try:
                LiveSession(folder, "classification", ["left", "right"], model=TinyClassifier(hidden=8))
                report[what] = None
            except Exception as exc:
                report[what] = [type(exc).__name__, str(exc)]
        report["unchanged"] = sorted(str(p.relative_to(disk)) for p in disk.rglob("*")) == before
        print("REPORT", json.dumps(report), flush=True)

    asyncio.run(main())
""")


def test_read_only_project_fails_with_a_sentence(tmp_path: Path) -> None:
    mount, r = run_on_private_tmpfs(tmp_path, CHILD, "a real read-only disk")
    # It was "OSError: [Errno 30] Read-only file system: '…/.lock'".
    assert r["existing"] == [
        "ProjectReadOnlyError",
        f"{mount / 'p'} is on a read-only disk, and a project is opened to save labels and checkpoints into "
        "it: copy the folder somewhere writable and open the copy there (its labels are in labels.sqlite)",
    ], r["existing"]
    assert r["new"][0] == "ProjectReadOnlyError" and r["new"][1].startswith(f"{mount / 'q'} is on a read-only disk")
    assert r["unchanged"]
    record("faults", "project on a read-only disk (real tmpfs remounted read-only): open, create", 2,
           "ProjectReadOnlyError: '<folder> is on a read-only disk … copy the folder somewhere writable'; "
           "nothing there changed", 0)
