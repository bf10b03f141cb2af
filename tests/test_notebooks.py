"""Every notebook in notebooks/ runs top to bottom in a real kernel, in its quick mode, and its own
``assert`` cells check what it shows. The notebooks are kept without outputs in git.

Quick mode is the environment variable ``LIVETRAIN_QUICK=1``: each notebook reads it in its first code
cell and runs briefly (a simulated labeler, few steps, tiny Hub-model configs instead of downloads).
A failing run leaves the executed notebook, outputs and traceback included, in
``test-artifacts/notebooks/`` (or ``$LIVETRAIN_ARTIFACTS/notebooks``) to read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from . import _require
from .conftest import REPO

nbformat = _require.module("nbformat")
nbclient = _require.module("nbclient")

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: the notebooks the README and the issue promise; a renamed one must not silently drop out of CI
EXPECTED = {"quickstart", "your_own_data", "teaching", "colab_gpu", "study"}
QUICK_SWITCH = "LIVETRAIN_QUICK"
STRIP_HINT = "strip it: jupyter nbconvert --clear-output --inplace notebooks/{name}.ipynb"


def test_the_promised_notebooks_exist() -> None:
    names = {p.stem for p in NOTEBOOKS}
    assert names >= EXPECTED, f"missing: {sorted(EXPECTED - names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [n for n, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; " + STRIP_HINT.format(name=path.stem)
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state; " + STRIP_HINT.format(name=path.stem)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert QUICK_SWITCH in "".join(c.source for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} does not read {QUICK_SWITCH}: CI could not run it briefly")


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = nbformat.read(path, as_version=4)
    # The kernel inherits this process' environment; it runs in an empty folder, as a user's would.
    monkeypatch.setenv(QUICK_SWITCH, "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may be downloaded, even by accident
    monkeypatch.setenv("LIVETRAIN_STUDY_RESULTS", str(REPO / "benchmarks" / "results"))
    monkeypatch.setenv("MPLBACKEND", "agg")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except Exception:
        out = Path(os.environ.get("LIVETRAIN_ARTIFACTS") or REPO / "test-artifacts") / "notebooks"
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / path.name)
        raise
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # A warning a user would see under a cell is a bug to fix (the kernel's own TCP notice aside).
    warned = [o.text for o in outputs if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    assert not warned, warned
