"""What every livetrain widget shares: a guard on state sent by the front end, and message routing."""

from __future__ import annotations

import json
import math
import threading
from typing import Any, ClassVar

import anywidget
import traitlets

from ._messages import dispatch, log, reply_error, too_deep, wire_text
from ._watch import kernel_loop


class GuardedWidget(anywidget.AnyWidget):
    """An anywidget whose front end may change only the traits it names, and only with valid values.

    ipywidgets lets a view set any synced trait; a hostile or buggy front end could otherwise rename
    the classes or swap the image under the user. A refused update changes nothing (traitlets rolls
    the whole update back) and the view gets an error reply.
    """

    #: traits the front end may set; everything else is the kernel's to change
    _frontend_writable: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **kwargs: Any) -> None:
        # The loop (and its thread) this widget lives on: the kernel's, where the cell that made it ran.
        self._home_loop = kernel_loop()
        self._home_thread = threading.get_ident()
        super().__init__(**kwargs)
        self.on_msg(self._on_custom_msg)

    def _handle_msg(self, msg: dict[str, Any]) -> None:
        # ipykernel 7 with JupyterLab >= 4.4 (its default "comms over subshells") hands a widget's messages
        # to a subshell: another thread with its own event loop. Everything here (tasks, locks, the
        # trainer's start and stop) belongs to the kernel's loop, where the cells run: a task started on
        # the subshell's loop cannot be awaited from a cell ("attached to a different loop"). So a
        # message that arrives on another thread is handled on the home loop, in arrival order.
        loop = self._home_loop
        if (loop is not None and threading.get_ident() != self._home_thread
                and loop.is_running() and not loop.is_closed()):
            loop.call_soon_threadsafe(super()._handle_msg, msg)
            return
        super()._handle_msg(msg)

    def set_state(self, sync_data: dict[str, Any]) -> None:
        if not isinstance(sync_data, dict):  # the comm's JSON may hold anything here, not only an object
            reply_error(self, f"a state update must be an object, got {type(sync_data).__name__}")
            return
        refused = sorted(k for k in sync_data if k not in self._frontend_writable)
        if refused:
            reply_error(self, f"the front end may not change {', '.join(refused)[:200]}")
            sync_data = {k: v for k, v in sync_data.items() if k in self._frontend_writable}
            if not sync_data:
                return
        problem = _unsendable(sync_data)
        if problem is not None:
            reply_error(self, f"refused an update from the front end: {problem}"[:500])
            return
        try:
            super().set_state(sync_data)
        except (traitlets.TraitError, ValueError, TypeError) as exc:
            reply_error(self, f"refused an update from the front end: {exc}"[:500])
        except Exception as exc:  # an observer's bug: contained, like a message handler's (see dispatch)
            log.exception("livetrain widget update failed")
            reply_error(self, f"{type(exc).__name__}: {exc}")

    def reply(self, request_id: str | int, error: str | None = None) -> None:
        """Answer a request: ``{"type": "done", "id"}``, or ``{"type": "error", "id", "message"}``."""
        content: dict[str, Any] = {"type": "done", "id": request_id}
        if error is not None:
            content = {"type": "error", "id": request_id, "message": wire_text(error[:500])}
        try:
            self.send(content)
        except Exception:  # no comm (closed widget, plain Python): the log is all there is
            log.warning("livetrain %s: %s", type(self).__name__, error or "done")

    def _on_custom_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        dispatch(self, content, self._handle_message)

    def _handle_message(self, content: Any) -> None:  # overridden by widgets that take messages
        reply_error(self, "this widget takes no messages")


class Threshold(traitlets.Float):
    """A confidence threshold trait: a float in [0, 1] and never NaN, which passes ``Float``'s bounds (it
    compares false with both) and then hides every pre-label."""

    def __init__(self, default_value: float = 0.3, **kwargs: Any) -> None:
        super().__init__(default_value, min=0.0, max=1.0, **kwargs)

    def validate(self, obj: Any, value: Any) -> float:
        value = super().validate(obj, value)
        if math.isnan(value):
            self.error(obj, value, info="a threshold in [0, 1] (NaN is none)")
        return value


def _unsendable(state: dict[str, Any]) -> str | None:
    """Why the kernel could not send ``state`` back to a view as strict JSON (None: it can).

    JSON *from* the comm may hold NaN and infinity (a threshold of NaN passes ``Float(min=0, max=1)``),
    lone surrogates, or nesting deep enough that echoing it back overflows the stack. Such a value is
    refused here, whole, instead of being kept in a synced trait that no view can then be sent.
    """
    if too_deep(state):
        return "it is nested too deeply"
    try:
        json.dumps(state, allow_nan=False, ensure_ascii=False, default=_buffer).encode("utf-8")
    except (TypeError, ValueError) as exc:  # NaN or infinity, a lone surrogate, something not JSON
        return str(exc)
    return None


def _buffer(value: Any) -> None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return None  # binary parts (mask run lengths) travel as buffers beside the JSON
    raise TypeError(f"{type(value).__name__} is not JSON")
