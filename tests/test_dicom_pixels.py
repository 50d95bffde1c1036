"""Tests for sliceseg.io.dicom_pixels: pixels the header marks as padding are not image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from conftest import write_ct_dicom
from sliceseg.io.dicom import read_slice
from sliceseg.measure.tissue import hu_problem
from sliceseg.model_space.intensity import normalise_intensity

AIR, FAT, MUSCLE = 24, 924, 1064  # stored values; HU at RescaleIntercept -1024: -1000, -100, 40


def padded_stored(padding: int) -> np.ndarray:
    """A 20 × 20 slice: a disc of muscle and fat in air, its corners the scanner's padding."""
    rows, cols = np.mgrid[:20, :20]
    radius = np.hypot(rows - 9.5, cols - 9.5)
    stored = np.where(radius < 6, MUSCLE, AIR).astype(np.int16)
    stored[(radius < 6) & (cols < 8)] = FAT
    stored[radius > 10] = padding
    return stored


def padded_ct(path: Path, stored: np.ndarray, *, rescale: bool = True, **padding: object) -> Path:
    """A signed CT file with (0028,0120) PixelPaddingValue and the like (name: (VR, value))."""
    write_ct_dicom(path, stored, **({"slope": 1.0, "intercept": -1024.0} if rescale else {}))
    ds = pydicom.dcmread(path)
    tags = {"PixelPaddingValue": 0x00280120, "PixelPaddingRangeLimit": 0x00280121}
    for keyword, (vr, value) in padding.items():
        ds.add_new(tags[keyword], vr, value)
    ds.save_as(path)
    return path


class TestPixelPadding:
    """Issue 19 (inputs): padding outside the reconstruction circle (-3024 HU) counted as image."""

    def test_padding_takes_the_lowest_value_of_the_image(self, tmp_path):
        """Before: the corners were -3024 HU, the slice's lowest value."""
        path = padded_ct(tmp_path / "a.dcm", padded_stored(-2000), PixelPaddingValue=("SS", -2000))
        image = read_slice(path)
        inside = padded_stored(0) != 0
        assert image.pixels.min() == -1000.0
        np.testing.assert_array_equal(image.pixels[~inside], -1000.0)
        np.testing.assert_array_equal(image.pixels[inside], padded_stored(0)[inside] - 1024.0)

    def test_the_network_sees_a_padded_slice_as_one_padded_with_air(self, tmp_path):
        """Before: muscle's z-score differed between a scanner padding with -3024 HU and one
        padding with air (the same anatomy, another network input)."""
        padded = read_slice(
            padded_ct(tmp_path / "a.dcm", padded_stored(-2000), PixelPaddingValue=("SS", -2000))
        )
        air = read_slice(padded_ct(tmp_path / "b.dcm", padded_stored(AIR)))
        np.testing.assert_array_equal(
            normalise_intensity(padded.pixels), normalise_intensity(air.pixels)
        )

    def test_a_signed_padding_value_written_unsigned_is_read_signed(self, tmp_path):
        """GE writes -2000 as US 63536 beside signed pixels (PixelRepresentation 1)."""
        path = padded_ct(tmp_path / "a.dcm", padded_stored(-2000), PixelPaddingValue=("US", 63536))
        assert read_slice(path).pixels.min() == -1000.0

    def test_a_padding_range_is_padding_from_end_to_end(self, tmp_path):
        stored = padded_stored(-2000)
        stored[0, 0], stored[0, 1] = -1500, -1999
        path = padded_ct(
            tmp_path / "a.dcm",
            stored,
            PixelPaddingValue=("SS", -1500),
            PixelPaddingRangeLimit=("SS", -2000),
        )
        assert read_slice(path).pixels.min() == -1000.0

    def test_monochrome1_padding_displays_darkest(self, tmp_path):
        path = padded_ct(tmp_path / "a.dcm", padded_stored(-2000), PixelPaddingValue=("SS", -2000))
        ds = pydicom.dcmread(path)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(path)
        image = read_slice(path)
        assert image.pixels[0, 0] == 40.0  # the highest value: the darkest displayed
        assert image.display_pixels.min() == -40.0

    def test_a_slice_of_padding_only_keeps_its_values(self, tmp_path):
        stored = np.full((4, 4), -2000, np.int16)
        path = padded_ct(tmp_path / "a.dcm", stored, PixelPaddingValue=("SS", -2000))
        np.testing.assert_array_equal(read_slice(path).pixels, -3024.0)

    def test_ct_without_rescale_is_found_despite_its_padding(self, tmp_path):
        """Before: the padding's -2000 was the slice's lowest value, so stored values passed as
        HU: a psoas of stored 1064 had no fat (IMAT 0) and no muscle density, without a word."""
        path = padded_ct(
            tmp_path / "a.dcm",
            padded_stored(-2000),
            rescale=False,
            PixelPaddingValue=("SS", -2000),
        )
        problem = hu_problem([read_slice(path)])
        assert problem is not None and problem.lowest == float(AIR)

    def test_a_real_scanner_file_s_padding(self):
        """pydicom's 693_UNCR.dcm: 55,772 pixels of PixelPaddingValue -2000 (-3024 HU)."""
        found = get_testdata_file("693_UNCR.dcm", download=False)
        if found is None:
            pytest.skip("693_UNCR.dcm is not installed (pip install pydicom-data)")
        ds = pydicom.dcmread(found)
        is_padding = ds.pixel_array == -2000
        image = read_slice(Path(found))
        assert int(is_padding.sum()) == 55772
        assert image.pixels.min() == -1024.0
        np.testing.assert_array_equal(image.pixels[is_padding], -1024.0)
        np.testing.assert_array_equal(
            image.pixels[~is_padding], ds.pixel_array[~is_padding] - 1024.0
        )
