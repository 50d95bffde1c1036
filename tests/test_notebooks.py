"""Both notebooks run end to end on a tiny phantom, settings injected after the parameters cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = pytest.mark.slow


def run_notebook(name: str, settings: str, cwd: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])
    )
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(settings))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), path.name


def test_train_then_test_notebook(tiny_phantom, tmp_path):
    train_settings = (
        f'data_dir = "{tiny_phantom / "train"}"\nout_dir = "model"\nepochs = 2\ninput_shape = 64\n'
        "batch_size = 4\nprint_checkpoint = 1\nsave_checkpoint = 1\n"
    )
    notebook = run_notebook("train.ipynb", train_settings, tmp_path)
    text = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "Completed epochs: 2/2 | Dice loss:" in text
    assert "Available RAM" in text
    assert (tmp_path / "model" / "sliceseg_2.pt").is_file()
    assert (tmp_path / "model" / "sliceseg_first_batch.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "model" / "sliceseg_history.csv")) == 2

    test_settings = (
        f'model_path = "model/sliceseg_best.pt"\ndicom_dir = "{tiny_phantom / "test" / "dicoms"}"\n'
    )
    run_notebook("test.ipynb", test_settings, tmp_path)
    areas = pd.read_csv(tmp_path / "results" / "csa.csv", index_col="slice")
    n_test = len(list((tiny_phantom / "test" / "dicoms").rglob("*.dcm")))
    assert list(areas.index[-2:]) == ["mean", "std"] and len(areas) == n_test + 2
    assert (tmp_path / "results" / "segmentation.gif").is_file()
