"""A DICOM slice's plane in a label volume: the volume's voxels at the slice's pixel centres.

`slice_plane` works from the headers only, never from the order of the files: (0020,0032)
ImagePositionPatient, (0020,0037) ImageOrientationPatient and (0028,0030) PixelSpacing against
the volume's origin, directions and spacing. The grids must coincide: same spacing, axes along
the slice's rows and columns (flips and axis swaps are fine), and the slice plane on a voxel
plane, each within ``tolerance_voxels``. (The other direction, a series' grid for writing a
volume, is `sliceseg.io.series_grid`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.slice_geometry import TOLERANCE_VOXELS, SliceGeometry, slice_geometry

ORIENTATION_CONVENTION = "radiological-v1"
"""The canonical in-plane orientation (``sliceseg.model_space.orientation``), stored in model files.

Defined here, below ``data`` and ``models``, so that both use this one definition.
"""

_AXES = "ijk"


def slice_plane(
    volume: LabelVolume, image: Slice, *, tolerance_voxels: float = TOLERANCE_VOXELS
) -> np.ndarray | None:
    """Take the volume's labels at the pixel centres of one DICOM slice.

    The volume may be cropped in-plane (as Slicer saves a segmentation's extent): pixels outside
    it are background. It must not reach beyond the image.

    Args:
        volume: the label volume.
        image: the slice, with ImagePositionPatient, ImageOrientationPatient and PixelSpacing.
        tolerance_voxels: largest mismatch in voxels between pixel and voxel centres.

    Returns:
        (rows, cols) label values on the slice's grid, or None when the slice's plane is
        outside the volume (before its first or after its last voxel plane).

    Raises:
        LabelError: the slice has no geometry, or the grids differ (orientation, spacing,
            in-plane size or shift, a plane between two voxel planes); the message names the
            volume, the slice and by how much.

    Example:
        >>> plane = slice_plane(read_label_volume(Path("labels/p01.seg.nrrd")), slices[0])
    """
    found = locate_slice_plane(volume, image, tolerance_voxels=tolerance_voxels)
    return None if found is None else found.values


@dataclass(frozen=True, eq=False)
class PlaneOfSlice:
    """Where a slice lies in a volume, and the labels there.

    Attributes:
        normal_axis: the volume axis (0, 1, 2 for i, j, k) along the slice normal.
        index: the plane's index along ``normal_axis``.
        values: (rows, cols) label values on the slice's grid.
    """

    normal_axis: int
    index: int
    values: np.ndarray


def locate_slice_plane(
    volume: LabelVolume, image: Slice, *, tolerance_voxels: float = TOLERANCE_VOXELS
) -> PlaneOfSlice | None:
    """`slice_plane`, with the plane's axis and index (to find labelled planes no slice takes).

    Raises:
        LabelError: as `slice_plane`.
    """
    geometry = slice_geometry(image)
    to_voxel = np.linalg.inv(volume.ijk_to_lps)[:3]
    rows, cols = geometry.shape
    row_mm, col_mm = geometry.spacing_mm
    step_col = to_voxel[:, :3] @ (geometry.row_direction * col_mm)
    step_row = to_voxel[:, :3] @ (geometry.column_direction * row_mm)
    start = to_voxel @ np.append(geometry.position_mm, 1.0)
    where = f"{volume.source}: slice {image.source.name}"
    axis_col = _matching_axis(
        volume, step_col, geometry.row_direction, cols, where, "rows", geometry, tolerance_voxels
    )
    axis_row = _matching_axis(
        volume, step_row, geometry.column_direction, rows, where, "columns", geometry,
        tolerance_voxels,
    )  # fmt: skip
    if axis_col == axis_row:
        raise _orientation_error(where, volume, geometry, 90.0)
    (normal_axis,) = {0, 1, 2} - {axis_col, axis_row}
    plane = _plane_index(volume, start[normal_axis], normal_axis, where, tolerance_voxels)
    if plane is None:
        return None
    first = _in_plane_start(volume, start, (axis_row, axis_col), where, tolerance_voxels)
    signs = (int(np.sign(step_row[axis_row])), int(np.sign(step_col[axis_col])))
    values = _sample(volume, plane, normal_axis, (axis_row, axis_col), first, signs, (rows, cols))
    return PlaneOfSlice(normal_axis, plane, values)


def _matching_axis(
    volume: LabelVolume,
    step: np.ndarray,
    direction: np.ndarray,
    count: int,
    where: str,
    along: str,
    geometry: SliceGeometry,
    tolerance: float,
) -> int:
    """The volume axis a pixel step follows; check direction and spacing over the whole image."""
    axis = int(np.argmax(np.abs(step)))
    off_axis = float(np.linalg.norm(np.delete(step, axis))) * max(count - 1, 1)
    if off_axis > tolerance:
        cosine = min(1.0, abs(float(direction @ volume.directions[:, axis])))
        raise _orientation_error(where, volume, geometry, float(np.degrees(np.arccos(cosine))))
    scale = abs(float(step[axis]))
    if abs(scale - 1.0) * max(count - 1, 1) > tolerance:
        slice_mm = volume.spacing_mm[axis] * scale
        raise LabelError(
            f"{where}: pixel spacing along the image {along} is {slice_mm:.4g} mm, the volume's "
            f"voxel spacing there ({_AXES[axis]} axis) is {volume.spacing_mm[axis]:.4g} mm "
            f"({100 * abs(scale - 1):.1f}% apart); expected the series' own grid; "
            f"{_spacing_fix(scale)}."
        )
    return axis


def _spacing_fix(voxels_per_pixel: float) -> str:
    """The fix for another spacing; a whole factor finer is Slicer's oversampling of this series."""
    factor = round(voxels_per_pixel)
    if factor >= 2 and abs(voxels_per_pixel - factor) < 0.01:
        return (
            f"the volume is {factor}× finer, as 3D Slicer saves a segmentation with oversampling "
            f"factor {factor}; set its geometry to this series with oversampling factor 1 "
            "(Segment Editor: Specify geometry) and save it again"
        )
    return (
        "save the segmentation on the DICOM series (Slicer: Segment Editor with this series as "
        "source geometry) instead of a resampled volume"
    )


def _orientation_error(
    where: str, volume: LabelVolume, geometry: SliceGeometry, angle_deg: float
) -> LabelError:
    rows = ", ".join(f"{v:.3f}" for v in (*geometry.row_direction, *geometry.column_direction))
    axes = "; ".join(
        f"{_AXES[n]} ({', '.join(f'{v:.3f}' for v in volume.directions[:, n])})" for n in range(3)
    )
    return LabelError(
        f"{where}: orientation differs by {angle_deg:.2f}° (slice ImageOrientationPatient "
        f"{rows}; volume axes {axes}); expected the volume's axes along the slice's rows and "
        "columns; segment this series itself rather than another (e.g. a sagittal) series."
    )


def _plane_index(
    volume: LabelVolume, position: float, axis: int, where: str, tolerance: float
) -> int | None:
    count = volume.shape[axis]
    nearest = round(position)
    if not -tolerance <= position <= count - 1 + tolerance:
        return None
    offset = position - nearest
    if abs(offset) > tolerance:
        spacing = volume.spacing_mm[axis]
        low = int(np.floor(position))
        raise LabelError(
            f"{where}: the slice plane falls {abs(offset) * spacing:.3g} mm from the nearest "
            f"volume plane (between planes {low} and {low + 1}, spacing {spacing:.4g} mm); "
            "expected every slice on a volume plane; the volume belongs to another series or "
            "was resampled; save it on this series' geometry."
        )
    return int(nearest)


def _in_plane_start(
    volume: LabelVolume,
    start: np.ndarray,
    axes: tuple[int, int],
    where: str,
    tolerance: float,
) -> tuple[int, int]:
    first = []
    for axis in axes:
        offset = float(start[axis] - round(start[axis]))
        if abs(offset) > tolerance:
            raise LabelError(
                f"{where}: in-plane shift of {abs(offset) * volume.spacing_mm[axis]:.3g} mm "
                f"({abs(offset):.2f} voxel) along the volume's {_AXES[axis]} axis; expected "
                "voxel centres on pixel centres; the volume was made on another grid (check "
                "for a half-voxel corner/centre convention)."
            )
        first.append(round(start[axis]))
    return first[0], first[1]


def _sample(
    volume: LabelVolume,
    plane: int,
    normal_axis: int,
    axes: tuple[int, int],
    first: tuple[int, int],
    signs: tuple[int, int],
    shape: tuple[int, int],
) -> np.ndarray:
    """Copy the volume's voxels onto the slice grid; refuse a volume wider than the image."""
    indices = [first[n] + signs[n] * np.arange(shape[n]) for n in range(2)]
    for n, axis in enumerate(axes):
        inside = (indices[n] >= 0) & (indices[n] < volume.shape[axis])
        if int(np.count_nonzero(inside)) < volume.shape[axis]:
            raise _beyond_image_error(volume, axes, axis, shape, int(inside.sum()))
    plane_values = np.take(volume.values, plane, axis=normal_axis)
    kept = [a if a < normal_axis else a - 1 for a in axes]
    plane_values = np.transpose(plane_values, kept)  # (row axis, column axis)
    out = np.zeros(shape, dtype=volume.values.dtype)
    inside_rows = (indices[0] >= 0) & (indices[0] < plane_values.shape[0])
    inside_cols = (indices[1] >= 0) & (indices[1] < plane_values.shape[1])
    out[np.ix_(inside_rows, inside_cols)] = plane_values[
        np.ix_(indices[0][inside_rows], indices[1][inside_cols])
    ]
    return out


def _beyond_image_error(
    volume: LabelVolume, axes: tuple[int, int], axis: int, shape: tuple[int, int], inside: int
) -> LabelError:
    """A volume with voxels beyond the image: larger than it, or shifted out of it."""
    size = "×".join(str(volume.shape[a]) for a in axes)
    beyond = f"{volume.shape[axis] - inside} voxels beyond the image along the {_AXES[axis]} axis"
    if all(volume.shape[a] <= n for a, n in zip(axes, shape, strict=True)):
        return LabelError(
            f"{volume.source}: its {size} voxels lie shifted against the series' "
            f"{shape[0]}×{shape[1]} pixels ({beyond}); expected the series' own grid (or a crop "
            "of it); the volume belongs to another series, or its affine is wrong (an LPS "
            "affine saved as a NIfTI's RAS one mirrors x and y); save the segmentation on this "
            "series."
        )
    return LabelError(
        f"{volume.source}: in-plane size {size} voxels does not fit the series' "
        f"{shape[0]}×{shape[1]} pixels ({beyond}); expected the series' own grid (or a crop of "
        "it); save the segmentation on this series."
    )
