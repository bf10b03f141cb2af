"""Shared checks for the ``state_dict`` mappings that checkpoints save as JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_keys(state: Any, expected: Iterable[str], what: str) -> None:
    """Refuse a state with unknown or missing keys, naming them: resuming half a state is worse than
    failing loudly."""
    if not isinstance(state, dict):
        raise ValueError(f"{what} state must be a dict, got {type(state).__name__}")
    want, got = set(expected), set(state)
    if want != got:
        msg = []
        if got - want:
            msg.append(f"unknown keys {sorted(got - want)}")
        if want - got:
            msg.append(f"missing keys {sorted(want - got)}")
        raise ValueError(f"{what} state does not match: {', '.join(msg)}")
