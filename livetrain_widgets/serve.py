"""Start a team's trainer on a Ray cluster, show how it is doing, or stop it.

    livetrain serve --store postgresql://lt@db/cells --project /data/cells-trainer \\
        --task detection --classes RBC WBC Platelets --images /shared/cells
    livetrain serve --status --store postgresql://lt@db/cells
    livetrain serve --stop --store postgresql://lt@db/cells

The trainer is a detached Ray actor (see ``livetrain_widgets.engine.ray_trainer``): it keeps running
after this command returns, and Ray restarts it from its last checkpoint if its process dies. Start
the cluster first, with Ray's token authentication, on the machine with the GPU::

    ray get-auth-token --generate >/dev/null && RAY_AUTH_MODE=token ray start --head

and run this on a node of it (``--address auto``, the default) or give the cluster's address. A cluster
that does not require its token is refused (anyone who reaches its ports could run code on it). The
command prints the line each annotator runs in a notebook, and how they get the token.

The store (PostgreSQL) is the team's: the trainer and every annotator reach it at this URL. A new
project needs --task and --classes; an existing one takes them from the store. --project is the
trainer's folder (checkpoints) on the node the actor runs on, --images are paths every annotator can
read too (a shared folder).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .cli import key_values

PROG = "livetrain serve"


class ServeError(Exception):
    """A problem the person running the command can fix; printed as one line."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``livetrain serve``."""
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="print the running trainer's status and exit")
    what.add_argument("--stop", action="store_true",
                      help="stop the running trainer (final checkpoint; Ray does not restart it)")
    p.add_argument("--store", required=True,
                   help="the team's store URL, postgresql://user@host[:port]/db (the trainer and every annotator "
                        "reach it; a password is better kept in ~/.pgpass or PGPASSWORD than in the URL)")
    p.add_argument("--project", help="the trainer's folder for checkpoints, on the node it runs on (to start it)")
    p.add_argument("--task", choices=("detection", "segmentation", "classification"),
                   help="a new project's task (an existing one keeps its own)")
    p.add_argument("--classes", nargs="+", metavar="NAME", help="a new project's class names")
    p.add_argument("--images", nargs="+", metavar="PATH",
                   help="a folder or image files to add, readable at this path by the trainer and every annotator")
    p.add_argument("--labels", help="existing labels of those images, imported (with --format)")
    p.add_argument("--format", help="the labels' format: coco, voc, yolo, masks, instances, folders")
    p.add_argument("--address", default="auto",
                   help="the Ray cluster: auto (the cluster this machine is a node of, the default), host:6379 "
                        "or ray://host:10001")
    p.add_argument("--name", help="the actor's name (default: derived from the store URL, which is how annotators "
                                  "find it)")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs Ray reserves for the trainer (1)")
    p.add_argument("--num-gpus", type=float, default=0, help="GPUs for the trainer: 1 puts it on a GPU node (0)")
    p.add_argument("--max-restarts", type=int, default=-1,
                   help="how often Ray restarts a trainer whose process died (-1: always)")
    p.add_argument("--model", default="embedded", help="model name or folder (default: embedded)")
    p.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. input_size=256 (repeat; values read as JSON where they parse)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds to wait for the trainer to answer (its first start loads the model)")


def run(args: argparse.Namespace) -> int:
    """Serve, ``--status`` or ``--stop``; 0 on success, 1 with one line on stderr otherwise."""
    try:
        if args.stop:
            return _stop(args)
        if args.status:
            return _status(args)
        return _serve(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # a CLI: one readable line, never a traceback (see _message)
        from .engine._sql import hide_secrets

        # the store hides its password already; this also covers what Ray or the trainer said
        print(f"{PROG}: {hide_secrets(_message(exc), args.store)}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------------------- commands
def _serve(args: argparse.Namespace) -> int:
    if not args.project:
        raise ServeError("say where the trainer keeps its checkpoints: --project DIR")
    if (args.labels is None) != (args.format is None):
        raise ServeError("--labels and --format go together")
    if args.labels is not None and not args.images:
        raise ServeError("--labels imports the labels of --images: give --images too")
    options = parse_options(args.model_option)
    meta = _check_store(args.store, args.task, args.classes)
    ray = _connect(args.address)
    from .engine import ray_trainer
    from .engine.team import TrainerUnavailable

    name = args.name or ray_trainer.actor_name(args.store)
    running = _find_actor(ray, name) is not None
    # Paths as the trainer will read them: absolute, since the actor's working directory is Ray's, not
    # this shell's (on another node they must name the same shared folder there).
    project = _absolute(args.project)
    images: Any = None
    if args.images:
        images = [_absolute(p) for p in args.images]
        images = images[0] if len(images) == 1 else images
    labels = _absolute(args.labels) if args.labels else None
    try:
        handle = ray_trainer.serve(
            args.store, project, args.task, args.classes, images=images, labels=labels, format=args.format,
            address=args.address, name=name, model=args.model, model_options=options or None,
            num_cpus=args.num_cpus, num_gpus=args.num_gpus, max_restarts=args.max_restarts,
            ready_timeout_s=args.timeout,
        )
    except TrainerUnavailable as exc:
        if _actor_failure(exc) is None and isinstance(exc.__cause__, ray.exceptions.GetTimeoutError):
            # still starting (a slow model download, no free GPU): the actor stays, and may yet answer
            raise ServeError(f"the trainer did not answer within {args.timeout:.0f} s (still starting, or waiting "
                             f"for a free CPU/GPU: see `ray status`); check later with --status, or --stop it") \
                from None
        raise
    status = handle.call_sync("status", timeout=60)
    where = _where(ray, handle.actor)
    address = _cluster_address(ray, args.address)
    public = public_url(args.store)

    print(f"The team's trainer {'was running already' if running else 'runs'} on the Ray cluster at {address}.")
    print(f"  actor:       {name}  (Ray namespace {ray_trainer.NAMESPACE!r})")
    if running:
        print("               (it keeps the project, model and classes it was started with; --stop it first "
              "to change them)")
    checkpoints = where.get("checkpoints") or f"{project}/checkpoints"
    node = f" on {where['node']}" if where.get("node") else ""
    print(f"  checkpoints: {checkpoints}{node}")
    project_line = _project_line(meta.get("task") or args.task, meta.get("classes") or args.classes, status)
    print(f"  store:       {public}  ({project_line})")
    print(f"  trainer:     {_status_line(status)}")
    print()
    print("Each annotator, in a notebook:")
    print()
    for line in annotator_snippet(address, public, args.name):
        print(f"    {line}")
    print()
    for line in _notes(args.store, address):
        print(line)
    print()
    again = _again(args)
    print(f"Status:  livetrain serve --status {again}")
    print(f"Stop:    livetrain serve --stop {again}")
    return 0


def _status(args: argparse.Namespace) -> int:
    ray = _connect(args.address)
    from .engine import ray_trainer

    name = args.name or ray_trainer.actor_name(args.store)
    address = _cluster_address(ray, args.address)
    actor = _find_actor(ray, name)
    if actor is None:
        raise ServeError(f"no trainer named {name!r} runs on the Ray cluster at {address} (start it with "
                         "`livetrain serve --store ... --project ...`)")
    handle = ray_trainer.RayTrainer(actor, name)
    status = handle.call_sync("status", timeout=60)
    where = _where(ray, actor)
    print(f"The team's trainer {name} on the Ray cluster at {address}")
    for line in status_lines(status, where):
        print(f"  {line}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    ray = _connect(args.address)
    from .engine import ray_trainer

    name = args.name or ray_trainer.actor_name(args.store)
    try:
        stopped = ray_trainer.stop(args.address, args.store, name=args.name, timeout_s=args.timeout)
    except Exception as exc:  # the shutdown call failed; stop() kills the actor all the same
        raise ServeError(f"stopped the team's trainer {name}, but without its final checkpoint "
                         f"({_message(exc)}); its labels stay in the store") from None
    if not stopped:
        raise ServeError(f"no trainer named {name!r} runs on the Ray cluster at {_cluster_address(ray, args.address)}")
    print(f"Stopped the team's trainer {name} (final checkpoint written; its labels stay in the store).")
    return 0


# -------------------------------------------------------------------------------------- helpers
def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``--model-option`` pairs as keyword arguments (see :func:`livetrain_widgets.cli.key_values`)."""
    return key_values(pairs, "--model-option", ServeError)


def public_url(store: str) -> str:
    """The store URL without its password, as annotators give it: the actor's name is derived from this
    (``ray_trainer.actor_name`` leaves the password out), so they find the trainer with their own."""
    from .engine._sql import redact

    return redact(str(store), marker=None)


def annotator_snippet(address: str, store: str, name: str | None = None) -> list[str]:
    """The notebook lines an annotator runs (with ``name``, the actor's custom name, which
    ``LiveAnnotator`` cannot find by the store URL alone)."""
    if name is None:
        return ["from livetrain_widgets import LiveAnnotator",
                f'LiveAnnotator(backend="{address}", store="{store}", user="<your name>")']
    return ["from livetrain_widgets import LiveAnnotator",
            "from livetrain_widgets.engine.ray_trainer import connect",
            "from livetrain_widgets.engine.team import TeamSession",
            f'store = "{store}"',
            f'trainer = connect("{address}", store, name="{name}")',
            'LiveAnnotator(session=TeamSession(store, trainer, user="<your name>"))']


def status_lines(status: dict[str, Any], where: dict[str, Any] | None = None) -> list[str]:
    """The trainer's status (from its ``status`` call), one figure per line."""
    state = status.get("state") or {}
    lines = []
    up = time.time() - float(status.get("opened_at") or time.time())
    resumed = status.get("resumed_step")
    origin = f"resumed from the checkpoint of step {resumed}" if resumed is not None else "started from a fresh model"
    node = f" on {where['node']}" if where and where.get("node") else ""
    lines.append(f"process:  pid {status.get('pid')}{node}, up {_duration(up)}, {origin}")
    lines.append(f"phase:    {state.get('phase')} ({state.get('message')})")
    rate = status.get("steps_per_s")
    lines.append(f"step:     {state.get('step')}" + (f" ({rate:.1f} steps/s)" if rate is not None else ""))
    lines.append(f"labeled:  {state.get('labeled')} / {state.get('images')} images")
    leases = status.get("leases") or []
    who = ", ".join(f"{holder} (image {image_id})" for holder, image_id in leases)
    lines.append(f"labeling: {who or 'nobody now'}")
    quality = state.get("quality")
    lines.append("pre-labels: " + ("offered" if status.get("offering") else "not offered yet")
                 + (f", quality {quality:.2f}" if quality is not None else ""))
    ckpt = state.get("last_checkpoint_step")
    place = f" in {where['checkpoints']}" if where and where.get("checkpoints") else ""
    lines.append(f"checkpoint: {'step ' + str(ckpt) if ckpt is not None else 'none yet'}{place}")
    if state.get("error"):
        lines.append(f"problem:  {state['error']}")
    return lines


def _status_line(status: dict[str, Any]) -> str:
    state = status.get("state") or {}
    return (f"{state.get('phase')}, step {state.get('step')}, labeled {state.get('labeled')} / "
            f"{state.get('images')} images ({state.get('message')})")


def _project_line(task: str | None, classes: Sequence[str] | None, status: dict[str, Any]) -> str:
    state = status.get("state") or {}
    return f"{task}: {', '.join(classes or [])}; {state.get('images')} images"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _absolute(path: str | os.PathLike[str]) -> str:
    return str(Path(path).expanduser().absolute())


def _check_store(store: str, task: str | None, classes: Sequence[str] | None) -> dict[str, Any]:
    """Reach the store from here first: an unreachable store or a new project without its task and
    classes is said in one line now, rather than as a trainer that failed to start on the cluster."""
    from .engine.store import AnnotationStore

    with AnnotationStore(store) as s:
        meta = {"task": s.get_meta("task"), "classes": s.get_meta("classes")}
    if meta["task"] is None and (task is None or not classes):
        raise ServeError(f"{public_url(store)} holds no project yet: a new project needs --task and --classes")
    if meta["task"] is not None:
        if task is not None and task != meta["task"]:
            raise ServeError(f"{public_url(store)} is a {meta['task']} project, not {task} (drop --task)")
        if classes and list(classes) != list(meta["classes"]):
            raise ServeError(f"{public_url(store)} has the classes {' '.join(meta['classes'])} "
                             "(drop --classes to use them, or use another store for other classes)")
    return meta


def _connect(address: str) -> Any:
    """This process as a driver of the cluster (Ray's own INFO lines kept off this command's output)."""
    # Read by Ray when imported: its "Connecting to existing Ray cluster" lines are not this command's.
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
    try:
        import ray
    except ImportError:
        raise ServeError("a team's trainer runs on Ray, which is not installed: "
                         "pip install 'livetrain-widgets[team]'") from None
    from .engine import ray_trainer
    from .engine.ray_trainer import START_WITH_TOKEN

    # Ray's core writes to the process's stderr while it tries to connect (a warning a second, for 20 s,
    # when the cluster refuses the client's token): kept aside, and read for the cause if it fails.
    with tempfile.TemporaryFile() as log:
        try:
            with _stderr_to(log.fileno()):
                ray_trainer.init(address)
        except ray.exceptions.AuthenticationError:  # RAY_AUTH_MODE=token set here, and no token found
            raise ServeError("RAY_AUTH_MODE=token is set but this machine has no Ray token: copy it from the head "
                             "node (`ray get-auth-token` there prints it) into ~/.ray/auth_token here, or set "
                             "RAY_AUTH_TOKEN") from None
        except ConnectionError as exc:
            log.seek(0)
            said = log.read().decode(errors="replace")
            where = address
            if address == "auto":
                where = os.environ.get("RAY_ADDRESS") or "auto"
            if "InvalidAuthToken" in said or "AuthenticationError" in said:
                raise ServeError(f"the Ray cluster at {where} requires its token, and this machine has none or "
                                 "another one: copy it from the head node (`ray get-auth-token` there prints it) "
                                 "into ~/.ray/auth_token here, or set RAY_AUTH_TOKEN") from None
            if where == "auto":
                raise ServeError(f"no Ray cluster runs on this machine: start one with `{START_WITH_TOKEN}`, or "
                                 "give its address with --address") from None
            raise ServeError(f"could not connect to the Ray cluster at {where} ({_first_line(exc)})") from None
    return ray


@contextlib.contextmanager
def _stderr_to(fd: int) -> Iterator[None]:
    """File descriptor 2 (what native code writes to, not only ``sys.stderr``) redirected to ``fd``."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _find_actor(ray: Any, name: str) -> Any:
    from .engine.ray_trainer import NAMESPACE

    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def _cluster_address(ray: Any, given: str) -> str:
    """The address annotators give: the one given, or for ``auto`` the cluster's GCS address
    (``host:port``), since ``auto`` finds a cluster only on its own nodes."""
    if given != "auto":
        return given
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older Ray without it: the head's usual port, to be checked by the reader
        return "<head>:6379"


def _actor_where(actor: Any) -> dict[str, str]:
    """Runs inside the actor (``__ray_call__``): its node and its checkpoint folder."""
    import socket

    project = Path(actor.trainer.session.project).absolute()
    return {"node": socket.gethostname(), "checkpoints": str(project / "checkpoints")}


def _where(ray: Any, actor: Any) -> dict[str, str]:
    """Which node the trainer runs on and where its checkpoints go; empty if the actor cannot say."""
    try:
        return dict(ray.get(actor.__ray_call__.remote(_actor_where), timeout=30))
    except Exception:  # informative only: the rest of the output stands without it
        return {}


def _notes(store: str, address: str) -> list[str]:
    notes = [
        "  Token: the cluster requires Ray's token, so each annotator's machine needs it: `ray get-auth-token`",
        "  on the head node prints it; save it as ~/.ray/auth_token there (chmod 600), or set RAY_AUTH_TOKEN",
        "  before Jupyter starts. Share it like a password: whoever has it can run code on the cluster.",
    ]
    if not address.startswith("ray://"):
        notes.append("  From a machine outside the cluster's network, use the head's Ray Client address instead:")
        notes.append('  backend="ray://<head>:10001" (needs ray[client], in livetrain-widgets[team]).')
    if public_url(store) != str(store):
        notes.append("  The store's password is left out above: each annotator gives their own (~/.pgpass or "
                     "PGPASSWORD).")
    return notes


def _again(args: argparse.Namespace) -> str:
    """The options that find this trainer again (for the --status / --stop lines printed)."""
    parts = [f"--store {_quote(public_url(args.store))}"]
    if args.address != "auto":
        parts.append(f"--address {_quote(args.address)}")
    if args.name:
        parts.append(f"--name {_quote(args.name)}")
    return " ".join(parts)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _message(exc: BaseException) -> str:
    """One line for an error: ours and the store's as they are; the trainer's own failure to start
    (its constructor raised, inside the actor) is found under Ray's wrapping and said as such."""
    if isinstance(exc, ServeError):
        return str(exc)
    cause = _actor_failure(exc)
    if cause is not None:
        return f"the trainer failed to start: {cause}"
    if isinstance(exc, (ValueError, FileNotFoundError, ImportError, ConnectionError)) or \
            type(exc).__name__ in ("StoreError", "TrainerUnavailable", "InsecureClusterError"):
        return _first_line(exc)
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _actor_failure(exc: BaseException) -> str | None:
    """``"ValueError: ..."``, the exception the trainer's constructor raised inside the actor, if ``exc``
    comes from an actor that died starting (Ray's message holds the remote traceback; its last
    ``Name: message`` line is the one the person needs)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "actor_init_failed", False) or "error raised in its creation task" in str(seen):
            found = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", str(seen), flags=re.MULTILINE)
            if found:
                name, text = found[-1]
                return f"{name.rsplit('.', 1)[-1]}: {text.strip()}"
        seen = seen.__cause__ or seen.__context__
    return None
