"""The study's cost model: a re-export of :mod:`livetrain_widgets.engine.costs`.

:class:`CostModel` and :data:`SOURCES` (with the table of every default and its source) live in the
engine, which also uses them to tune the pre-label threshold and must not import from ``study``. This
module keeps ``from livetrain_widgets.study.costs import CostModel, SOURCES`` working.
"""

from __future__ import annotations

from ..engine.costs import SOURCES, CostModel

__all__ = ["SOURCES", "CostModel"]
