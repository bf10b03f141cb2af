"""The ``livetrain`` command: ``livetrain simulate ...``, ``livetrain bench ...`` and ``livetrain serve ...``.

Each subcommand lives in its own module and is imported only when chosen, so ``livetrain --help``
does not load torch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

_COMMANDS = {
    "simulate": ("livetrain_widgets.study.simulate", "simulated annotator: live vs HITL vs static vs manual"),
    "bench": ("livetrain_widgets.study.bench", "system figures: step time, latency, loop lag, memory"),
    "serve": ("livetrain_widgets.serve", "a team's trainer on a Ray cluster: start it, --status, --stop"),
}


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
