"""examples/decay_probe.ipynb, executed end to end by a real Jupyter kernel (ipykernel) on this
interpreter: any cell that errors fails the test, and the outputs must hold the HTML table and,
with matplotlib installed (requirements.txt pins it), the plot."""
import os
import sys

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "decay_probe.ipynb")


def test_the_example_notebook_runs_in_a_kernel_of_this_venv():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:  # the saved outputs must not count: run from clean cells
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
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
    assert outputs[-1].text.strip() == sys.executable
