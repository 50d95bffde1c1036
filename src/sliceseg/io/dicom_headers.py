"""Parsing a DICOM header: the dataset read and checked before decoding, and the fields of a
`Slice` it gives (spacing, position, orientation, ids), per frame for enhanced multi-frame files.

Spacing comes from (0028,0030) PixelSpacing (functional groups first for multi-frame files), else
(0018,1164) ImagerPixelSpacing (divided by (0018,1114) EstimatedRadiographicMagnificationFactor
where there is one) with a ``UserWarning``, else an ultrasound image's regions' spacing
(`sliceseg.io.ultrasound_regions`), else ``None`` (spacing_source "none", or
"NominalScannedPixelSpacing" where only a scanned film's spacing is there: never used).
Values that are malformed or <= 0 are treated as missing, with a ``UserWarning``; so is an
(0020,0037) ImageOrientationPatient that is not two perpendicular unit vectors.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_nr_frames
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from sliceseg.errors import DicomReadError
from sliceseg.io.dicom_files import DICOMDIR_REASON, PIXEL_KEYWORDS, READ_ERRORS, is_dicom_file
from sliceseg.io.ultrasound_regions import ultrasound_spacing
from sliceseg.thread_warnings import recorded

__all__ = [
    "FILM_SPACING_SOURCE",
    "MAGNIFIED_SPACING_SOURCE",
    "MALFORMED_SPACING_SOURCE",
    "MAX_PIXELS_PER_FILE",
    "NOT_IMAGES",
    "as_int",
    "frame_value",
    "frame_values",
    "image_position",
    "named_warnings",
    "not_an_image",
    "one_line",
    "orientation_cosines",
    "photometric_interpretation",
    "pixel_spacing",
    "projected_position",
    "read_dataset",
    "slice_location",
    "slice_position",
    "slice_step_mm",
    "stored_pixel_spacing",
]

FILM_SPACING_SOURCE = "NominalScannedPixelSpacing"
"""``Slice.spacing_source`` of a file whose only spacing is (0018,2010) NominalScannedPixelSpacing:
a scanned film's, which measures the film, not the patient, so the slice has no spacing in mm."""
MAGNIFIED_SPACING_SOURCE = "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"
"""``Slice.spacing_source`` of a radiograph's detector spacing divided by the magnification the
scanner estimated at the patient: the patient's, unlike "ImagerPixelSpacing" alone."""
MALFORMED_SPACING_SOURCE = "PixelSpacing (malformed)"
"""``Slice.spacing_source`` of a file whose (0028,0030) PixelSpacing is there but not two
positive numbers (and which has no other spacing in mm): the refusal must not say it is absent."""

# Image Pixel module elements that must be one whole number for the pixel data to be decoded.
_PIXEL_MODULE_INTS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
# A header claiming more pixels than this is damaged (or a file we cannot hold in memory): refuse
# it before a decoder allocates the output (2^28 pixels = 1 GiB as float32, e.g. 16384 × 16384).
MAX_PIXELS_PER_FILE = 2**28


def read_dataset(path: Path) -> Dataset:
    if path.is_dir():
        raise DicomReadError(
            f"{path}: a folder, not a file; give one DICOM file, or read a folder with read_series."
        )
    if not path.is_file():
        raise DicomReadError(f"{path}: file does not exist; check the path.")
    if not is_dicom_file(path):
        raise DicomReadError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128 and not readable as DICOM); "
            "expected a DICOM image; remove it or export the image as DICOM."
        )
    try:
        with named_warnings(path):
            ds = pydicom.dcmread(path, force=True)
            _convert_elements(ds.file_meta)
            _convert_elements(ds)
    except READ_ERRORS as exc:
        raise DicomReadError(
            f"{path}: cannot read the DICOM header ({one_line(exc)}); the file may be truncated "
            "or corrupt; copy it again from the scanner/PACS."
        ) from exc
    _check_is_an_image(ds, path)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Preamble-less files carry no meta header; their encoding was guessed while reading.
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if not syntax.is_transfer_syntax:
        raise DicomReadError(
            f"{path}: (0002,0010) TransferSyntaxUID {syntax!r} is not a transfer syntax; the "
            "header is damaged; copy the file again from the scanner/PACS."
        )
    _check_image_size(ds, path)
    return ds


def _check_is_an_image(ds: Dataset, path: Path) -> None:
    """Raise `DicomReadError` for a file without pixel data, or whose pixel data is not an image
    of the body (`not_an_image`)."""
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        if "Directory" in _sop_class_name(ds):
            raise DicomReadError(f"{path}: {DICOMDIR_REASON}.")
        if _declares_an_image(ds):
            raise DicomReadError(
                f"{path}: the header declares an image ({_sop_class_name(ds)}) but the file ends "
                "before its pixel data; it is probably truncated; copy it again from the "
                "scanner/PACS."
            )
        raise DicomReadError(
            f"{path}: DICOM file holds no image (no PixelData; Modality "
            f"{ds.get('Modality', 'unknown')}); expected an image; move it out of the folder."
        )
    what = not_an_image(ds)
    if what:
        raise DicomReadError(
            f"{path}: {what}, not an image to segment; move it out of the folder (labels go in "
            "the labels folder)."
        )


def _convert_elements(ds: Dataset) -> None:
    """Decode every public element now, so that a damaged one fails here, inside the reader.

    pydicom converts elements lazily, on first access; without this, a damaged value (an unknown
    VR, bytes of the wrong length) would raise wherever the slice's fields happen to be read.
    Private elements are left raw: sliceseg never reads them.
    """
    for tag in list(ds.keys()):
        if tag.is_private:
            continue
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _convert_elements(item)


def _check_image_size(ds: Dataset, path: Path) -> None:
    """Refuse malformed Image Pixel elements and images too large to decode, before decoding."""
    for keyword in _PIXEL_MODULE_INTS:
        value = ds.get(keyword)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise DicomReadError(
                f"{path}: {keyword} is {value!r}; expected one whole number ≥ 0; the header is "
                "damaged; copy the file again from the scanner/PACS."
            )
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    samples = int(ds.get("SamplesPerPixel") or 1)
    try:
        frames = max(1, int(get_nr_frames(ds, warn=False)))
    except (TypeError, ValueError) as exc:  # a multi-valued or non-numeric NumberOfFrames
        raise DicomReadError(
            f"{path}: NumberOfFrames {ds.get('NumberOfFrames')!r} is not a whole number "
            f"({one_line(exc)}); the header is damaged; copy the file again."
        ) from exc
    if rows * cols * frames * samples > MAX_PIXELS_PER_FILE:
        raise DicomReadError(
            f"{path}: header declares {frames} frame(s) of {rows}×{cols} pixels × {samples} "
            f"samples, more than sliceseg reads from one file ({MAX_PIXELS_PER_FILE} pixels); the "
            "header is probably damaged; otherwise split the file into smaller ones."
        )


NOT_IMAGES = {"SEG": "a segmentation (DICOM-SEG)", "RTDOSE": "a radiotherapy dose grid"}
"""Modalities whose pixel data is not an image of the body (a study's export holds them too)."""


def not_an_image(ds: Dataset) -> str | None:
    """What a DICOM object with pixel data is when it is not an image to segment, else None.

    Example:
        >>> not_an_image(pydicom.Dataset(Modality="SEG"))
        'a segmentation (DICOM-SEG)'
    """
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if "Segmentation Storage" in _sop_class_name(ds):
        return NOT_IMAGES["SEG"]
    return NOT_IMAGES.get(modality)


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or ""
    return UID(str(uid)).name if uid else ""


def _declares_an_image(ds: Dataset) -> bool:
    """True when the SOP class is an image storage class, or image attributes are present."""
    return "Image Storage" in _sop_class_name(ds) or "Rows" in ds


def photometric_interpretation(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "") or "MONOCHROME2").strip()


def frame_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """Look ``keyword`` up in the frame's functional groups, then the shared ones, then the top."""
    found = frame_values(ds, frame, sequence, keyword)
    return found[0][1] if found else None


def frame_values(ds: Dataset, frame: int, sequence: str, keyword: str) -> list[tuple[str, Any]]:
    """Every (where, value) of ``keyword`` in `frame_value`'s order, where it is present:
    "per-frame functional groups", "shared functional groups", "top-level"."""
    found = []
    for groups_keyword, index, where in (
        ("PerFrameFunctionalGroupsSequence", frame, "per-frame functional groups"),
        ("SharedFunctionalGroupsSequence", 0, "shared functional groups"),
    ):
        groups = ds.get(groups_keyword)
        if groups is not None and index < len(groups):
            items = groups[index].get(sequence)
            if items and keyword in items[0]:
                found.append((where, items[0][keyword].value))
    if keyword in ds:
        found.append(("top-level", ds[keyword].value))
    return found


def pixel_spacing(ds: Dataset, path: Path, frame: int) -> tuple[tuple[float, float] | None, str]:
    # Malformed is missing (the module's rule), so a malformed value in the functional groups
    # lets the next place speak rather than hiding a valid spacing behind it.
    found = frame_values(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    present = [(where, value) for where, value in found if value is not None and value != ""]
    for n, (where, value) in enumerate(present):
        pixel = _spacing_numbers(value)
        if pixel is not None and n > 0:
            bad_where, bad = present[0]
            warnings.warn(
                f"{path}: (0028,0030) PixelSpacing {bad!r} in the {bad_where} is malformed or "
                f"not > 0; using the {where} PixelSpacing {pixel} instead; check the spacing.",
                UserWarning,
                stacklevel=4,
            )
        if pixel is not None:
            return pixel, "PixelSpacing"
    for _, value in present:
        _parse_spacing(value, path, "PixelSpacing")  # tells each malformed one
    imager, source = _imager_spacing(ds, path)
    if imager is not None:
        return imager, source
    regions, source = ultrasound_spacing(ds, path)
    if regions is not None or source != "none":  # a region's refusal too
        return regions, source
    if _spacing_numbers(ds.get("NominalScannedPixelSpacing")) is not None:
        return None, FILM_SPACING_SOURCE  # the film's, not the patient's: never used
    return None, MALFORMED_SPACING_SOURCE if present else "none"


def stored_pixel_spacing(ds: Dataset, frame: int) -> str:
    """(0028,0030) PixelSpacing as the file stores it where `pixel_spacing` looks first, its
    values joined by backslashes as in DICOM ("0.7\\abc"); "" when absent. A refusal of a
    malformed one names it, so the user sees the value without the reader's warning."""
    for _, value in frame_values(ds, frame, "PixelMeasuresSequence", "PixelSpacing"):
        if value is None or value == "":
            continue
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            return str(value)
        return "\\".join(str(v) for v in value)
    return ""


def _imager_spacing(ds: Dataset, path: Path) -> tuple[tuple[float, float] | None, str]:
    """(0018,1164) ImagerPixelSpacing, at the detector, divided by (0018,1114)
    EstimatedRadiographicMagnificationFactor where there is one (PS3.3 C.8.11.7: the spacing at
    the patient, as the scanner estimated it: :data:`MAGNIFIED_SPACING_SOURCE`); with a
    ``UserWarning`` either way."""
    imager = _parse_spacing(ds.get("ImagerPixelSpacing"), path, "ImagerPixelSpacing")
    if imager is None:
        return None, "none"
    try:
        factor = float(ds.get("EstimatedRadiographicMagnificationFactor"))
    except (TypeError, ValueError):
        factor = math.nan
    if not (math.isfinite(factor) and factor > 0):
        warnings.warn(
            f"{path}: no (0028,0030) PixelSpacing; using (0018,1164) ImagerPixelSpacing "
            f"{imager}, measured at the detector, so areas may be magnified.",
            UserWarning,
            stacklevel=5,
        )
        return imager, "ImagerPixelSpacing"
    patient = (imager[0] / factor, imager[1] / factor)
    warnings.warn(
        f"{path}: no (0028,0030) PixelSpacing; using (0018,1164) ImagerPixelSpacing {imager} "
        f"divided by (0018,1114) EstimatedRadiographicMagnificationFactor {factor:g}: "
        f"({patient[0]:.6g}, {patient[1]:.6g}) mm at the patient, as the scanner estimated it.",
        UserWarning,
        stacklevel=5,
    )
    return patient, MAGNIFIED_SPACING_SOURCE


def _parse_spacing(value: Any, path: Path, keyword: str) -> tuple[float, float] | None:
    if value is None or value == "":
        return None
    numbers = _spacing_numbers(value)
    if numbers is not None:
        return numbers
    warnings.warn(
        f"{path}: {keyword} {value!r} is malformed or not > 0; expected two positive numbers "
        "(row mm, column mm); treating the spacing as missing.",
        UserWarning,
        stacklevel=5,
    )
    return None


def _spacing_numbers(value: Any) -> tuple[float, float] | None:
    """Two positive finite numbers (row, column) from a spacing value, else None."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) == 2 and all(math.isfinite(v) and v > 0 for v in numbers):
        return numbers[0], numbers[1]
    return None


def slice_position(
    ds: Dataset,
    num_frames: int,
    orientation: tuple[float, ...] | None,
    position_mm: tuple[float, ...] | None,
) -> float | None:
    """The frame's `projected_position`, else its (0020,1041) `slice_location` (as ITK and
    dicom2nifti do: one coordinate system for every slice of a series that has positions,
    whatever an anonymiser or reformatter left in SliceLocation)."""
    projected = projected_position(orientation, position_mm)
    return slice_location(ds, num_frames) if projected is None else projected


def projected_position(
    orientation: tuple[float, ...] | None, position_mm: tuple[float, ...] | None
) -> float | None:
    """(0020,0032) ImagePositionPatient on the unit slice normal of the checked (0020,0037)
    `orientation_cosines`; None unless both are there. A slice placed without it (by its
    SliceLocation, `slice_position`) is in another coordinate system: a series with slices of
    both keeps its InstanceNumber order (`sliceseg.io.neighbours.series_order`).

    Example:
        >>> projected_position((1, 0, 0, 0, 1, 0), (5.0, 5.0, -4.0)), projected_position(None, (5.0, 5.0, -4.0))
        (-4.0, None)
    """  # noqa: E501
    if orientation is None or position_mm is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.asarray(position_mm) @ (normal / np.linalg.norm(normal)))


def slice_location(ds: Dataset, num_frames: int) -> float | None:
    """(0020,1041) SliceLocation of a single-frame file; None when absent or not a number."""
    try:
        location = float(ds.get("SliceLocation")) if num_frames == 1 else math.nan
    except (TypeError, ValueError):
        return None
    return location if math.isfinite(location) else None


def _float_tuple(value: Any, length: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != length or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


# How far (0020,0037)'s two vectors may be from unit length and from perpendicular: six
# decimals of rounding are far inside; a zero, parallel or skewed pair is no pixel grid.
_COSINE_TOLERANCE = 0.01


def orientation_cosines(
    ds: Dataset, frame: int, path: Path
) -> tuple[float, float, float, float, float, float] | None:
    """The frame's (0020,0037) ImageOrientationPatient; None, with a ``UserWarning`` when it is
    present, unless it is two perpendicular unit vectors."""
    value = frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    cosines = _float_tuple(value, 6)
    if cosines is None and value in (None, ""):
        return None
    if cosines is not None:
        row, col = np.asarray(cosines[:3]), np.asarray(cosines[3:])
        lengths = np.linalg.norm(row), np.linalg.norm(col)
        if (
            max(abs(n - 1.0) for n in lengths) <= _COSINE_TOLERANCE
            and abs(float(row @ col)) <= _COSINE_TOLERANCE
        ):
            return cosines  # type: ignore[return-value]  # length checked above
    warnings.warn(
        f"{path}: ImageOrientationPatient {value!r} is not two perpendicular unit vectors (row, "
        "column direction); treating the orientation as missing.",
        UserWarning,
        stacklevel=4,
    )
    return None


def image_position(ds: Dataset, frame: int) -> tuple[float, float, float] | None:
    value = frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    return _float_tuple(value, 3)  # type: ignore[return-value]  # length checked above


# An unreadable header or a multi-valued thickness (TypeError): no step, the grid takes 1 mm.
_STEP_ERRORS: tuple[type[BaseException], ...] = (*READ_ERRORS, TypeError)


def slice_step_mm(path: Path, *, frame: int = 0) -> float | None:
    """Return a file's (or frame's) slice step: (0018,0088) SpacingBetweenSlices, else
    (0018,0050) SliceThickness; None when neither is a positive number or the header cannot be
    read. An enhanced multi-frame file holds them in its PixelMeasuresSequence.

    The plane spacing of a volume made of a single slice (its neighbours give it otherwise).
    """
    try:
        # force: a preamble-less file (read as DICOM everywhere else) has a step too
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = float(frame_value(ds, frame, "PixelMeasuresSequence", keyword) or 0.0)
            if value > 0:
                return value
    except _STEP_ERRORS:
        return None
    return None


def as_int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


@contextlib.contextmanager
def named_warnings(path: Path) -> Iterator[None]:
    """Say pydicom's warnings inside the block once each, one line, named by the file (pydicom
    names none: "Invalid value for VR IS" alone does not tell a user which of 40,000 files)."""
    with recorded() as caught:
        yield
    for message in dict.fromkeys(one_line(w.message) for w in caught):
        warnings.warn(f"{path}: {message}", UserWarning, stacklevel=4)


def one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
