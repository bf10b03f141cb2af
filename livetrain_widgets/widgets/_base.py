"""What every livetrain widget shares: a guard on state sent by the front end, and message routing."""

from __future__ import annotations

from typing import Any, ClassVar

import anywidget
import traitlets

from ._messages import dispatch, log, reply_error


class GuardedWidget(anywidget.AnyWidget):
    """An anywidget whose front end may change only the traits it names, and only with valid values.

    ipywidgets lets a view set any synced trait; a hostile or buggy front end could otherwise rename
    the classes or swap the image under the user. A refused update changes nothing (traitlets rolls
    the whole update back) and the view gets an error reply.
    """

    #: traits the front end may set; everything else is the kernel's to change
    _frontend_writable: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_msg)

    def set_state(self, sync_data: dict[str, Any]) -> None:
        refused = sorted(k for k in sync_data if k not in self._frontend_writable)
        if refused:
            reply_error(self, f"the front end may not change {', '.join(refused)[:200]}")
            sync_data = {k: v for k, v in sync_data.items() if k in self._frontend_writable}
            if not sync_data:
                return
        try:
            super().set_state(sync_data)
        except (traitlets.TraitError, ValueError, TypeError) as exc:
            reply_error(self, f"refused an update from the front end: {exc}"[:500])

    def reply(self, request_id: str | int, error: str | None = None) -> None:
        """Answer a request: ``{"type": "done", "id"}``, or ``{"type": "error", "id", "message"}``."""
        content: dict[str, Any] = {"type": "done", "id": request_id}
        if error is not None:
            content = {"type": "error", "id": request_id, "message": error[:500]}
        try:
            self.send(content)
        except Exception:  # no comm (closed widget, plain Python): the log is all there is
            log.warning("livetrain %s: %s", type(self).__name__, error or "done")

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        dispatch(self, content, self._handle_message)

    def _handle_message(self, content: Any) -> None:  # overridden by widgets that take messages
        reply_error(self, "this widget takes no messages")
