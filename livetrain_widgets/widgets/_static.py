"""Where the bundled front end lives (``livetrain_widgets/static/``, built from ``js/``)."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "static"


def asset(name: str) -> Path:
    """The path of a bundled file, with a message that says how to build it when it is missing.

    anywidget reads the file itself (and hot-reloads it with ``ANYWIDGET_HMR=1`` during development).
    """
    path = STATIC / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the widgets' JavaScript has not been built. Reinstall the package with "
            "Node.js and npm available (pip install -e .), or run `npm ci && npm run build` in js/."
        )
    return path
