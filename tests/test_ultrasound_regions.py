"""Tests for sliceseg.io.ultrasound_regions: an ultrasound image's spacing from its regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from conftest import write_test_dicom
from sliceseg.io.dicom import read_slices

CM, SECONDS, CM_PER_SECOND = 3, 4, 7


def region(delta_x: float, delta_y: float, units: tuple[int, int] = (CM, CM)) -> Dataset:
    """One (0018,6011) SequenceOfUltrasoundRegions item: deltas per pixel, (x, y) unit codes."""
    item = Dataset()
    item.RegionSpatialFormat = 1
    item.PhysicalDeltaX, item.PhysicalDeltaY = delta_x, delta_y
    item.PhysicalUnitsXDirection, item.PhysicalUnitsYDirection = units
    return item


def ultrasound_file(tmp_path: Path, *regions: Dataset) -> Path:
    """A 4 × 4 ultrasound image without PixelSpacing, as scanners write one."""
    path = write_test_dicom(tmp_path / "dicoms" / "us.dcm", np.zeros((4, 4)), spacing=None)
    ds = pydicom.dcmread(path)
    ds.Modality = "US"
    ds.SequenceOfUltrasoundRegions = list(regions)
    ds.save_as(path)
    return path


class TestUltrasoundSpacing:
    """Issue 20 (inputs): an ultrasound image was refused as having "no PixelSpacing"."""

    def test_one_region_in_cm_gives_the_spacing_in_mm(self, tmp_path):
        path = ultrasound_file(tmp_path, region(0.02, 0.03))
        (image,) = read_slices(path)
        assert image.spacing_mm == pytest.approx((0.3, 0.2))  # rows from Y, columns from X
        assert image.spacing_source == "SequenceOfUltrasoundRegions PhysicalDeltaY / PhysicalDeltaX"

    def test_a_scanner_s_ultrasound_file_is_measured(self):
        """pydicom's JPGLosslessP14SV1_1s_1f_8b.dcm: one B-mode region of 0.0254767 cm pixels."""
        path = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm", download=False)
        if path is None:
            pytest.skip("JPGLosslessP14SV1_1s_1f_8b.dcm is not installed")
        (image,) = read_slices(path)
        assert image.spacing_mm == pytest.approx((0.25476697, 0.25476697))
        assert image.shape == (768, 1024)

    def test_regions_that_agree_give_their_spacing(self, tmp_path):
        path = ultrasound_file(tmp_path, region(0.025, 0.025), region(0.025, 0.025))
        (image,) = read_slices(path)
        assert image.spacing_mm == pytest.approx((0.25, 0.25))

    @pytest.mark.parametrize(
        ("regions", "why", "refusal"),
        [
            (
                (region(0.02, 0.02), region(0.04, 0.04)),
                "region 2: PhysicalDeltaY 0.04 cm, PhysicalDeltaX 0.04 cm",
                "no PixelSpacing (0028,0030), and the regions of its (0018,6011) "
                "SequenceOfUltrasoundRegions have different spacings (PhysicalDeltaX / "
                "PhysicalDeltaY), so no one spacing holds for the whole image",
            ),
            (
                (region(0.02, 0.02), region(0.01, 2.0, (SECONDS, CM_PER_SECOND))),
                "region 2: PhysicalUnitsYDirection cm/sec, PhysicalUnitsXDirection seconds, not cm",
                "no PixelSpacing (0028,0030), and a region of its (0018,6011) "
                "SequenceOfUltrasoundRegions is not in cm (a Doppler or M-mode strip in seconds "
                "or cm/s) or has a PhysicalDeltaX / PhysicalDeltaY not > 0, so no one spacing "
                "holds for the whole image",
            ),
        ],
    )
    def test_regions_without_one_spacing_in_cm_are_refused(
        self, tmp_path, capsys, regions, why, refusal
    ):
        """Two zooms, or a Doppler strip in seconds and cm/s beside the B-mode image: no one
        spacing is right for the whole image, so the user gives it."""
        from sliceseg.cli import main

        path = ultrasound_file(tmp_path, *regions)
        with pytest.warns(UserWarning, match=r"us\.dcm: .*give no one spacing in cm") as caught:
            (image,) = read_slices(path)
        assert image.spacing_mm is None
        assert why in str(caught[0].message)
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "us.npy", np.ones((4, 4), np.uint8))
        argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(path.parent),
                "--out", str(tmp_path / "out")]  # fmt: skip
        assert main(argv) == 2  # its only slice left out: nothing to measure
        lines = capsys.readouterr().err.strip().splitlines()
        said = (
            f"not measured: {path.relative_to(tmp_path).as_posix()}: {refusal}, so areas in mm² "
            "are unknown; give --fov ROWS_MM "
            "COLS_MM (the whole image's height and width), or --pixels to report pixel counts."
        )
        assert any(line.startswith(said) for line in lines)
        assert lines[-1].startswith(f"error: nothing to measure in {tmp_path / 'labels'}: ")

    def test_measure_gives_the_area_and_names_the_source(self, tmp_path):
        """A 4 × 4 label of 16 pixels at 0.3 × 0.2 mm is 0.96 mm²."""
        import pandas as pd

        from sliceseg.cli import main

        path = ultrasound_file(tmp_path, region(0.02, 0.03))
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "us.npy", np.ones((4, 4), np.uint8))
        argv = ["measure", str(tmp_path / "labels"), "--dicoms", str(path.parent),
                "--out", str(tmp_path / "out")]  # fmt: skip
        assert main(argv) == 0
        (row,) = pd.read_csv(tmp_path / "out" / "csa_long.csv").to_dict("records")
        assert row["area_mm2"] == pytest.approx(0.96)
        assert row["spacing_source"] == (
            "SequenceOfUltrasoundRegions PhysicalDeltaY / PhysicalDeltaX"
        )
