"""Real-browser harness: a throwaway Jupyter server, Debian's Chromium through Playwright, and a
side door into the notebook's own kernel.

Used by the pytest fixtures in ``conftest.py`` and by scripts (benchmarks) alike, so nothing here
depends on pytest. Playwright is imported lazily: importing this module needs only the standard
library, nbformat and jupyter_client.

The browser side drives the JupyterLab / Notebook 7 front end through its own application object
(``window.jupyterapp``, exposed by the server flag ``expose_app_in_browser``): commands run the same
code as the menus, without depending on menu layout, focus or keyboard shortcuts, and the same calls
work in both front ends. The kernel side connects a second client to the kernel the browser uses, via
the connection file in the server's (isolated) runtime folder, so a test can read Python state back.

    with JupyterServer(tmp / "root", kind="lab") as server, sync_playwright() as p:
        page = launch_chromium(p).new_page(viewport={"width": 1400, "height": 1000})
        log = ConsoleLog().attach(page)
        nb = write_notebook(server.root / "demo.ipynb", ["from mywidgets import Counter", "w = Counter(); w"])
        open_notebook(page, server, nb)             # loaded, kernel idle, dialogs accepted
        run_all(page, server, nb)                   # raises HarnessError with the failing cell's traceback
        cell_output(page, 1).locator("button").click()
        server.kernel(nb).wait_for("w.value", 1)    # Python state of the kernel behind the page
        server.kernel(nb).run("w.value = 5")        # syncs to the browser like any trait change
        screenshot(page, "after"); assert not log.errors()

Keyboard input: with the focus inside a widget, JupyterLab and Notebook 7 still treat keys as notebook
command-mode shortcuts ("a" inserts a cell, "d d" deletes one) unless an ancestor element carries
the ``data-lm-suppress-shortcuts`` attribute; a widget taking keys must set it (Lumino skips such events).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright

REPO = Path(__file__).resolve().parents[2]

Kind = Literal["lab", "notebook"]

CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage")

# Front-end settings written into the isolated user-settings folder (plugin id -> values).
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    # No "Would you like to receive official Jupyter news?" toast, no update check (no network in CI).
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
    # Every cell attached and rendered: the windowing modes skip (contentVisibility, defer) or detach
    # (full) cells outside the viewport, and a test looking for a widget further down would miss it.
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}

# Server-side configuration shared by `jupyter lab` and `jupyter notebook`.
SERVER_CONFIG: dict[str, Any] = {
    "ServerApp": {
        "open_browser": False,
        "port_retries": 0,
        # CI containers run as root; the server refuses that unless told.
        "allow_root": True,
    },
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "expose_app_in_browser": True,
        # The "pypi" manager queries PyPI for extensions; nothing is installed from a test.
        "extension_manager": "readonly",
    },
    "JupyterNotebookApp": {"expose_app_in_browser": True},
}

# No "Build recommended" dialog: the app folder is the installed one and must never be rebuilt.
PAGE_CONFIG = {"buildAvailable": False, "buildCheck": False}


class HarnessError(AssertionError):
    """A browser or kernel step did not reach its expected state (an AssertionError, so pytest shows it as a
    test failure with the message, not as an internal error)."""


# --------------------------------------------------------------------------------------------------
# Artifacts, paths, small utilities


def artifacts_dir() -> Path:
    """``$LIVETRAIN_ARTIFACTS`` or ``<repo>/test-artifacts`` (created)."""
    path = Path(os.environ.get("LIVETRAIN_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_test_name() -> str | None:
    """The running pytest test as a file-name-safe string (``test_harness.py-test_counter-lab``), or None."""
    current = os.environ.get("PYTEST_CURRENT_TEST")
    if not current:
        return None
    nodeid = current.rsplit(" (", 1)[0]  # "tests/e2e/test_x.py::test_y[lab] (call)"
    return safe_name(nodeid.split("/")[-1])


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.replace("::", "-")).strip("-") or "unnamed"


def artifacts_for_test(test_name: str | None = None) -> Path:
    """The artifact folder of one test (``<artifacts>/<test>/``), or the artifacts root outside pytest."""
    name = test_name or current_test_name()
    path = artifacts_dir() / name if name else artifacts_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(target: Page | Locator, name: str, *, test_name: str | None = None) -> Path:
    """Save a PNG of a page (its viewport) or of one element, as ``<artifacts>/<test>/<name>.png``."""
    path = artifacts_for_test(test_name) / f"{safe_name(name)}.png"
    target.screenshot(path=str(path))
    return path


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.1, message: str | Callable[[], str] = ""
) -> Any:
    """Call ``predicate`` until it returns something truthy; return that, or raise HarnessError after
    ``timeout`` seconds (the message may be a callable, evaluated only on failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise HarnessError(f"timed out after {timeout:.0f} s: {text or predicate}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_executable() -> str | None:
    """``$LIVETRAIN_CHROMIUM`` or Debian's ``/usr/bin/chromium``, if it exists."""
    path = os.environ.get("LIVETRAIN_CHROMIUM") or "/usr/bin/chromium"
    return path if Path(path).is_file() and os.access(path, os.X_OK) else None


def launch_chromium(playwright: Playwright, *, headless: bool = True, **kwargs: Any) -> Browser:
    """Start the system Chromium (Playwright's own browser downloads are not used)."""
    executable = chromium_executable()
    if executable is None:
        raise RuntimeError(
            "Chromium not found: install it (Debian: apt-get install chromium) or set LIVETRAIN_CHROMIUM"
        )
    return playwright.chromium.launch(
        executable_path=executable, headless=headless, args=[*CHROMIUM_ARGS, *kwargs.pop("args", ())], **kwargs
    )


def write_notebook(path: str | os.PathLike[str], cells: Sequence[str], *, kernel: str = "python3") -> Path:
    """Write a notebook of code cells (a cell starting with ``"# %% [markdown]"`` becomes markdown).

    The kernelspec is set, so neither front end asks which kernel to start.
    """
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for source in cells:
        if source.startswith("# %% [markdown]"):
            nb.cells.append(nbformat.v4.new_markdown_cell(source.split("\n", 1)[1] if "\n" in source else ""))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


# --------------------------------------------------------------------------------------------------
# The Jupyter server


class JupyterServer:
    """``jupyter lab`` (kind="lab") or ``jupyter notebook`` (kind="notebook", Notebook 7) on a free
    127.0.0.1 port, serving ``root``, with every Jupyter/IPython folder isolated under ``state_dir``.

    The kernels run ``sys.executable`` with the repository (and ``pythonpath``) first on PYTHONPATH, so
    a notebook imports ``livetrain_widgets`` and ``tests.*`` as the test process does.

    >>> with JupyterServer(tmp / "nb", kind="lab") as server:
    ...     server.url, server.token, server.api("api/sessions")
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        kind: Kind = "lab",
        *,
        state_dir: str | os.PathLike[str] | None = None,
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        if kind not in ("lab", "notebook"):
            raise ValueError(f"kind must be 'lab' or 'notebook', not {kind!r}")
        self.kind: Kind = kind
        self.root = Path(root).resolve()
        self._own_state = state_dir is None
        self.state_dir = (
            Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="livetrain-jupyter-"))
        )
        self.pythonpath = [str(p) for p in pythonpath]
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port = 0
        self.log_path = self.state_dir / f"jupyter-{kind}.log"
        self.log = ""  # the whole server log, once stopped
        self._proc: subprocess.Popen[bytes] | None = None
        self._children: set[int] = set()
        self._kernels: dict[str, KernelClient] = {}

    # ---- folders and environment

    @property
    def runtime_dir(self) -> Path:
        return self.state_dir / "runtime"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self) -> dict[str, str]:
        self.root.mkdir(parents=True, exist_ok=True)
        dirs = {
            "JUPYTER_CONFIG_DIR": self.state_dir / "config",
            "JUPYTER_DATA_DIR": self.state_dir / "data",
            "JUPYTER_RUNTIME_DIR": self.runtime_dir,
            "IPYTHONDIR": self.state_dir / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": self.state_dir / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.state_dir / "lab-workspaces",
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        config = dirs["JUPYTER_CONFIG_DIR"]
        (config / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG, indent=1))
        (config / "labconfig").mkdir(exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG))
        for plugin, values in self.settings.items():
            package, name = plugin.rsplit(":", 1)
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / package / f"{name}.jupyterlab-settings"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values, indent=1))
        # The user data folder comes first on Jupyter's path: this kernelspec shadows the environment's
        # (whose argv is a bare "python", i.e. whatever is first on PATH).
        kernelspec = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
        kernelspec.mkdir(parents=True, exist_ok=True)
        kernel_path = os.pathsep.join(p for p in [*self.pythonpath, str(REPO), os.environ.get("PYTHONPATH", "")] if p)
        (kernelspec / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "env": {"PYTHONPATH": kernel_path},
                    "metadata": {"debugger": False},
                },
                indent=1,
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update({k: str(v) for k, v in dirs.items()})
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    # ---- start / stop

    def start(self) -> JupyterServer:
        env = self._prepare()
        module = "jupyterlab" if self.kind == "lab" else "notebook"
        for attempt in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            cmd = [
                sys.executable, "-m", module,
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                f"--ServerApp.root_dir={self.root}",
                f"--IdentityProvider.token={self.token}",
            ]  # fmt: skip
            with open(self.log_path, "ab") as log:
                log.write(f"\n$ {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            try:
                self._wait_ready()
                return self
            except HarnessError:
                self._terminate()
                if attempt < 2 and "address already in use" in self.log_text().lower():
                    continue
                self.log = self.log_text()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise HarnessError(f"jupyter {self.kind} exited with {self._proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, HarnessError):
                self.api("api/status", timeout=2)
                return
            time.sleep(0.25)
        raise HarnessError(
            f"jupyter {self.kind} did not answer /api/status in {self.startup_timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Close kernel clients, shut the server down (API, then SIGTERM, then SIGKILL), kill any kernel it
        left behind, and keep its log in ``self.log``."""
        for client in self._kernels.values():
            client.close()
        self._kernels.clear()
        if self._proc is not None and self._proc.poll() is None:
            self._remember_children()
            with contextlib.suppress(OSError, HarnessError):
                self.api("api/shutdown", method="POST", timeout=5)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._terminate()
        self._kill_children()
        self.log = self.log_text()
        if self._own_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def _terminate(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._remember_children()
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def _remember_children(self) -> None:
        # Kernels run in their own process groups; note them so none outlives the server.
        try:
            import psutil

            self._children.update(p.pid for p in psutil.Process(self._proc.pid).children(recursive=True))
        except Exception:
            pass

    def _kill_children(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        procs = []
        for pid in self._children:
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._children.clear()

    def __enter__(self) -> JupyterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- log, REST API, URLs

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self.log

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def api(self, path: str, *, method: str = "GET", body: Any = None, timeout: float = 10) -> Any:
        """Call the server's REST API (``path`` like ``"api/sessions"``); returns the decoded JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            raise HarnessError(f"{method} /{path} -> {e.code}: {e.read()[:500]!r}") from e
        return json.loads(text) if text.strip() else None

    def relpath(self, path: str | os.PathLike[str]) -> str:
        """A notebook path as the server names it: relative to ``root``, with forward slashes."""
        p = Path(path)
        if p.is_absolute():
            p = p.resolve().relative_to(self.root)
        return p.as_posix()

    def notebook_url(self, path: str | os.PathLike[str]) -> str:
        rel = urllib.request.pathname2url(self.relpath(path))
        prefix = "lab/tree" if self.kind == "lab" else "notebooks"
        return f"{self.url}/{prefix}/{rel}?token={self.token}"

    # ---- kernels

    def sessions(self) -> list[dict[str, Any]]:
        return self.api("api/sessions")

    def kernel_id(self, path: str | os.PathLike[str] | None = None) -> str:
        """The id of the kernel of the notebook at ``path`` (or of the only session, when None)."""
        sessions = self.sessions()
        if path is None:
            if len(sessions) != 1:
                raise HarnessError(f"expected one notebook session, found {[s['path'] for s in sessions]}")
            return sessions[0]["kernel"]["id"]
        rel = self.relpath(path)
        for s in sessions:
            if s["path"] == rel and s.get("kernel"):
                return s["kernel"]["id"]
        raise HarnessError(f"no kernel session for {rel!r}; sessions: {[s['path'] for s in sessions]}")

    def kernel(self, path: str | os.PathLike[str] | None = None, *, timeout: float = 30) -> KernelClient:
        """A client of the kernel the browser uses for the notebook at ``path`` (cached per kernel)."""
        kernel_id = wait_for(
            lambda: _try(lambda: self.kernel_id(path)),
            timeout=timeout,
            message=lambda: f"no kernel for {path!r}; sessions: {self.sessions()}",
        )
        client = self._kernels.get(kernel_id)
        if client is None:
            connection_file = self.runtime_dir / f"kernel-{kernel_id}.json"
            wait_for(connection_file.is_file, timeout=timeout, message=f"no connection file {connection_file}")
            client = self._kernels[kernel_id] = KernelClient(connection_file)
        return client

    def shutdown_sessions(self) -> None:
        """End every notebook session and its kernel (between tests sharing a server)."""
        for client in self._kernels.values():
            client.close()
        self._kernels.clear()
        with contextlib.suppress(OSError, HarnessError):
            for s in self.sessions():
                with contextlib.suppress(HarnessError):
                    self.api(f"api/sessions/{s['id']}", method="DELETE", timeout=20)


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (HarnessError, OSError):
        return None


# --------------------------------------------------------------------------------------------------
# The kernel side door


@dataclass
class Execution:
    """What one ``KernelClient.execute`` printed: stdout, stderr, the last expression's text/plain
    (``result``) and the formatted traceback of an exception (``error``, ANSI colours stripped)."""

    stdout: str = ""
    stderr: str = ""
    result: str | None = None
    error: str | None = None
    displays: list[dict[str, Any]] = field(default_factory=list)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KernelError(HarnessError):
    """Code run through ``KernelClient.run`` raised; the message holds the kernel's traceback."""


class KernelClient:
    """A second client of a running kernel (the one behind a notebook in the browser).

    Its executions do not appear in the notebook, but they share the kernel's namespace: a test reads
    and writes the same objects the notebook's cells created, e.g. a widget's traits (trait changes
    made here sync to the browser as usual).
    """

    def __init__(self, connection_file: str | os.PathLike[str]) -> None:
        from jupyter_client import BlockingKernelClient

        self.connection_file = Path(connection_file)
        self._client = BlockingKernelClient()
        self._client.load_connection_file(str(self.connection_file))
        self._client.start_channels()
        self._sync_iopub()

    def _sync_iopub(self, timeout: float = 30) -> None:
        """Wait until this client's IOPub subscription is live (a ZeroMQ subscriber misses everything
        published before it has joined): ask for kernel_info until its busy/idle status arrives."""
        deadline = time.monotonic() + timeout
        sent: set[str] = set()
        while time.monotonic() < deadline:
            sent.add(self._client.kernel_info())
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                try:
                    msg = self._client.get_iopub_msg(timeout=0.1)
                except Exception:
                    continue
                if msg["msg_type"] == "status" and msg["parent_header"].get("msg_id") in sent:
                    self._drain_shell()
                    return
        raise HarnessError(f"kernel at {self.connection_file} did not answer on IOPub within {timeout:.0f} s")

    def _drain_shell(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self._client.get_shell_msg(timeout=0.2)

    def execute(self, code: str, *, timeout: float = 60) -> Execution:
        """Run ``code`` in the kernel (not stored in its history) and collect its output until idle."""
        client = self._client
        msg_id = client.execute(code, store_history=False, allow_stdin=False)
        result = Execution()
        out: list[str] = []
        err: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HarnessError(
                    f"kernel did not finish within {timeout:.0f} s: {code[:200]!r}\nstdout so far: {''.join(out)}"
                )
            try:
                msg = client.get_iopub_msg(timeout=min(remaining, 1.0))
            except Exception:  # queue.Empty
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "execute_result":
                result.result = content["data"].get("text/plain")
            elif kind == "display_data":
                result.displays.append(content["data"])
            elif kind == "error":
                result.error = (
                    _ANSI.sub("", "\n".join(content["traceback"])) or f"{content['ename']}: {content['evalue']}"
                )
            elif kind == "status" and content["execution_state"] == "idle":
                break
        # The reply on the shell channel: consume it so replies never pile up.
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                reply = client.get_shell_msg(timeout=1)
            except Exception:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        result.stdout, result.stderr = "".join(out), "".join(err)
        return result

    def run(self, code: str, *, timeout: float = 60) -> str:
        """Run ``code``; return its stdout, or raise KernelError with the traceback."""
        r = self.execute(code, timeout=timeout)
        if r.error:
            raise KernelError(f"kernel raised while running:\n{code}\n\n{r.error}")
        return r.stdout

    def eval(self, expression: str, *, timeout: float = 60) -> Any:
        """The JSON value of a Python expression evaluated in the kernel (``json.dumps`` must accept it)."""
        marker = "__livetrain_eval__"
        out = self.run(
            f"import json as _lt_json\nprint({marker!r} + _lt_json.dumps({expression}))\ndel _lt_json", timeout=timeout
        )
        for line in reversed(out.splitlines()):
            if line.startswith(marker):
                return json.loads(line[len(marker) :])
        raise HarnessError(f"no value printed for {expression!r}; stdout: {out!r}")

    def wait_for(self, expression: str, expected: Any = True, *, timeout: float = 10) -> Any:
        """Poll ``eval(expression)`` until it equals ``expected``; raise with the last value otherwise."""
        last: list[Any] = [None]

        def check() -> bool:
            last[0] = self.eval(expression)
            return last[0] == expected

        wait_for(
            check, timeout=timeout, interval=0.1, message=lambda: f"{expression} == {last[0]!r}, expected {expected!r}"
        )
        return last[0]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.stop_channels()


# --------------------------------------------------------------------------------------------------
# Browser console


# Console errors that the stock front ends produce on their own, with no widget involved (regexes).
KNOWN_CONSOLE_NOISE: tuple[str, ...] = (
    # Notebook 7.6's shortcuts plugin reacts to the settings of a lazily loaded plugin it has not
    # registered (t.plugins[id] is undefined) as soon as a notebook opens, with or without any widget.
    r"TypeError: Cannot read properties of undefined \(reading 'schema'\)[\s\S]*/static/notebook/notebook_core\.",
)


class ConsoleLog:
    """Everything the page printed to its console, and its uncaught exceptions (``pageerror``)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []  # (type, text)
        self.page_errors: list[str] = []

    def attach(self, page: Page) -> ConsoleLog:
        page.on("console", self._on_console)
        page.on(
            "pageerror", lambda error: self.page_errors.append(f"{error.name}: {error.message}\n{error.stack or ''}")
        )
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        loc = message.location or {}
        where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
        self.messages.append((message.type, message.text + where))

    def errors(self, *, ignore: Iterable[str] = ()) -> list[str]:
        """Uncaught exceptions plus console errors, less those matching a regex in ``ignore`` or in
        KNOWN_CONSOLE_NOISE. ``assert not console_log.errors()`` is the usual check."""
        patterns = [re.compile(p) for p in (*KNOWN_CONSOLE_NOISE, *ignore)]
        found = [*self.page_errors, *(text for kind, text in self.messages if kind == "error")]
        return [e for e in found if not any(p.search(e) for p in patterns)]

    def text(self) -> str:
        lines = [f"[{kind}] {text}" for kind, text in self.messages]
        lines += [f"[pageerror] {e}" for e in self.page_errors]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Driving the notebook in the browser

# Finds the notebook panel of a path among the main-area widgets (same API in Lab and Notebook 7).
_JS_PANEL = """
function __ltPanel(path) {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets("main")) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
}
"""

_JS_STATE = (
    "(path) => {"
    + _JS_PANEL
    + """
  const p = __ltPanel(path);
  if (!p) return {found: false, app: !!window.jupyterapp};
  const kernel = p.sessionContext.session ? p.sessionContext.session.kernel : null;
  const cells = p.content.widgets.map((c, i) => {
    const m = c.model;
    const info = {index: i, type: m.type};
    if (m.type === "code") {
      info.count = m.executionCount;
      info.state = m.executionState;
      info.errors = m.outputs.toJSON().filter(o => o.output_type === "error")
        .map(o => (o.traceback && o.traceback.length) ? o.traceback.join("\\n") : o.ename + ": " + o.evalue);
      info.stderr = m.outputs.toJSON().filter(o => o.output_type === "stream" && o.name === "stderr")
        .map(o => Array.isArray(o.text) ? o.text.join("") : o.text).join("");
      info.source = m.sharedModel.getSource().slice(0, 200);
    }
    return info;
  });
  return {
    found: true,
    ready: p.context.isReady && p.sessionContext.isReady && p.content.isVisible,
    kernel: kernel ? kernel.status : null,
    connection: kernel ? kernel.connectionStatus : null,
    cells,
    runAll: window.__ltRunAll || null,
  };
}"""
)

_JS_RUN_ALL = (
    "async (path) => {"
    + _JS_PANEL
    + """
  const app = window.jupyterapp;
  const p = __ltPanel(path);
  app.shell.activateById(p.id);
  p.content.activate();
  window.__ltRunAll = {done: false};
  app.commands.execute("notebook:run-all-cells").then(
    ok => { window.__ltRunAll = {done: true, ok}; },
    e => { window.__ltRunAll = {done: true, ok: false, error: String(e)}; },
  );
}"""
)


def notebook_state(page: Page, server: JupyterServer, path: str | os.PathLike[str]) -> dict[str, Any]:
    """The front end's view of a notebook: ready flags, kernel status and per-cell execution state."""
    return page.evaluate(_JS_STATE, server.relpath(path))


def dismiss_dialogs(page: Page) -> list[str]:
    """Accept every open JupyterLab dialog (kernel selection, "file changed", build prompts...); return
    their texts. The accept button of the kernel dialog keeps the preselected (notebook's) kernel."""
    texts = []
    dialogs = page.locator(".jp-Dialog")
    for _ in range(5):
        if dialogs.count() == 0:
            break
        dialog = dialogs.first
        with contextlib.suppress(Exception):
            texts.append(" ".join(dialog.inner_text(timeout=1000).split()))
        accept = dialog.locator(".jp-Dialog-button.jp-mod-accept")
        try:
            if accept.count():
                accept.first.click(timeout=2000)
            else:
                page.keyboard.press("Escape")
        except Exception:
            page.keyboard.press("Escape")
        page.wait_for_timeout(200)
    return texts


def open_notebook(page: Page, server: JupyterServer, path: str | os.PathLike[str], *, timeout: float = 90) -> None:
    """Open a notebook in the browser and wait until its document is loaded and its kernel is idle and
    connected, dismissing dialogs on the way."""
    rel = server.relpath(path)
    if not (server.root / rel).is_file():
        raise HarnessError(f"no notebook at {server.root / rel}")
    page.goto(server.notebook_url(rel), wait_until="domcontentloaded", timeout=timeout * 1000)
    dismissed: list[str] = []
    state: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal state
        dismissed.extend(dismiss_dialogs(page))
        state = notebook_state(page, server, rel)
        return bool(state.get("ready") and state.get("kernel") == "idle" and state.get("connection") == "connected")

    wait_for(
        ready,
        timeout=timeout,
        interval=0.25,
        message=lambda: (
            f"notebook {rel} not ready in {server.kind}: "
            f"{ {k: v for k, v in state.items() if k != 'cells'} }; dialogs dismissed: {dismissed}"
        ),
    )
    # Dialogs appearing after the kernel came up (e.g. a late kernel-selection prompt).
    page.wait_for_timeout(200)
    dismiss_dialogs(page)


def run_all(page: Page, server: JupyterServer, path: str | os.PathLike[str], *, timeout: float = 120) -> None:
    """Run every cell (the front end's "Run All Cells" command) and wait until all ran and the kernel
    is idle; raise HarnessError naming the failing cell with its traceback when one raised."""
    rel = server.relpath(path)
    page.evaluate(_JS_RUN_ALL, rel)
    state: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal state
        dismiss_dialogs(page)
        state = notebook_state(page, server, rel)
        run = state.get("runAll") or {}
        if not run.get("done"):
            return False
        if any(c.get("state") == "running" for c in state["cells"]):
            return False
        return state.get("kernel") == "idle"

    def pending() -> str:
        cells = state.get("cells", [])
        unfinished = [
            (c["index"], c.get("source", "")[:60]) for c in cells if c.get("type") == "code" and c.get("count") is None
        ]
        return f"cells without an execution count: {unfinished}; kernel {state.get('kernel')}"

    wait_for(finished, timeout=timeout, interval=0.2, message=lambda: f"run all in {rel}: {pending()}")
    failures = [c for c in state["cells"] if c.get("errors")]
    run = state.get("runAll") or {}
    if failures or not run.get("ok"):
        detail = "\n\n".join(
            f"cell {c['index']}:\n{c.get('source', '')}\n---\n{_ANSI.sub('', chr(10).join(c['errors']))}"
            for c in failures
        )
        raise HarnessError(f"run all in {rel} failed ({run}):\n{detail or pending()}")


def code_cell(page: Page, index: int) -> Locator:
    """The ``index``-th code cell of the visible notebook (0-based)."""
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-CodeCell").nth(index)


def cell_output(page: Page, index: int) -> Locator:
    """The output area of the ``index``-th code cell of the visible notebook (where a widget renders)."""
    return code_cell(page, index).locator(".jp-OutputArea")
