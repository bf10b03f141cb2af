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
    start a local one (None), unless it is connected already."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True,
                 **({} if address else {"include_dashboard": False}))
    return ray


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
    actor keeps running after this process ends (``detached``), until :func:`stop`.
    """
    ray = init(address)
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
