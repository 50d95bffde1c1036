"""Reading DICOM files into `Slice`s (modality units, spacing, ids) and ordering a series.

The pieces live beside it: finding the files (`sliceseg.io.dicom_files`), parsing the header
(`sliceseg.io.dicom_headers`) and decoding the pixels (`sliceseg.io.dicom_pixels`). Decisions a
caller relies on:

- Pixels are float32 in modality units (modality LUT or rescale; see `sliceseg.io.dicom_pixels`);
  colour images become grey luminance with a ``UserWarning``.
- MONOCHROME1 (low value displays white) changes the display, not the values: the pixels stay in
  modality units (Hounsfield units on CT), ``Slice.photometric`` records it, and
  ``Slice.display_pixels`` (what the network and the pictures see) is negated, so that bright
  means what a viewer shows bright.
- Spacing comes from (0028,0030) PixelSpacing, else (0018,1164) ImagerPixelSpacing (divided by
  (0018,1114) EstimatedRadiographicMagnificationFactor where present) with a
  ``UserWarning``, else an ultrasound image's (0018,6011) SequenceOfUltrasoundRegions, else
  ``None`` (spacing_source "none"); see `sliceseg.io.dicom_headers`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_nr_frames
from tqdm.auto import tqdm

from sliceseg.errors import ConfigError, DicomReadError, PairingError
from sliceseg.io.dicom_files import SkippedFile, find_dicom_files, strip_dicom_suffix
from sliceseg.io.dicom_headers import (
    FILM_SPACING_SOURCE,
    MAGNIFIED_SPACING_SOURCE,
    MALFORMED_SPACING_SOURCE,
    as_int,
    image_position,
    orientation_cosines,
    photometric_interpretation,
    pixel_spacing,
    read_dataset,
    slice_location,
    slice_position,
    stored_pixel_spacing,
)
from sliceseg.io.dicom_pixels import decode_frames, modality_pixels
from sliceseg.io.identity import natural_key
from sliceseg.io.ultrasound_regions import (
    ULTRASOUND_DISAGREE_SOURCE,
    ULTRASOUND_NOT_CM_SOURCE,
    ULTRASOUND_SPACING_SOURCE,
)
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path

__all__ = [
    "FILM_SPACING_SOURCE",
    "MAGNIFIED_SPACING_SOURCE",
    "ULTRASOUND_SPACING_SOURCE",
    "USER_OVER_MALFORMED_SOURCE",
    "USER_SPACING_SOURCE",
    "USER_SPACING_SOURCES",
    "DicomScan",
    "SkippedFile",  # defined in sliceseg.io.dicom_files; part of a DicomScan
    "Slice",
    "find_copies",
    "missing_spacing",
    "no_spacing_message",
    "order_slices",
    "read_files",
    "read_series",
    "read_slice",
    "read_slices",
    "scan_dicom_folder",
    "spacing_fix",
]

USER_SPACING_SOURCE = "fov/matrix"
"""``Slice.spacing_source`` of a spacing the user gave (``--fov`` / ``--matrix``) for a file
without one; set by `sliceseg.measure.spacing.with_fallback_spacing`."""
USER_OVER_MALFORMED_SOURCE = "fov/matrix (PixelSpacing malformed)"
"""``Slice.spacing_source`` of the user's ``--fov`` / ``--matrix`` spacing for a file whose
(0028,0030) PixelSpacing is there but malformed (:data:`MALFORMED_SPACING_SOURCE`): not absent."""
USER_SPACING_SOURCES = (USER_SPACING_SOURCE, USER_OVER_MALFORMED_SOURCE)
"""Every ``Slice.spacing_source`` of a spacing the user gave."""


@dataclass(frozen=True, eq=False)
class Slice:
    """One 2D image from a DICOM file, in modality units, with its pixel spacing and ids.

    Attributes:
        pixels: (rows, cols) float32 in modality units (modality LUT or rescale applied; never
            inverted for MONOCHROME1, see `display_pixels`); pixels marked by (0028,0120)
            PixelPaddingValue take the darkest displayed value of the others
            (`sliceseg.io.dicom_pixels`).
        spacing_mm: (row, col) spacing in mm from (0028,0030) PixelSpacing, row first; ``None``
            when the file has no usable spacing.
        spacing_source: "PixelSpacing", "ImagerPixelSpacing" (the detector's), "ImagerPixelSpacing
            / EstimatedRadiographicMagnificationFactor" (:data:`MAGNIFIED_SPACING_SOURCE`: the
            patient's, as the scanner estimated it), "SequenceOfUltrasoundRegions PhysicalDeltaY
            / PhysicalDeltaX" (:data:`ULTRASOUND_SPACING_SOURCE`: an ultrasound image's regions,
            all in cm and alike) or "none" as read, or
            "NominalScannedPixelSpacing" (:data:`FILM_SPACING_SOURCE`: no spacing in mm, only a
            scanned film's, `no_spacing_message`), "PixelSpacing (malformed)"
            (:data:`MALFORMED_SPACING_SOURCE`: there, but not two positive numbers),
            "SequenceOfUltrasoundRegions (regions disagree)" / "(not in cm)"
            (`sliceseg.io.ultrasound_regions`: no one spacing in cm);
            "fov/matrix" (:data:`USER_SPACING_SOURCE`) once the user's ``--fov`` / ``--matrix``
            gave it, "fov/matrix (PixelSpacing malformed)" (:data:`USER_OVER_MALFORMED_SOURCE`)
            where they replaced a malformed PixelSpacing.
        source: the file the slice came from.
        frame: frame index inside a multi-frame file (0 for single-frame files).
        num_frames: number of frames in the file.
        series_uid: (0020,000E) SeriesInstanceUID, "" when absent.
        instance_number: (0020,0013) InstanceNumber, ``None`` when absent or malformed.
        position_mm: (0020,0032) ImagePositionPatient projected on the slice normal from
            (0020,0037) ImageOrientationPatient, else (0020,1041) SliceLocation; ``None`` when
            neither exists (`sliceseg.io.neighbours.series_order` keeps a series to one source).
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
        sop_instance_uid: (0008,0018) SOPInstanceUID, "" when absent: the image's identity
            (`drop_copies` measures two files of one instance once).
        slice_location_mm: (0020,1041) SliceLocation as stored, ``None`` when absent: checked
            against ``position_mm`` per series, never used to place a slice beside positions.
        malformed_spacing: the malformed (0028,0030) PixelSpacing as stored ("0.7\\abc") where
            ``spacing_source`` is "PixelSpacing (malformed)", "" otherwise: refusals name it.
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
    sop_instance_uid: str = ""
    slice_location_mm: float | None = None
    malformed_spacing: str = ""

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
class DicomScan:
    """The readable slices of a folder (ordered by `order_slices`) and the files left out."""

    slices: list[Slice]
    skipped: list[SkippedFile]


_NO_SPACING_FOUND = {
    FILM_SPACING_SOURCE: (
        "no PixelSpacing (0028,0030), only (0018,2010) NominalScannedPixelSpacing, a scanned "
        "film's spacing, which is not used: it measures the film, not the patient (a film "
        "shows the anatomy at a print scale the file does not record)"
    ),
    ULTRASOUND_DISAGREE_SOURCE: (
        "no PixelSpacing (0028,0030), and the regions of its (0018,6011) "
        "SequenceOfUltrasoundRegions have different spacings (PhysicalDeltaX / PhysicalDeltaY), "
        "so no one spacing holds for the whole image"
    ),
    ULTRASOUND_NOT_CM_SOURCE: (
        "no PixelSpacing (0028,0030), and a region of its (0018,6011) "
        "SequenceOfUltrasoundRegions is not in cm (a Doppler or M-mode strip in seconds or "
        "cm/s) or has a PhysicalDeltaX / PhysicalDeltaY not > 0, so no one spacing holds for "
        "the whole image"
    ),
}
_NO_SPACING_FIX = {
    FILM_SPACING_SOURCE: (
        "--fov MM (the anatomy's extent across the image, e.g. from the film's scale bar)"
    ),
    ULTRASOUND_DISAGREE_SOURCE: "--fov ROWS_MM COLS_MM (the whole image's height and width)",
    ULTRASOUND_NOT_CM_SOURCE: "--fov ROWS_MM COLS_MM (the whole image's height and width)",
}


def missing_spacing(image: Slice) -> str:
    """Why a slice has no spacing in mm, in words, for each line that refuses it: absent,
    malformed (naming the value, as a refusal may be the only line the user sees), a scanned
    film's, or ultrasound regions that give no one spacing.

    Example:
        >>> missing_spacing(image)
        'its PixelSpacing (0028,0030) "0.7\\abc" is malformed or not > 0 (expected two ...)'
    """
    if image.spacing_source == MALFORMED_SPACING_SOURCE:
        return (
            f'its PixelSpacing (0028,0030) "{image.malformed_spacing}" is malformed or not > 0 '
            "(expected two positive numbers, row mm and column mm)"
        )
    return _NO_SPACING_FOUND.get(image.spacing_source, "no PixelSpacing (0028,0030) in the file")


def spacing_fix(image: Slice) -> str:
    """The ``--fov`` (and ``--matrix``) that gives a slice without a spacing in mm one."""
    return _NO_SPACING_FIX.get(image.spacing_source, "--fov MM (and --matrix ROWS COLS)")


def no_spacing_message(image: Slice) -> str:
    """The one line refusing to measure a slice without a spacing in mm, and the fix.

    A scanned film's (0018,2010) NominalScannedPixelSpacing is named and not used: it is the
    spacing on the film, which shows the anatomy at a print scale that the file does not record.
    An ultrasound image whose regions give no one spacing in cm says which way they fail.

    Example:
        >>> no_spacing_message(image)
        'scans/a.dcm: no PixelSpacing (0028,0030) in the file, so areas in mm² are unknown; ...'
    """
    return (
        f"{image.source}: {missing_spacing(image)}, so areas in mm² are unknown; give "
        f"{spacing_fix(image)}, or --pixels to report pixel counts."
    )


def read_slices(path: Path | str) -> list[Slice]:
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
    path = user_path(path)
    ds = read_dataset(path)
    frames = decode_frames(ds, path, index=None)
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
    path = user_path(path)
    ds = read_dataset(path)
    num_frames = max(1, int(get_nr_frames(ds, warn=False)))
    if not 0 <= frame < num_frames:
        raise ConfigError(
            f"{path}: frame={frame} requested, the file has {num_frames} frame(s); "
            f"choose a frame from 0 to {num_frames - 1}."
        )
    raw = decode_frames(ds, path, index=frame if num_frames > 1 else None)[0]
    return _build_slice(ds, path, raw, frame, num_frames)


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
        progress: show a tqdm bar (only in a terminal or a Jupyter notebook: `shows_progress`).

    Returns:
        The ordered slices and the skipped files (non-DICOM, corrupt, no image).

    Raises:
        PairingError: ``folder`` does not exist.

    Example:
        >>> scan = scan_dicom_folder(Path("scans"))
        >>> len(scan.slices), [s.reason for s in scan.skipped]
    """
    paths, skipped = find_dicom_files(folder)
    disable = not (progress and shows_progress())
    slices, unread = read_files(tqdm(paths, desc="Reading DICOM", unit="file", disable=disable))
    return DicomScan(slices=slices, skipped=[*skipped, *unread])


def read_files(paths: Iterable[Path]) -> tuple[list[Slice], list[SkippedFile]]:
    """Read DICOM files into slices ordered by `order_slices`; skip, with the reason, a file that
    cannot be read and one whose images the earlier files already hold (`drop_copies`).

    Example:
        >>> slices, skipped = read_files(sorted(Path("scans/p01").glob("*.dcm")))
    """
    slices: list[Slice] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        try:
            slices.extend(read_slices(path))
        except DicomReadError as exc:
            skipped.append(SkippedFile(path, str(exc)))
    kept, copies = drop_copies(slices)
    return order_slices(kept), [*skipped, *copies]


def drop_copies(slices: Sequence[Slice]) -> tuple[list[Slice], list[SkippedFile]]:
    """Keep one slice of each image: a slice of the same series, InstanceNumber and position
    as an earlier one, with the same pixels or the same (0008,0018) SOPInstanceUID, is a copy
    (a file exported twice, under two transfer syntaxes, or recompressed by a PACS that kept
    its UID) and would count twice in the series' mean; its file is named with the original.
    Equal pixels in slices of other numbers or positions (blank slices) are kept.

    Example:
        >>> kept, copies = drop_copies(read_slices(a) + read_slices(copy_of_a))
        >>> copies[0].reason
        '.../copy_of_a.dcm: the same image as .../a.dcm (same series, number, position and ...'
    """
    found = find_copies(slices)
    copied = {id(image) for image, _, _ in found}
    kept = [image for image in slices if id(image) not in copied]
    copies: dict[Path, tuple[Path, bool]] = {}  # copy -> (original, same pixels)
    for image, original, same in found:
        copies.setdefault(image.source, (original.source, same))
    return kept, [_copy_skipped(path, original, same) for path, (original, same) in copies.items()]


def _copy_skipped(path: Path, original: Path, is_same_pixels: bool) -> SkippedFile:
    if is_same_pixels:
        return SkippedFile(
            path,
            f"{path}: the same image as {original} (same series, number, position and pixels); "
            "measured once, from that file; remove the copy.",
        )
    return SkippedFile(
        path,
        f"{path}: the same SOPInstanceUID, series, number and position as {original} but other "
        "pixels (recompressed or edited?); measured once, from that file; remove the copy you "
        "do not want measured.",
    )


def find_copies(slices: Sequence[Slice]) -> list[tuple[Slice, Slice, bool]]:
    """Return (copy, original, same pixels) for each slice that an earlier slice of another
    file holds: the same series, InstanceNumber and position with the same pixels (True), or
    with the same SOPInstanceUID (and frame, position) but other pixels (False) — the rule of
    `drop_copies`.

    Example:
        >>> [(c.source.name, o.source.name) for c, o, _ in find_copies(slices_of_a_and_its_copy)]
        [('copy_of_a.dcm', 'a.dcm')]
    """
    first: dict[tuple[object, ...], Slice] = {}
    found = []
    for image in slices:
        place = (image.series_uid, image.instance_number, image.position_mm)
        checksum = zlib.crc32(np.ascontiguousarray(image.pixels).data)  # then compared whole
        seen = first.setdefault((*place, checksum), image)
        is_copy = seen is not image and seen.source != image.source
        if is_copy and np.array_equal(seen.pixels, image.pixels):
            found.append((image, seen, True))
            continue
        if image.sop_instance_uid:
            instance = (image.sop_instance_uid, image.frame, image.image_position_mm)
            seen = first.setdefault((*place, *instance), image)
            if seen is not image and seen.source != image.source:
                found.append((image, seen, False))
    return found


def read_series(folder: Path | str) -> list[Slice]:
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
    scan = scan_dicom_folder(user_path(folder))
    if not scan.slices:
        detail = f"; first skipped: {scan.skipped[0].describe()}"
        raise PairingError(
            f"{folder}: no DICOM files found ({len(scan.skipped)} other file(s)"
            f"{detail if scan.skipped else ''}); expected DICOM files (.dcm or no suffix)."
        )
    return scan.slices


def _build_slice(ds: Dataset, path: Path, raw: np.ndarray, frame: int, num_frames: int) -> Slice:
    spacing, source = pixel_spacing(ds, path, frame)
    malformed = stored_pixel_spacing(ds, frame) if source == MALFORMED_SPACING_SOURCE else ""
    pixels, modality_lut = modality_pixels(ds, path, raw, frame)
    orientation = orientation_cosines(ds, frame, path)
    position = image_position(ds, frame)
    return Slice(
        pixels=pixels,
        spacing_mm=spacing,
        spacing_source=source,
        source=path,
        frame=frame,
        num_frames=num_frames,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        instance_number=as_int(ds.get("InstanceNumber")),
        position_mm=slice_position(ds, num_frames, orientation, position),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        orientation=orientation,
        image_position_mm=position,
        modality=str(ds.get("Modality", "") or ""),
        photometric=photometric_interpretation(ds),
        modality_lut=modality_lut,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        slice_location_mm=slice_location(ds, num_frames),
        malformed_spacing=malformed,
    )
