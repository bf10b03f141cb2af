"""The reliability report: every test in this folder adds rows (what was injected or tried, how many, how it
ended, labels lost), and the run ends with one table, printed and written to a Markdown file.

The table is what the suite proves, in figures: a test that asserts "nothing lost" also says how many
kills, bad files or fuzzed messages it took to show it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

#: ``LIVETRAIN_RELIABILITY=long`` runs the long form (50+ kills, 1,000-submission soak, more fuzzing).
LONG = os.environ.get("LIVETRAIN_RELIABILITY", "quick").lower() == "long"


def scale(quick: int, long: int) -> int:
    """How many of something to try: ``quick`` in the default run, ``long`` in the long form."""
    return long if LONG else quick


@dataclass(frozen=True)
class Row:
    area: str
    what: str
    tried: int | str
    outcome: str
    lost: int | str = "–"


_rows: list[Row] = []
_lock = threading.Lock()


def record(area: str, what: str, tried: int | str, outcome: str, lost: int | str = "–") -> None:
    """Add one row: ``area`` (faults, bad input, security, soak), what was done, how many, the result."""
    with _lock:
        _rows.append(Row(area, what, tried, outcome, lost))


def rows() -> list[Row]:
    with _lock:
        return list(_rows)


def markdown() -> str:
    order = {"faults": 0, "soak": 1, "bad input": 2, "fuzzing": 3, "security": 4}
    lines = [
        f"Reliability suite, {'long' if LONG else 'quick'} form",
        "",
        "| area | injected / tried | count | how it ended | labels lost |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows(), key=lambda r: order.get(r.area, 9)):
        cells = (r.area, r.what, str(r.tried), r.outcome, str(r.lost))
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown())
