"""The notebooks: committed clean and thin, their display helpers, and headless papermill runs."""

from __future__ import annotations

import ast
import base64
import io
import math
import shutil
import sys
from pathlib import Path

import imageio.v3 as iio
import nbformat
import numpy as np
import pandas as pd
import pydicom
import pytest

from conftest import NOTEBOOK_KERNEL, write_notebook_kernel
from sliceseg import notebook as helpers
from sliceseg.notebook import TrainingCurves, checkpoint_row, choose_folder
from sliceseg.training.progress import ProgressEvent

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("train.ipynb", "test.ipynb")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def code_cells(name: str) -> list[nbformat.NotebookNode]:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    return [c for c in notebook.cells if c.cell_type == "code"]


def python_of(cell: nbformat.NotebookNode) -> str:
    return "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))


@pytest.mark.parametrize("name", NAMES)
class TestCommittedNotebooks:
    def test_committed_without_outputs(self, name):
        assert [c.execution_count for c in code_cells(name)] == [None] * len(code_cells(name))
        assert all(not c.outputs for c in code_cells(name))

    def test_one_settings_cell_tagged_parameters_that_only_assigns(self, name):
        tagged = [c for c in code_cells(name) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1
        statements = ast.parse(tagged[0].source).body
        assert statements and all(isinstance(s, ast.Assign) for s in statements)

    def test_cells_hold_no_logic_beyond_a_few_lines(self, name):
        for cell in code_cells(name):
            is_settings = "parameters" in cell.metadata.get("tags", [])
            assert is_settings or len(cell.source.splitlines()) <= 10, cell.source[:60]
            tree = ast.parse(python_of(cell))
            defines = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
            assert not defines, cell.source[:60]

    def test_kernel_is_the_one_make_lab_registers(self, name):
        """The notebooks named "Python 3 (ipykernel)", not the "Python (sliceseg)" kernel that
        ``make lab`` (``make notebooks``) registers for them."""
        spec = nbformat.read(NOTEBOOKS / name, as_version=4).metadata.kernelspec
        assert (spec.name, spec.display_name) == NOTEBOOK_KERNEL
        makefile = (NOTEBOOKS.parent / "Makefile").read_text(encoding="utf-8")
        registered = f'--name {spec.name} --display-name "{spec.display_name}"'
        assert f"ipykernel install --sys-prefix {registered}" in makefile


def test_train_notebook_passes_the_live_figure_to_train():
    sources = [c.source for c in code_cells("train.ipynb")]
    assert any("TrainingCurves()" in s and "on_checkpoint=curves" in s for s in sources)


def test_the_check_cell_shows_the_verdict_and_stops_on_errors_only(tiny_phantom, tmp_path, capsys):
    """The cell asserted the verdict: an AssertionError (gone under ``python -O``). It now
    prints the report, goes on with warnings (as ``sliceseg train`` does) and stops on errors
    with sliceseg's own error, as ``sliceseg check`` exits 1."""
    import sliceseg

    cell = python_of(next(c for c in code_cells("train.ipynb") if "check_dataset(" in c.source))
    data = tmp_path / "data"
    shutil.copytree(tiny_phantom / "train", data)
    next((data / "labels" / "sub01").iterdir()).unlink()  # a DICOM without its label: a warning
    exec(cell, {"sliceseg": sliceseg, "data_dir": str(data)})
    shown = capsys.readouterr().out
    assert "Verdict: FIT for training (" in shown and "1 warning(s)" in shown
    label = next((data / "labels" / "sub02").iterdir())
    shutil.copy(label, label.with_suffix(".tif" if label.suffix != ".tif" else ".png"))
    with pytest.raises(sliceseg.SlicesegError, match=r"^NOT FIT for training: fix the errors"):
        exec(cell, {"sliceseg": sliceseg, "data_dir": str(data)})  # two label maps of a slice
    assert "Verdict: NOT FIT for training (" in capsys.readouterr().out


def run_cells(name: str, namespace: dict[str, object], *markers: str) -> dict[str, object]:
    """Execute the notebook's import cell, then each code cell holding one of ``markers``, in
    the notebook's order, in ``namespace`` (the Settings a test gives)."""
    cells = [c for c in code_cells(name) if "import sliceseg" in c.source]
    cells += [c for c in code_cells(name) if any(m in c.source for m in markers)]
    for cell in cells:
        exec(python_of(cell), namespace)
    return namespace


class TestThePhantomCell:
    """The train notebook's cell after the folder chooser, as written, on a fresh machine: the
    phantom (a small one here) generated where Settings' ``data_dir`` is missing."""

    @pytest.fixture(autouse=True)
    def _small_phantom(self, monkeypatch):
        import functools

        import sliceseg
        from sliceseg.phantom.generate import generate_phantom

        small = functools.partial(
            generate_phantom, train_subjects=2, test_subjects=1, slices_per_subject=2
        )
        monkeypatch.setattr(helpers, "generate_phantom", small, raising=False)
        monkeypatch.setattr(sliceseg, "generate_phantom", small, raising=False)

    def test_phantom_train_generates_the_phantom_folder(self, tmp_path, capsys):
        data_dir = tmp_path / "phantom" / "train"
        settings = {"data_dir": str(data_dir), "make_phantom": True}
        shown = run_cells("train.ipynb", settings, "choose_folder(", "picker.selected")
        assert shown["data_dir"] == str(data_dir)
        assert (data_dir / "dicoms" / "sub01").is_dir() and (data_dir / "labels.txt").is_file()
        assert capsys.readouterr().out.splitlines()[-1] == (
            f"Phantom generated: 4 training slices in {data_dir}, 2 test slices in "
            f"{tmp_path / 'phantom' / 'test'}"
        )

    def test_a_folder_not_named_train_is_refused_in_one_line(self, tmp_path):
        """``data_dir = "data/mine"``: the phantom went to ``data/train`` unsaid, and the data
        check then said ``data/mine/dicoms`` does not exist."""
        import sliceseg

        settings = {"data_dir": str(tmp_path / "mine"), "make_phantom": True}
        with pytest.raises(sliceseg.SlicesegError) as error:
            run_cells("train.ipynb", settings, "choose_folder(", "picker.selected")
        assert str(error.value) == (
            f"{tmp_path / 'mine'}: does not exist, and the phantom cannot be generated there: "
            f'it writes its training data to a folder named train; set data_dir = "'
            f'{tmp_path / "train"}", or make_phantom = False and a folder that exists.'
        )
        assert list(tmp_path.iterdir()) == []

    def test_an_existing_folder_or_make_phantom_false_generates_nothing(self, tmp_path, capsys):
        for data_dir, make in ((tmp_path, True), (tmp_path / "train", False)):
            run_cells("train.ipynb", {"data_dir": str(data_dir), "make_phantom": make},
                      "choose_folder(", "picker.selected")  # fmt: skip
            assert "Phantom generated" not in capsys.readouterr().out
        assert list(tmp_path.iterdir()) == []


def test_train_settings_keep_the_defaults_of_the_command_line():
    """The manual's defaults hold in the notebook too: its `dropout_rate = 0.0` took the
    pyramid's published 0.2 away from whoever chose `arch = "pyramid"` there."""
    import dataclasses

    from sliceseg.training.config import TrainConfig

    (cell,) = [c for c in code_cells("train.ipynb") if "parameters" in c.metadata.get("tags", [])]
    settings = {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse(cell.source).body}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    chosen = {"data_dir", "epochs", "augment_params"}  # the phantom; 100 epochs, as unbudgeted
    shared = {k: v for k, v in settings.items() if k in defaults and k not in chosen}
    assert {k for k, v in shared.items() if v != defaults[k]} == set()


def test_the_area_cell_names_the_summary_rows_in_the_table_s_order():
    """The markdown above the area table names its rows as a two-series table holds them."""
    from sliceseg.io.dicom import Slice
    from sliceseg.measure.areas import measure_areas

    images = [
        Slice(
            pixels=np.zeros((4, 4), np.float32),
            spacing_mm=(1.0, 1.0),
            spacing_source="PixelSpacing",
            source=Path(f"/d/{series}/{series}1.dcm"),
        )
        for series in ("a", "b")
    ]
    labels = [np.ones((4, 4), np.uint8)] * 2
    rows = measure_areas(labels, images, ["roi"]).wide.index[2:]  # after the two slice rows
    expected = [row.replace(" 1", " k") for row in rows if not row.endswith(" 2")]
    assert expected == ["mean series k", "std series k", "n series k", "mean", "std", "n"]
    notebook = nbformat.read(NOTEBOOKS / "test.ipynb", as_version=4)
    text = next(c.source for c in notebook.cells if "Cross-Sectional Area" in c.source)
    named = [name for name in (f"`{row}`" for row in expected) if name in text]
    assert [text.index(name) for name in named] == sorted(text.index(n) for n in named)
    assert len(named) == len(expected)
    for column in ("file", "confidence", "unlike_training"):
        assert f"`{column}`" in text
    assert "left out of the overall `mean`, `std` and `n`" in text


class TestChooseFolder:
    @pytest.fixture(autouse=True)
    def _needs_ipyfilechooser(self):
        pytest.importorskip("ipyfilechooser")

    def test_starts_at_the_settings_path_and_uses_it_until_a_folder_is_chosen(self, tmp_path):
        picker = choose_folder(tmp_path, title="DICOM folder")
        assert Path(picker.chooser.default_path) == tmp_path
        assert picker.selected == str(tmp_path) and not picker.is_chosen
        assert picker.summary() == (
            f"DICOM folder: {tmp_path} (the Settings path; choose another folder above and run "
            "this cell again)."
        )

    def test_uses_the_folder_chosen_with_the_widget(self, tmp_path):
        (tmp_path / "scans").mkdir()
        picker = choose_folder(tmp_path, title="DICOM folder")
        chooser = picker.chooser
        chooser._select.click()  # open the dialog, step into scans/, press Select
        chooser._dircontent.value = next(o for o in chooser._dircontent.options if "scans" in o)
        chooser._select.click()
        assert picker.is_chosen and picker.selected == str(tmp_path / "scans")
        assert picker.summary() == f"DICOM folder: {tmp_path / 'scans'} (chosen above)."

    def test_a_missing_settings_path_starts_at_its_nearest_folder(self, tmp_path):
        picker = choose_folder(tmp_path / "not" / "yet", title="Training data")
        assert Path(picker.chooser.default_path) == tmp_path
        assert picker.selected == str(tmp_path / "not" / "yet")
        assert "it does not exist yet" in picker.summary()

    def test_headless_output_says_the_settings_path_is_used(self, tmp_path):
        bundle = choose_folder(tmp_path, title="DICOM folder")._repr_mimebundle_()
        assert WIDGET_VIEW in bundle
        assert bundle["text/plain"].endswith(f"the Settings path is used: {tmp_path}")
        assert "without a widget frontend" in bundle["text/plain"]

    def test_without_ipyfilechooser_the_settings_path_is_used(self, tmp_path, monkeypatch):
        monkeypatch.setitem(sys.modules, "ipyfilechooser", None)
        picker = choose_folder(tmp_path, title="DICOM folder")
        assert picker.chooser is None and picker.selected == str(tmp_path)
        assert picker._repr_mimebundle_() == {
            "text/plain": "DICOM folder: no folder chooser (ipyfilechooser is not installed); "
            f"the Settings path is used: {tmp_path}"
        }
        assert "pip install 'sliceseg[notebooks]'" in picker.summary()

    @pytest.mark.parametrize("has_chooser", [True, False])
    def test_a_settings_path_in_the_home_folder_is_the_folder_shown(
        self, tmp_path, monkeypatch, has_chooser
    ):
        """``data_dir = "~/ct/train"``: the chooser opened the user's folder, but the next cell
        was given the literal "~/ct/train", which said "it does not exist yet" and made the
        train notebook generate the phantom into ./~/ct and train on it."""
        monkeypatch.setenv("HOME", str(tmp_path))
        if not has_chooser:
            monkeypatch.setitem(sys.modules, "ipyfilechooser", None)
        (tmp_path / "ct" / "train").mkdir(parents=True)
        picker = choose_folder("~/ct/train", title="Training data")
        assert picker.selected == str(tmp_path / "ct" / "train")
        assert "does not exist" not in picker.summary()
        assert picker.summary().startswith(f"Training data: {tmp_path / 'ct' / 'train'} (")


def progress_event(epoch: int, dice_loss: float, train: float, per_roi: dict[str, float]):
    """The training loop's event at a checkpoint of a 5-epoch run."""
    finite = [d for d in per_roi.values() if not math.isnan(d)]
    return ProgressEvent(
        epoch=epoch,
        epochs=5,
        dice_loss=dice_loss,
        train_dice=train,
        val_dice=float(np.mean(finite)) if finite else math.nan,
        val_dice_per_roi=per_roi,
        learning_rate=1e-3,
        elapsed_seconds=10.0 * epoch,
    )


class TestTrainingCurves:
    def test_a_checkpoint_is_a_history_row(self):
        row = checkpoint_row(progress_event(3, 0.5, 0.6, {"a": 0.7, "b": 0.9}))
        assert row == pytest.approx(
            {
                "epoch": 3,
                "dice_loss": 0.5,
                "train_dice": 0.6,
                "val_dice": 0.8,
                "val_dice_a": 0.7,
                "val_dice_b": 0.9,
            }
        )

    def test_figure_draws_every_checkpoint_per_roi(self):
        curves = TrainingCurves()
        curves(progress_event(1, 0.9, 0.2, {"left": 0.1, "right": 0.3}))
        curves(progress_event(2, 0.6, 0.5, {"left": 0.4, "right": 0.6}))
        loss_ax, dice_ax = curves.figure().axes[:2]
        lines = {line.get_label(): line for line in [*loss_ax.lines, *dice_ax.lines]}
        assert list(lines["Dice loss"].get_ydata()) == [0.9, 0.6]
        assert list(lines["train (mean)"].get_ydata()) == [0.2, 0.5]
        assert list(lines["validation (mean)"].get_ydata()) == pytest.approx([0.2, 0.5])
        assert list(lines["left"].get_ydata()) == [0.1, 0.4]
        assert list(lines["right"].get_xdata()) == [1, 2]

    def test_one_display_updated_in_place(self, monkeypatch):
        shown: list[tuple[str, object]] = []

        class Handle:
            def update(self, picture):
                shown.append(("update", picture))

        def display(picture, *, display_id):
            shown.append(("display", picture))
            return Handle()

        monkeypatch.setattr("IPython.display.display", display)
        curves = TrainingCurves()
        for epoch in (1, 2, 3):
            curves(progress_event(epoch, 1.0 / epoch, 0.2 * epoch, {"a": 0.1 * epoch}))
        assert [kind for kind, _ in shown] == ["display", "update", "update"]
        assert [p.caption for _, p in shown][-1] == "Training curves after epoch 3/5"

    def test_picture_is_a_png_with_alt_text_and_caption(self):
        curves = TrainingCurves()
        curves.rows.append(checkpoint_row(progress_event(4, 0.5, 0.5, {"a": 0.5})))
        bundle = curves.picture(epochs=9)._repr_mimebundle_()
        png = base64.b64decode(bundle["image/png"])
        assert iio.imread(io.BytesIO(png)).shape[1] > 600
        assert f'<img alt="{helpers.CURVES_ALT}" src="data:image/png;base64,' in bundle["text/html"]
        assert "Training curves after epoch 4/9" in bundle["text/html"]


@pytest.fixture
def notebook_kernel(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """The kernel the notebooks name, registered as ``make notebooks`` does, for papermill."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    write_notebook_kernel(jupyter)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))


def run_papermill(name: str, out: Path, parameters: dict[str, object]) -> nbformat.NotebookNode:
    """Run a notebook as the user manual's headless command does, in ``out``, with the kernel
    the notebook names (the `notebook_kernel` fixture registers it)."""
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(out / name),
        parameters=parameters,
        cwd=str(out),
        progress_bar=False,
        log_output=False,
    )
    return nbformat.read(out / name, as_version=4)


def texts(notebook: nbformat.NotebookNode) -> str:
    """Every printed line and plain-text result of the executed notebook."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def areas_of_label_maps(results: Path, dicom_dir: Path, roi_names: list[str]) -> pd.DataFrame:
    """Measure results/labels/*.png by hand: pixels of value k × the DICOM's PixelSpacing."""
    rows = {}
    for png in sorted((results / "labels").rglob("*.png")):
        key = png.relative_to(results / "labels").with_suffix("").as_posix()
        spacing = pydicom.dcmread(dicom_dir / f"{key}.dcm").PixelSpacing
        label = iio.imread(png)
        rows[key] = [
            np.count_nonzero(label == k) * float(spacing[0]) * float(spacing[1])
            for k in range(1, len(roi_names) + 1)
        ]
    return pd.DataFrame.from_dict(rows, orient="index", columns=roi_names)


@pytest.mark.slow
def test_train_notebook_headless(tiny_phantom, tmp_path, notebook_kernel):
    settings = dict(
        data_dir=str(tiny_phantom / "train"),
        out_dir="model",
        epochs=2,
        input_shape=64,
        batch_size=4,
        print_checkpoint=1,
        save_checkpoint=1,
    )
    notebook = run_papermill("train.ipynb", tmp_path, settings)
    text = texts(notebook)
    assert "(the Settings path; choose another folder above" in text
    assert "Completed epochs: 2/2 | Dice loss:" in text and "Available RAM" in text
    assert (tmp_path / "model" / "sliceseg_2.pt").is_file()
    assert (tmp_path / "model" / "sliceseg_first_batch.png").stat().st_size > 10_000
    history = pd.read_csv(tmp_path / "model" / "sliceseg_history.csv")
    assert list(history["epoch"]) == [1, 2]
    preview = next(c for c in notebook.cells if "preview_batch(" in c.source)
    assert [o.output_type for o in preview.outputs if "image/png" in o.get("data", {})] == [
        "execute_result"  # the figure, shown once
    ]
    last = notebook.cells[-1].outputs  # the history table, then its plot (the file itself)
    assert "dice_loss" in last[0]["data"]["text/html"] and len(last) == 2
    shown = base64.b64decode(last[1]["data"]["image/png"])
    assert shown == (tmp_path / "model" / "sliceseg_history.png").read_bytes()
    training = next(c for c in notebook.cells if "on_checkpoint=curves" in c.source)
    pictures = [o for o in training.outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1  # one figure, updated in place
    assert pictures[0]["data"]["text/plain"] == "Training curves after epoch 2/2"


@pytest.mark.slow
def test_test_notebook_headless(tiny_phantom, tiny_model, tmp_path, notebook_kernel):
    dicom_dir = shutil.copytree(tiny_phantom / "test" / "dicoms", tmp_path / "scans")
    first = sorted(dicom_dir.rglob("*.dcm"))[0]
    damaged = first.with_name("damaged.dcm")  # a header without its pixel data: left out
    damaged.write_bytes(first.read_bytes()[:400])
    notebook = run_papermill(
        "test.ipynb", tmp_path, {"dicom_dir": str(dicom_dir), "model_path": str(tiny_model)}
    )
    text = texts(notebook)
    assert f"DICOM folder to segment: {dicom_dir} (the Settings path;" in text
    assert f"\nskipped {damaged}: the header declares an image" in text
    assert text.count(str(damaged)) == 1  # the file named once, as `sliceseg predict` names it
    assert "Segmented 3 slices into results (areas: results/csa.csv; report: " in text
    shown = [o.get("data", {}) for c in notebook.cells for o in c.get("outputs", [])]
    pictures = [d for d in shown if {"image/jpeg", "image/gif"} & set(d)]  # overlay, animation
    overlay = base64.b64decode(pictures[0]["image/jpeg"])
    assert overlay in {p.read_bytes() for p in (tmp_path / "results" / "overlays").rglob("*.jpg")}
    gif = (tmp_path / "results" / "segmentation.gif").read_bytes()
    assert base64.b64decode(pictures[1]["image/gif"]) == gif
    chooser = next(c for c in notebook.cells if "choose_folder(" in c.source)
    assert WIDGET_VIEW in chooser.outputs[0]["data"]
    results = tmp_path / "results"
    areas = pd.read_csv(results / "csa.csv", index_col="slice")
    rois = [c for c in areas.columns[1:] if c not in ("confidence", "unlike_training")]
    per_slice = areas.drop(index=["mean", "std", "n"]).set_index("file")[rois].astype(float)
    truth = areas_of_label_maps(results, dicom_dir, rois)
    assert len(truth) == len(list(dicom_dir.rglob("*.dcm"))) - 1 == len(per_slice)
    np.testing.assert_allclose(per_slice.loc[truth.index].to_numpy(), truth.to_numpy(), rtol=1e-9)
    present = truth.where(truth > 0)  # the mean is over the slices where the ROI is present
    np.testing.assert_allclose(areas.loc["mean", rois].astype(float), present.mean(), rtol=1e-9)
    np.testing.assert_array_equal(areas.loc["n", rois].astype(float), present.count())
    assert truth.to_numpy().sum() > 0  # the tiny model segments something
    assert len(iio.imread(results / "segmentation.gif", index=None)) == len(truth)


class TestWhatACellShows:
    """An object left last in a cell is shown by its repr: the names and paths a researcher
    wants, not the network's layers, a training profile or every slice's pixels."""

    def test_a_model_shows_its_names_and_file_not_its_profile(self):
        import torch

        from sliceseg.models.bundle import Bundle, ModelMetadata

        profile = {"features_mean": [0.5] * 50_000}  # a real one is hundreds of kilobytes
        metadata = ModelMetadata(arch="unet", hyperparameters={}, num_classes=2, input_size=32,
                                 roi_names=("psoas",), familiarity=profile)  # fmt: skip
        network = torch.nn.Sequential(*[torch.nn.Conv2d(1, 1, 3) for _ in range(50)])
        text = repr(Bundle(network, metadata, Path("m.pt"), {"optimizer": [0.0] * 50_000}))
        assert "roi_names=('psoas',)" in text and "source=PosixPath('m.pt')" in text
        assert "features_mean" not in text and "Conv2d" not in text and "optimizer" not in text
        assert len(text) < 1_000

    def test_a_segmentation_run_shows_its_outputs_not_every_slice(self, tmp_path):
        from sliceseg.inference.folder import SegmentationRun
        from sliceseg.inference.predict import Prediction
        from sliceseg.io.dicom import Slice
        from sliceseg.measure.areas import measure_areas

        image = Slice(pixels=np.zeros((64, 64), np.float32), spacing_mm=(1.0, 1.0),
                      spacing_source="PixelSpacing", source=tmp_path / "a.dcm")  # fmt: skip
        label = np.zeros((64, 64), np.uint8)
        run = SegmentationRun(
            out_dir=tmp_path, predictions=[Prediction(image, label, "a")] * 500,
            areas=measure_areas([label], [image], ["psoas"]), skipped=[], animations=[],
            report=tmp_path / "report.html", warnings=[],
        )  # fmt: skip
        text = repr(run)
        assert "pixels=array" not in text and "Prediction(" not in text
        assert f"report={tmp_path / 'report.html'!r}" in text

    def test_a_segmentation_run_says_what_it_wrote_and_each_file_left_out(self, tmp_path):
        """The test notebook printed ``skipped <file>: <file>: why`` (a read error's reason
        begins with its file); it now prints the lines ``sliceseg predict`` prints."""
        from sliceseg.inference.folder import SegmentationRun
        from sliceseg.io.dicom import SkippedFile
        from sliceseg.measure.areas import measure_areas

        damaged = tmp_path / "scans" / "t.dcm"
        run = SegmentationRun(
            out_dir=tmp_path / "results", predictions=[], areas=measure_areas([], [], ["psoas"]),
            skipped=[SkippedFile(damaged, f"{damaged}: ends before its pixel data"),
                     SkippedFile(tmp_path / "a.txt", "not a DICOM file")],
            animations=[], report=None, warnings=[],
        )  # fmt: skip
        assert run.describe().splitlines() == [
            f"Segmented 0 slices into {tmp_path / 'results'} (areas: "
            f"{tmp_path / 'results' / 'csa.csv'})",
            f"skipped {damaged}: ends before its pixel data",
            f"skipped {tmp_path / 'a.txt'}: not a DICOM file",
        ]
        assert run.warnings_text() == "No warnings on the areas."

    def test_a_check_report_shows_its_findings_not_every_pair(self, tiny_phantom):
        from sliceseg.dataset.samples import check_dataset

        text = repr(check_dataset(tiny_phantom / "train"))
        assert "Pair(" not in text and "roi_names=('vertebral body'," in text
