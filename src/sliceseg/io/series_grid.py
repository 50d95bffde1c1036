"""A series' regular 3D grid: the one NIfTI, NRRD, DICOM-SEG and 3D Slicer use for its slices.

Built from the headers only, never from the order of the files: i along the rows, j down the
columns, k along the slice normal. Missing slices leave empty planes; positions that are not
whole steps apart cannot form a grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.slice_geometry import (
    PREDICTED_LABEL_MAPS,
    TOLERANCE_VOXELS,
    SliceGeometry,
    slice_geometry,
)


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
    geometries = [slice_geometry(s, fix=PREDICTED_LABEL_MAPS) for s in slices]
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


def _grid_affine(reference: SliceGeometry, step_mm: float, origin: np.ndarray) -> np.ndarray:
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
    reference: SliceGeometry, geometry: SliceGeometry, image: Slice, where: str
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
