"""A DICOM slice's pixel grid in patient LPS, from its header alone, and how closely grids match.

`slice_geometry` reads (0020,0032) ImagePositionPatient, (0020,0037) ImageOrientationPatient and
(0028,0030) PixelSpacing into a `SliceGeometry`, or says which is missing. Both directions between
slices and label volumes start here: a slice's plane in a volume (`sliceseg.io.volume_slices`) and
a series' grid (`sliceseg.io.series_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import USER_SPACING_SOURCES, Slice

TOLERANCE_VOXELS = 0.2
"""Largest mismatch, in voxels, between a slice's pixel centres and the volume's voxel centres."""


@dataclass(frozen=True)
class SliceGeometry:
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


_PLANE_SOURCES = ("PixelSpacing", *USER_SPACING_SOURCES)  # spacing in the patient's plane


_PER_SLICE_LABELS = "use per-slice label files for these images"
PREDICTED_LABEL_MAPS = "this series' label maps (labels/) hold its predictions"
"""What to use where an export cannot hold a series: its per-slice label maps (``predict``)."""


def slice_geometry(image: Slice, *, fix: str = _PER_SLICE_LABELS) -> SliceGeometry:
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
    return SliceGeometry(
        position_mm=np.asarray(image.image_position_mm, dtype=np.float64),
        row_direction=cosines[:3] / np.linalg.norm(cosines[:3]),
        column_direction=cosines[3:] / np.linalg.norm(cosines[3:]),
        spacing_mm=image.spacing_mm,
        shape=image.shape,
    )
