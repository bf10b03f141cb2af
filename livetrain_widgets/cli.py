"""The ``livetrain`` command: ``livetrain simulate ...``, ``livetrain bench ...`` and ``livetrain serve ...``.

Each subcommand lives in its own module and is imported only when chosen, so ``livetrain --help``
does not load torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

_COMMANDS = {
    "simulate": ("livetrain_widgets.study.simulate", "simulated annotator: live vs HITL vs static vs manual"),
    "bench": ("livetrain_widgets.study.bench", "system figures: step time, latency, loop lag, memory"),
    "serve": ("livetrain_widgets.serve", "a team's trainer on a Ray cluster: start it, --status, --stop"),
}


def key_values(pairs: Sequence[str], what: str, error: type[Exception] = SystemExit) -> dict[str, Any]:
    """``["pretrained=false", "input_size=64"]`` -> ``{"pretrained": False, "input_size": 64}``: options
    such as ``--model-option``, values read as JSON where they parse, else kept as strings
    (``backbone=lite0``). A pair without ``=`` raises ``error`` naming ``what``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise error(f"{what} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="livetrain", description="livetrain-widgets command line")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(_COMMANDS) + "}")
    for name, (_, help_text) in _COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in _COMMANDS:
        parser.parse_args(argv)  # prints help / the error for an unknown command
        parser.print_help()
        return 2
    module = importlib.import_module(_COMMANDS[argv[0]][0])
    p = argparse.ArgumentParser(prog=f"livetrain {argv[0]}", description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    args = p.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
