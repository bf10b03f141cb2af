"""The team's trainer as a Ray actor: one per project, on whichever node of the cluster has the GPU.

Started once (``livetrain serve``, or :func:`serve` from Python), found by every annotator by name::

    handle = serve("postgresql://lt@db/cells", "/data/cells-trainer", task="detection",
                   classes=["RBC", "WBC", "Platelets"], images="/shared/cells", address="auto")
    # each annotator, in a notebook:
    LiveAnnotator(backend="ray://head:10001", store="postgresql://lt@db/cells", user="alice")

The actor is *detached* (it outlives the command that started it) and restarted by Ray when its
process dies (``max_restarts``, unlimited by default): the new process runs the constructor again,
which reopens the trainer's last checkpoint and reads the store, so training resumes where the
checkpoint left it and every label submitted meanwhile is trained on (labels live in the store, not in
the actor). Calls are not retried by Ray (``max_task_retries=0``): an annotator's session retries
itself and shows "reconnecting" in between (:class:`~livetrain_widgets.engine.team.TeamSession`).

**Only on a cluster that requires Ray's token authentication.** Whoever reaches an open Ray cluster's
ports runs code on it (and reads the store's password the trainer holds), and Ray listens on every
interface. Ray 2.60's ``ray start`` turns token authentication on only where a token exists already, so
:func:`serve` asks the cluster and refuses one without it (:class:`InsecureClusterError`, which says how
to start it with a token). A driver or annotator that has the token (``~/.ray/auth_token``,
``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``) uses it without ``RAY_AUTH_MODE`` having to be set.

Ray is imported only here, so the rest of the package runs without it (``pip install
livetrain-widgets[team]`` brings it and psycopg).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from ._sql import redact
from .team import TRAINER_CALLS, TeamTrainer, TrainerUnavailable

#: Ray namespace of livetrain's actors (names are unique per namespace)
NAMESPACE = "livetrain"

#: how to start a head node that requires a token (also printed by ``livetrain serve``)
#: (``--generate`` makes ~/.ray/auth_token where there is none; the token it prints is not for the terminal)
START_WITH_TOKEN = "ray get-auth-token --generate >/dev/null && RAY_AUTH_MODE=token ray start --head"


class InsecureClusterError(RuntimeError):
    """The Ray cluster does not require Ray's token authentication: the trainer is not started on it."""


def actor_name(store: str) -> str:
    """The actor's name for a store: one trainer per project, found from the store URL alone (password
    left out, so annotators with their own credentials find the same actor)."""
    return "livetrain-trainer:" + redact(str(store), marker=None)


class _TrainerActor:
    """The actor's body: a :class:`TeamTrainer` started on the actor's event loop at its first call
    (Ray runs an actor with ``async`` methods on one event loop; the constructor runs outside it)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.trainer = TeamTrainer(**kwargs)
        self._starting: asyncio.Lock | None = None

    async def _started(self) -> TeamTrainer:
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            await self.trainer.start()
        return self.trainer

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in TRAINER_CALLS:
            raise AttributeError(f"the trainer has no call {method!r}")
        trainer = await self._started()
        return await getattr(trainer, method)(*args, **kwargs)

    async def notify(self) -> None:
        (await self._started()).notify()

    async def shutdown(self) -> None:
        """Final checkpoint and release the project (before ``ray.kill``)."""
        await self.trainer.close()


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("a team's trainer runs on Ray: pip install 'livetrain-widgets[team]'") from exc
    return ray


def init(address: str | None = None) -> Any:
    """Connect this process to a Ray cluster (``"ray://head:10001"``, ``"head:6379"``, ``"auto"``), or
    start a local one (None), unless it is connected already. Where this machine has the cluster's token
    and ``RAY_AUTH_MODE`` is not set, token authentication is turned on first (:func:`use_token_if_present`)."""
    ray = _ray()
    if not ray.is_initialized():
        use_token_if_present()
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True,
                 **({} if address else {"include_dashboard": False}))
    return ray


def use_token_if_present() -> bool:
    """Turn on Ray's token authentication for this process (and the processes it starts) where
    ``RAY_AUTH_MODE`` is not set and a token is at hand: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
    ``~/.ray/auth_token``. Ray does so itself only for ``address="auto"``: a driver given the cluster's
    address would otherwise connect without its token and be refused. Returns whether token mode is on.

    An explicit ``RAY_AUTH_MODE`` is respected; a token sent to a cluster that does not ask for one is
    ignored by it, so nothing breaks where the cluster has none."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        return mode.lower() == "token"
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication (before 2.52)
        return False
    if not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")  # Ray read its configuration when imported: again, with the mode on
    return True


def _token_auth_enabled() -> bool:
    """Runs on a worker of the cluster: whether its processes require the token (a worker has the
    environment of the raylet that started it, so the mode the cluster was started with)."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # a Ray without token authentication
        return False
    return bool(is_token_auth_enabled())


def require_token_auth(address: str | None, timeout_s: float = 120.0) -> None:
    """Raise :class:`InsecureClusterError` unless the cluster this process is connected to requires Ray's
    token authentication (asked of one of its workers; no CPU reserved)."""
    ray = _ray()
    probe = ray.remote(num_cpus=0, max_retries=0)(_token_auth_enabled)
    if not ray.get(probe.remote(), timeout=timeout_s):
        where = f"at {address} " if address and address != "auto" else ""
        raise InsecureClusterError(
            f"the Ray cluster {where}does not require Ray's token authentication, so anyone who reaches its "
            "ports can run code on it and read the store's password: the trainer is not started there. "
            f"Restart it with a token (on the head node: ray stop, then {START_WITH_TOKEN}) and give each "
            "annotator the token (see the README, 'A team')"
        )


class RayTrainer:
    """A handle on the team's trainer actor, for :class:`~livetrain_widgets.engine.team.TeamSession`:
    a call that finds the actor dead or restarting raises :class:`TrainerUnavailable`."""

    def __init__(self, actor: Any, name: str) -> None:
        self.actor = actor
        self.name = name

    def __repr__(self) -> str:
        return f"RayTrainer({self.name!r})"

    async def call(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        ray = _ray()
        try:
            ref = self.actor.call.remote(method, *args, **kwargs)
            return await asyncio.wait_for(ref, timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            raise TrainerUnavailable(f"the trainer is restarting or unreachable ({type(exc).__name__})") from exc
        except asyncio.TimeoutError as exc:
            raise TrainerUnavailable(f"the trainer did not answer within {timeout:.0f} s") from exc

    def notify(self) -> None:
        self.actor.notify.remote()  # fire and forget: the trainer polls the store anyway

    def call_sync(self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """The same call from plain (non-async) code."""
        ray = _ray()
        try:
            return ray.get(self.actor.call.remote(method, *args, **kwargs), timeout=timeout)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError,
                ray.exceptions.GetTimeoutError) as exc:
            raise TrainerUnavailable(f"the trainer is restarting or unreachable ({type(exc).__name__})") from exc


def serve(
    store: str,
    project: str | os.PathLike[str],
    task: str | None = None,
    classes: Sequence[str] | None = None,
    *,
    images: Any = None,
    labels: Any = None,
    format: str | None = None,
    address: str | None = None,
    name: str | None = None,
    model: Any = "embedded",
    model_options: dict[str, Any] | None = None,
    config: Any = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_restarts: int = -1,
    detached: bool = True,
    ready_timeout_s: float = 600.0,
) -> RayTrainer:
    """Start the team's trainer actor (or find it, if it runs already) and wait until it answers.

    ``project``: the trainer's folder (checkpoints) on the node the actor runs on; ``store``: the team's
    store URL, which the actor and every annotator reach. ``images`` (paths every annotator can read
    too) are added to the project. ``num_gpus=1`` puts the actor on a GPU node. Returns a handle; the
    actor keeps running after this process ends (``detached``), until :func:`stop`. Refused with
    :class:`InsecureClusterError` on a cluster that does not require Ray's token authentication.
    """
    ray = init(address)
    require_token_auth(address)
    name = name or actor_name(store)
    kwargs = {"project": str(project), "store": str(store), "task": task, "classes": None if classes is None
              else list(classes), "model": model, "model_options": model_options, "config": config}
    options: dict[str, Any] = dict(name=name, namespace=NAMESPACE, get_if_exists=True, max_restarts=max_restarts,
                                   max_task_retries=0, num_cpus=num_cpus, num_gpus=num_gpus)
    if detached:
        options["lifetime"] = "detached"
    actor = ray.remote(_TrainerActor).options(**options).remote(kwargs)
    handle = RayTrainer(actor, name)
    handle.call_sync("ping", timeout=ready_timeout_s)
    if images is not None:
        handle.call_sync("add_images", images, labels, format, timeout=ready_timeout_s)
    return handle


def connect(backend: str | None, store: str, *, name: str | None = None) -> RayTrainer:
    """The handle on a running team trainer: ``backend`` is the Ray address (see :func:`init`)."""
    ray = init(backend)
    name = name or actor_name(store)
    try:
        actor = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError as exc:
        raise TrainerUnavailable(
            f"no trainer named {name!r} runs on the Ray cluster at {backend}: start it with "
            f"`livetrain serve --store ... --project ...` first"
        ) from exc
    return RayTrainer(actor, name)


def stop(backend: str | None, store: str, *, name: str | None = None, timeout_s: float = 120.0) -> bool:
    """Stop the team's trainer: final checkpoint, then the actor ends for good. False if none ran."""
    ray = init(backend)
    try:
        actor = ray.get_actor(name or actor_name(store), namespace=NAMESPACE)
    except ValueError:
        return False
    try:
        ray.get(actor.shutdown.remote(), timeout=timeout_s)
    finally:
        ray.kill(actor, no_restart=True)
    return True
