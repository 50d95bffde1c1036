"""Reading DICOM files into `Slice`s (modality units, spacing, ids) and ordering a series.

Decisions a caller relies on:

- Pixels are float32 in modality units, from the stored values by the standard's order: the
  (0028,3000) ModalityLUTSequence, else (0028,1053) RescaleSlope and (0028,1052) RescaleIntercept,
  applied with pydicom's ``apply_modality_lut``; a file with only one of the two takes the
  other's identity value (slope 1, intercept 0). Enhanced multi-frame files take them from the
  per-frame / shared functional groups. ``Slice.modality_lut`` records which applied.
- MONOCHROME1 (low value displays white) changes the display, not the values: the pixels stay in
  modality units (Hounsfield units on CT), ``Slice.photometric`` records it, and
  ``Slice.display_pixels`` (what the network and the pictures see) is negated, so that bright
  means what a viewer shows bright.
- Colour images (RGB, YBR, PALETTE COLOR) are converted to grey luminance (ITU-R BT.601 weights
  0.299, 0.587, 0.114) with a ``UserWarning``.
- Spacing comes from (0028,0030) PixelSpacing (functional groups first for multi-frame files), else
  (0018,1164) ImagerPixelSpacing with a ``UserWarning``, else ``None`` (spacing_source "none").
  Values that are malformed or <= 0 are treated as missing, with a ``UserWarning``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder
from pydicom.pixels.utils import get_nr_frames
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from tqdm import tqdm

from sliceseg.errors import ConfigError, DicomReadError, PairingError

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
USER_SPACING_SOURCE = "fov/matrix"
"""``Slice.spacing_source`` of a spacing the user gave (``--fov`` / ``--matrix``) for a file
without one; set by `sliceseg.measure.areas.with_fallback_spacing`."""
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
_PREAMBLE_LESS_GROUPS = (0x0000, 0x0002, 0x0008)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DECODER_HINT = (
    "install the pixel data plugins (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg "
    "pylibjpeg-rle), or convert the file to uncompressed DICOM (e.g. `gdcmconv --raw in out`)"
)
# What pydicom raises on a damaged or non-DICOM file: these, and only these, mean "unreadable".
# Anything else (TypeError, NameError, ...) is a bug of ours and must surface as one.
READ_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    NotImplementedError,  # unknown value representation
    AttributeError,  # an ambiguous VR that pydicom cannot resolve
    OverflowError,
    struct.error,
    MemoryError,
)
# What decoding the pixel data raises: pydicom's checks and its plugins' errors (the Rust-based
# decoders raise pyo3's PanicException, a BaseException, on corrupt streams; see _is_panic).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    *READ_ERRORS,
    RuntimeError,
    KeyError,
    IndexError,
    StopIteration,  # fewer encapsulated frames than NumberOfFrames says
)
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
_CORRUPT_HINT = (
    "the decoder is installed, so the compressed pixel data is corrupt or truncated; export the "
    "image again from the scanner/PACS"
)
_TRUNCATED_HINT = (
    "the file is truncated or its header (Rows, Columns, BitsAllocated) does not match the pixel "
    "data; copy it again from the scanner or PACS"
)


@dataclass(frozen=True, eq=False)
class Slice:
    """One 2D image from a DICOM file, in modality units, with its pixel spacing and ids.

    Attributes:
        pixels: (rows, cols) float32 in modality units (modality LUT or rescale applied; never
            inverted for MONOCHROME1, see `display_pixels`).
        spacing_mm: (row, col) spacing in mm from (0028,0030) PixelSpacing, row first; ``None``
            when the file has no usable spacing.
        spacing_source: "PixelSpacing", "ImagerPixelSpacing" or "none" as read; "fov/matrix"
            (:data:`USER_SPACING_SOURCE`) once the user's ``--fov`` / ``--matrix`` gave it.
        source: the file the slice came from.
        frame: frame index inside a multi-frame file (0 for single-frame files).
        num_frames: number of frames in the file.
        series_uid: (0020,000E) SeriesInstanceUID, "" when absent.
        instance_number: (0020,0013) InstanceNumber, ``None`` when absent or malformed.
        position_mm: (0020,1041) SliceLocation, else (0020,0032) ImagePositionPatient projected on
            the slice normal from (0020,0037) ImageOrientationPatient; ``None`` when neither exists.
        patient_id: (0010,0020) PatientID, "" when absent. Kept in memory only; outputs leave it
            out unless the user asks for it (``--keep-patient-info``).
        patient_name: (0010,0010) PatientName as text, "" when absent; same rule.
        orientation: (0020,0037) ImageOrientationPatient, the row then column direction cosines
            (6 floats, patient LPS axes); per frame for enhanced multi-frame files; ``None``
            when absent or malformed.
        image_position_mm: (0020,0032) ImagePositionPatient, the centre of the first pixel in
            patient LPS mm; ``None`` when absent or malformed.
        modality: (0008,0060) Modality ("MR", "CT", ...), "" when absent.
        photometric: (0028,0004) PhotometricInterpretation; "MONOCHROME1" makes
            :attr:`display_pixels` the negated pixels.
        modality_lut: how the stored values became ``pixels``: "rescale" ((0028,1053)
            RescaleSlope / (0028,1052) RescaleIntercept), "lut" ((0028,3000)
            ModalityLUTSequence), "none" (the file has neither: the stored values as they are),
            "colour" (grey luminance of a colour image); "" for a slice not read from a file.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    spacing_source: str
    source: Path
    frame: int = 0
    num_frames: int = 1
    series_uid: str = ""
    instance_number: int | None = None
    position_mm: float | None = None
    patient_id: str = field(default="", repr=False)
    patient_name: str = field(default="", repr=False)
    orientation: tuple[float, float, float, float, float, float] | None = None
    image_position_mm: tuple[float, float, float] | None = None
    modality: str = ""
    photometric: str = "MONOCHROME2"
    modality_lut: str = ""

    @property
    def display_pixels(self) -> np.ndarray:
        """The pixels as brightness, what the network and the pictures see.

        Modality units, negated for MONOCHROME1 (where low values display white). Its robust
        z-score (what the network sees) equals that of sliceseg 0.1's values, the stored range
        mirrored before the rescale, so models trained then predict as they did.
        """
        return -self.pixels if self.photometric == "MONOCHROME1" else self.pixels

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the pixel array."""
        rows, cols = self.pixels.shape
        return int(rows), int(cols)

    @property
    def name(self) -> str:
        """File name without a DICOM suffix, plus ``_f003`` for frame 3 of a multi-frame file."""
        stem = strip_dicom_suffix(self.source.name)
        return f"{stem}_f{self.frame:03d}" if self.num_frames > 1 else stem


@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out, with the reason in one line."""

    path: Path
    reason: str


@dataclass(frozen=True)
class DicomScan:
    """The readable slices of a folder (ordered by `order_slices`) and the files left out."""

    slices: list[Slice]
    skipped: list[SkippedFile]


def strip_dicom_suffix(name: str) -> str:
    """Return ``name`` without a DICOM suffix (case-insensitive); other names are kept whole.

    Example:
        >>> strip_dicom_suffix("slice_1.DCM"), strip_dicom_suffix("1.2.840.5")
        ('slice_1', '1.2.840.5')
    """
    lower = name.lower()
    for suffix in DICOM_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``slice_2`` before ``slice_10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def visible_files(folder: Path) -> list[Path]:
    """Return the files under ``folder`` (recursive), naturally sorted, hidden ones left out.

    A file is hidden when its name or a folder between it and ``folder`` starts with '.'.
    """
    files = [
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def is_dicom_file(path: Path) -> bool:
    """Tell whether ``path`` is a DICOM file, by content, whatever its suffix.

    A file is DICOM when it has 'DICM' at byte 128, or, for preamble-less files that start with a
    group 0000/0002/0008 tag, when ``dcmread(force=True)`` yields a dataset with PixelData.

    Args:
        path: any file.

    Returns:
        True for DICOM files.

    Example:
        >>> is_dicom_file(Path("dicoms/p01/slice_1"))
        True
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    if little not in _PREAMBLE_LESS_GROUPS and big not in _PREAMBLE_LESS_GROUPS:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=False, defer_size="1 KB")
    except READ_ERRORS:
        return False
    return any(keyword in ds for keyword in _PIXEL_KEYWORDS)


def read_slices(path: Path) -> list[Slice]:
    """Read one DICOM file into one `Slice` per frame.

    Args:
        path: a DICOM file (any suffix), uncompressed or compressed (JPEG, JPEG-LS, JPEG 2000, RLE).

    Returns:
        The slices, frame 0 first.

    Raises:
        DicomReadError: the file is not DICOM, is truncated, holds no image, or its pixel data
            cannot be decoded (the message names the transfer syntax and what to install).

    Example:
        >>> [s.shape for s in read_slices(Path("dicoms/p01/slice_1.dcm"))]
        [(64, 64)]
    """
    path = Path(path)
    ds = _read_dataset(path)
    frames = _decode_frames(ds, path, index=None)
    return [_build_slice(ds, path, raw, frame, len(frames)) for frame, raw in enumerate(frames)]


def read_slice(path: Path, *, frame: int = 0) -> Slice:
    """Read one frame of a DICOM file into a `Slice`.

    Args:
        path: a DICOM file.
        frame: frame index, 0 for single-frame files.

    Returns:
        The slice of that frame.

    Raises:
        DicomReadError: as for `read_slices`.
        ConfigError: ``frame`` is outside the file's frames.

    Example:
        >>> read_slice(Path("cine.dcm"), frame=3).name
        'cine_f003'
    """
    path = Path(path)
    ds = _read_dataset(path)
    num_frames = max(1, int(get_nr_frames(ds, warn=False)))
    if not 0 <= frame < num_frames:
        raise ConfigError(
            f"{path}: frame={frame} requested, the file has {num_frames} frame(s); "
            f"choose a frame from 0 to {num_frames - 1}."
        )
    raw = _decode_frames(ds, path, index=frame if num_frames > 1 else None)[0]
    return _build_slice(ds, path, raw, frame, num_frames)


def find_dicom_files(folder: Path) -> tuple[list[Path], list[SkippedFile]]:
    """Find the DICOM files under ``folder`` (recursive, by content, naturally sorted).

    Hidden files and folders (name starting with '.') are ignored silently; every other
    non-DICOM file comes back as a `SkippedFile`.

    Args:
        folder: the folder to search.

    Returns:
        (DICOM files, skipped files).

    Raises:
        PairingError: ``folder`` does not exist or is not a folder.

    Example:
        >>> files, skipped = find_dicom_files(Path("data/train/dicoms"))
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PairingError(f"{folder}: folder does not exist; check the path to the DICOM folder.")
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in visible_files(folder):
        if is_dicom_file(path):
            found.append(path)
        else:
            skipped.append(
                SkippedFile(path, "not a DICOM file (no 'DICM' marker and not readable as DICOM)")
            )
    return found, skipped


def order_slices(slices: Iterable[Slice]) -> list[Slice]:
    """Order slices by SeriesInstanceUID, then InstanceNumber, then position, then name.

    Missing InstanceNumber or position sort after present ones; names sort naturally.

    Example:
        >>> [s.instance_number for s in order_slices(read_series(Path("scans")))][:3]
        [1, 2, 3]
    """

    def key(s: Slice) -> tuple[Any, ...]:
        return (
            s.series_uid,
            s.instance_number is None,
            s.instance_number or 0,
            s.position_mm is None,
            s.position_mm or 0.0,
            natural_key(s.name),
            str(s.source),
            s.frame,
        )

    return sorted(slices, key=key)


def scan_dicom_folder(folder: Path, *, progress: bool = False) -> DicomScan:
    """Read every DICOM file under ``folder``; unreadable files are skipped with a reason.

    Args:
        folder: the folder to read (recursive).
        progress: show a tqdm bar (only when stderr is a terminal).

    Returns:
        The ordered slices and the skipped files (non-DICOM, corrupt, no image).

    Raises:
        PairingError: ``folder`` does not exist.

    Example:
        >>> scan = scan_dicom_folder(Path("scans"))
        >>> len(scan.slices), [s.reason for s in scan.skipped]
    """
    paths, skipped = find_dicom_files(folder)
    slices: list[Slice] = []
    disable = not (progress and sys.stderr.isatty())
    for path in tqdm(paths, desc="Reading DICOM", unit="file", disable=disable):
        try:
            slices.extend(read_slices(path))
        except DicomReadError as exc:
            skipped.append(SkippedFile(path, str(exc)))
    return DicomScan(slices=order_slices(slices), skipped=skipped)


def read_series(folder: Path) -> list[Slice]:
    """Read all DICOM slices under ``folder``, ordered by `order_slices`.

    Args:
        folder: a folder of DICOM files (any suffix, nested folders allowed).

    Returns:
        The slices.

    Raises:
        PairingError: the folder does not exist or holds no readable DICOM file.

    Example:
        >>> slices = read_series(Path("scans/p01"))
    """
    scan = scan_dicom_folder(folder)
    if not scan.slices:
        detail = f"; first skipped: {scan.skipped[0].path.name}: {scan.skipped[0].reason}"
        raise PairingError(
            f"{folder}: no DICOM files found ({len(scan.skipped)} other file(s)"
            f"{detail if scan.skipped else ''}); expected DICOM files (.dcm or no suffix)."
        )
    return scan.slices


def _read_dataset(path: Path) -> Dataset:
    if not path.is_file():
        raise DicomReadError(f"{path}: file does not exist; check the path.")
    if not is_dicom_file(path):
        raise DicomReadError(
            f"{path}: not a DICOM file (no 'DICM' marker at byte 128 and not readable as DICOM); "
            "expected a DICOM image; remove it or export the image as DICOM."
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=True)
            _convert_elements(ds.file_meta)
            _convert_elements(ds)
    except READ_ERRORS as exc:
        raise DicomReadError(
            f"{path}: cannot read the DICOM header ({_one_line(exc)}); the file may be truncated "
            "or corrupt; copy it again from the scanner/PACS."
        ) from exc
    for message in dict.fromkeys(_one_line(w.message) for w in caught):  # pydicom's, unnamed
        warnings.warn(f"{path}: {message}", UserWarning, stacklevel=3)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
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
            f"({_one_line(exc)}); the header is damaged; copy the file again."
        ) from exc
    if rows * cols * frames * samples > MAX_PIXELS_PER_FILE:
        raise DicomReadError(
            f"{path}: header declares {frames} frame(s) of {rows}×{cols} pixels × {samples} "
            f"samples, more than sliceseg reads from one file ({MAX_PIXELS_PER_FILE} pixels); the "
            "header is probably damaged; otherwise split the file into smaller ones."
        )


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or ""
    return UID(str(uid)).name if uid else ""


def _declares_an_image(ds: Dataset) -> bool:
    """True when the SOP class is an image storage class, or image attributes are present."""
    return "Image Storage" in _sop_class_name(ds) or "Rows" in ds


def _decode_frames(ds: Dataset, path: Path, *, index: int | None) -> np.ndarray:
    """Return (frames, rows, cols[, samples]) stored values, decoded by pydicom's plugins."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        with _native_stderr_muted(syntax == RLELossless):
            arr = pydicom.pixels.pixel_array(ds, index=index)
    except BaseException as exc:
        if not (isinstance(exc, _DECODE_ERRORS) or _is_panic(exc)):
            raise
        hint = _TRUNCATED_HINT
        if syntax.is_compressed:
            hint = _CORRUPT_HINT if _has_decoder(syntax) else _DECODER_HINT
        raise DicomReadError(
            f"{path}: cannot decode pixel data with transfer syntax {syntax.name} ({syntax}): "
            f"{_one_line(exc)}; {hint}."
        ) from exc
    samples = int(ds.get("SamplesPerPixel", 1))
    if arr.ndim == (3 if samples > 1 else 2):
        arr = arr[np.newaxis]
    return arr


@contextlib.contextmanager
def _native_stderr_muted(is_muted: bool) -> Iterator[None]:
    """Keep native code from writing on stderr (file descriptor 2) inside the block.

    The Rust RLE plugin (pylibjpeg-rle) prints its panic message on stderr before raising;
    the DicomReadError already says what failed, in one line. Anything else written there (not
    a panic) is passed on afterwards.
    """
    if not is_muted:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        panicked = False
        try:
            yield
        except BaseException as exc:
            panicked = _is_panic(exc)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            written = sink.read()
            if written and not panicked:
                sys.stderr.write(written.decode(errors="replace"))


def _has_decoder(syntax: UID) -> bool:
    """True when a pixel data plugin for ``syntax`` is installed."""
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # no decoder exists for this syntax at all
        return False


def _is_panic(exc: BaseException) -> bool:
    """True for pyo3's PanicException: a Rust decoder plugin gave up on a corrupt stream."""
    return type(exc).__name__ == "PanicException"


def _build_slice(ds: Dataset, path: Path, raw: np.ndarray, frame: int, num_frames: int) -> Slice:
    spacing, source = _spacing(ds, path, frame)
    try:
        pixels, modality_lut = _to_modality_units(ds, path, raw, frame)
    # pydicom's LUT checks; AttributeError: a palette's lookup table data is missing
    except (ValueError, IndexError, KeyError, AttributeError, OverflowError) as exc:
        raise DicomReadError(
            f"{path}: cannot apply the colour palette or modality LUT ({_one_line(exc)}); the "
            "header is damaged; export the image again."
        ) from exc
    bad = np.count_nonzero(~np.isfinite(pixels))
    if bad:
        raise DicomReadError(
            f"{path}: {bad} of {pixels.size} pixels are NaN or infinite after the rescale "
            f"(RescaleSlope {ds.get('RescaleSlope', 'absent')}, RescaleIntercept "
            f"{ds.get('RescaleIntercept', 'absent')}); expected finite values; fix the rescale "
            "or the float pixel data, or export the image again."
        )
    return Slice(
        pixels=pixels,
        spacing_mm=spacing,
        spacing_source=source,
        source=path,
        frame=frame,
        num_frames=num_frames,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        instance_number=_as_int(ds.get("InstanceNumber")),
        position_mm=_position(ds, frame, num_frames),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        orientation=_orientation(ds, frame),
        image_position_mm=_image_position(ds, frame),
        modality=str(ds.get("Modality", "") or ""),
        photometric=_photometric(ds),
        modality_lut=modality_lut,
    )


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "") or "MONOCHROME2").strip()


def _to_modality_units(
    ds: Dataset, path: Path, raw: np.ndarray, frame: int
) -> tuple[np.ndarray, str]:
    """Return the frame in modality units and which transform gave them (Slice.modality_lut)."""
    photometric = _photometric(ds)
    if photometric == "PALETTE COLOR" or raw.ndim == 3:
        rgb = apply_color_lut(raw, ds) if photometric == "PALETTE COLOR" else raw
        warnings.warn(
            f"{path}: colour image ({photometric}) converted to grey luminance "
            "(0.299 R + 0.587 G + 0.114 B); export grey images for best results.",
            UserWarning,
            stacklevel=4,
        )
        grey = rgb[..., :3].astype(np.float64) @ np.asarray(LUMINANCE_WEIGHTS)
        return grey.astype(np.float32), "colour"
    values = raw.astype(np.int64) if raw.dtype.kind in "iub" else raw
    modality, how = _apply_rescale(values, ds, frame)
    return modality.astype(np.float32), how


def _apply_rescale(values: np.ndarray, ds: Dataset, frame: int) -> tuple[np.ndarray, str]:
    """Apply the modality LUT or the rescale; one of RescaleSlope / Intercept alone is enough."""
    if ds.get("ModalityLUTSequence"):
        return apply_modality_lut(values, ds), "lut"
    slope = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_value(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is None and intercept is None:
        return values, "none"
    rescale = Dataset()  # the other's identity value: slope 1, intercept 0
    rescale.RescaleSlope = 1.0 if slope is None else slope
    rescale.RescaleIntercept = 0.0 if intercept is None else intercept
    return apply_modality_lut(values, rescale), "rescale"


def _frame_value(ds: Dataset, frame: int, sequence: str, keyword: str) -> Any:
    """Look ``keyword`` up in the frame's functional groups, then the shared ones, then the top."""
    for groups_keyword, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_keyword)
        if groups is not None and index < len(groups):
            items = groups[index].get(sequence)
            if items and keyword in items[0]:
                return items[0][keyword].value
    return ds.get(keyword)


def _spacing(ds: Dataset, path: Path, frame: int) -> tuple[tuple[float, float] | None, str]:
    pixel = _parse_spacing(
        _frame_value(ds, frame, "PixelMeasuresSequence", "PixelSpacing"), path, "PixelSpacing"
    )
    if pixel is not None:
        return pixel, "PixelSpacing"
    imager = _parse_spacing(ds.get("ImagerPixelSpacing"), path, "ImagerPixelSpacing")
    if imager is not None:
        warnings.warn(
            f"{path}: no (0028,0030) PixelSpacing; using (0018,1164) ImagerPixelSpacing "
            f"{imager}, measured at the detector, so areas may be magnified.",
            UserWarning,
            stacklevel=4,
        )
        return imager, "ImagerPixelSpacing"
    return None, "none"


def _parse_spacing(value: Any, path: Path, keyword: str) -> tuple[float, float] | None:
    if value is None or value == "":
        return None
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) == 2 and all(math.isfinite(v) and v > 0 for v in numbers):
        return numbers[0], numbers[1]
    warnings.warn(
        f"{path}: {keyword} {value!r} is malformed or not > 0; expected two positive numbers "
        "(row mm, column mm); treating the spacing as missing.",
        UserWarning,
        stacklevel=5,
    )
    return None


def _position(ds: Dataset, frame: int, num_frames: int) -> float | None:
    position = _frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    orientation = _frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    try:
        location = float(ds.get("SliceLocation")) if num_frames == 1 else math.nan
        if math.isfinite(location):
            return location
    except (TypeError, ValueError):
        pass
    try:
        point = np.asarray([float(v) for v in position], dtype=np.float64)
        cosines = np.asarray([float(v) for v in orientation], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if point.shape != (3,) or cosines.shape != (6,):
        return None
    normal = np.cross(cosines[:3], cosines[3:])
    return float(point @ normal)


def _float_tuple(value: Any, length: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != length or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _orientation(ds: Dataset, frame: int) -> tuple[float, float, float, float, float, float] | None:
    value = _frame_value(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    cosines = _float_tuple(value, 6)
    return cosines  # type: ignore[return-value]  # length checked above


def _image_position(ds: Dataset, frame: int) -> tuple[float, float, float] | None:
    value = _frame_value(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    return _float_tuple(value, 3)  # type: ignore[return-value]  # length checked above


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
