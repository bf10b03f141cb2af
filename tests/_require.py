"""What a test needs beyond the package: the real data, ``unshare``, the test extra's modules.

Where a part is missing a test skips with the reason, so that a partial checkout still runs the rest;
CI must never pass that way, so ``.ci/run`` sets a flag per part and the skip becomes a failure:

- ``LIVETRAIN_REQUIRE_DATA=1``: the real data (``$LIVETRAIN_DATA`` or ``<repo>/../shared/data``);
- ``LIVETRAIN_REQUIRE_UNSHARE=1``: ``unshare --mount`` with tmpfs (the real full and read-only disks);
- ``LIVETRAIN_REQUIRE_DEPS=1``: every module of the ``test`` and ``team`` extras.

(Chromium, PostgreSQL and Ray have their own flags: tests/e2e/conftest.py, pg_server.py, ray_server.py.)
``LIVETRAIN_NO_SKIPS=1`` (also set by CI; see tests/conftest.py) fails any other skip too, except a test
marked with :func:`not_applicable`: one that cannot apply on this machine (a GPU present, not Linux).
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the real-data folder (bccd/, deepforest/, nuclei/, membrane/)
DATA = Path(os.environ.get("LIVETRAIN_DATA") or REPO.parent / "shared" / "data")
#: the start of the reason of a skip that LIVETRAIN_NO_SKIPS=1 lets through
NOT_APPLICABLE = "not applicable here: "


def flag(part: str) -> str:
    """The environment variable that makes ``part`` ("data", "unshare", "deps") required."""
    return f"LIVETRAIN_REQUIRE_{part.upper()}"


def missing(part: str, reason: str) -> NoReturn:
    """Skip the test (or the module, at import) for a missing ``part``; fail it where CI requires the part."""
    if os.environ.get(flag(part)) == "1":
        pytest.fail(f"{reason} ({flag(part)}=1: this test must run here)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def data(*parts: str) -> Path:
    """``DATA / parts...``, which must exist (else :func:`missing`)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        missing("data", f"real data not found at {path} (set LIVETRAIN_DATA to the folder of the shared data)")
    return path


#: a mark for tests that read the real data through :data:`DATA` without the ``data_dir`` fixture
needs_data = pytest.mark.usefixtures("data_dir")


def module(name: str) -> ModuleType:
    """``pytest.importorskip(name)``, but a failure where ``LIVETRAIN_REQUIRE_DEPS=1``."""
    try:
        # as importorskip: a third-party module's own import-time warnings are not the test's (warnings are
        # errors here; jupyter_bbox_widget's traitlets deprecation would fail every test that imports it)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError as exc:
        missing("deps", f"{name} cannot be imported ({exc}); pip install -e '.[test,team]'")


def not_applicable(condition: bool, reason: str) -> pytest.MarkDecorator:
    """``pytest.mark.skipif`` for a test that cannot apply on this machine (not for a missing part)."""
    return pytest.mark.skipif(condition, reason=NOT_APPLICABLE + reason)


__all__ = ["DATA", "NOT_APPLICABLE", "data", "flag", "missing", "module", "needs_data", "not_applicable"]
