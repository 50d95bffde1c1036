"""Tests for sliceseg.report.visualize: ROI colours, overlays, batch grids, GIFs and plots."""

from __future__ import annotations

import colorsys

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.text import Text
from PIL import Image

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.measure.summary_rows import summary_stats
from sliceseg.report.colours import ROI_COLOURS
from sliceseg.report.plots import plot_areas, plot_bland_altman, plot_history
from sliceseg.report.visualize import (
    _fitted,
    _font,
    overlay,
    overlay_figure,
    plot_batch,
    roi_colour,
    save_animation,
    save_overlay,
    to_display,
)

NAMES = ["vertebral body", "right psoas major", "left psoas major"]


def _phantom(rows: int = 40, cols: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A ramp image with three square ROIs at known places."""
    image = np.tile(np.linspace(0.0, 200.0, cols, dtype=np.float32), (rows, 1))
    label = np.zeros((rows, cols), np.uint8)
    label[5:15, 5:15] = 1
    label[5:15, 25:35] = 2
    label[20:32, 10:40] = 3
    return image, label


def _png_size(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * fig.dpi
    return round(width), round(height)


def _legend_texts(fig) -> list[str]:
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def _hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255.0))[0]


class TestRoiColour:
    def test_stable_and_distinct_for_twelve_rois(self):
        colours = [roi_colour(k) for k in range(1, 13)]
        assert colours == [roi_colour(k) for k in range(1, 13)]
        assert colours == list(ROI_COLOURS[:12])
        assert len(set(colours)) == 12
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours)

    def test_every_roi_of_a_large_model_has_its_own_colour_none_grey(self):
        colours = [roi_colour(k) for k in range(1, 41)]
        assert len(set(colours)) == 40  # ROI 13 is no longer ROI 1's red
        for r, g, b in colours[12:]:
            assert max(r, g, b) - min(r, g, b) >= 0.5 * max(r, g, b)  # saturated, not grey
            assert 100 <= max(r, g, b) <= 255  # neither black nor white on grey anatomy

    def test_the_first_twelve_keep_their_colours(self):
        assert roi_colour(1) == (230, 25, 75) and roi_colour(12) == (170, 110, 40)

    def test_the_cohort_report_draws_each_roi_in_its_colour(self):
        import pandas as pd

        from sliceseg.report.cohort import _histogram

        figure = _histogram(pd.Series([10.0, 12.0, 13.0]), 0, "psoas", "mm²", colour="#e6194b")
        assert "fill='#e6194b'" in figure and "#0b5cad" not in figure

    def test_background_has_no_colour(self):
        with pytest.raises(ValueError, match="0 is background"):
            roi_colour(0)


class TestToDisplay:
    def test_windows_to_uint8(self):
        out = to_display(np.linspace(-1000, 1000, 10_000).reshape(100, 100))
        assert out.dtype == np.uint8
        assert out.min() == 0 and out.max() == 255
        assert int(out[50, 50]) == 129  # (10.1 + 980) / 1960 * 255: the 1st–99th percentile is ±980

    def test_constant_and_channel_first(self):
        assert to_display(np.full((1, 4, 5), 7.0)).shape == (4, 5)

    def test_rejects_volumes(self):
        with pytest.raises(ConfigError, match="expected a 2D grey image"):
            to_display(np.zeros((2, 4, 5)))


class TestOverlay:
    def test_background_is_the_grey_image(self):
        image, label = _phantom()
        rgb, grey = overlay(image, label), to_display(image)
        assert rgb.shape == (*label.shape, 3) and rgb.dtype == np.uint8
        background = label == 0
        for channel in range(3):
            np.testing.assert_array_equal(rgb[..., channel][background], grey[background])

    def test_roi_pixels_carry_their_colour(self):
        image, label = _phantom()
        rgb, grey = overlay(image, label, alpha=0.45), to_display(image)
        colour = np.array(roi_colour(2), float)
        expected = np.rint(grey[10, 30] * 0.55 + colour * 0.45)
        np.testing.assert_array_equal(rgb[10, 30], expected)  # interior: filled
        np.testing.assert_array_equal(rgb[5, 30], colour)  # border: full colour
        assert _hue(rgb[10, 30]) == pytest.approx(_hue(colour), abs=0.02)

    def test_no_outline(self):
        image, label = _phantom()
        rgb = overlay(image, label, outline=False)
        assert tuple(rgb[5, 30]) != roi_colour(2)

    def test_shape_mismatch(self):
        with pytest.raises(ConfigError, match="must match"):
            overlay(np.zeros((4, 4)), np.zeros((4, 5), np.uint8))


class TestOverlayFigure:
    def test_legend_names_rois(self):
        image, label = _phantom()
        fig = overlay_figure(image, label, NAMES, title="s01")
        assert _legend_texts(fig) == NAMES

    def test_a_slice_is_drawn_as_predict_draws_it(self, tmp_path):
        """A 0.5 × 1.0 mm CT slice was drawn square and in percentiles, unlike predict's."""
        hu = np.full((20, 20), 40.0, np.float32)  # muscle
        hu[0, 0], hu[0, 1] = -1000.0, 1000.0  # air and bone would stretch the percentiles
        image = Slice(hu, (0.5, 1.0), "PixelSpacing", tmp_path / "ct.dcm", modality="CT")
        label = np.zeros((20, 20), np.uint8)
        label[5:10, 5:10] = 1
        left = overlay_figure(image, label, NAMES[:1]).axes[0].images[0].get_array()
        assert left.shape == (20, 40)  # columns twice as coarse as rows: twice as wide
        assert left[10, 20] == 128  # 40 HU mid-grey in the soft-tissue window (-160, 240)
        right = np.asarray(overlay_figure(image, label, NAMES[:1]).axes[1].images[0].get_array())
        coloured = np.ptp(right.astype(int), axis=2) > 0  # the ROI, stretched with its image
        assert (np.flatnonzero(coloured.any(1))[[0, -1]] == [5, 9]).all()
        assert (np.flatnonzero(coloured.any(0))[[0, -1]] == [10, 19]).all()


class TestTitles:
    def test_a_long_title_keeps_its_slice_number_and_file_name(self):
        title = "12/40  " + "a_very_long_series_name_" * 6 + "/IM-0001-0042"
        font = _font(11)
        shown = _fitted(title, font, 240)
        assert font.getlength(shown) <= 240 and "…" in shown
        assert shown.startswith("12/40") and shown.endswith("0042")
        assert _fitted("s01", font, 240) == "s01"


class TestSaveOverlay:
    def test_png_with_roi_colour(self, tmp_path):
        image, label = _phantom()
        path = save_overlay(tmp_path / "s01.png", image, label, NAMES, title="s01.dcm")
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        for k in (1, 2, 3):
            assert (pixels == roi_colour(k)).all(axis=1).any()

    def test_jpeg(self, tmp_path):
        image, label = _phantom()
        path = save_overlay(tmp_path / "s01.jpg", image, label, NAMES)
        assert Image.open(path).format == "JPEG"

    def test_unknown_suffix(self, tmp_path):
        image, label = _phantom()
        with pytest.raises(ConfigError, match=r"\.jpg or \.png"):
            save_overlay(tmp_path / "s01.bmp", image, label, NAMES)


class TestPlotBatch:
    def test_tensor_batch_png_and_legend(self, tmp_path):
        image, label = _phantom()
        images = torch.from_numpy(np.stack([image] * 3))[:, None]
        labels = torch.from_numpy(np.stack([label] * 3).astype(np.int64))
        fig = plot_batch(images, labels, NAMES, path=tmp_path / "batch.png", max_items=2)
        assert Image.open(tmp_path / "batch.png").size == _png_size(fig)
        assert _legend_texts(fig) == NAMES
        assert len(fig.axes) == 4

    def test_shape_mismatch(self):
        with pytest.raises(ConfigError, match=r"expected images \(B, I, H, W\)"):
            plot_batch(np.zeros((2, 1, 8, 8)), np.zeros((3, 8, 8)), NAMES)

    def test_the_legend_of_six_long_names_fits_a_batch_of_four(self, tmp_path):
        """The phantom's six ROIs under `sliceseg preview`'s default batch: no name cut off."""
        names = [*NAMES, "right multifidus-erector spinae", "left multifidus-erector spinae",
                 "subcutaneous fat"]  # fmt: skip
        labels = np.zeros((4, 64, 64), np.int64)
        for k in range(1, 7):
            labels[:, 8 * k : 8 * k + 6, 10:50] = k
        fig = plot_batch(np.zeros((4, 1, 64, 64)), labels, names, path=tmp_path / "b.png")
        (legend,) = fig.legends
        box = legend.get_window_extent(FigureCanvasAgg(fig).get_renderer())  # as in the PNG
        assert [t.get_text() for t in legend.get_texts()] == names
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y0 >= 0


class TestSaveAnimation:
    def test_frames_same_size_and_colours(self, tmp_path):
        shapes = [(500, 400), (64, 80), (100, 100)]
        images, labels = [], []
        for k, (rows, cols) in enumerate(shapes, 1):
            image = np.tile(np.linspace(0.0, 50.0, cols), (rows, 1))
            label = np.zeros((rows, cols), np.uint8)
            label[rows // 4 : 3 * rows // 4, cols // 4 : 3 * cols // 4] = k
            image[label > 0] = 100.0
            images.append(image)
            labels.append(label)
        path = save_animation(tmp_path / "a.gif", images, labels, NAMES, titles=["a", "b", "c"])
        frames = iio.imread(path, index=None)
        assert frames.shape[0] == 3
        assert frames.shape[2] <= 384
        assert iio.immeta(path)["loop"] == 0
        for k, frame in enumerate(frames, 1):
            rows, cols = np.nonzero((frame[..., :3] == roi_colour(k)).all(axis=2))
            assert rows.size, f"frame {k} has no pixel in ROI {k}'s colour"
            centre = frame[int(np.median(rows)), int(np.median(cols)), :3].astype(float)
            expected = np.rint(255 * 0.55 + np.array(roi_colour(k)) * 0.45)
            np.testing.assert_allclose(centre, expected, atol=6)

    def test_a_small_grid_is_enlarged_so_its_legend_fits(self, tmp_path):
        """A 64-pixel phantom series made a 64-pixel GIF whose legend names were cut off."""
        label = np.zeros((64, 64), np.uint8)
        label[20:40, 20:40] = 1
        path = save_animation(tmp_path / "a.gif", [np.ones((64, 64))], [label], NAMES)
        frame = iio.imread(path, index=None)[0]
        assert frame.shape[1] == 256

    def test_counts_must_match(self, tmp_path):
        with pytest.raises(ConfigError, match="one label map per image"):
            save_animation(tmp_path / "a.gif", [np.zeros((4, 4))], [], NAMES)


class TestPlotHistory:
    def test_two_panels_with_roi_names(self, tmp_path):
        history = pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "loss": [1.0, 0.6, 0.4],
                "train_dice": [0.2, 0.5, 0.7],
                "val_dice": [np.nan, 0.4, 0.6],
                **{f"val_dice_{n}": [np.nan, 0.4, 0.6] for n in NAMES},
                "lr": [1e-3, 1e-3, 1e-4],
            }
        )
        fig = plot_history(history, path=tmp_path / "h.png")
        assert Image.open(tmp_path / "h.png").size == _png_size(fig)
        assert set(NAMES) <= set(_legend_texts(fig))

    def test_epochs_are_whole_numbers_on_the_axis(self):
        history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.4], "val_dice": [0.1] * 3})
        fig = plot_history(history)
        FigureCanvasAgg(fig).draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks)

    def test_needs_epoch(self):
        with pytest.raises(ConfigError, match="'epoch' column"):
            plot_history(pd.DataFrame({"loss": [1.0]}))


class TestPlotAreas:
    def test_one_panel_per_roi_in_its_colour(self, tmp_path):
        table = pd.DataFrame({"file": ["a", "b", "c"], **{n: [1.0, 2.0, 3.0] for n in NAMES}})
        table.loc["mean"] = ["", 2.0, 2.0, 2.0]
        fig = plot_areas(table, path=tmp_path / "areas.png")
        assert Image.open(tmp_path / "areas.png").size == _png_size(fig)
        for k, (ax, name) in enumerate(zip(fig.axes, NAMES, strict=True), 1):
            (line,) = ax.get_lines()
            assert line.get_label() == name
            assert to_hex(line.get_color()) == "#{:02x}{:02x}{:02x}".format(*roi_colour(k))
            assert list(line.get_ydata()) == [1.0, 2.0, 3.0]  # the mean row is left out
            assert ax.get_title(loc="left") == f"{name}: 2.0 ± 1.0"

    def test_mean_and_sd_are_over_the_slices_with_the_roi_as_in_csa_csv(self):
        """csa.csv's mean and std leave out the slices without the ROI (area 0): so does the
        panel's title. 100 and 200 mm²: 150 ± 70.7; one slice has no SD; none, no mean."""
        areas = [[0.0, 100.0, 200.0, 0.0], [0.0, 50.0, 0.0, 0.0], [0.0] * 4]
        table = pd.DataFrame(dict(zip(NAMES, areas, strict=True)))
        titles = [ax.get_title(loc="left") for ax in plot_areas(table).axes[: len(NAMES)]]
        assert titles == [
            f"{NAMES[0]}: 150.0 ± 70.7",
            f"{NAMES[1]}\n50.0 (1 slice)",  # wrapped to the panel's width
            f"{NAMES[2]}: on no slice",
        ]

    def test_a_small_roi_s_title_reads_as_csa_csv_s_rows_in_the_report(self):
        """A 20 mm² structure: the title keeps the report's 0.1 mm², the numbers of the table's
        mean and std rows (`summary_stats`), not whole mm² ("20 ± 0" hid 20.4 ± 0.4)."""
        table = pd.DataFrame({NAMES[0]: [20.0, 20.4, 20.8, 0.0]})
        (title,) = [ax.get_title(loc="left") for ax in plot_areas(table).axes[:1]]
        mean, std, _n = summary_stats(table.to_numpy())[:, 0]
        assert (round(mean, 6), round(std, 6)) == (20.4, 0.4)
        assert title == f"{NAMES[0]}: 20.4 ± 0.4"
        suptitle = plot_areas(table).get_suptitle()
        assert suptitle == "Area of each ROI along the series (mean ± sample SD where present)"

    def test_long_names_wrap_in_dark_text_and_the_colour_is_a_swatch(self):
        names = ["right quadratus lumborum muscle", "right erector spinae", "left multifidus"]
        table = pd.DataFrame({n: [1.0, 2.0, 3.0] for n in names})
        fig = plot_areas(table)  # 8 inches, 3 panels: about 32 characters per title line
        titles = [ax.get_title(loc="left") for ax in fig.axes]
        assert titles == [
            "right quadratus lumborum muscle\n2.0 ± 1.0",
            "right erector spinae: 2.0 ± 1.0",
            "left multifidus: 2.0 ± 1.0",
        ]
        for k, (ax, title) in enumerate(zip(fig.axes, titles, strict=True), 1):
            (text,) = [t for t in ax.findobj(Text) if t.get_text() == title]
            assert to_hex(text.get_color()) == "#000000"  # dark text, not the ROI's colour
            assert to_hex(ax.spines["top"].get_edgecolor()) == to_hex(np.array(roi_colour(k)) / 255)

    def test_lines_break_between_series(self):
        table = pd.DataFrame({n: [1.0, 2.0, 3.0, 4.0] for n in NAMES})
        fig = plot_areas(table, series=["s1", "s1", "s2", "s2"])
        data_lines = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() != "--"]
        assert [list(ln.get_xdata()) for ln in data_lines] == [[1, 2], [3, 4]]
        boundaries = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
        assert [ln.get_xdata()[0] for ln in boundaries] == [2.5]

    def test_series_count_must_match(self):
        table = pd.DataFrame({n: [1.0, 2.0] for n in NAMES})
        with pytest.raises(ConfigError, match="3 series ids for 2 slices"):
            plot_areas(table, series=["a", "b", "c"])

    def test_a_table_without_slices_is_refused_in_words(self):
        """An empty table (only summary rows) crashed inside zip() ("argument 2 is longer")."""
        table = pd.DataFrame({n: [1.0] for n in NAMES}, index=["mean"])
        with pytest.raises(ConfigError, match="no slice row to plot"):
            plot_areas(table)


class TestPlotBlandAltman:
    def test_bias_and_limits_are_labelled(self, tmp_path):
        manual = np.array([100.0, 200.0, 300.0, 400.0])
        auto = manual + np.array([1.0, 3.0, 5.0, 7.0])
        fig = plot_bland_altman(auto, manual, title="areas (mm²)", path=tmp_path / "ba.png")
        texts = [t.get_text() for t in fig.axes[0].texts]
        sd = np.std([1.0, 3.0, 5.0, 7.0], ddof=1)
        assert "bias 4.00" in texts
        assert f"+1.96 SD {4 + 1.96 * sd:.2f}" in texts
        assert Image.open(tmp_path / "ba.png").size == _png_size(fig)

    def test_groups_in_legend(self):
        fig = plot_bland_altman(
            np.arange(4.0), np.arange(4.0) + 1, title="t", groups=np.array(NAMES[:2] * 2)
        )
        assert _legend_texts(fig) == NAMES[:2]

    def test_lengths_must_match(self):
        with pytest.raises(ConfigError, match="need paired values"):
            plot_bland_altman(np.zeros(3), np.zeros(4), title="t")
