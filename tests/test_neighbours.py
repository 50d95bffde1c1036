"""`series_order`: one series' slices along the normal, by one coordinate system per series."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import write_test_dicom
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.neighbours import series_order


def _axial_series(folder: Path, z_mm: list[float], locations: list[float | None]) -> Path:
    """Axial files at ImagePositionPatient z = ``z_mm``, InstanceNumbers against that order,
    with (0020,1041) SliceLocation ``locations`` (None: left out)."""
    for n, (z, location) in enumerate(zip(z_mm, locations, strict=True)):
        path = write_test_dicom(folder / f"f{n}.dcm", np.zeros((4, 4), np.uint16), instance=9 - n)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0.0, 0.0, z]
        if location is not None:
            ds.SliceLocation = location
        ds.save_as(path)
    return folder


def _order(folder: Path) -> list[str]:
    return [s.source.stem for s in series_order(read_series(folder))]


class TestSeriesOrder:
    def test_slice_location_on_some_files_does_not_mix_coordinate_systems(self, tmp_path):
        # an anonymiser kept SliceLocation (another origin) on two files, dropped it on two
        folder = _axial_series(tmp_path, [0.0, 2.0, 4.0, 6.0], [None, 52.0, None, 56.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # SliceLocation agrees, up to its origin
            assert _order(folder) == ["f0", "f1", "f2", "f3"]
        assert [s.position_mm for s in read_series(folder)] == [6.0, 4.0, 2.0, 0.0]

    def test_a_disagreeing_slice_location_is_told_and_the_position_is_used(self, tmp_path):
        # a reformatter renumbered SliceLocation against the positions' order
        folder = _axial_series(tmp_path, [0.0, 2.0, 4.0, 6.0], [3.0, 1.0, 4.0, 2.0])
        with pytest.warns(UserWarning, match=r"series 1\.2\.826.*SliceLocation disagrees with"):
            assert _order(folder) == ["f0", "f1", "f2", "f3"]

    def test_a_negated_slice_location_agrees(self, tmp_path):
        folder = _axial_series(tmp_path, [0.0, 2.0, 4.0], [10.0, 8.0, 6.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _order(folder) == ["f0", "f1", "f2"]

    def test_positions_from_two_sources_fall_back_to_instance_order_with_a_warning(self, tmp_path):
        folder = _axial_series(tmp_path, [0.0, 2.0, 4.0], [50.0, 1.0, 54.0])
        path = folder / "f1.dcm"  # no ImagePositionPatient: only its SliceLocation places it
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
        with pytest.warns(UserWarning, match=r"some slices have only \(0020,1041\) SliceLoc"):
            assert _order(folder) == ["f2", "f1", "f0"]  # InstanceNumbers 7, 8, 9

    def test_a_malformed_orientation_places_its_slice_by_slice_location_in_both(self, tmp_path):
        # ImagePositionPatient but a zero ImageOrientationPatient: no normal to project on, so
        # the reader places the slice by its SliceLocation and the order sees a mixed series
        folder = _axial_series(tmp_path, [0.0, 2.0, 4.0], [50.0, 52.0, 54.0])
        path = folder / "f1.dcm"
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [0, 0, 0, 0, 0, 0]
        ds.save_as(path)
        with pytest.warns(UserWarning, match="ImageOrientationPatient"):
            slices = read_series(folder)
        odd = next(s for s in slices if s.source.stem == "f1")
        assert (odd.image_position_mm, odd.orientation, odd.position_mm) == ((0, 0, 2.0), None, 52)
        with pytest.warns(UserWarning, match=r"some slices have only \(0020,1041\) SliceLoc"):
            assert [s.source.stem for s in series_order(slices)] == ["f2", "f1", "f0"]
