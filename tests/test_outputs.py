"""What a prediction draws (sliceseg.inference.outputs): pictures true to the scan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
from PIL import Image

from sliceseg.inference.outputs import series_figures, write_animations, write_slice_outputs
from sliceseg.inference.predict import Prediction
from sliceseg.io.dicom import Slice
from sliceseg.io.identity import series_key
from sliceseg.measure.areas import AreaTable
from sliceseg.report.display import CT_WINDOW_HU, display_window
from sliceseg.report.visualize import roi_colour

NAMES = ["vertebral body", "right psoas major", "left psoas major"]


def _slice(pixels: np.ndarray, **fields) -> Slice:
    return Slice(
        pixels=pixels.astype(np.float32),
        spacing_mm=fields.pop("spacing_mm", (1.0, 1.0)),
        spacing_source="PixelSpacing",
        source=Path(fields.pop("name", "s.dcm")),
        **fields,
    )


def test_the_gif_steps_through_the_slices_by_position_not_instance_number(tmp_path):
    """InstanceNumbers 1, 2, 3 lie at 30, 10 and 20 mm: the frames go 10, 20, 30 mm."""
    predictions = []
    for k, (instance, position) in enumerate([(1, 30.0), (2, 10.0), (3, 20.0)], 1):
        label = np.zeros((128, 128), np.uint8)
        label[32:96, 32:96] = k  # slice k shows ROI k only
        image = _slice(
            np.tile(np.linspace(0, 100, 128), (128, 1)), name=f"s{k}.dcm",
            instance_number=instance, position_mm=position,
        )  # fmt: skip
        predictions.append(Prediction(image=image, label=label, key=f"s{k}"))
    (path,) = write_animations(tmp_path, predictions, NAMES, {series_key(image): "s"})
    panels = iio.imread(path, index=None)[:, 40:120, :, :3]  # below the title, above the legend
    shown = [
        next(k for k in (1, 2, 3) if (panel == roi_colour(k)).all(axis=2).any()) for panel in panels
    ]
    assert shown == [2, 3, 1]


def test_anisotropic_pixels_keep_the_anatomy_s_shape_in_overlays_and_thumbnails(tmp_path):
    """Rows 1.0 mm apart, columns 0.5 mm: a 64 × 64 grid is 64 mm tall and 32 mm wide."""
    label = np.zeros((64, 64), np.uint8)
    label[16:48, 16:48] = 1  # 32 × 16 mm: twice as tall as wide
    image = _slice(np.random.default_rng(0).normal(size=(64, 64)), spacing_mm=(1.0, 0.5))
    write_slice_outputs(tmp_path, [Prediction(image, label, "s")], NAMES, progress=False)
    thumbnail = np.asarray(Image.open(tmp_path / "thumbnails" / "s.jpg"))
    assert thumbnail.shape[:2] == (128, 64)
    red = (np.abs(thumbnail.astype(int) - roi_colour(1)).sum(axis=2) < 60).nonzero()
    height, width = np.ptp(red[0]) + 1, np.ptp(red[1]) + 1
    assert abs(height / width - 2.0) < 0.15
    overlay = Image.open(tmp_path / "overlays" / "s.jpg")
    assert overlay.width < overlay.height  # two 128-wide panels under a title, 256 tall each


def test_ct_is_shown_in_the_soft_tissue_window(tmp_path):
    """Air, fat, muscle and bone in HU: fat and muscle come out dark and mid grey, far apart."""
    pixels = np.full((64, 64), -1000.0)
    pixels[8:56, 8:56] = -100.0  # fat
    pixels[20:44, 20:32] = 40.0  # muscle
    pixels[20:44, 36:44] = 900.0  # bone
    image = _slice(pixels, modality="CT")
    assert display_window(image) == CT_WINDOW_HU
    label = np.zeros((64, 64), np.uint8)
    write_slice_outputs(tmp_path, [Prediction(image, label, "s")], NAMES, progress=False)
    grey = np.asarray(Image.open(tmp_path / "thumbnails" / "s.jpg").convert("L")).astype(int)
    assert abs(grey[12, 12] - 38) <= 6  # fat: (-100 + 160) / 400 of white
    assert abs(grey[32, 26] - 128) <= 6  # muscle: (40 + 160) / 400
    assert grey[32, 40] >= 250 and grey[2, 2] <= 5  # bone white, air black


def test_ct_without_its_rescale_and_mr_keep_the_percentile_window():
    stored = _slice(np.full((8, 8), 900.0), modality="CT")  # stored values, no air below 0
    assert display_window(stored) is None
    assert display_window(_slice(np.full((8, 8), -500.0), modality="MR")) is None
    inverted = _slice(np.full((8, 8), -1000.0), modality="CT", photometric="MONOCHROME1")
    assert display_window(inverted) == (-240.0, 160.0)  # on the negated display pixels


def test_area_plots_of_pixel_counts_say_pixels(tmp_path, monkeypatch):
    """Slices without a spacing are measured in pixels: their plot's axis says so, not mm²."""
    import sliceseg.inference.outputs as outputs

    drawn = []
    real = outputs.plot_areas
    monkeypatch.setattr(outputs, "plot_areas", lambda *a, **k: drawn.append(real(*a, **k)))
    wide = pd.DataFrame(
        {"file": ["a", "b"], **{name: [10.0, 12.0] for name in NAMES}}, index=["1", "2"]
    )
    areas = AreaTable(wide=wide, long=pd.DataFrame(), unit="pixels", series=(1, 1))
    predictions = [
        Prediction(_slice(np.zeros((8, 8)), spacing_mm=None), np.zeros((8, 8), np.uint8), key)
        for key in ("a", "b")
    ]
    series_figures(tmp_path, predictions, areas, {series_key(p.image): "s" for p in predictions})
    assert [fig.get_supylabel() for fig in drawn] == ["area (pixels)"]


def test_the_area_plot_goes_along_the_series_as_the_gif_does(tmp_path, monkeypatch):
    """InstanceNumbers 1, 2, 3 at 30, 10 and 20 mm (the table's order): the plot joins 10, 20
    and 30 mm, the GIF's order, not 30 → 10 → 20."""
    import sliceseg.inference.outputs as outputs

    drawn = []
    monkeypatch.setattr(outputs, "plot_areas", lambda rows, **_: drawn.append(rows))
    predictions = [
        Prediction(
            _slice(np.zeros((8, 8)), name=f"s{n}.dcm", instance_number=n, position_mm=mm),
            np.zeros((8, 8), np.uint8), f"s{n}",
        )
        for n, mm in ((1, 30.0), (2, 10.0), (3, 20.0))
    ]  # fmt: skip
    wide = pd.DataFrame(
        {"file": ["s1", "s2", "s3"], **{name: [30.0, 10.0, 20.0] for name in NAMES}},
        index=["1", "2", "3"],
    )
    areas = AreaTable(wide=wide, long=pd.DataFrame(), unit="mm2", series=(1, 1, 1))
    series_figures(tmp_path, predictions, areas, {series_key(predictions[0].image): "s"})
    (rows,) = drawn
    assert rows["file"].tolist() == ["s2", "s3", "s1"]
    assert rows[NAMES[0]].tolist() == [10.0, 20.0, 30.0]


def test_the_area_plot_s_axis_says_it_goes_along_the_normal(tmp_path, monkeypatch):
    """Its x-axis said "slice (series order)" while the tables beside it go by InstanceNumber:
    where the two orders differ, point k was read as row k."""
    import sliceseg.inference.outputs as outputs

    drawn = []
    real = outputs.plot_areas
    monkeypatch.setattr(outputs, "plot_areas", lambda *a, **k: drawn.append(real(*a, **k)))
    wide = pd.DataFrame({"file": ["a"], **{name: [10.0] for name in NAMES}}, index=["1"])
    areas = AreaTable(wide=wide, long=pd.DataFrame(), unit="mm2", series=(1,))
    prediction = Prediction(_slice(np.zeros((8, 8))), np.zeros((8, 8), np.uint8), "a")
    series_figures(tmp_path, [prediction], areas, {series_key(prediction.image): "s"})
    assert [fig.get_supxlabel() for fig in drawn] == [
        "slice (along the slice normal; the tables go by InstanceNumber)"
    ]


def test_a_run_without_pictures_imports_no_drawing_library(tiny_model, tiny_phantom, tmp_path):
    """matplotlib takes about 0.3 s of CPU to import: a lean cohort run (``--visuals none``) is
    spared it, while a run that draws still draws (the tests above)."""
    argv = [str(tiny_model), str(tiny_phantom / "test" / "dicoms"), "--out", str(tmp_path / "out")]
    code = (
        "import sys; from sliceseg.cli import main; "
        f"code = main(['predict', *{argv!r}, '--visuals', 'none', '--export', 'none', "
        "'--workers', '0']); "
        "print(code, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stdout + out.stderr
