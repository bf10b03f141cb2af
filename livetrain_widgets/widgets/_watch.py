"""A throttled view of a running session for widgets: poll on the kernel's event loop, push traits.

The engine never calls into widgets (it must run without Jupyter). Widgets instead *look*: one
:class:`SessionWatcher` per session wakes a few times a second on the event loop (the thread that
owns the widgets' comms), reads the session's state and calls its listeners, which update traits
only when something changed. A training step in its worker thread is never waited on: everything
read here is either set atomically by the trainer or copied under its lock.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

log = logging.getLogger("livetrain_widgets")

def kernel_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop the widgets live on (a Jupyter kernel's), or None outside one.

    Widget callbacks run inside the kernel's loop but not always inside a task of it, so the policy's
    loop is asked too when no loop is "running" from this frame's point of view.
    """
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return None
    return loop if loop.is_running() else None


_WATCHERS: weakref.WeakKeyDictionary[Any, SessionWatcher] = weakref.WeakKeyDictionary()


class SessionWatcher:
    """Calls ``listener(session)`` for each listener at most ``fps`` times per second while running."""

    def __init__(self, session: Any, fps: float = 4.0) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.session = session
        self.interval = 1.0 / fps
        self._listeners: list[Callable[[Any], None]] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, session: Any) -> SessionWatcher:
        """The one watcher of a session (created on first use), so several widgets share one poll."""
        watcher = _WATCHERS.get(session)
        if watcher is None:
            watcher = _WATCHERS[session] = cls(session)
        return watcher

    def add(self, listener: Callable[[Any], None]) -> None:
        self._listeners.append(listener)
        self.poll_now(listener)
        self.start()

    def remove(self, listener: Callable[[Any], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners:
            self.stop()

    def start(self) -> None:
        """Start polling on the running event loop; without one (plain scripts) listeners are only
        called by :meth:`poll_now`."""
        if self._task is not None and not self._task.done():
            return
        loop = kernel_loop()
        if loop is not None:
            self._task = loop.create_task(self._run(), name="livetrain-watch")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def poll_now(self, only: Callable[[Any], None] | None = None) -> None:
        for listener in [only] if only is not None else list(self._listeners):
            try:
                listener(self.session)
            except Exception:  # one broken plot must not stop the panel from updating
                log.exception("livetrain widget update failed")

    async def _run(self) -> None:
        while self._listeners:
            await asyncio.sleep(self.interval)
            if getattr(self.session, "_closed", False):
                self.poll_now()
                break
            self.poll_now()
