"""examples/decay_probe.ipynb, executed end to end by a real Jupyter kernel (ipykernel) on this
interpreter: any cell that errors fails the test, and the outputs must hold the HTML table and,
with matplotlib installed (requirements.txt pins it), the package's own plot with labelled axes
and legends; no TensorFlow log line may reach the notebook (ipykernel shows the kernel's
file-descriptor output too)."""
import json
import os
import sys

import nbformat
from nbclient import NotebookClient

from conftest import TF_LOG_LINE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "decay_probe.ipynb")


def test_the_example_notebook_runs_in_a_kernel_of_this_venv():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:  # the saved outputs must not count: run from clean cells
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # What the notebook's figure holds, read in its kernel: every panel titled, with both axes
    # labelled and a legend.
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json\n"
        "print(json.dumps([[a.get_title(), a.get_xlabel(), a.get_ylabel(),\n"
        "                   [t.get_text() for t in a.get_legend().get_texts()]\n"
        "                   if a.get_legend() else []] for a in figure.axes]))"))
    notebook.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    # Raises CellExecutionError, naming the cell, on the first error; the kernel command's
    # "python" is this interpreter (jupyter_client substitutes sys.executable).
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    tables = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 2
    for table in tables:
        assert table.startswith("<table>") and "<td>moving_variance</td>" in table
    assert "decay 0 | fused yes (TF default) | steps 20" in tables[0]
    assert "decay 1 | fused yes (TF default) | steps 20" in tables[1]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    panels = json.loads(outputs[-2].text)
    assert len(panels) == 4
    for title, xlabel, ylabel, legend in panels:
        assert title and xlabel in ("train step", "decay") and ylabel and legend
    assert ["decay 0", "decay 0.9", "decay 1", "closed form"] == panels[0][3]
    streams = "".join(o.text for o in outputs if o.output_type == "stream")
    assert not TF_LOG_LINE.search(streams), streams
    assert "decay 0: measured not within 20 step(s), predicted never (tol 0.01); never, " \
        "because the fused kernel feeds moving_variance n/(n-1) = 16/15" in streams
    assert outputs[-1].text.strip() == sys.executable
