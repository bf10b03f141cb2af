"""The reliability suite (faults, bad input, fuzzing, security, soak): see ``report.py``.

Quick form by default (part of the README's test command); ``LIVETRAIN_RELIABILITY=long`` for the long
form. The table of figures goes to ``$LIVETRAIN_RELIABILITY_REPORT`` (default
``test-artifacts/reliability-report.md``) and to the end of pytest's output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import report

REPO = Path(__file__).resolve().parents[2]


def _report_path() -> Path:
    return Path(os.environ.get("LIVETRAIN_RELIABILITY_REPORT") or REPO / "test-artifacts" / "reliability-report.md")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not report.rows():
        return
    path = _report_path()
    report.write(path)
    terminalreporter.section("reliability report")
    terminalreporter.write(report.markdown())
    terminalreporter.write_line(f"(written to {path})")
