"""Custom messages from the front end: validated, routed to named handlers, answered on failure.

Every message the front end can send is untrusted input (a stale view, a hand-crafted comm message, a
bug). A handler either acts or raises :class:`~._codec.WireError`; the caller turns that into an
``{"type": "error"}`` reply to the view that sent it, and nothing in the kernel changes. No exception
escapes into the kernel's comm machinery, where it would only be printed to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._codec import WireError

log = logging.getLogger("livetrain_widgets")

#: a message larger than this (JSON content) is refused before any handler looks at it
MAX_MESSAGE_CHARS = 64_000
#: a message or state update nested deeper than this is refused (real ones go 4 deep: objects, mask). JSON
#: nested ~1000 deep still parses, and whatever walks it recursively later (repr, json.dumps, ipywidgets'
#: buffer split when echoing a state) would run out of stack, depending on how deep the stack is by then.
MAX_DEPTH = 32


def action_of(content: Any, allowed: tuple[str, ...]) -> str:
    """The ``action`` of an ``{"type": "action", "action": ...}`` message, checked against ``allowed``."""
    if not isinstance(content, Mapping):
        raise WireError(f"a message must be an object, got {type(content).__name__}")
    if content.get("type") != "action":
        raise WireError(f"unknown message type {str(content.get('type'))[:40]!r}")
    action = content.get("action")
    if not isinstance(action, str) or action not in allowed:
        raise WireError(f"unknown action {str(action)[:40]!r}; expected one of {', '.join(allowed)}")
    return action


def dispatch(widget: Any, content: Any, handle: Callable[[Any], None]) -> None:
    """Run ``handle(content)``; reply ``{"type": "error", "message": ...}`` to the view on failure."""
    try:
        if too_deep(content):  # checked first: the repr below would recurse as deep as the JSON goes
            raise WireError("the message is nested too deeply")
        if len(repr(content)) > MAX_MESSAGE_CHARS:
            raise WireError("the message is too large")
        handle(content)
    except WireError as exc:
        reply_error(widget, str(exc))
    except Exception as exc:  # a bug in a callback must not break the widget's comm
        log.exception("livetrain widget message handler failed")
        reply_error(widget, f"{type(exc).__name__}: {exc}")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and dicts in ``value`` nest more than ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def wire_text(text: str) -> str:
    """``text`` as the front end can receive it: jupyter_client packs strictly as UTF-8, so a lone
    surrogate (JSON can carry one *in*, as ``\\ud800``, e.g. in a refused trait name) would make the
    whole reply unsendable; it is written out as its escape instead."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def reply_error(widget: Any, message: str) -> None:
    try:
        widget.send({"type": "error", "message": wire_text(message[:500])})
    except Exception:  # no comm (closed widget, plain Python): the log is all there is
        log.warning("livetrain widget: %s", message)
