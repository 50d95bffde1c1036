"""Reading one DICOM file into `Slice`s (modality units, spacing, ids), one per frame.

The pieces live beside it: finding the files (`sliceseg.io.dicom_files`), parsing the header
(`sliceseg.io.dicom_headers`), decoding the pixels (`sliceseg.io.dicom_pixels`) and reading a
whole folder in order (`sliceseg.io.dicom_folder`). Decisions a caller relies on:

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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.utils import get_nr_frames

from sliceseg.errors import ConfigError
from sliceseg.io.dicom_files import SkippedFile, strip_dicom_suffix
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
from sliceseg.io.ultrasound_regions import ULTRASOUND_SPACING_SOURCE
from sliceseg.user_paths import user_path

__all__ = [
    "FILM_SPACING_SOURCE",
    "MAGNIFIED_SPACING_SOURCE",
    "ULTRASOUND_SPACING_SOURCE",
    "USER_OVER_MALFORMED_SOURCE",
    "USER_SPACING_SOURCE",
    "USER_SPACING_SOURCES",
    "SkippedFile",  # defined in sliceseg.io.dicom_files; part of a DicomScan (io.dicom_folder)
    "Slice",
    "read_slice",
    "read_slices",
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
            scanned film's, `sliceseg.measure.spacing.no_spacing_message`),
            "PixelSpacing (malformed)" (:data:`MALFORMED_SPACING_SOURCE`: there, but not two
            positive numbers),
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
            (`sliceseg.io.dicom_folder.drop_copies` measures two files of one instance once).
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
