"""Progress bars are shown in a terminal and in a Jupyter notebook, never in a log."""

from __future__ import annotations

import pytest

from sliceseg.progress_bars import shows_progress


class KernelShell:
    """What ``IPython.get_ipython()`` returns inside a Jupyter kernel (ipykernel)."""

    def __init__(self) -> None:
        self.config = {"IPKernelApp": {"connection_file": "kernel.json"}}


@pytest.fixture
def in_notebook(monkeypatch):
    """Run as in a Jupyter notebook: an IPython kernel, stderr no terminal (pytest's capture)."""
    ipython = pytest.importorskip("IPython")
    monkeypatch.setattr(ipython, "get_ipython", lambda: KernelShell())


class TestShowsProgress:
    def test_not_in_a_log(self):
        assert shows_progress() is False  # pytest captures stderr: no terminal, no kernel

    def test_in_a_jupyter_kernel(self, in_notebook):
        assert shows_progress() is True

    def test_not_in_a_plain_ipython_shell_writing_to_a_file(self, monkeypatch):
        ipython = pytest.importorskip("IPython")
        monkeypatch.setattr(ipython, "get_ipython", lambda: type("Shell", (), {"config": {}})())
        assert shows_progress() is False


def test_check_dataset_shows_its_bar_in_a_notebook(in_notebook, tiny_phantom, capsys):
    """``check_dataset(data, progress=True)`` in a notebook showed nothing: its bar was also
    gated on stderr being a terminal, which ipykernel's stderr never is."""
    from sliceseg.dataset.samples import check_dataset

    check_dataset(tiny_phantom / "train", progress=True)
    assert "Checking pairs: 100%" in capsys.readouterr().err


def test_predict_folder_shows_its_bars_in_a_notebook_by_default(
    in_notebook, tiny_phantom, tmp_path, capsys
):
    """The test notebook's ``predict_folder`` segmented a folder without a word until the end."""
    import torch

    from sliceseg.inference.folder import predict_folder
    from sliceseg.models import build_model
    from sliceseg.models.bundle import Bundle, ModelMetadata

    torch.manual_seed(0)
    model = build_model("unet", num_classes=2, input_size=32, depth=3)
    metadata = ModelMetadata(arch="unet", hyperparameters={"depth": 3}, num_classes=2,
                             input_size=32, roi_names=("a",))  # fmt: skip
    dicoms = tiny_phantom / "test" / "dicoms"
    predict_folder(Bundle(model, metadata), dicoms, tmp_path / "out", device="cpu", report=False)
    err = capsys.readouterr().err
    assert "segmenting: 100%" in err and "writing: 100%" in err
