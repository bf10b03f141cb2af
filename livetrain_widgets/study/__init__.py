"""Measured, not assumed: the simulated-annotator study (``livetrain simulate``) and system figures
(``livetrain bench``).

Both run the real engine (models, trainer, sampler, plateau detector, evaluator) on real labeled data;
only the person is simulated, by a documented cost model (:mod:`.costs`). Nothing here imports Jupyter.
"""
