"""A label volume in memory (`LabelVolume`, its `Segment`s) and the checks every format shares.

Each format's reader and writer live in their own module (`sliceseg.io.nifti`,
`sliceseg.io.seg_nrrd`, `sliceseg.io.dicom_seg`); `sliceseg.io.volumes.read_label_volume` picks
the reader. Decisions a caller relies on:

- Geometry is always in patient LPS millimetres, as DICOM's (0020,0032) ImagePositionPatient:
  ``ijk_to_lps`` maps a voxel index ``(i, j, k, 1)`` to its centre. NIfTI stores RAS, so its
  affine is turned to LPS (x and y negated); NRRD with ``space: right-anterior-superior`` too.
- Voxel values are the stored label values. A 3D Slicer segmentation names each value through
  its header fields ``Segment<N>_Name``, ``Segment<N>_LabelValue`` and ``Segment<N>_Layer``;
  a DICOM-SEG through (0062,0005) SegmentLabel per (0062,0004) SegmentNumber. NIfTI and plain
  NRRD label maps carry no names (``segments`` is empty; names come from ``labels.txt``).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.labels import whole_numbers

# What reading a damaged or wrong file raises, per reader: these, and only these, mean
# "unreadable" (one LabelError line); anything else (TypeError, NameError, ...) is a bug of ours
# and surfaces as one. Each reader adds its library's own classes where it imports them.
FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # missing bytes, gzip.BadGzipFile; slicerio turns pynrrd's NRRDError into OSError
    EOFError,  # a gzip stream cut short
    zlib.error,  # a corrupt gzip stream
    ValueError,  # numbers that do not parse, data that does not fit the header's shape
    MemoryError,  # a header promising more voxels than memory holds
    OverflowError,
)


@dataclass(frozen=True)
class Segment:
    """One named segment of a label volume.

    Attributes:
        name: the segment's name (Slicer ``Segment<N>_Name``, DICOM-SEG SegmentLabel).
        label_value: its voxel value in `LabelVolume.values` (after merging layers).
        colour_rgb: display colour, each channel 0..1, when the file gives one.
    """

    name: str
    label_value: int
    colour_rgb: tuple[float, float, float] | None = None


@dataclass(frozen=True, eq=False)
class LabelVolume:
    """A label volume with its geometry in patient LPS and its segment names.

    Attributes:
        values: (I, J, K) integer label values, voxel ``[i, j, k]``; 0 is background.
        ijk_to_lps: (4, 4) affine from voxel index to the voxel centre in LPS mm.
        segments: the named segments, by value; empty when the file names none.
        source: the file read.
        kind: "seg.nrrd", "nrrd", "nifti" or "dicom-seg".
        series_uid: the SeriesInstanceUID a DICOM-SEG references; "" for other kinds.
    """

    values: np.ndarray
    ijk_to_lps: np.ndarray
    segments: tuple[Segment, ...]
    source: Path
    kind: str
    series_uid: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, J, K) voxel counts."""
        i, j, k = self.values.shape
        return int(i), int(j), int(k)

    @property
    def origin_mm(self) -> tuple[float, float, float]:
        """LPS centre of voxel (0, 0, 0)."""
        x, y, z = self.ijk_to_lps[:3, 3]
        return float(x), float(y), float(z)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing along i, j and k in mm."""
        i, j, k = np.linalg.norm(self.ijk_to_lps[:3, :3], axis=0)
        return float(i), float(j), float(k)

    @property
    def directions(self) -> np.ndarray:
        """(3, 3) unit LPS direction of the i, j and k axes, one per column."""
        return self.ijk_to_lps[:3, :3] / np.asarray(self.spacing_mm)

    @property
    def names_by_value(self) -> dict[int, str]:
        """Segment name of each label value ({} for unnamed volumes)."""
        return {s.label_value: s.name for s in self.segments}


def unreadable(path: Path, exc: BaseException, what: str) -> LabelError:
    """The one-line error of a label volume its library could not read (``what``: the kind)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return LabelError(
        f"{path}: cannot read the {what} ({text}); the file may be truncated or damaged; "
        "save it again from 3D Slicer (or the tool that made it)."
    )


def as_3d(data: Any, path: Path) -> np.ndarray:
    """Return ``data`` as a 3D array: a 2D map gets one plane, trailing length-1 axes go.

    Raises:
        LabelError: more than three axes remain (a multi-channel or time series image).
    """
    array = np.asarray(data)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise LabelError(
            f"{path}: label volume of shape {array.shape}; expected a 3D label map (one value "
            "per voxel); export a label map, not a multi-channel or time series image."
        )
    return array


def as_labels(array: np.ndarray, path: Path, *, ndim: int = 3) -> np.ndarray:
    """Check the values are whole and >= 0; return them as the smallest unsigned integer type.

    Raises:
        LabelError: another number of axes, no voxels, non-whole or negative values, values
            above 65535, or a non-numeric voxel type.
    """
    if array.ndim != ndim:
        raise LabelError(f"{path}: label voxels of shape {array.shape}; expected {ndim}D.")
    if array.size == 0:
        raise LabelError(f"{path}: label volume holds no voxels; save it again.")
    if array.dtype.kind not in "iub":  # integers pass as they are: no int64 copy of a volume
        array = whole_numbers(
            array, path, save_hint="export a label map of ROI numbers, not a probability image"
        )
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 65535:
        raise LabelError(
            f"{path}: label values from {low:g} to {high:g}; expected 0 (background) to K."
        )
    return array.astype(np.uint16 if high > 255 else np.uint8)


def check_roi_values(values: np.ndarray, roi_names: Sequence[str], image: Slice) -> None:
    """Before writing a named volume: every label value 1..K has a name.

    Raises:
        LabelError: a value exceeds the number of names (names ``image``'s folder).
    """
    top = int(values.max()) if values.size else 0
    if top > len(roi_names):
        raise LabelError(
            f"{image.source.parent}: label value {top} but {len(roi_names)} ROI names; expected "
            "one name per ROI 1..K."
        )
