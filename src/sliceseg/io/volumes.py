"""Reading label volumes (3D Slicer .seg.nrrd, NRRD, NIfTI, DICOM-SEG) into one `LabelVolume`.

Decisions a caller relies on:

- Geometry is always in patient LPS millimetres, as DICOM's (0020,0032) ImagePositionPatient:
  ``ijk_to_lps`` maps a voxel index ``(i, j, k, 1)`` to its centre. NIfTI stores RAS, so its
  affine is turned to LPS (x and y negated); NRRD with ``space: right-anterior-superior`` too.
- Voxel values are the stored label values. A 3D Slicer segmentation names each value through
  its header fields ``Segment<N>_Name``, ``Segment<N>_LabelValue`` and ``Segment<N>_Layer``;
  a DICOM-SEG through (0062,0005) SegmentLabel per (0062,0004) SegmentNumber. NIfTI and plain
  NRRD label maps carry no names (``segments`` is empty; names come from ``labels.txt``).
- Slicer segmentations with several layers (overlapping segments stored as 4D) are merged into
  one label map when the segments do not overlap; each segment keeps its value unless two layers
  reuse a value, then segment ``n`` (header order) gets value ``n + 1``.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom_files import READ_ERRORS

VOLUME_SUFFIXES = (".seg.nrrd", ".nrrd", ".nii.gz", ".nii")
"""Suffixes (case-insensitive) of label volumes; a DICOM-SEG is recognised by content."""

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
"""(0008,0016) SOPClassUID of Segmentation Storage (DICOM-SEG)."""

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Turns a RAS affine into an LPS one (and back: it is its own inverse)."""

# What reading a damaged or wrong file raises, per reader: these, and only these, mean
# "unreadable" (one LabelError line); anything else (TypeError, NameError, ...) is a bug of ours
# and surfaces as one. The libraries' own classes are added where they are imported.
_FILE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # missing bytes, gzip.BadGzipFile; slicerio turns pynrrd's NRRDError into OSError
    EOFError,  # a gzip stream cut short
    zlib.error,  # a corrupt gzip stream
    ValueError,  # numbers that do not parse, data that does not fit the header's shape
    MemoryError,  # a header promising more voxels than memory holds
    OverflowError,
)
_NRRD_ERRORS: tuple[type[BaseException], ...] = (
    *_FILE_ERRORS,
    KeyError,  # pynrrd: an unknown 'type' or 'encoding'
    IndexError,
    StopIteration,  # pynrrd: an empty file
)
_DICOM_SEG_ERRORS: tuple[type[BaseException], ...] = (
    *READ_ERRORS,  # pydicom's, as for DICOM images
    zlib.error,  # deflated transfer syntax
    struct.error,
    KeyError,  # a required attribute missing
    IndexError,
    RuntimeError,  # highdicom: frames that do not form a regularly spaced volume
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


def is_volume_name(name: str) -> bool:
    """Tell whether a file name has a label-volume suffix (.seg.nrrd, .nrrd, .nii, .nii.gz)."""
    return name.lower().endswith(VOLUME_SUFFIXES)


def strip_volume_suffix(name: str) -> str:
    """Return ``name`` without its label-volume or DICOM suffix: ``p01.seg.nrrd`` → ``p01``."""
    lower = name.lower()
    for suffix in (*VOLUME_SUFFIXES, ".seg.dcm", ".dcm"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def is_dicom_seg(path: Path) -> bool:
    """Tell whether ``path`` is a DICOM Segmentation Storage object (reads the header only)."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except READ_ERRORS:
        return False
    return str(ds.get("SOPClassUID", "")) == SEGMENTATION_STORAGE


def referenced_series_uid(path: Path) -> str:
    """Return the series a DICOM-SEG segments: its first ReferencedSeriesSequence item's
    SeriesInstanceUID ("" when it names none).

    Raises:
        LabelError: the header cannot be read (names the file).
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except READ_ERRORS as exc:
        raise _unreadable(path, exc, "DICOM-SEG header") from exc
    references = ds.get("ReferencedSeriesSequence") or []
    return str(references[0].get("SeriesInstanceUID", "")) if len(references) else ""


def read_label_volume(path: Path | str) -> LabelVolume:
    """Read a label volume: .seg.nrrd / .nrrd (slicerio), .nii / .nii.gz (nibabel), DICOM-SEG.

    Args:
        path: the file; the kind is chosen by suffix, a DICOM-SEG by content.

    Returns:
        The volume, its LPS geometry and its segment names.

    Raises:
        LabelError: the file is missing, truncated or unreadable, has no geometry, is not 3D,
            holds negative or non-whole values, overlapping segments, or values without a
            segment in a Slicer header. The message names the file.

    Example:
        >>> volume = read_label_volume(Path("labels/p01.seg.nrrd"))
        >>> volume.names_by_value
        {1: 'vertebral body', 2: 'right psoas major'}
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label volume does not exist; check the path.")
    lower = path.name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    if lower.endswith(".nrrd"):
        return _read_nrrd(path)
    if is_dicom_seg(path):
        return _read_dicom_seg(path)
    raise LabelError(
        f"{path}: not a label volume (suffix not one of {', '.join(VOLUME_SUFFIXES)}, and not a "
        "DICOM-SEG); save the segmentation from 3D Slicer as .seg.nrrd, .nii.gz or DICOM-SEG."
    )


def _unreadable(path: Path, exc: BaseException, what: str) -> LabelError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return LabelError(
        f"{path}: cannot read the {what} ({text}); the file may be truncated or damaged; "
        "save it again from 3D Slicer (or the tool that made it)."
    )


def _read_nifti(path: Path) -> LabelVolume:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError, HeaderTypeError, ImageDataError

    nifti_errors: tuple[type[BaseException], ...] = (
        *_FILE_ERRORS,
        ImageFileError,  # not a NIfTI file (empty, text, a cut header)
        HeaderDataError,  # an unknown datatype code, a damaged header field
        HeaderTypeError,
        ImageDataError,
    )
    try:
        image: Any = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=np.float64)
    except nifti_errors as exc:
        raise _unreadable(path, exc, "NIfTI file") from exc
    values = _as_labels(_as_3d(data, path), path)
    return LabelVolume(values, LPS_FROM_RAS @ affine, (), path, "nifti")


def _read_nrrd(path: Path) -> LabelVolume:
    import slicerio
    from nrrd.errors import NRRDError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            segmentation = slicerio.read_segmentation(str(path))
    except (*_NRRD_ERRORS, NRRDError) as exc:
        raise _unreadable(path, exc, "NRRD file") from exc
    affine = np.asarray(segmentation["ijkToLPS"], dtype=np.float64)
    header_segments = segmentation.get("segments") or []
    voxels = segmentation["voxels"]
    if not _has_geometry(segmentation):
        raise LabelError(
            f"{path}: NRRD without 'space directions' / 'space origin'; its voxels cannot be "
            "placed on the DICOM slices; save it from 3D Slicer, which writes the geometry."
        )
    if not header_segments:
        return LabelVolume(_as_labels(_as_3d(voxels, path), path), affine, (), path, "nrrd")
    values, segments = _merge_layers(np.asarray(voxels), header_segments, path)
    return LabelVolume(values, affine, segments, path, "seg.nrrd")


def _has_geometry(segmentation: dict[str, Any]) -> bool:
    return "space" in segmentation or not np.allclose(segmentation["ijkToLPS"], np.eye(4))


def _merge_layers(
    voxels: np.ndarray, header: list[dict[str, Any]], path: Path
) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """One label map from a Slicer segmentation's layers; check every value has a segment."""
    layers = _as_labels(voxels if voxels.ndim == 4 else voxels[np.newaxis], path, ndim=4)
    values = [int(s.get("labelValue", 1)) for s in header]
    # Slicer < 4.11 wrote one segment per layer without a Layer field.
    in_layer = [int(s.get("layer", i if voxels.ndim == 4 else 0)) for i, s in enumerate(header)]
    renumber = len(set(values)) < len(values)
    merged = np.zeros(layers.shape[1:], dtype=np.uint16)
    segments: list[Segment] = []
    for index, info in enumerate(header):
        name = str(info.get("name", f"Segment_{index + 1}"))
        if not 0 <= in_layer[index] < layers.shape[0]:
            raise LabelError(
                f"{path}: segment '{name}' is in layer {in_layer[index]}, the file has "
                f"{layers.shape[0]}; save the segmentation again from 3D Slicer."
            )
        mask = layers[in_layer[index]] == values[index]
        value = index + 1 if renumber else values[index]
        clash = merged[mask]
        if np.any(clash):
            other = next(s.name for s in segments if s.label_value == int(clash[clash > 0][0]))
            raise LabelError(
                f"{path}: segments '{name}' and '{other}' overlap in "
                f"{int(np.count_nonzero(clash))} voxels; sliceseg needs one label per pixel; "
                "remove the overlap in Slicer (Segment Editor, masking: 'Allow overlap' off)."
            )
        merged[mask] = value
        segments.append(Segment(name, value, _colour(info)))
    _check_declared(layers, values, in_layer, path)
    return merged.astype(np.uint8) if merged.max() <= 255 else merged, tuple(segments)


def _check_declared(layers: np.ndarray, values: list[int], in_layer: list[int], path: Path) -> None:
    for layer in range(layers.shape[0]):
        declared = {v for v, n in zip(values, in_layer, strict=True) if n == layer}
        stray = sorted(set(np.unique(layers[layer]).tolist()) - declared - {0})
        if stray:
            raise LabelError(
                f"{path}: voxel values {stray} (layer {layer}) have no Segment<N>_LabelValue in "
                f"the header (declared: {sorted(declared)}); save the segmentation again from "
                "3D Slicer."
            )


def _colour(info: dict[str, Any]) -> tuple[float, float, float] | None:
    colour = info.get("color")
    if colour is None or len(colour) != 3:
        return None
    r, g, b = (float(c) for c in colour)
    return r, g, b


def _read_dicom_seg(path: Path) -> LabelVolume:
    import highdicom as hd

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.segread(path)
            volume = seg.get_volume(combine_segments=True, relabel=False)
    except _DICOM_SEG_ERRORS as exc:
        raise _unreadable(path, exc, "DICOM-SEG (or its frames are not on a regular grid)") from exc
    segments = tuple(
        Segment(str(item.SegmentLabel), int(item.SegmentNumber)) for item in seg.SegmentSequence
    )
    references = seg.get("ReferencedSeriesSequence") or []
    series_uid = str(references[0].SeriesInstanceUID) if references else ""
    values = _as_labels(np.asarray(volume.array), path)
    return LabelVolume(
        values, np.asarray(volume.affine, np.float64), segments, path, "dicom-seg", series_uid
    )


def _as_3d(data: Any, path: Path) -> np.ndarray:
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


def _as_labels(array: np.ndarray, path: Path, *, ndim: int = 3) -> np.ndarray:
    """Check the values are whole and >= 0; return them as the smallest unsigned integer type."""
    if array.ndim != ndim:
        raise LabelError(f"{path}: label voxels of shape {array.shape}; expected {ndim}D.")
    if array.size == 0:
        raise LabelError(f"{path}: label volume holds no voxels; save it again.")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all() or not np.array_equal(array, np.round(array)):
            bad = array[~finite] if not finite.all() else array[array != np.round(array)]
            raise LabelError(
                f"{path}: label values are not whole numbers (e.g. {float(bad.flat[0]):g}); a "
                "label map holds integers 0..K; export a label map, not a probability image."
            )
    elif array.dtype.kind not in "iub":
        raise LabelError(f"{path}: voxel type {array.dtype}; expected integer label values.")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 65535:
        raise LabelError(
            f"{path}: label values from {low:g} to {high:g}; expected 0 (background) to K."
        )
    return array.astype(np.uint16 if high > 255 else np.uint8)
