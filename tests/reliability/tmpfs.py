"""Run a child script with a real tmpfs of its own (the full-disk and read-only-disk tests).

The tmpfs is mounted in a private mount namespace (``unshare --mount``), so the kernel answers ENOSPC and
EROFS exactly as a full or read-only drive would, and nothing outside the child sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import _require

REPO = Path(__file__).resolve().parents[2]


def private_tmpfs_command(mount: Path, *argv: str) -> list[str] | None:
    """``argv`` run with a 64 MB tmpfs at ``mount``, visible to that process only; None if not possible."""
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        return None
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    script = 'mount -t tmpfs -o size=64m tmpfs "$1" && shift && exec "$@"'
    cmd = [unshare, "--mount", *user, "sh", "-c", script, "sh", str(mount), *argv]
    probe = subprocess.run([unshare, "--mount", *user, "sh", "-c", script, "sh", str(mount), "true"],
                           capture_output=True)
    return cmd if probe.returncode == 0 else None


def run_on_private_tmpfs(tmp_path: Path, child: str, needed_for: str) -> tuple[Path, dict[str, Any]]:
    """Run ``child`` (a script template taking ``{repo}``; it gets the mount point as ``sys.argv[1]`` and
    prints ``REPORT <json>``) on a private tmpfs; returns the mount point and the last report.

    Without ``unshare`` the test skips (fails where ``LIVETRAIN_REQUIRE_UNSHARE=1``); ``needed_for`` says
    what the disk stands for ("a real small disk")."""
    mount = tmp_path / "disk"
    mount.mkdir()
    script = tmp_path / "child.py"
    script.write_text(child.format(repo=str(REPO)))
    cmd = private_tmpfs_command(mount, sys.executable, str(script), str(mount))
    if cmd is None:
        _require.missing("unshare", f"needs `unshare --mount` and tmpfs (Linux, root or user namespaces) for "
                         f"{needed_for}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return mount, json.loads(lines[-1][len("REPORT "):])
