"""NIfTI label volumes (nibabel): read from .nii / .nii.gz, and a series' labels written as .nii.gz.

NIfTI stores its affine in RAS; sliceseg works in LPS (`sliceseg.io.label_volume`), so both
directions go through `LPS_FROM_RAS`. An affine in metres or microns (``xyzt_units``) is scaled
to mm, with a ``UserWarning``. A NIfTI label map carries no segment names.
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg._version import __version__
from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_headers import slice_step_mm
from sliceseg.io.files import atomic_write_bytes
from sliceseg.io.label_volume import FILE_ERRORS, LabelVolume, as_3d, as_labels, unreadable
from sliceseg.io.series_grid import series_grid

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Turns a RAS affine into an LPS one (and back: it is its own inverse)."""


def read_nifti(path: Path) -> LabelVolume:
    """Read a NIfTI label map (.nii, .nii.gz) with its affine turned to LPS.

    Raises:
        LabelError: the file is not NIfTI, is truncated or damaged, is not 3D, or holds
            negative or non-whole values (names the file).

    Example:
        >>> read_nifti(Path("labels/p01.nii.gz")).spacing_mm
        (0.8, 0.8, 5.0)
    """
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError, HeaderTypeError, ImageDataError

    nifti_errors: tuple[type[BaseException], ...] = (
        *FILE_ERRORS,
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
        raise unreadable(path, exc, "NIfTI file") from exc
    _check_forms(image.header, path)
    values = as_labels(as_3d(data, path), path)
    return LabelVolume(values, LPS_FROM_RAS @ _in_mm(affine, image.header, path), (), path, "nifti")


# (xyz code, its name, × to mm) of the spatial units NIfTI allows besides mm (code 2) and
# "unknown" (0, taken as mm: what every tool writes).
_NOT_MM = {1: ("metres", 1000.0), 3: ("microns (µm)", 0.001)}


def _in_mm(affine: np.ndarray, header: Any, path: Path) -> np.ndarray:
    """The affine in mm, whose ``xyzt_units`` may say metres or microns: compared with the DICOM
    grid as mm, 0.0008 "mm" voxels were refused as a resampled volume. The volume must still
    coincide with the series' grid (the areas use the DICOM's spacing), so a wrong unit in the
    header is refused there, not measured."""
    unit = _NOT_MM.get(_xyz_code(header))
    if unit is None:
        return affine
    name, scale = unit
    warnings.warn(
        f"{path}: NIfTI xyzt_units say {name}; its affine was scaled × {scale:g} to mm.",
        UserWarning,
        stacklevel=3,
    )
    scaled = affine.copy()
    scaled[:3, :] *= scale
    return scaled


def _xyz_code(header: Any) -> int:
    return int(header["xyzt_units"]) % 8  # the low 3 bits: space; the rest: time


# How far (mm, or direction units) the sform and qform may differ: the qform's float32
# quaternion rounds far inside this; a shifted or flipped affine is far outside.
_FORM_TOLERANCE = 1e-2


def _check_forms(header: Any, path: Path) -> None:
    """Refuse a NIfTI whose qform_code and sform_code are both 0: it holds no position or
    orientation, and nibabel's stand-in (1 mm voxels around the origin) would be compared with
    the DICOM's grid as if it were the volume's, to blame a "resampled" spacing.

    Tell one whose sform and qform are both set and differ: nibabel (and so sliceseg) takes the
    sform, while ITK-based tools (3D Slicer) may take the qform, so the labels would land on
    other voxels there; silence would hide which one the areas were measured with.
    """
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    if not sform_code and not qform_code:
        raise LabelError(
            f"{path}: NIfTI without geometry (qform_code and sform_code are 0); its voxels cannot "
            "be placed on the DICOM slices; save it with the DICOM series' affine (3D Slicer, "
            "dcm2niix, or nibabel's Nifti1Image(labels, affine))."
        )
    if not sform_code or not qform_code:
        return
    mm_per_unit = _NOT_MM.get(_xyz_code(header), ("mm", 1.0))[1]
    difference = mm_per_unit * float(np.max(np.abs(np.asarray(sform) - np.asarray(qform))))
    if difference <= _FORM_TOLERANCE:
        return
    warnings.warn(
        f"{path}: NIfTI sform and qform disagree (by up to {difference:.3g} mm); used the sform "
        f"(sform_code {int(sform_code)}, nibabel's rule), while ITK-based tools such as 3D "
        "Slicer may use the qform; check where the labels land and save the file with one "
        "affine in both.",
        UserWarning,
        stacklevel=3,
    )


def write_nifti(path: Path | str, slices: Sequence[Slice], labels: Sequence[np.ndarray]) -> Path:
    """Write the series' labels as a NIfTI-1 label volume (uint8, gzip) with its affine.

    The affine is the series' grid (`series_grid`) in RAS, as NIfTI requires (sform and qform,
    code 1 "scanner"); voxel ``[i, j, k]`` is column ``i``, row ``j`` of the slice on plane ``k``.

    Args:
        path: the ``.nii.gz`` to write (atomically).
        slices: the series' slices, any order.
        labels: (rows, cols) label maps, one per slice.

    Returns:
        ``path``.

    Raises:
        LabelError: the slices do not form one regular grid (see `series_grid`).

    Example:
        >>> write_nifti(out / "p01.nii.gz", slices, labels)
    """
    import nibabel as nib

    step_mm = slice_step_mm(slices[0].source, frame=slices[0].frame) if len(slices) == 1 else None
    grid = series_grid(slices, step_mm=step_mm)
    affine = LPS_FROM_RAS @ grid.ijk_to_lps
    image = nib.Nifti1Image(grid.volume(labels), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = f"sliceseg {__version__} labels".encode()
    return atomic_write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))
