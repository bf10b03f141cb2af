"""The harness itself, on a ten-line anywidget defined inside the notebook: in JupyterLab and in
Notebook 7, a click in the browser reaches the Python trait, and a trait set from Python reaches the DOM."""

from __future__ import annotations

import nbformat
import pytest

from .. import _require
from .harness import HarnessError, cell_output, open_notebook, run_all, screenshot, write_notebook

expect = _require.module("playwright.sync_api").expect

COUNTER = '''
import anywidget
import traitlets


class Counter(anywidget.AnyWidget):
    _esm = """
    function render({ model, el }) {
      const button = document.createElement("button");
      button.className = "lt-counter";
      const show = () => { button.textContent = `count is ${model.get("value")}`; };
      button.addEventListener("click", () => {
        model.set("value", model.get("value") + 1);
        model.save_changes();
      });
      model.on("change:value", show);
      show();
      el.appendChild(button);
    }
    export default { render };
    """
    value = traitlets.Int(0).tag(sync=True)


counter = Counter()
counter
'''


def test_counter_widget_round_trip(page, jupyter, notebook_path, console_log) -> None:
    write_notebook(notebook_path, ["import sys\nprint(sys.executable)", COUNTER])
    open_notebook(page, jupyter, notebook_path)
    run_all(page, jupyter, notebook_path)

    button = cell_output(page, 1).locator("button.lt-counter")
    expect(button).to_have_text("count is 0")

    kernel = jupyter.kernel(notebook_path)
    button.click()
    button.click()
    expect(button).to_have_text("count is 2")
    assert kernel.wait_for("counter.value", 2) == 2

    kernel.run("counter.value = 41")
    expect(button).to_have_text("count is 41")
    button.click()
    kernel.wait_for("counter.value", 42)

    # The kernel behind the page runs this environment's Python, with the repository importable.
    assert kernel.eval("__import__('livetrain_widgets').__name__") == "livetrain_widgets"
    screenshot(page, "counter")
    assert not console_log.errors()


def test_run_all_names_the_failing_cell(page, lab_server) -> None:
    # No kernelspec in the metadata: the front end asks which kernel to start; open_notebook accepts.
    path = lab_server.root / "failing" / "notebook.ipynb"
    write_notebook(path, ["x = 1", "1 / 0", "x = 2"])
    nb = nbformat.read(str(path), as_version=4)
    del nb.metadata["kernelspec"]
    nbformat.write(nb, str(path))
    open_notebook(page, lab_server, path)
    with pytest.raises(HarnessError, match=r"cell 1:\n1 / 0\n---\n[\s\S]*ZeroDivisionError"):
        run_all(page, lab_server, path)
    # Execution stopped at the error: the third cell never ran.
    assert lab_server.kernel(path).eval("x") == 1
