"""The phantom's files: an MR DICOM slice as bytes, label maps as PNG or NPY bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

_DATE, _TIME = "20240101", "120000"


PHANTOM_NAMESPACE = "sliceseg-phantom"  # the entropy source of every phantom UID


@dataclass(frozen=True)
class SeriesIds:
    """The identifiers shared by every slice of one subject's series."""

    patient_name: str
    patient_id: str
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int


def series_ids(
    subject: str,
    *,
    seed: int,
    series_number: int,
    namespace: str = PHANTOM_NAMESPACE,
    patient: tuple[str, str] = ("Phantom", "PHANTOM"),
) -> SeriesIds:
    """Derive one subject's identifiers deterministically from the seed and the subject id.

    Args:
        subject: the subject id ("sub01").
        seed: the generator's seed.
        series_number: (0020,0011) SeriesNumber.
        namespace: the UIDs' entropy source, so that other generators (the real-MR
            benchmark) never share a UID with the phantom.
        patient: the prefixes of PatientName and PatientID.
    """
    return SeriesIds(
        patient_name=f"{patient[0]}^{subject}",
        patient_id=f"{patient[1]}-{seed}-{subject}",
        study_uid=_uid(seed, subject, "study", namespace=namespace),
        series_uid=_uid(seed, subject, "series", namespace=namespace),
        frame_of_reference_uid=_uid(seed, subject, "frame", namespace=namespace),
        series_number=series_number,
    )


def _uid(seed: int, *parts: str, namespace: str = PHANTOM_NAMESPACE) -> str:
    return generate_uid(entropy_srcs=[namespace, str(seed), *parts])


def decimal_string(value: float) -> str:
    """A decimal string (VR DS, at most 16 characters)."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if len(text) <= 16 else f"{value:.8g}"


def dicom_bytes(
    stored: np.ndarray,
    *,
    ids: SeriesIds,
    seed: int,
    instance_number: int,
    spacing_mm: tuple[float, float],
    first_pixel_mm: tuple[float, float],
    location_mm: float,
    thickness_mm: float,
    step_mm: float,
    rescale: tuple[float, float],
) -> bytes:
    """Encode one MR Image Storage slice, Explicit VR Little Endian, with preamble and file meta.

    Args:
        stored: (rows, cols) uint16 stored values (0028,0100) BitsAllocated 16, unsigned.
        ids: the series identifiers.
        seed: the phantom seed (makes the SOPInstanceUID deterministic).
        instance_number: (0020,0013) InstanceNumber, from 1.
        spacing_mm: (row, col) for (0028,0030) PixelSpacing.
        first_pixel_mm: (x, y) of the first pixel's centre, for (0020,0032) ImagePositionPatient.
        location_mm: (0020,1041) SliceLocation, also the z of ImagePositionPatient.
        thickness_mm: (0018,0050) SliceThickness.
        step_mm: (0018,0088) SpacingBetweenSlices.
        rescale: (slope, intercept) for (0028,1053) RescaleSlope and (0028,1052) RescaleIntercept.

    Returns:
        The file's bytes.
    """
    sop_uid = _uid(seed, ids.patient_name, "instance", str(instance_number))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("phantom.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = _TIME
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = "sliceseg phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Lumbar phantom"
    ds.SeriesDescription = "T1 axial L3-L4 (synthetic)"
    ds.PatientName = ids.patient_name
    ds.PatientID = ids.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "LSPINE"
    ds.ScanningSequence = "SE"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = decimal_string(thickness_mm)
    ds.RepetitionTime = "500"
    ds.EchoTime = "10"
    ds.MagneticFieldStrength = "1.5"
    ds.SpacingBetweenSlices = decimal_string(step_mm)
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = ids.study_uid
    ds.SeriesInstanceUID = ids.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = ids.series_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [
        decimal_string(first_pixel_mm[0]),
        decimal_string(first_pixel_mm[1]),
        decimal_string(location_mm),
    ]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = ids.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = decimal_string(location_mm)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.PixelSpacing = [decimal_string(spacing_mm[0]), decimal_string(spacing_mm[1])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = "450"
    ds.WindowWidth = "1000"
    ds.RescaleIntercept = decimal_string(rescale[1])
    ds.RescaleSlope = decimal_string(rescale[0])
    ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def label_bytes(label: np.ndarray, suffix: str) -> bytes:
    """Encode a uint8 label map as ``.png`` (8-bit greyscale) or ``.npy``."""
    buffer = io.BytesIO()
    if suffix == ".png":
        Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(buffer, format="PNG")
    else:
        np.save(buffer, np.ascontiguousarray(label, dtype=np.uint8), allow_pickle=False)
    return buffer.getvalue()
