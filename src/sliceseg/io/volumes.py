"""Reading any label volume into one `LabelVolume`: the format chosen by suffix (3D Slicer
.seg.nrrd or its detached .seg.nhdr, NRRD, NIfTI) or by content (DICOM-SEG).

Each format's reader and writer live together (`sliceseg.io.seg_nrrd`, `sliceseg.io.nifti`,
`sliceseg.io.dicom_seg`); `sliceseg.io.label_volume` holds what they share: `LabelVolume` (LPS
geometry, stored label values, segment names) and its checks.
"""

from __future__ import annotations

from pathlib import Path

from sliceseg.errors import LabelError
from sliceseg.io.dicom_seg import is_dicom_seg, read_dicom_seg
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.nifti import read_nifti
from sliceseg.io.seg_nrrd import read_nrrd

_VOLUME_SUFFIXES = (".seg.nrrd", ".nrrd", ".seg.nhdr", ".nhdr", ".nii.gz", ".nii")
"""Suffixes (case-insensitive) of label volumes; a DICOM-SEG is recognised by content."""


def is_volume_name(name: str) -> bool:
    """Tell whether a file name has a label-volume suffix (.seg.nrrd, .nrrd, a detached .seg.nhdr
    or .nhdr header, .nii, .nii.gz)."""
    return name.lower().endswith(_VOLUME_SUFFIXES)


def strip_volume_suffix(name: str) -> str:
    """Return ``name`` without its label-volume or DICOM suffix: ``p01.seg.nrrd`` → ``p01``."""
    lower = name.lower()
    for suffix in (*_VOLUME_SUFFIXES, ".seg.dcm", ".dcm"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def read_label_volume(path: Path | str) -> LabelVolume:
    """Read a label volume: .seg.nrrd / .nrrd / .nhdr (pynrrd), .nii / .nii.gz (nibabel), DICOM-SEG.

    Args:
        path: the file; the kind is chosen by suffix, a DICOM-SEG by content.

    Returns:
        The volume, its LPS geometry and its segment names.

    Raises:
        LabelError: the file (or a detached header's data file) is missing, truncated or
            unreadable, has no geometry, is not 3D, holds negative or non-whole values,
            overlapping segments, or values without a segment in a Slicer header. The message
            names the file.

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
        return read_nifti(path)
    if lower.endswith((".nrrd", ".nhdr")):
        return read_nrrd(path)
    if is_dicom_seg(path):
        return read_dicom_seg(path)
    raise LabelError(
        f"{path}: not a label volume (suffix not one of {', '.join(_VOLUME_SUFFIXES)}, and not a "
        "DICOM-SEG); save the segmentation from 3D Slicer as .seg.nrrd, .nii.gz or DICOM-SEG."
    )
