"""In CI a missing part fails a test instead of skipping it (``tests/_require.py``, ``tests/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import _require, conftest


def test_a_missing_part_skips_here_and_fails_where_required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for part in ("data", "unshare", "deps"):
        monkeypatch.delenv(_require.flag(part), raising=False)
        with pytest.raises(pytest.skip.Exception, match="gone"):
            _require.missing(part, "gone")
        monkeypatch.setenv(_require.flag(part), "1")
        with pytest.raises(pytest.fail.Exception, match=f"gone \\({_require.flag(part)}=1"):
            _require.missing(part, "gone")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_here cannot be imported"):
        _require.module("no_such_module_here")
    assert _require.module("json").dumps([]) == "[]"
    monkeypatch.setattr(_require, "DATA", tmp_path)
    assert _require.data() == tmp_path
    with pytest.raises(pytest.fail.Exception, match=r"real data not found at .*nothing"):
        _require.data("nothing")


def _skipped(reason: str) -> pytest.TestReport:
    return pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, "skipped", ("t.py", 1, f"Skipped: {reason}"), "call")


def test_under_no_skips_any_skip_fails_but_a_test_that_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "NO_SKIPS", False)
    report = _skipped("chromium missing")
    conftest._unexpected_skip(report)
    assert report.skipped
    monkeypatch.setattr(conftest, "NO_SKIPS", True)
    conftest._unexpected_skip(report)
    assert report.failed and "LIVETRAIN_NO_SKIPS=1" in str(report.longrepr)
    mark = _require.not_applicable(True, "a GPU is present")
    report = _skipped(mark.kwargs["reason"])
    conftest._unexpected_skip(report)
    assert report.skipped
