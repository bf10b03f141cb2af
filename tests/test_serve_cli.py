"""``livetrain serve``, as a person runs it: a subprocess against a real Ray cluster (``ray start
--head`` with token authentication, the ``ray_cluster`` fixture) and a real PostgreSQL store, with a
small untrained detector on 64 px images so the trainer starts in seconds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from livetrain_widgets.engine.store import AnnotationStore
from tests import _require

from .ray_server import running_cluster

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = ["--model", "embedded", "--model-option", "pretrained=false", "--model-option", "input_size=64"]


def livetrain_serve(*args: str, cwd: Path, timeout: float = 600.0, python: list[str] | None = None,
                    ) -> subprocess.CompletedProcess[str]:
    """``livetrain serve ARGS`` in a process of its own, as from a shell on a machine that has the
    cluster's token (``RAY_AUTH_TOKEN``, from the fixture) and no ``RAY_AUTH_MODE`` set."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [*(python or [sys.executable, "-m", "livetrain_widgets"]), "serve", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: exit code 1, one line on stderr, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("livetrain serve: ")
    return lines[0]


def write_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")


def test_serve_status_stop(ray_cluster: str, postgres_url: str, tmp_path: Path) -> None:
    write_images(tmp_path / "images", 4)
    where = ["--store", postgres_url, "--address", ray_cluster]
    # relative paths, as typed in a shell: the actor, whose working directory is Ray's, gets them absolute
    served = livetrain_serve(*where, "--project", "trainer", "--task", "detection", "--classes", "RBC", "WBC",
                             "--images", "images", *TINY_MODEL, cwd=tmp_path)
    try:
        assert served.returncode == 0, served.stdout + served.stderr
        out = served.stdout
        assert f'LiveAnnotator(backend="{ray_cluster}", store="{postgres_url}", user="<your name>")' in out
        assert "from livetrain_widgets import LiveAnnotator" in out
        assert "`ray get-auth-token`" in out and "~/.ray/auth_token" in out  # how annotators get the token
        assert os.environ["RAY_AUTH_TOKEN"] not in out + served.stderr  # but not the token itself
        assert f"livetrain-trainer:{postgres_url}" in out  # the actor's name
        assert f"checkpoints: {tmp_path / 'trainer' / 'checkpoints'}" in out
        assert "labeled 0 / 4 images" in out
        assert "detection: RBC, WBC" in out

        # someone opens an image: the trainer sees the lease at its next look at the store
        with AnnotationStore(postgres_url) as store:
            first = store.images()[0].id
            store.lease_image(first, "alice", 120.0)
        deadline = time.monotonic() + 60
        while True:
            status = livetrain_serve("--status", *where, cwd=tmp_path)
            assert status.returncode == 0, status.stdout + status.stderr
            if f"alice (image {first})" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert f"labeling: alice (image {first})" in status.stdout
        assert "labeled:  0 / 4 images" in status.stdout
        assert "phase:" in status.stdout and "step:" in status.stdout
    finally:
        stopped = livetrain_serve("--stop", *where, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "Stopped the team's trainer" in stopped.stdout
    assert (tmp_path / "trainer" / "checkpoints" / "LATEST").exists()  # the final checkpoint

    gone = one_line_error(livetrain_serve("--status", *where, cwd=tmp_path))
    assert "no trainer named" in gone
    assert "no trainer named" in one_line_error(livetrain_serve("--stop", *where, cwd=tmp_path))


def test_no_such_trainer(ray_cluster: str, postgres_url: str, tmp_path: Path) -> None:
    line = one_line_error(livetrain_serve("--status", "--store", postgres_url, "--address", ray_cluster,
                                          "--name", "nobody-serves-this", cwd=tmp_path))
    assert "no trainer named 'nobody-serves-this'" in line
    assert "livetrain serve" in line
    # a store URL with a password (an unencoded "/" in it): the trainer's name is given without it
    status = livetrain_serve("--status", "--store", "postgresql://lt:Hunter2/Sekret@db/cells", "--address",
                             ray_cluster, cwd=tmp_path)
    line = one_line_error(status)
    assert "no trainer named 'livetrain-trainer:postgresql://lt@db/cells'" in line
    assert "Hunter2" not in status.stdout + status.stderr and "Sekret" not in status.stdout + status.stderr


def test_a_cluster_without_token_authentication_is_refused(postgres_url: str, tmp_path: Path) -> None:
    """Anyone who reaches an open cluster's ports runs code on it: the trainer is not started there, and
    the error says how to start the cluster with a token."""
    write_images(tmp_path / "images", 2)
    with running_cluster(token=None) as open_cluster:
        line = one_line_error(livetrain_serve(
            "--store", postgres_url, "--address", open_cluster.address, "--project", "trainer", "--task",
            "detection", "--classes", "RBC", "--images", "images", *TINY_MODEL, cwd=tmp_path, timeout=300))
    assert "does not require Ray's token authentication" in line
    assert "RAY_AUTH_MODE=token ray start --head" in line
    assert not (tmp_path / "trainer").exists()  # no trainer was started


def test_unreachable_store(tmp_path: Path) -> None:
    _require.module("psycopg")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(livetrain_serve(
        "--store", f"postgresql://lt:secret@127.0.0.1:{port}/cells", "--project", "trainer", "--task", "detection",
        "--classes", "a", cwd=tmp_path, timeout=120))
    assert "cannot connect to the PostgreSQL server" in line
    assert "secret" not in line


def test_new_project_needs_task_and_classes(postgres_url: str, tmp_path: Path) -> None:
    line = one_line_error(livetrain_serve("--store", postgres_url, "--project", "trainer", cwd=tmp_path, timeout=120))
    assert "holds no project yet" in line and "--task and --classes" in line


def test_without_ray(tmp_path: Path) -> None:
    # This interpreter with Ray made unimportable: the command says how to install it.
    python = [sys.executable, "-c",
              "import sys; sys.modules['ray'] = None; from livetrain_widgets.cli import main; sys.exit(main())"]
    line = one_line_error(livetrain_serve("--status", "--store", "postgresql://lt@db/cells", cwd=tmp_path,
                                          timeout=120, python=python))
    assert "pip install 'livetrain-widgets[team]'" in line


def test_annotators_find_the_trainer_without_the_password() -> None:
    from livetrain_widgets.engine.ray_trainer import actor_name
    from livetrain_widgets.serve import annotator_snippet, parse_options, public_url

    url = "postgresql://lt:secret@db:5432/cells"
    assert public_url(url) == "postgresql://lt@db:5432/cells"
    assert actor_name(public_url(url)) == actor_name(url)
    snippet = "\n".join(annotator_snippet("ray://head:10001", public_url(url)))
    assert "secret" not in snippet
    assert 'LiveAnnotator(backend="ray://head:10001", store="postgresql://lt@db:5432/cells"' in snippet
    assert parse_options(["pretrained=false", "input_size=64", "backbone=lite0"]) == {
        "pretrained": False, "input_size": 64, "backbone": "lite0"}
