"""The real-MR benchmark's files: MR DICOM and PNG encoding, and the dataset in the manual's layout.

Layout written by :func:`write_dataset`::

    out/train/dicoms/<subject>/slice_NNN.dcm    out/train/labels/<subject>/slice_NNN.png
    out/train/labels.txt                        (the four ROI names, one per line)
    out/test/...                                the same, plus out/test/truth.csv
    out/data.json                               seed, levels and every scanner's parameters
"""

from __future__ import annotations

import csv
import functools
import io
import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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

from real_mr_data import (
    DATA_VERSION,
    ROI_NAMES,
    TRUTH_COLUMNS,
    Anatomy,
    Plan,
    RenderedSlice,
    Scanner,
    Subject,
    Template,
    first_pixel_lps,
    load_template,
    mni_anatomy,
    mni_plan,
    render,
)
from sliceseg.phantom.files import SeriesIds
from sliceseg.phantom.files import decimal_string as _ds
from sliceseg.phantom.files import series_ids as phantom_series_ids


def series_ids(
    subject: str, *, seed: int, series_number: int, namespace: str = "sliceseg-real-mr"
) -> SeriesIds:
    """Derive one subject's identifiers deterministically from the seed and the subject."""
    patient = ("MNI152", "MNI152") if namespace == "sliceseg-real-mr" else (namespace, namespace)
    return phantom_series_ids(
        subject,
        seed=seed,
        series_number=series_number,
        namespace=namespace,
        patient=patient,
    )


def to_stored(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Quantise a non-negative image to uint16 stored values; return them and RescaleSlope."""
    slope = float(f"{max(float(image.max()), 1.0) / 4000.0:.6g}")
    return np.clip(np.rint(image / slope), 0, 65535).astype(np.uint16), slope


def _file_dataset(sop_uid: UID) -> FileDataset:
    """An empty MR Image Storage dataset with its file meta (Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return FileDataset("slice.dcm", {}, file_meta=meta, preamble=b"\0" * 128)


def dicom_bytes(
    stored: np.ndarray,
    *,
    slope: float,
    scanner: Scanner,
    ids: SeriesIds,
    instance_number: int,
    z_mm: float,
    seed: int,
    namespace: str = "sliceseg-real-mr",
    fields: Mapping[str, object] | None = None,
) -> bytes:
    """Encode one MR Image Storage slice (Explicit VR Little Endian, preamble, file meta).

    (0020,0037) ImageOrientationPatient is the standard axial 1\\0\\0\\0\\1\\0 (rows run toward
    the patient's left, columns toward posterior: radiological display); (0020,0032)
    ImagePositionPatient is the first pixel's centre; pixels are stored = signal / slope.
    ``fields`` (keyword → value) replace the brain's descriptive attributes for other anatomy.
    """
    sop_uid = generate_uid(
        entropy_srcs=[namespace, str(seed), ids.patient_id, str(instance_number)]
    )
    ds = _file_dataset(sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.Modality, ds.Manufacturer = "MR", "sliceseg real-MR benchmark (MNI152 2009a)"
    ds.AccessionNumber = ds.ReferringPhysicianName = ds.PatientBirthDate = ""
    ds.StudyDescription, ds.SeriesDescription = "Brain", "T1 axial (MNI152, simulated scanner)"
    ds.PatientName, ds.PatientID, ds.PatientSex = ids.patient_name, ids.patient_id, "O"
    ds.BodyPartExamined, ds.PatientPosition = "BRAIN", "HFS"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "GR", "NONE", ""
    ds.MRAcquisitionType, ds.MagneticFieldStrength = "2D", "3"
    ds.SliceThickness = ds.SpacingBetweenSlices = "1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids.study_uid, ids.series_uid
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", ids.series_number, instance_number
    x0, y0 = first_pixel_lps(scanner)
    ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z_mm)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = ids.frame_of_reference_uid, ""
    ds.SliceLocation = _ds(z_mm)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.PixelSpacing = [_ds(scanner.spacing_mm[0]), _ds(scanner.spacing_mm[1])]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", _ds(slope), "US"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    for keyword, value in (fields or {}).items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def label_png_bytes(label: np.ndarray) -> bytes:
    """Encode a label map as an 8-bit greyscale PNG (pixel value = ROI number)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def truth_rows(
    scanner: Scanner,
    key: str,
    z_mm: float,
    rendered: RenderedSlice,
    roi_names: Sequence[str] = ROI_NAMES,
) -> list[dict[str, object]]:
    """The truth.csv rows of one slice: per ROI its pixels and areas on the slice's own grid."""
    return [
        {
            "subject": scanner.subject,
            "key": key,
            "z_mm": z_mm,
            "roi": roi,
            "roi_name": roi_name,
            "pixels": int(np.count_nonzero(rendered.label == roi)),
            "area_mm2": round(rendered.areas_mm2[roi - 1], 4),
            "area_continuous_mm2": round(rendered.areas_continuous_mm2[roi - 1], 4),
            "row_spacing_mm": scanner.spacing_mm[0],
            "col_spacing_mm": scanner.spacing_mm[1],
        }
        for roi, roi_name in enumerate(roi_names, 1)
    ]


def neighbour_levels(
    levels: Sequence[float], step_mm: float, bounds: tuple[float, float], count: int = 1
) -> list[float]:
    """The unlabelled levels ``step_mm`` apart on either side of each labelled level (``count``
    a side) that are not labelled levels themselves, inside ``bounds`` (the set's level range)."""
    if step_mm <= 0:
        return []
    labelled = {round(z, 2) for z in levels}
    found = {
        round(z + side * n * step_mm, 2)
        for z in levels
        for side in (-1, 1)
        for n in range(1, count + 1)
    }
    return sorted(z for z in found - labelled if bounds[0] <= z <= bounds[1])


def write_subject(
    split_dir: Path,
    template: Template | Anatomy,
    scanner: Scanner,
    levels: Sequence[float],
    *,
    ids: SeriesIds,
    seed: int,
    rng: np.random.Generator,
    continuous: bool,
    neighbours: Sequence[float] = (),
) -> list[dict[str, object]]:
    """Write one subject's slices (``dicoms/<subject>/`` and ``labels/<subject>/``).

    ``neighbours``: further levels written as DICOMs without a label map (the unlabelled
    slices of a series that a 2.5D model reads beside the labelled ones).

    Returns:
        truth.csv rows, one per labelled slice and ROI.
    """
    anatomy = template if isinstance(template, Anatomy) else mni_anatomy(template)
    labelled = {round(z, 2) for z in levels}
    rows: list[dict[str, object]] = []
    for instance, z_mm in enumerate(sorted({*levels, *neighbours}), 1):
        rendered = render(anatomy, scanner, z_mm, rng, continuous=continuous)
        stored, slope = to_stored(rendered.image)
        name = f"slice_{instance:03d}"
        dicom_path = split_dir / "dicoms" / scanner.subject / f"{name}.dcm"
        dicom_path.parent.mkdir(parents=True, exist_ok=True)
        blob = dicom_bytes(
            stored,
            slope=slope,
            scanner=scanner,
            ids=ids,
            instance_number=instance,
            z_mm=z_mm,
            seed=seed,
            namespace=anatomy.namespace,
            fields=anatomy.dicom_fields,
        )
        dicom_path.write_bytes(blob)
        if round(z_mm, 2) not in labelled:
            continue
        label_path = split_dir / "labels" / scanner.subject / f"{name}.png"
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_bytes(label_png_bytes(rendered.label))
        key = f"{scanner.subject}/{name}"
        rows += truth_rows(scanner, key, z_mm, rendered, anatomy.roi_names)
    return rows


@dataclass(frozen=True)
class DatasetSummary:
    """What ``write_dataset`` wrote.

    Attributes:
        train_dir: ``out/train`` (``dicoms/``, ``labels/``, ``labels.txt``).
        test_dir: ``out/test`` (the same, plus ``truth.csv``).
        n_train_slices: slices written for training.
        n_test_slices: slices written for testing.
        train_levels: the axial levels (MNI z mm) training subjects draw from.
        test_levels: the held-out levels every test subject shows.
        seconds: time spent generating.
    """

    train_dir: Path
    test_dir: Path
    n_train_slices: int
    n_test_slices: int
    train_levels: tuple[float, ...]
    test_levels: tuple[float, ...]
    seconds: float


def _write_split(
    split_dir: Path,
    anatomy: Anatomy,
    subjects: Sequence[Subject],
    *,
    seed: int,
    first_series: int,
    continuous: bool,
    neighbour_mm: float = 0.0,
    bounds: tuple[float, float] = (-np.inf, np.inf),
) -> list[dict[str, object]]:
    if split_dir.exists():
        shutil.rmtree(split_dir)
    split_dir.mkdir(parents=True)
    (split_dir / "labels.txt").write_text("\n".join(anatomy.roi_names) + "\n")
    rows: list[dict[str, object]] = []
    for number, (scanner, levels, rng) in enumerate(subjects, first_series):
        ids = series_ids(
            scanner.subject, seed=seed, series_number=number, namespace=anatomy.namespace
        )
        rows += write_subject(
            split_dir,
            anatomy,
            scanner,
            levels,
            ids=ids,
            seed=seed,
            rng=rng,
            continuous=continuous,
            neighbours=neighbour_levels(levels, neighbour_mm, bounds),
        )
    return rows


def write_dataset(
    out_dir: Path,
    *,
    seed: int,
    template: Template | None = None,
    anatomy: Anatomy | None = None,
    plan: Plan | None = None,
    neighbour_mm: float = 0.0,
) -> DatasetSummary:
    """Write ``out_dir/train`` and ``out_dir/test`` (with ``truth.csv``) and ``data.json``.

    Existing ``train/`` and ``test/`` folders inside ``out_dir`` are replaced.

    Args:
        out_dir: the benchmark's output folder.
        seed: makes every draw (scanners, levels, noise) and every UID deterministic.
        template: the loaded template (loaded here when None) for the MNI set.
        anatomy: another set's anatomy (with its ``plan``); None: the MNI set.
        plan: seed → (training levels, test levels, training subjects, test subjects).
        neighbour_mm: also write, this far on either side of every labelled level (inside
            the set's level range), a DICOM without a label map: the neighbours a 2.5D
            model reads (`sliceseg train --context-slices 1`). 0 (default): none.

    Returns:
        Where the data went, the levels and how long it took.
    """
    start = time.perf_counter()
    if anatomy is None or plan is None:
        template = template if template is not None else load_template()
        anatomy, plan = mni_anatomy(template), functools.partial(mni_plan, template)
    train_levels, test_levels, train, test = plan(seed)
    out_dir = Path(out_dir)
    every = [*train_levels, *test_levels]
    write = functools.partial(
        _write_split, seed=seed, neighbour_mm=neighbour_mm, bounds=(min(every), max(every))
    )
    write(out_dir / "train", anatomy, train, first_series=1, continuous=False)
    truth = write(out_dir / "test", anatomy, test, first_series=101, continuous=True)
    with (out_dir / "test" / "truth.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows(truth)
    summary = DatasetSummary(
        train_dir=out_dir / "train",
        test_dir=out_dir / "test",
        n_train_slices=sum(len(levels) for _, levels, _ in train),
        n_test_slices=sum(len(levels) for _, levels, _ in test),
        train_levels=tuple(train_levels),
        test_levels=tuple(test_levels),
        seconds=time.perf_counter() - start,
    )
    stamp = {
        "data_version": DATA_VERSION,
        "set": anatomy.key,
        "seed": seed,
        "neighbour_mm": neighbour_mm,
        "train_levels_mm": train_levels,
        "test_levels_mm": test_levels,
        "scanners": [asdict(s) for s, _, _ in train + test],
        "seconds": round(summary.seconds, 1),
    }
    (out_dir / "data.json").write_text(json.dumps(stamp, indent=2))
    return summary


def is_current(out_dir: Path, *, seed: int, key: str = "mni", neighbour_mm: float = 0.0) -> bool:
    """True when ``out_dir`` already holds this generator's data for ``seed``, set ``key`` and
    ``neighbour_mm``."""
    path = Path(out_dir) / "data.json"
    if not (path.exists() and (Path(out_dir) / "test" / "truth.csv").exists()):
        return False
    stamp = json.loads(path.read_text())
    same_set = stamp.get("set", "mni") == key
    same_neighbours = float(stamp.get("neighbour_mm", 0.0)) == neighbour_mm
    same_set = same_set and same_neighbours
    return same_set and stamp.get("data_version") == DATA_VERSION and stamp.get("seed") == seed
