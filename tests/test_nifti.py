"""Tests for sliceseg.io.nifti: a NIfTI label volume's geometry in mm, whatever its units."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from sliceseg.cli import main
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.nifti import read_nifti, write_nifti
from test_export_geometry import write_series


def series_with_labels(root: Path) -> tuple[Path, Path]:
    """dicoms/p01 (3 slices of 48 × 64 at 0.5 × 0.8 mm) and labels/p01.nii.gz (mm) holding a
    10 × 20 square on each slice: 200 pixels of 0.4 mm² = 80 mm²."""
    write_series(root / "dicoms" / "p01", heights_mm=[0.0, 3.0, 6.0])
    slices = read_series(root / "dicoms" / "p01")
    label = np.zeros((48, 64), np.uint8)
    label[10:20, 20:40] = 1
    path = write_nifti(root / "labels" / "p01.nii.gz", slices, [label] * len(slices))
    return root / "dicoms", path


def save_in(path: Path, unit: str, scale: float, *, qform_shift: float = 0.0) -> None:
    """Save the NIfTI again with its affine and ``xyzt_units`` in ``unit`` (mm × ``scale``),
    its qform ``qform_shift`` (in ``unit``) along x from its sform."""
    image = nib.load(path)
    affine = image.affine.copy()
    affine[:3, :] *= scale
    again = nib.Nifti1Image(np.asarray(image.dataobj), affine)
    again.header.set_sform(affine, code=1)  # both forms, as write_nifti and Slicer save them
    again.header.set_qform(affine + np.pad([[qform_shift]], ((0, 3), (3, 0))), code=1)
    again.header.set_xyzt_units(unit)
    nib.save(again, path)


class TestUnits:
    """Issue 20 (inputs): a NIfTI in metres or microns was refused as a resampled volume."""

    @pytest.mark.parametrize(
        ("unit", "scale", "said"),
        [("meter", 0.001, "metres; its affine was scaled × 1000"),
         ("micron", 1000.0, "microns (µm); its affine was scaled × 0.001")],
    )  # fmt: skip
    def test_the_affine_is_scaled_to_mm_with_a_note(self, tmp_path, unit, scale, said):
        _, path = series_with_labels(tmp_path)
        in_mm = read_nifti(path)
        save_in(path, unit, scale)
        with pytest.warns(UserWarning) as caught:
            volume = read_nifti(path)
        assert [str(w.message) for w in caught] == [f"{path}: NIfTI xyzt_units say {said} to mm."]
        np.testing.assert_allclose(volume.ijk_to_lps, in_mm.ijk_to_lps, atol=1e-4)
        assert volume.spacing_mm == pytest.approx((0.8, 0.5, 3.0), abs=1e-6)

    @pytest.mark.parametrize(("unit", "scale"), [("meter", 0.001), ("micron", 1000.0)])
    def test_measure_gives_the_areas_of_the_mm_file(self, tmp_path, capsys, unit, scale):
        dicoms, path = series_with_labels(tmp_path)
        save_in(path, unit, scale)
        argv = ["measure", str(path.parent), "--dicoms", str(dicoms),
                "--out", str(tmp_path / "out")]  # fmt: skip
        assert main(argv) == 0
        long = pd.read_csv(tmp_path / "out" / "csa_long.csv")
        assert list(long["area_mm2"]) == pytest.approx([80.0] * 3)
        assert "NIfTI xyzt_units say" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("unit", "scale", "shift", "told"),
        [("meter", 0.001, 0.005, True), ("micron", 1000.0, 5.0, False)],
    )
    def test_forms_are_compared_in_mm(self, tmp_path, unit, scale, shift, told):
        """5 mm apart (0.005 m) is told; 5 µm is rounding: the tolerance is 0.01 mm."""
        _, path = series_with_labels(tmp_path)
        save_in(path, unit, scale, qform_shift=shift)
        with pytest.warns(UserWarning) as caught:
            read_nifti(path)
        said = " ".join(str(w.message) for w in caught)
        assert ("NIfTI sform and qform disagree (by up to 5 mm)" in said) is told

    def test_unknown_units_are_taken_as_mm(self, tmp_path):
        _, path = series_with_labels(tmp_path)
        save_in(path, "unknown", 1.0)
        assert read_nifti(path).spacing_mm == pytest.approx((0.8, 0.5, 3.0), abs=1e-6)
