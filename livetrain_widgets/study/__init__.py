"""Measured, not assumed: the simulated-annotator study (``livetrain simulate``) and system figures
(``livetrain bench``).

Both run the real engine (models, trainer, sampler, plateau detector, evaluator) on real labeled data;
only the person is simulated, by a documented cost model (:mod:`.costs`). Nothing here imports Jupyter.

The same as the command line, from Python::

    from livetrain_widgets.study import Strategy, StudyConfig, load_study_data, run_study

    data = load_study_data("detection", "bccd/JPEGImages", "bccd/Annotations", "voc", limit=40)
    results = run_study(data, [Strategy.parse(s) for s in ("live", "hitl", "manual")],
                        StudyConfig(steps_per_image=15), out="study-out")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_EXPORTS = {
    "CostModel": ".costs",
    "StudyData": ".dataset",
    "load_study_data": ".dataset",
    "Strategy": ".simulate",
    "StudyConfig": ".simulate",
    "run_study": ".simulate",
    "format_table": ".results",
    "run_bench": ".bench",
}
__all__ = [
    "CostModel",
    "Strategy",
    "StudyConfig",
    "StudyData",
    "format_table",
    "load_study_data",
    "run_bench",
    "run_study",
]
__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())

if TYPE_CHECKING:
    from .bench import run_bench
    from .costs import CostModel
    from .dataset import StudyData, load_study_data
    from .results import format_table
    from .simulate import Strategy, StudyConfig, run_study
