"""Geometry between DICOM slices and label volumes: a slice's plane in a volume, a series' grid.

Both directions work from the headers only, never from the order of the files:

- `slice_plane` finds, for one `Slice`, the volume's voxels at the slice's pixel centres from
  (0020,0032) ImagePositionPatient, (0020,0037) ImageOrientationPatient and (0028,0030)
  PixelSpacing against the volume's origin, directions and spacing. The grids must coincide:
  same spacing, axes along the slice's rows and columns (flips and axis swaps are fine), and
  the slice plane on a voxel plane, each within ``tolerance_voxels``.
- `series_grid` builds the regular 3D grid of a series (i along the rows, j down the columns,
  k along the slice normal), the one that NIfTI / NRRD / Slicer use for it. Missing slices
  leave empty planes; positions that are not whole steps apart cannot form a grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import USER_SPACING_SOURCES, Slice
from sliceseg.io.label_volume import LabelVolume

ORIENTATION_CONVENTION = "radiological-v1"
"""The canonical in-plane orientation (``sliceseg.model_space.orientation``), stored in model files.

Defined here, below ``data`` and ``models``, so that both use this one definition.
"""

TOLERANCE_VOXELS = 0.2
"""Largest mismatch, in voxels, between a slice's pixel centres and the volume's voxel centres."""

_AXES = "ijk"


@dataclass(frozen=True)
class _SliceGeometry:
    """A slice's pixel grid in patient LPS.

    Attributes:
        position_mm: centre of the first pixel, (0020,0032) ImagePositionPatient.
        row_direction: unit LPS direction along a row (increasing column), IOP[:3].
        column_direction: unit LPS direction down a column (increasing row), IOP[3:].
        spacing_mm: (row, col) from (0028,0030) PixelSpacing.
        shape: (rows, cols).
    """

    position_mm: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    spacing_mm: tuple[float, float]
    shape: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal, row direction × column direction."""
        return np.cross(self.row_direction, self.column_direction)


@dataclass(frozen=True, eq=False)
class SeriesGrid:
    """The regular 3D grid of a series, as NIfTI, NRRD and 3D Slicer hold it.

    Attributes:
        ijk_to_lps: (4, 4) voxel index → LPS mm; i along the rows (PixelSpacing column
            spacing), j down the columns, k along the normal (lowest position first).
        shape: (I, J, K) = (cols, rows, planes).
        planes: the plane index k of each slice, in the order the slices were given.
    """

    ijk_to_lps: np.ndarray
    shape: tuple[int, int, int]
    planes: tuple[int, ...]

    def volume(self, labels: Sequence[np.ndarray]) -> np.ndarray:
        """Stack per-slice (rows, cols) label maps into the (I, J, K) grid; gaps stay 0."""
        out = np.zeros(self.shape, dtype=np.uint8)
        for k, label in zip(self.planes, labels, strict=True):
            out[:, :, k] = np.asarray(label).T
        return out


_PLANE_SOURCES = ("PixelSpacing", *USER_SPACING_SOURCES)  # spacing in the patient's plane


_PER_SLICE_LABELS = "use per-slice label files for these images"
PREDICTED_LABEL_MAPS = "this series' label maps (labels/) hold its predictions"
"""What to use where an export cannot hold a series: its per-slice label maps (``predict``)."""


def _slice_geometry(image: Slice, *, fix: str = _PER_SLICE_LABELS) -> _SliceGeometry:
    """Return a slice's pixel grid in LPS, or raise when its header lacks the geometry.

    ``fix``: what the message tells the user to do instead (reading labels: per-slice label
    files; exporting predictions: their label maps).

    Raises:
        LabelError: no ImagePositionPatient, ImageOrientationPatient or PixelSpacing.
    """
    missing = [
        keyword
        for keyword, value in (
            ("ImagePositionPatient", image.image_position_mm),
            ("ImageOrientationPatient", image.orientation),
            ("PixelSpacing", image.spacing_mm if image.spacing_source in _PLANE_SOURCES else None),
        )
        if value is None
    ]
    if missing or image.orientation is None or image.spacing_mm is None:
        raise LabelError(
            f"{image.source}: no {', '.join(missing)} in the DICOM header; a label volume can "
            f"only be placed on slices with their position, orientation and spacing; {fix}."
        )
    cosines = np.asarray(image.orientation, dtype=np.float64)
    return _SliceGeometry(
        position_mm=np.asarray(image.image_position_mm, dtype=np.float64),
        row_direction=cosines[:3] / np.linalg.norm(cosines[:3]),
        column_direction=cosines[3:] / np.linalg.norm(cosines[3:]),
        spacing_mm=image.spacing_mm,
        shape=image.shape,
    )


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
    geometry = _slice_geometry(image)
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
    geometry: _SliceGeometry,
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
    where: str, volume: LabelVolume, geometry: _SliceGeometry, angle_deg: float
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


def series_grid(
    slices: Sequence[Slice],
    *,
    step_mm: float | None = None,
    tolerance_voxels: float = TOLERANCE_VOXELS,
) -> SeriesGrid:
    """Build the regular 3D grid that holds every slice of a series on one of its planes.

    Slices are placed by their position along the normal (never by file order). The plane step
    is the smallest distance between neighbours (whole multiples of it leave empty planes for
    missing slices); a single slice uses ``step_mm`` (e.g. (0018,0088) SpacingBetweenSlices or
    (0018,0050) SliceThickness), else 1 mm.

    Args:
        slices: the slices of one series, any order.
        step_mm: plane spacing for a single-slice series.
        tolerance_voxels: largest misfit of a slice on the grid, in voxels.

    Returns:
        The grid and the plane of each slice.

    Raises:
        LabelError: a slice lacks geometry; slices differ in orientation, size or spacing, or
            are shifted in-plane; two slices share a position; the positions are not whole
            steps apart.

    Example:
        >>> grid = series_grid(read_series(Path("scans/p01")))
        >>> grid.shape
        (256, 256, 12)
    """
    if not slices:
        raise LabelError("no slices: a series grid needs at least one DICOM slice.")
    geometries = [_slice_geometry(s, fix=PREDICTED_LABEL_MAPS) for s in slices]
    reference = geometries[0]
    where = f"{Path(slices[0].source).parent}: series {slices[0].series_uid or '(no UID)'}"
    for image, geometry in zip(slices, geometries, strict=True):
        _check_same_grid(reference, geometry, image, where)
    normal = reference.normal
    heights = np.asarray([g.position_mm @ normal for g in geometries])
    order = np.argsort(heights, kind="stable")
    step = _plane_step(heights[order], slices, order, step_mm, where, tolerance_voxels)
    planes = np.rint((heights - heights[order[0]]) / step).astype(int)
    origin = geometries[int(order[0])].position_mm
    offsets = np.asarray([g.position_mm - origin for g in geometries])
    limit = tolerance_voxels * min(reference.spacing_mm)
    _check_aligned(slices, offsets, normal, limit, where)
    rows, cols = reference.shape
    affine = _grid_affine(reference, step, origin)
    return SeriesGrid(affine, (cols, rows, int(planes.max()) + 1), tuple(int(k) for k in planes))


def _check_aligned(
    slices: Sequence[Slice], offsets: np.ndarray, normal: np.ndarray, limit_mm: float, where: str
) -> None:
    """Refuse a slice shifted in-plane by more than ``limit_mm``: its offset from the lowest
    slice's position (``offsets``, one row per slice) strays from the ``normal``.

    Raises:
        LabelError: names the slice and its shift, and a gantry tilt when that explains it.
    """
    drifts = offsets - np.outer(offsets @ normal, normal)
    for image, drift in zip(slices, np.linalg.norm(drifts, axis=1), strict=True):
        if drift > limit_mm:
            raise LabelError(
                f"{where}: slice {image.source.name} is shifted in-plane by {drift:.3g} mm "
                f"against the others{_tilt_clause(drifts, offsets @ normal, limit_mm)}; a volume "
                f"needs aligned slices; {PREDICTED_LABEL_MAPS}."
            )


def _grid_affine(reference: _SliceGeometry, step_mm: float, origin: np.ndarray) -> np.ndarray:
    """The grid's voxel-to-LPS affine: columns, rows, planes ``step_mm`` apart along the normal,
    from ``origin`` (the lowest slice's position)."""
    row_mm, col_mm = reference.spacing_mm
    affine = np.eye(4)
    affine[:3, 0] = reference.row_direction * col_mm
    affine[:3, 1] = reference.column_direction * row_mm
    affine[:3, 2] = reference.normal * step_mm
    affine[:3, 3] = origin
    return affine


def _tilt_clause(drifts: np.ndarray, heights: np.ndarray, limit_mm: float) -> str:
    """How far from their normal the slices are stacked, when every slice's in-plane drift is
    one direction times its height (a gantry tilt; three slices at least), as a clause."""
    if len(heights) < 3 or not heights.any():
        return ""
    per_mm = drifts.T @ heights / (heights @ heights)  # the drift per mm along the normal
    if np.linalg.norm(drifts - np.outer(heights, per_mm), axis=1).max() > limit_mm:
        return ""
    angle = float(np.degrees(np.arctan(np.linalg.norm(per_mm))))
    return f": stacked {angle:.3g}° from their normal (a gantry tilt)"


def _check_same_grid(
    reference: _SliceGeometry, geometry: _SliceGeometry, image: Slice, where: str
) -> None:
    same_orientation = np.allclose(
        [*reference.row_direction, *reference.column_direction],
        [*geometry.row_direction, *geometry.column_direction],
        atol=1e-4,
    )
    same_spacing = np.allclose(reference.spacing_mm, geometry.spacing_mm, rtol=1e-4)
    if not (same_orientation and same_spacing and reference.shape == geometry.shape):
        cosines = [
            reference.row_direction @ geometry.row_direction,
            reference.column_direction @ geometry.column_direction,
        ]
        angle_deg = float(np.degrees(np.arccos(np.clip(min(cosines), -1.0, 1.0))))
        raise LabelError(
            f"{where}: slice {image.source.name} has another orientation, size or spacing "
            f"({geometry.shape}, {geometry.spacing_mm} mm, {angle_deg:.2f}° from the first's "
            f"orientation) than the first ({reference.shape}, {reference.spacing_mm} mm); a "
            f"volume (or a DICOM-SEG) needs one grid; {PREDICTED_LABEL_MAPS}."
        )


def _plane_step(
    heights: np.ndarray,
    slices: Sequence[Slice],
    order: np.ndarray,
    step_mm: float | None,
    where: str,
    tolerance: float,
) -> float:
    """The spacing of the planes along the normal, from the sorted slice positions."""
    if len(heights) == 1:
        return float(step_mm) if step_mm and step_mm > 0 else 1.0
    gaps = np.diff(heights)
    smallest = int(np.argmin(gaps))
    if gaps[smallest] < 1e-3:
        a, b = (slices[int(order[smallest + n])].source.name for n in (0, 1))
        raise LabelError(
            f"{where}: slices {a} and {b} lie at the same position ({heights[smallest]:.3f} mm "
            "along the normal); a volume holds one slice per plane; remove the duplicate."
        )
    multiples = np.rint(gaps / gaps[smallest])
    step = float(gaps.sum() / multiples.sum())
    misfit = np.abs(gaps / step - multiples)
    # and each slice's distance from its plane: small misfits of the gaps add up along a series
    misfit = np.maximum(misfit, np.abs(np.cumsum(gaps) / step - np.cumsum(multiples)))
    if misfit.max() > tolerance:
        raise LabelError(
            f"{where}: slice positions are not on a regular grid (gaps "
            f"{', '.join(f'{g:.3g}' for g in gaps)} mm); NIfTI and NRRD need equal steps; "
            f"{PREDICTED_LABEL_MAPS}."
        )
    return step
