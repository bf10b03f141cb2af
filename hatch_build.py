"""Hatch build hook: bundle the widgets' TypeScript (js/) into livetrain_widgets/static/ at build time.

The bundle is a build artifact (gitignored), so every wheel and editable install builds it here.
Set ``LIVETRAIN_SKIP_JS=1`` to skip (e.g. on a machine without Node.js, when static/ is already built).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ENTRIES = ("canvas.js", "panel.js", "plots.js", "stream.js")


class JSBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("LIVETRAIN_SKIP_JS"):
            return
        root = Path(self.root)
        js = root / "js"
        npm = shutil.which("npm")
        if npm is None:
            static = root / "livetrain_widgets" / "static"
            if all((static / e).is_file() for e in ENTRIES):
                return  # built earlier; nothing to do without Node
            raise RuntimeError(
                "building livetrain-widgets needs Node.js and npm to bundle the widgets' JavaScript "
                "(js/); install them, or set LIVETRAIN_SKIP_JS=1 if livetrain_widgets/static/ is built"
            )
        if not (js / "node_modules").is_dir():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=js, check=True)
        subprocess.run([npm, "run", "build"], cwd=js, check=True)
