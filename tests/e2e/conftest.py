"""Fixtures of the real-browser tests: Debian's Chromium through Playwright, and throwaway JupyterLab /
Notebook 7 servers (see ``harness.py``).

Every test here is marked ``e2e`` (deselect with ``-m "not e2e"``). Where Chromium, Playwright or
JupyterLab is missing the tests skip with the reason, unless ``LIVETRAIN_REQUIRE_E2E=1`` (set by CI),
where they fail instead: CI must never pass by skipping them.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ConsoleLog, JupyterServer, artifacts_for_test, chromium_executable, launch_chromium, safe_name

HERE = Path(__file__).resolve().parent
FAILED = pytest.StashKey[bool]()


def _missing() -> str | None:
    if chromium_executable() is None:
        return "Chromium not found at /usr/bin/chromium or $LIVETRAIN_CHROMIUM (Debian: apt-get install chromium)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("notebook", "notebook")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[test]')"
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives a real JupyterLab / Notebook 7 in Chromium (tests/e2e)")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    missing = _missing() if mine else None
    for item in mine:
        item.add_marker(pytest.mark.e2e)
        if missing and os.environ.get("LIVETRAIN_REQUIRE_E2E") != "1":
            item.add_marker(pytest.mark.skip(reason=f"browser tests: {missing}"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture starts a browser or a server: fail with the reason instead of skipping.
    if os.environ.get("LIVETRAIN_REQUIRE_E2E") == "1" and item.get_closest_marker("e2e") and _missing():
        pytest.fail(f"LIVETRAIN_REQUIRE_E2E=1 but the browser tests cannot run: {_missing()}", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


# ---- browser


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Chromium, one per test module (about half a second to start). Not per session: Playwright's sync
    API leaves its event loop registered as the thread's running loop while it is active, and every
    pytest-asyncio test run after it would then fail ("Cannot run the event loop while another loop is
    running"). For the same reason the tests here are plain (sync) functions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture
def console_log() -> ConsoleLog:
    """The page's console messages and uncaught errors: ``assert not console_log.errors()``."""
    return ConsoleLog()


@pytest.fixture
def page(request: pytest.FixtureRequest, browser, console_log: ConsoleLog) -> Iterator[object]:
    """A fresh browser context and page (1400×1000). On failure: a screenshot, the console and the
    logs of the servers this test used go to ``<artifacts>/<test>/``. Afterwards every notebook session
    (and kernel) on those servers is shut down, so tests sharing a server start from clean kernels."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    console_log.attach(page)
    yield page
    servers = [
        request.getfixturevalue(name) for name in ("lab_server", "notebook_server") if name in request.fixturenames
    ]
    if request.node.stash.get(FAILED, False):
        folder = artifacts_for_test(_test_name(request.node))
        try:
            page.screenshot(path=str(folder / "failure.png"))
        except Exception as e:  # a crashed page still gets its logs saved
            (folder / "failure-screenshot-error.txt").write_text(repr(e))
        (folder / "console.txt").write_text(console_log.text() + "\n")
        for server in servers:
            (folder / f"server-{server.kind}.log").write_text(server.log_text())
    context.close()
    for server in servers:
        server.shutdown_sessions()


def _test_name(node: pytest.Item) -> str:
    return safe_name(node.nodeid.split("/")[-1])


# ---- servers


def _server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp(f"jupyter-{kind}")
    with JupyterServer(base / "root", kind=kind, state_dir=base / "state") as server:
        yield server


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """JupyterLab 4 serving a fresh folder (``server.root``); one per test module."""
    yield from _server("lab", tmp_path_factory)


@pytest.fixture(scope="module")
def notebook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """Notebook 7 serving a fresh folder (``server.root``); one per test module."""
    yield from _server("notebook", tmp_path_factory)


@pytest.fixture(params=["lab", "notebook"])
def jupyter(request: pytest.FixtureRequest) -> JupyterServer:
    """Runs the test once in JupyterLab and once in Notebook 7."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def notebook_path(request: pytest.FixtureRequest, jupyter: JupyterServer) -> Path:
    """A per-test notebook path inside the server's root (not yet written)."""
    return jupyter.root / safe_name(request.node.name) / "notebook.ipynb"
