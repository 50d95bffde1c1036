"""Tests for sliceseg.io.labels: reading label maps, damage detection, the label scheme."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from sliceseg.errors import ConfigError, LabelError
from sliceseg.io.labels import read_label_file, write_label_png
from sliceseg.io.lossy_labels import dominant_values, snap_lossy
from sliceseg.io.roi_values import LabelScheme, infer_label_scheme

LABEL = np.zeros((12, 16), np.uint8)
LABEL[2:6, 3:9] = 1
LABEL[7:11, 8:14] = 2


class TestReadLabelFile:
    @pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.float32, np.float64])
    def test_npy_integer_or_whole_float(self, tmp_path, dtype):
        np.save(tmp_path / "a.npy", LABEL.astype(dtype))
        raw = read_label_file(tmp_path / "a.npy")
        assert raw.values.dtype == np.int64
        np.testing.assert_array_equal(raw.values, LABEL)
        assert not raw.is_lossy

    def test_npy_bool(self, tmp_path):
        np.save(tmp_path / "a.npy", LABEL > 0)
        np.testing.assert_array_equal(read_label_file(tmp_path / "a.npy").values, LABEL > 0)

    def test_npy_3d_holds_frames(self, tmp_path):
        np.save(tmp_path / "a.npy", np.stack([LABEL, LABEL]))
        assert read_label_file(tmp_path / "a.npy").values.shape == (2, 12, 16)

    def test_float_with_non_whole_values(self, tmp_path):
        values = LABEL.astype(np.float32)
        values[0, 0] = 0.5
        values[0, 1] = 1.25
        np.save(tmp_path / "interp.npy", values)
        with pytest.raises(
            LabelError,
            match=r"interp\.npy: float values that are not whole numbers \(2 pixels, "
            r"e\.g\. 0\.5, 1\.25\); expected whole ROI numbers 0\.\.K",
        ):
            read_label_file(tmp_path / "interp.npy")

    def test_float_rounding_noise_is_shown_and_named(self, tmp_path):
        """Before: "not whole numbers (..., e.g. 1)": the example printed as the whole number
        it was said not to be, and no word that the fix is a rounding."""
        values = LABEL.astype(np.float32)
        values[values == 1] = np.float32(1.0000001)
        np.save(tmp_path / "noise.npy", values)
        with pytest.raises(
            LabelError,
            match=r"noise\.npy: float values that are not whole numbers \(\d+ pixels, e\.g\. "
            r"1\.0000001\), all within 0\.001 of one \(float rounding\); save "
            r"np\.rint\(label\)\.astype\(np\.uint8\)",
        ):
            read_label_file(tmp_path / "noise.npy")

    def test_nan_values(self, tmp_path):
        values = LABEL.astype(np.float64)
        values[1, 1] = np.nan
        np.save(tmp_path / "a.npy", values)
        with pytest.raises(LabelError, match="1 values are NaN or infinite"):
            read_label_file(tmp_path / "a.npy")

    def test_negative_values(self, tmp_path):
        np.save(tmp_path / "neg.npy", LABEL.astype(np.int16) - 1)
        with pytest.raises(LabelError, match=r"neg\.npy: negative values \(minimum -1"):
            read_label_file(tmp_path / "neg.npy")

    def test_wrong_dimensionality(self, tmp_path):
        np.save(tmp_path / "a.npy", np.zeros((2, 2, 3, 4), np.uint8))
        with pytest.raises(LabelError, match=r"shape \(2, 2, 3, 4\); expected \(rows, cols\)"):
            read_label_file(tmp_path / "a.npy")

    def test_png_8_and_16_bit(self, tmp_path):
        iio.imwrite(tmp_path / "a.png", LABEL)
        iio.imwrite(tmp_path / "b.png", LABEL.astype(np.uint16) * 300)
        np.testing.assert_array_equal(read_label_file(tmp_path / "a.png").values, LABEL)
        np.testing.assert_array_equal(
            read_label_file(tmp_path / "b.png").values, LABEL.astype(np.int64) * 300
        )

    def test_written_png_reads_back_as_8_bit_roi_numbers(self, tmp_path):
        path = write_label_png(tmp_path / "deep" / "a.png", LABEL.astype(np.int64))
        assert path == tmp_path / "deep" / "a.png" and path.exists()
        assert iio.imread(path).dtype == np.uint8
        np.testing.assert_array_equal(read_label_file(path).values, LABEL)
        assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temporary left

    def test_npy_with_a_channel_axis_is_the_map(self, tmp_path):
        # Keras-style masks are (rows, cols, 1); they were refused as "label is 12×16×1".
        np.save(tmp_path / "a.npy", LABEL[..., np.newaxis])
        np.save(tmp_path / "cine.npy", np.stack([LABEL, LABEL])[..., np.newaxis])
        np.testing.assert_array_equal(read_label_file(tmp_path / "a.npy").values, LABEL)
        assert read_label_file(tmp_path / "cine.npy").values.shape == (2, 12, 16)

    def test_palette_png_gives_indices(self, tmp_path):
        image = Image.fromarray(LABEL).convert("P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        image.save(tmp_path / "p.png")
        np.testing.assert_array_equal(read_label_file(tmp_path / "p.png").values, LABEL)

    def test_quantized_grey_palette_gives_the_grey_levels_not_the_reordered_indices(self, tmp_path):
        # Pillow's quantize stores grey 80 as index 0 and grey 0 as index 2: the indices read
        # background as ROI 2 and ROI 2 as background, and looked like plain ROI numbers.
        Image.fromarray(LABEL * 40).quantize(3).save(tmp_path / "q.png")
        with Image.open(tmp_path / "q.png") as image:
            assert np.asarray(image)[0, 0] == 2  # the trap: index 2 is background here
        np.testing.assert_array_equal(read_label_file(tmp_path / "q.png").values, LABEL * 40)

    def test_grey_palette_in_index_order_gives_indices(self, tmp_path):
        image = Image.fromarray(LABEL, mode="P")
        image.putpalette([0, 0, 0, 40, 40, 40, 80, 80, 80] + [0] * 759)
        image.save(tmp_path / "g.png")
        np.testing.assert_array_equal(read_label_file(tmp_path / "g.png").values, LABEL)

    def test_rgb_with_equal_channels_and_opaque_alpha(self, tmp_path):
        rgba = np.stack([LABEL, LABEL, LABEL, np.full_like(LABEL, 255)], axis=-1)
        iio.imwrite(tmp_path / "a.png", rgba)
        np.testing.assert_array_equal(read_label_file(tmp_path / "a.png").values, LABEL)

    def test_rgb_with_different_channels(self, tmp_path):
        rgb = np.stack([LABEL * 100, LABEL, LABEL], axis=-1)
        iio.imwrite(tmp_path / "overlay.png", rgb)
        with pytest.raises(
            LabelError,
            match=r"overlay\.png: colour label map whose R, G, B channels differ in 48 pixels "
            r"\(e\.g\. \(100, 1, 1\) at row 2, col 3\).*not a coloured overlay",
        ):
            read_label_file(tmp_path / "overlay.png")

    def test_transparent_alpha(self, tmp_path):
        rgba = np.stack([LABEL, LABEL, LABEL, np.where(LABEL > 0, 255, 0)], axis=-1)
        iio.imwrite(tmp_path / "a.png", rgba.astype(np.uint8))
        with pytest.raises(LabelError, match="alpha channel is not fully opaque"):
            read_label_file(tmp_path / "a.png")

    def test_tiff_single_and_multi_page(self, tmp_path):
        tifffile.imwrite(tmp_path / "a.tif", LABEL)
        tifffile.imwrite(tmp_path / "b.tiff", np.stack([LABEL, LABEL]))
        np.testing.assert_array_equal(read_label_file(tmp_path / "a.tif").values, LABEL)
        assert read_label_file(tmp_path / "b.tiff").values.shape == (2, 12, 16)

    def test_jpeg_is_lossy(self, tmp_path):
        iio.imwrite(tmp_path / "a.jpg", LABEL * 40, quality=90)
        raw = read_label_file(tmp_path / "a.jpg")
        assert raw.is_lossy
        assert raw.values.shape == (12, 16)

    def test_unknown_suffix_and_unreadable_file(self, tmp_path):
        (tmp_path / "a.bmp").write_bytes(b"x")
        with pytest.raises(LabelError, match=r"suffix '\.bmp' is not a label format"):
            read_label_file(tmp_path / "a.bmp")
        (tmp_path / "bad.png").write_bytes(b"not a png")
        with pytest.raises(LabelError, match=r"bad\.png: cannot read the label map"):
            read_label_file(tmp_path / "bad.png")


class TestInferLabelScheme:
    def test_plain_values(self):
        scheme = infer_label_scheme([{0, 1, 2}, {0, 3}])
        assert scheme.stored_values == (0, 1, 2, 3)
        assert not scheme.is_display_scaled
        assert scheme.num_labels == 3

    @pytest.mark.parametrize(
        ("sets", "stored"),
        [
            ([{0, 40, 80}, {0, 120}], (0, 40, 80, 120)),
            ([{0, 255}], (0, 255)),
            ([{0, 42, 85, 127}, {170, 212, 255}], (0, 42, 85, 127, 170, 212, 255)),
            ([{0, 40, 120}], (0, 40, 80, 120)),
        ],
    )
    def test_display_scaled_values_map_in_order(self, sets, stored):
        with pytest.warns(UserWarning, match="display-scaled"):
            scheme = infer_label_scheme(sets)
        assert scheme.stored_values == stored
        assert scheme.is_display_scaled

    def test_num_labels_counts_absent_rois(self):
        assert infer_label_scheme([{0, 1, 2}], num_labels=4).stored_values == (0, 1, 2, 3, 4)
        assert infer_label_scheme([{0, 2}], num_labels=2).stored_values == (0, 1, 2)

    def test_value_above_num_labels(self):
        with pytest.raises(LabelError, match=r"reach ROI 7, above num_labels=6"):
            infer_label_scheme([set(range(7)), {0, 7}], num_labels=6)

    def test_mixed_schemes(self):
        with pytest.raises(LabelError, match=r"\[0, 1, 2, 3, 4, 5, 6, 40, 80\] do not form one"):
            infer_label_scheme([set(range(7)), {0, 40, 80}])

    def test_only_background(self):
        with pytest.raises(LabelError, match="only background"):
            infer_label_scheme([{0}, {0}])

    def test_bad_num_labels_is_worded_as_check_and_train_word_it(self):
        """It said ``num_labels=0: expected at least 1 ROI.``, without the flag."""
        with pytest.raises(ConfigError) as refused:
            infer_label_scheme([{0, 1}], num_labels=0)
        assert str(refused.value) == (
            "--num-labels (num_labels) must be ≥ 1 (ROIs, background excluded), got 0."
        )


class TestLabelScheme:
    def test_to_classes(self):
        scheme = LabelScheme((0, 40, 80), is_display_scaled=True)
        classes = scheme.to_classes(np.array([[0, 40], [80, 0]]))
        assert classes.dtype == np.uint8
        np.testing.assert_array_equal(classes, [[0, 1], [2, 0]])

    def test_unknown_values_name_the_file(self, tmp_path):
        with pytest.raises(LabelError, match=r"s1\.png: values \[50\] in 1 pixels are not"):
            LabelScheme((0, 40, 80)).to_classes(np.array([0, 50]), source=tmp_path / "s1.png")

    def test_a_value_above_k_names_the_option_that_sets_k(self, tmp_path):
        """Before: "or pass num_labels if more ROIs exist", to a user who had passed it (as
        --num-labels, or as the names of labels.txt)."""
        with pytest.raises(
            LabelError,
            match=r"s1\.npy: values \[3\] in 1 pixels are not in the dataset's label scheme "
            r"0\.\.2; "
            r"fix those pixels, or, if the dataset has ROIs up to 3, raise num_labels to 3 \(check "
            r"/ train: --num-labels; measure: one name per ROI in --roi-names; labels\.txt: one "
            r"name per line\)\.$",
        ):
            LabelScheme((0, 1, 2)).to_classes(np.array([0, 3]), source=tmp_path / "s1.npy")

    def test_invalid_stored_values(self):
        with pytest.raises(LabelError, match="strictly increasing values starting at 0"):
            LabelScheme((1, 2))

    def test_describe(self):
        assert LabelScheme((0, 1, 2)).describe() == "0..2"
        assert LabelScheme((0, 40, 80), True).describe() == "0, 40, 80 (display-scaled)"


class TestSnapLossy:
    def test_nearest_stored_value_and_changed_count(self):
        scheme = LabelScheme((0, 40, 80), is_display_scaled=True)
        snapped, changed = snap_lossy(np.array([0, 3, 20, 37, 41, 80, 200]), scheme)
        np.testing.assert_array_equal(snapped, [0, 0, 0, 40, 40, 80, 80])
        assert changed == 5

    def test_a_blurred_edge_takes_the_values_on_either_side_not_an_roi_in_between(self):
        # 0 | 240 blurred to 0, 100, 140, 240: the nearest stored values 80 and 120 were ROIs 2
        # and 3, which are nowhere near
        scheme = LabelScheme(tuple(range(0, 241, 40)), is_display_scaled=True)
        values = np.array([[0, 0, 0, 100, 140, 240, 240, 240]] * 3)
        snapped, changed = snap_lossy(values, scheme)
        np.testing.assert_array_equal(snapped[1], [0, 0, 0, 0, 240, 240, 240, 240])
        assert changed == 6

    def test_roi_numbers_in_a_jpeg_are_refused(self, tmp_path):
        # JPEG moves 0..K values by a unit or more: every moved pixel would be another ROI
        with pytest.raises(LabelError, match=r"a\.jpg: JPEG label map .* 0\.\.2, 1 apart.*PNG"):
            snap_lossy(np.array([0, 1, 2]), LabelScheme((0, 1, 2)), source=tmp_path / "a.jpg")
        with pytest.raises(LabelError, match="8 apart"):
            snap_lossy(np.array([0, 8]), LabelScheme((0, 8, 16), is_display_scaled=True))


class TestDominantValues:
    def test_jpeg_noise_is_not_a_label(self, tmp_path):
        big = np.kron(LABEL, np.ones((5, 5), np.uint8))[3:, 2:] * 40
        iio.imwrite(tmp_path / "a.jpg", big, quality=75)
        values = read_label_file(tmp_path / "a.jpg").values
        assert len(np.unique(values)) > 3
        assert dominant_values(values) == {0, 40, 80}
