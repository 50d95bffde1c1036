"""Geometry between slices and volumes: planes by position, flips, crops, mismatches by how much."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.series_grid import series_grid
from sliceseg.io.volume_slices import slice_plane

ROWS, COLS = 6, 8
ROW_MM, COL_MM = 0.5, 0.8
STEP_MM = 4.0


def axial(z: float, *, name: str = "s.dcm", x0: float = -10.0, y0: float = -20.0, **kw) -> Slice:
    """An axial slice (rows along +y, columns along +x) with its first pixel at (x0, y0, z)."""
    options = dict(
        spacing_mm=(ROW_MM, COL_MM),
        spacing_source="PixelSpacing",
        orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    )
    options.update(kw)
    shape = options.pop("shape", (ROWS, COLS))
    return Slice(
        pixels=np.zeros(shape, np.float32),
        source=Path(name),
        image_position_mm=(x0, y0, z),
        **options,
    )


def truth(k: int) -> np.ndarray:
    """A distinct (rows, cols) label map for plane k: value k + 1 in an L-shaped patch."""
    label = np.zeros((ROWS, COLS), np.uint8)
    label[1 : 2 + k, 2] = k + 1
    label[1, 2 : 5 + k] = k + 1
    return label


def volume_of(planes: list[np.ndarray], affine: np.ndarray) -> LabelVolume:
    """Voxels [i=column, j=row, k=plane] from per-plane (rows, cols) maps."""
    values = np.stack([p.T for p in planes], axis=-1)
    return LabelVolume(values, affine, (), Path("vol.nii.gz"), "nifti")


def affine(*, z0: float = 0.0, k_sign: float = 1.0, origin=(-10.0, -20.0)) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = np.diag([COL_MM, ROW_MM, k_sign * STEP_MM])
    out[:3, 3] = (*origin, z0)
    return out


class TestSlicePlane:
    def test_planes_are_found_by_position_not_by_order(self):
        # Volume planes run downwards (k axis -z) from z = 8; slices are given bottom-up.
        volume = volume_of([truth(0), truth(1), truth(2)], affine(z0=8.0, k_sign=-1.0))
        for z, k in ((0.0, 2), (4.0, 1), (8.0, 0)):
            np.testing.assert_array_equal(slice_plane(volume, axial(z)), truth(k))

    def test_flipped_and_swapped_axes(self):
        # The same labels stored as [j (rows, flipped), i (columns), k]: a permuted affine.
        planes = [truth(0), truth(1)]
        values = np.stack([p[::-1, :] for p in planes], axis=-1)  # (rows, cols, k)
        matrix = np.zeros((4, 4))
        matrix[:3, 0] = (0.0, -ROW_MM, 0.0)  # index 0 runs up the columns
        matrix[:3, 1] = (COL_MM, 0.0, 0.0)
        matrix[:3, 2] = (0.0, 0.0, STEP_MM)
        matrix[:3, 3] = (-10.0, -20.0 + (ROWS - 1) * ROW_MM, 0.0)
        matrix[3, 3] = 1.0
        volume = LabelVolume(values, matrix, (), Path("swapped.nrrd"), "nrrd")
        np.testing.assert_array_equal(slice_plane(volume, axial(4.0)), truth(1))

    def test_a_cropped_volume_is_background_outside(self):
        full = truth(1)
        crop = full[1:4, 2:7]  # rows 1..3, cols 2..6
        origin = (-10.0 + 2 * COL_MM, -20.0 + 1 * ROW_MM)
        volume = volume_of([crop], affine(z0=4.0, origin=origin))
        plane = slice_plane(volume, axial(4.0))
        expected = np.zeros_like(full)
        expected[1:4, 2:7] = crop
        np.testing.assert_array_equal(plane, expected)

    def test_a_slice_outside_the_volume_has_no_plane(self):
        volume = volume_of([truth(0), truth(1)], affine())
        assert slice_plane(volume, axial(12.0)) is None
        assert slice_plane(volume, axial(-4.0)) is None

    def test_a_plane_between_slices_says_by_how_much(self):
        volume = volume_of([truth(0), truth(1)], affine())
        with pytest.raises(LabelError, match=r"vol\.nii\.gz: slice s\.dcm: .* falls 1\.5 mm "):
            slice_plane(volume, axial(1.5))

    def test_a_small_jitter_is_tolerated(self):
        volume = volume_of([truth(0), truth(1)], affine())
        np.testing.assert_array_equal(slice_plane(volume, axial(4.3)), truth(1))

    def test_other_spacing_says_both(self):
        matrix = affine()
        matrix[0, 0] = 2 * COL_MM
        volume = volume_of([truth(0)], matrix)
        with pytest.raises(
            LabelError, match=r"spacing along the image rows is 0\.8 mm, .* 1\.6 mm"
        ):
            slice_plane(volume, axial(0.0))

    def test_other_orientation_says_the_angle(self):
        angle = np.radians(10.0)
        matrix = affine()
        rotation = np.array(
            [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
        )
        matrix[:3, :3] = rotation @ matrix[:3, :3]
        volume = volume_of([truth(0)], matrix)
        with pytest.raises(LabelError, match=r"orientation differs by 10\.00°"):
            slice_plane(volume, axial(0.0))

    def test_a_sagittal_volume_for_an_axial_slice(self):
        # Sagittal voxels: i along y (0.5 mm), j along -z (0.8 mm), k along x (4 mm planes).
        matrix = np.eye(4)
        matrix[:3, :3] = [[0, 0, STEP_MM], [ROW_MM, 0, 0], [0, -COL_MM, 0]]
        matrix[:3, 3] = (-10.0, -20.0, 0.0)
        volume = LabelVolume(np.zeros((6, 6, 3), np.uint8), matrix, (), Path("sag.nrrd"), "nrrd")
        with pytest.raises(
            LabelError, match=r"along the image rows is 0\.8 mm, .* \(k axis\) is 4 mm"
        ):
            slice_plane(volume, axial(0.0))

    def test_a_wider_volume_is_an_error(self):
        planes = [np.zeros((ROWS, COLS + 3), np.uint8)]
        volume = volume_of(planes, affine())
        with pytest.raises(LabelError, match=r"in-plane size 6×11 voxels does not fit .* 6×8"):
            slice_plane(volume, axial(0.0))

    def test_a_volume_shifted_out_of_the_image_is_not_called_too_large(self):
        """Before: "in-plane size 6×8 voxels does not fit the series' 6×8 pixels": an image-sized
        volume whose affine puts it 2 columns beyond the image (another series, or LPS saved as
        RAS) was blamed on its size."""
        volume = volume_of([truth(0)], affine(origin=(-10.0 + 2 * COL_MM, -20.0)))
        with pytest.raises(
            LabelError, match=r"vol\.nii\.gz: its 6×8 voxels lie shifted .* \(2 voxels beyond"
        ):
            slice_plane(volume, axial(0.0))

    def test_a_half_voxel_shift_is_an_error(self):
        volume = volume_of([truth(0)], affine(origin=(-10.0 + COL_MM / 2, -20.0)))
        with pytest.raises(LabelError, match=r"in-plane shift of 0\.4 mm \(0\.50 voxel\)"):
            slice_plane(volume, axial(0.0))

    def test_a_slice_without_position_is_an_error(self):
        volume = volume_of([truth(0)], affine())
        image = Slice(np.zeros((ROWS, COLS), np.float32), (0.5, 0.8), "PixelSpacing", Path("x.dcm"))
        with pytest.raises(LabelError, match=r"x\.dcm: no ImagePositionPatient, Image"):
            slice_plane(volume, image)


class TestSeriesGrid:
    def test_a_missing_slice_leaves_an_empty_plane(self):
        slices = [axial(z, name=f"{z}.dcm") for z in (12.0, 0.0, 8.0)]  # 4 mm is missing
        grid = series_grid(slices)
        assert grid.shape == (COLS, ROWS, 4)
        assert grid.planes == (3, 0, 2)
        np.testing.assert_allclose(grid.ijk_to_lps[:3, 3], (-10.0, -20.0, 0.0))
        np.testing.assert_allclose(np.diag(grid.ijk_to_lps)[:3], (COL_MM, ROW_MM, STEP_MM))
        volume = grid.volume([truth(0), truth(1), truth(2)])
        np.testing.assert_array_equal(volume[:, :, 3].T, truth(0))
        assert not volume[:, :, 1].any()

    def test_a_single_slice_uses_the_given_step(self):
        grid = series_grid([axial(7.0)], step_mm=3.0)
        assert grid.shape == (COLS, ROWS, 1)
        assert grid.ijk_to_lps[2, 2] == pytest.approx(3.0)

    def test_irregular_positions_are_an_error(self):
        slices = [axial(z, name=f"{z}.dcm") for z in (0.0, 4.0, 10.0)]
        with pytest.raises(LabelError, match=r"not on a regular grid \(gaps 4, 6 mm\)"):
            series_grid(slices)

    def test_two_slices_at_one_position(self):
        slices = [axial(0.0, name="a.dcm"), axial(0.0, name="b.dcm")]
        with pytest.raises(LabelError, match=r"slices a\.dcm and b\.dcm lie at the same position"):
            series_grid(slices)

    def test_another_size_in_the_series(self):
        slices = [axial(0.0, name="a.dcm"), axial(4.0, name="b.dcm", shape=(7, 8))]
        with pytest.raises(LabelError, match=r"slice b\.dcm has another orientation, size"):
            series_grid(slices)

    def test_an_in_plane_shift_in_the_series(self):
        slices = [axial(0.0, name="a.dcm"), axial(4.0, name="b.dcm", x0=-5.0)]
        with pytest.raises(LabelError, match=r"b\.dcm is shifted in-plane by 5 mm"):
            series_grid(slices)

    def test_a_gantry_tilt_is_named_with_its_angle(self):
        """A tilted CT's exports were refused as "shifted in-plane by 1.34 mm" alone."""
        slices = [axial(5.0 * k, name=f"s{k}.dcm", y0=-20.0 + 5.0 * k * np.tan(np.radians(15)))
                  for k in range(3)]  # fmt: skip
        with pytest.raises(LabelError) as raised:
            series_grid(slices)
        assert (
            "s1.dcm is shifted in-plane by 1.34 mm against the others: stacked 15° from their "
            "normal (a gantry tilt); a volume needs" in str(raised.value)
        )
        shifted = [*slices[:2], axial(10.0, name="s2.dcm", x0=-13.0)]  # one slice moved: no tilt
        with pytest.raises(LabelError, match=r"the others; a volume needs"):
            series_grid(shifted)

    def test_grid_and_plane_agree_on_a_tilted_series(self):
        # An oblique series: rows along (cos, sin, 0), columns along -z.
        c, s = np.cos(0.3), np.sin(0.3)
        cosines = (c, s, 0.0, 0.0, 0.0, -1.0)
        normal = np.cross(cosines[:3], cosines[3:])
        slices = [
            Slice(
                np.zeros((ROWS, COLS), np.float32),
                (ROW_MM, COL_MM),
                "PixelSpacing",
                Path(f"{n}.dcm"),
                orientation=cosines,
                image_position_mm=tuple(np.array([5.0, 6.0, 7.0]) + n * 2.5 * normal),
            )
            for n in (2, 0, 1)
        ]
        grid = series_grid(slices)
        labels = [truth(k) for k in (2, 0, 1)]
        volume = LabelVolume(grid.volume(labels), grid.ijk_to_lps, (), Path("v"), "nifti")
        for image, label in zip(slices, labels, strict=True):
            np.testing.assert_array_equal(slice_plane(volume, image), label)
