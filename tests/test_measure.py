"""Areas in mm² on the native grid, with row and column spacing, and the fallbacks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.measure.areas import SpacingFallback, area_mm2, measure_areas, resolve_spacing


def make_slice(shape, spacing, name="s1"):
    return Slice(
        pixels=np.zeros(shape, np.float32) + 100,
        spacing_mm=spacing,
        spacing_source="PixelSpacing" if spacing else "none",
        source=Path(f"/data/{name}.dcm"),
    )


def ellipse_label(shape, spacing, centre_mm, axes_mm, value):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    y, x = (rows + 0.5) * spacing[0], (cols + 0.5) * spacing[1]
    inside = ((y - centre_mm[0]) / axes_mm[0]) ** 2 + ((x - centre_mm[1]) / axes_mm[1]) ** 2 <= 1
    label = np.zeros(shape, np.uint8)
    label[inside] = value
    return label


class TestAreaMm2:
    def test_square_uses_row_and_column_spacing(self):
        mask = np.zeros((30, 20), bool)
        mask[5:15, 5:15] = True
        assert area_mm2(mask, (0.5, 0.8)) == pytest.approx(40.0)

    def test_empty_mask_is_zero(self):
        assert area_mm2(np.zeros((4, 4), bool), (1.0, 1.0)) == 0.0


class TestMeasureAreas:
    def test_ellipses_on_non_square_anisotropic_grid_within_one_percent(self):
        shape, spacing = (240, 160), (0.55, 0.9)  # 132 mm × 144 mm field
        label = ellipse_label(shape, spacing, (60, 50), (30, 20), 1)
        label2 = ellipse_label(shape, spacing, (70, 110), (12, 25), 2)
        label[label2 == 2] = 2
        table = measure_areas([label], [make_slice(shape, spacing)], ["a", "b"])
        assert table.wide.loc["1", "a"] == pytest.approx(math.pi * 30 * 20, rel=0.01)
        assert table.wide.loc["1", "b"] == pytest.approx(math.pi * 12 * 25, rel=0.01)

    def test_each_slice_measured_with_its_own_spacing(self):
        label = np.zeros((10, 10), np.uint8)
        label[:4, :5] = 1  # 20 pixels
        images = [make_slice((10, 10), (1.0, 1.0), "a"), make_slice((10, 10), (0.5, 0.5), "b")]
        table = measure_areas([label, label], images, ["roi"])
        assert table.per_slice["roi"].tolist() == pytest.approx([20.0, 5.0])
        assert table.wide.loc["mean", "roi"] == pytest.approx(12.5)
        assert table.wide.loc["std", "roi"] == pytest.approx(np.std([20.0, 5.0], ddof=1))

    def test_long_table_has_pixels_intensity_and_spacing_source(self):
        label = np.zeros((8, 8), np.uint8)
        label[2:4, 2:4] = 1
        table = measure_areas([label], [make_slice((8, 8), (0.5, 0.5))], ["roi", "absent"])
        row = table.long.iloc[0]
        assert (row["pixels"], row["area_mm2"], row["mean_intensity"]) == (4, 1.0, 100.0)
        assert row["spacing_source"] == "PixelSpacing"
        assert table.long.iloc[1]["pixels"] == 0

    def test_shape_mismatch_names_the_slice(self):
        with pytest.raises(ConfigError, match="s1: label map is 4×4 but the image is 8×8"):
            measure_areas([np.zeros((4, 4), np.uint8)], [make_slice((8, 8), (1.0, 1.0))], ["r"])

    def test_save_writes_wide_and_long_csv(self, tmp_path):
        label = np.ones((4, 4), np.uint8)
        table = measure_areas([label], [make_slice((4, 4), (0.5, 0.5))], ["roi"])
        wide_path, long_path = table.save(tmp_path)
        wide = pd.read_csv(wide_path, index_col="slice")
        assert wide.loc["1", "roi"] == pytest.approx(4.0)
        assert list(wide.index) == ["1", "mean", "std"]
        assert pd.read_csv(long_path)["area_mm2"].tolist() == [4.0]


class TestResolveSpacing:
    def test_missing_spacing_without_fallback_says_what_to_do(self):
        with pytest.raises(ConfigError, match="give --fov MM"):
            resolve_spacing(make_slice((4, 4), None))

    def test_fov_and_matrix_give_spacing(self):
        spacing, source = resolve_spacing(
            make_slice((256, 192), None), SpacingFallback(fov_mm=(256.0, 240.0), matrix=(256, 192))
        )
        assert spacing == pytest.approx((1.0, 1.25))
        assert source == "fov/matrix"

    def test_matrix_that_disagrees_with_image_is_refused(self):
        with pytest.raises(ConfigError, match="--matrix says 512×512"):
            resolve_spacing(
                make_slice((256, 256), None),
                SpacingFallback(fov_mm=(200.0, 200.0), matrix=(512, 512)),
            )

    def test_pixels_only_reports_pixel_counts(self):
        label = np.ones((3, 3), np.uint8)
        table = measure_areas(
            [label], [make_slice((3, 3), None)], ["r"], fallback=SpacingFallback(pixels_only=True)
        )
        assert table.unit == "pixels"
        assert table.wide.loc["1", "r"] == 9.0
        assert "Area (pixels)" in table.to_text()


def test_patient_info_only_on_request(tiny_phantom, tmp_path):
    from sliceseg.inference.measure_folder import measure_label_folder

    test = tiny_phantom / "test"
    plain, _, _ = measure_label_folder(test / "labels", test / "dicoms", tmp_path / "a")
    _, (_, long_csv), _ = measure_label_folder(
        test / "labels", test / "dicoms", tmp_path / "b", keep_patient_info=True
    )
    assert "patient_id" not in plain.long.columns
    long = pd.read_csv(long_csv)
    subjects = long["file"].str.split("/").str[0]
    assert (long["patient_id"] == "PHANTOM-7-" + subjects).all()
    assert (long["patient_name"] == "Phantom^" + subjects).all()
