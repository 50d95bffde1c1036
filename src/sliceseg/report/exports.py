"""Exports for other tools, per series: DICOM-SEG (PACS, OHIF, Slicer), NIfTI, 3D Slicer .seg.nrrd.

Every export carries the series' geometry from its DICOM headers: slices are placed by
ImagePositionPatient along the slice normal (never by file order), so a series with missing
slices keeps empty planes where they were, and a single slice works. ROI ``k`` is segment /
label value ``k`` with the ROI's name and the colour of `sliceseg.report.visualize.roi_colour`.

Patient data: the NIfTI and .seg.nrrd files hold none (only voxels, geometry, ROI names). A
DICOM-SEG must copy the patient and study modules of its source images (the standard requires
it, so that a PACS files it with them); nothing else about the patient is written.
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sliceseg._version import __version__
from sliceseg.errors import ConfigError, LabelError, SlicesegError
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path, atomic_write_bytes
from sliceseg.io.identity import series_key, series_names
from sliceseg.io.volume_slices import series_grid
from sliceseg.io.volumes import LPS_FROM_RAS
from sliceseg.report.visualize import roi_colour

if TYPE_CHECKING:
    from highdicom.seg import SegmentDescription

EXPORT_FORMATS = ("seg", "nifti", "nrrd")
"""``seg``: DICOM-SEG (``<series>.seg.dcm``), ``nifti``: ``<series>.nii.gz``, ``nrrd``:
3D Slicer segmentation ``<series>.seg.nrrd``."""

DEFAULT_EXPORTS = ("nifti", "nrrd")
"""What ``predict`` writes unless told otherwise: the two formats without patient data."""

_SUFFIXES = {"seg": ".seg.dcm", "nifti": ".nii.gz", "nrrd": ".seg.nrrd"}
_UID_ROOT = "sliceseg-export"


@dataclass(frozen=True)
class SeriesExport:
    """What was written for one series.

    Attributes:
        name: the series' file name stem (its DICOM folder, e.g. ``p01``).
        series_uid: its SeriesInstanceUID.
        files: the files written.
        notes: one line per format that could not be written, with the reason.
    """

    name: str
    series_uid: str
    files: tuple[Path, ...]
    notes: tuple[str, ...]


def parse_exports(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn ``"seg,nifti"`` / ``"all"`` / ``"none"`` / a list into export format names.

    Args:
        value: comma-separated names, "all", "none" or "", a sequence of names, or None for
            `DEFAULT_EXPORTS`.

    Returns:
        The formats, in `EXPORT_FORMATS` order, without repeats.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).

    Example:
        >>> parse_exports("nrrd, seg")
        ('seg', 'nrrd')
    """
    if value is None:
        return DEFAULT_EXPORTS
    names = value.split(",") if isinstance(value, str) else list(value)
    wanted = {n.strip().lower() for n in names if n.strip()}
    if wanted == {"all"}:
        return EXPORT_FORMATS
    if wanted <= {"none"}:
        return ()
    unknown = sorted(wanted - set(EXPORT_FORMATS))
    if unknown:
        raise ConfigError(
            f"--export {value if isinstance(value, str) else ','.join(value)}: unknown format(s) "
            f"{', '.join(unknown)}; expected a comma-separated list of {', '.join(EXPORT_FORMATS)}"
            ", or 'all' or 'none'."
        )
    return tuple(f for f in EXPORT_FORMATS if f in wanted)


def write_dicom_seg(
    path: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
) -> Path:
    """Write a DICOM-SEG (BINARY) of one series: one segment per ROI, referencing its images.

    Segment ``k`` is ROI ``k`` (label value ``k``) with its name as (0062,0005) SegmentLabel, its
    colour as (0062,000D) RecommendedDisplayCIELabValue, (0062,0008) SegmentAlgorithmType
    AUTOMATIC and the algorithm "sliceseg" at this version. Every slice gets its frames, empty
    ones too: "no ROI here" is a result.

    Args:
        path: the file to write (atomically).
        slices: the series' slices: single-frame files, or the frames of one multi-frame file.
        labels: (rows, cols) label maps 0..K, one per slice.
        roi_names: names of ROIs 1..K.

    Returns:
        ``path``.

    Raises:
        LabelError: the slices mix several series or several multi-frame files, a label value
            exceeds K, or highdicom refuses the source images (the message says why).

    Example:
        >>> write_dicom_seg(out / "p01.seg.dcm", slices, labels, ["vertebral body", "psoas"])
    """
    import highdicom as hd
    import pydicom

    sources, order = _sources(slices)
    stack = np.stack([np.asarray(labels[i], dtype=np.uint8) for i in order])
    _check_values(stack, roi_names, slices[0])
    descriptions = _segment_descriptions(roi_names)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in sources]
    digest = hashlib.sha256(stack.tobytes() + "|".join(roi_names).encode()).hexdigest()
    uid = pydicom.uid.generate_uid(entropy_srcs=[_UID_ROOT, slices[0].series_uid, digest])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = hd.seg.Segmentation(
                source_images=datasets,
                pixel_array=stack,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=pydicom.uid.generate_uid(entropy_srcs=[uid, "series"]),
                series_number=int(datasets[0].get("SeriesNumber") or 0) + 1000,
                sop_instance_uid=uid,
                instance_number=1,
                manufacturer="sliceseg",
                manufacturer_model_name="sliceseg",
                software_versions=__version__,
                device_serial_number="0",
                content_label="SLICESEG",
                content_description="sliceseg automatic segmentation",
                series_description="sliceseg segmentation",
                omit_empty_frames=False,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise LabelError(
            f"{path}: DICOM-SEG not written: highdicom refused the source images of series "
            f"{slices[0].series_uid} ({' '.join(str(exc).split())}); use --export nifti,nrrd."
        ) from exc
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _segment_descriptions(roi_names: Sequence[str]) -> list[SegmentDescription]:
    """One SegmentDescription per ROI: Slicer's generic Tissue codes, sliceseg as the algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="sliceseg", family=codes.DCM.ArtificialIntelligence, version=__version__
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*roi_colour(k)),
        )
        for k, name in enumerate(roi_names, start=1)
    ]


def _sources(slices: Sequence[Slice]) -> tuple[list[Path], list[int]]:
    """The source files, and the slice order that matches their frames (highdicom's rule)."""
    files = list(dict.fromkeys(s.source for s in slices))
    if len({s.series_uid for s in slices}) > 1:
        raise LabelError(
            f"{slices[0].source.parent}: slices of {len({s.series_uid for s in slices})} series; "
            "a DICOM-SEG belongs to one series; export each series on its own."
        )
    if all(s.num_frames == 1 for s in slices):
        by_file = {s.source: i for i, s in enumerate(slices)}
        return files, [by_file[f] for f in files]
    if len(files) == 1 and len(slices) == slices[0].num_frames:
        return files, sorted(range(len(slices)), key=lambda i: slices[i].frame)
    raise LabelError(
        f"{slices[0].source}: a DICOM-SEG of a multi-frame image needs all its frames and no "
        f"other file (got {len(slices)} slices from {len(files)} files); use --export nifti,nrrd."
    )


def _check_values(stack: np.ndarray, roi_names: Sequence[str], image: Slice) -> None:
    top = int(stack.max()) if stack.size else 0
    if top > len(roi_names):
        raise LabelError(
            f"{image.source.parent}: label value {top} but {len(roi_names)} ROI names; expected "
            "one name per ROI 1..K."
        )


def _step_mm(image: Slice) -> float | None:
    """(0018,0088) SpacingBetweenSlices, else (0018,0050) SliceThickness, for a single slice."""
    import pydicom

    try:
        ds = pydicom.dcmread(image.source, stop_before_pixels=True)
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = float(ds.get(keyword) or 0.0)
            if value > 0:
                return value
    except Exception:
        return None
    return None


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

    grid = series_grid(slices, step_mm=_step_mm(slices[0]) if len(slices) == 1 else None)
    affine = LPS_FROM_RAS @ grid.ijk_to_lps
    image = nib.Nifti1Image(grid.volume(labels), affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    image.header["descrip"] = f"sliceseg {__version__} labels".encode()
    return atomic_write_bytes(path, gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def write_seg_nrrd(
    path: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
) -> Path:
    """Write the series' labels as a 3D Slicer segmentation (.seg.nrrd) with names and colours.

    Written with slicerio, the 3D Slicer team's library: one layer, ``Segment<k-1>_Name`` = ROI
    name, ``_LabelValue`` = ``k``, ``_Color`` = the ROI's colour, geometry in LPS.

    Args:
        path: the ``.seg.nrrd`` to write (atomically).
        slices: the series' slices, any order.
        labels: (rows, cols) label maps, one per slice.
        roi_names: names of ROIs 1..K.

    Returns:
        ``path``.

    Raises:
        LabelError: the slices do not form one regular grid, or a value exceeds K.

    Example:
        >>> write_seg_nrrd(out / "p01.seg.nrrd", slices, labels, ["vertebral body", "psoas"])
    """
    import slicerio

    grid = series_grid(slices, step_mm=_step_mm(slices[0]) if len(slices) == 1 else None)
    voxels = grid.volume(labels)
    _check_values(voxels, roi_names, slices[0])
    segments = [
        {
            "id": f"Segment_{k}",
            "name": name,
            "labelValue": k,
            "layer": 0,
            "color": [round(c / 255, 6) for c in roi_colour(k)],
            "colorAutoGenerated": False,
            "nameAutoGenerated": False,
        }
        for k, name in enumerate(roi_names, start=1)
    ]
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": grid.ijk_to_lps,
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "segments": segments,
    }
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation, compression_level=6)
    return Path(path)


def export_series(
    out_dir: Path | str,
    name: str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
    *,
    formats: Sequence[str] = DEFAULT_EXPORTS,
) -> SeriesExport:
    """Write the chosen exports of one series as ``out_dir/<name><suffix>``.

    A format that cannot be written for this series (e.g. NIfTI of slices on an irregular grid)
    is left out with a note; the others are still written.

    Args:
        out_dir: the folder to write into.
        name: the file stem, e.g. the series' DICOM folder name.
        slices: the series' slices.
        labels: one (rows, cols) label map per slice.
        roi_names: names of ROIs 1..K.
        formats: a subset of `EXPORT_FORMATS`.

    Returns:
        The files written and a note per format left out.

    Raises:
        ConfigError: an unknown format.

    Example:
        >>> export_series(out / "exports", "p01", slices, labels, names, formats=EXPORT_FORMATS)
    """
    formats = parse_exports(list(formats))
    files, notes = [], []
    for fmt in formats:
        path = Path(out_dir) / f"{name}{_SUFFIXES[fmt]}"
        try:
            if fmt == "seg":
                files.append(write_dicom_seg(path, slices, labels, roi_names))
            elif fmt == "nifti":
                files.append(write_nifti(path, slices, labels))
            else:
                files.append(write_seg_nrrd(path, slices, labels, roi_names))
        except SlicesegError as exc:
            notes.append(f"{name}: {fmt} not written: {exc}")
    return SeriesExport(name, slices[0].series_uid if slices else "", tuple(files), tuple(notes))


def export_predictions(
    out_dir: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    keys: Sequence[str],
    roi_names: Sequence[str],
    *,
    formats: Sequence[str] = DEFAULT_EXPORTS,
    root_name: str = "series",
) -> list[SeriesExport]:
    """Group predictions by series and write each series' exports into ``out_dir``.

    A series is named after the folder of its slices' keys (``p01`` for ``p01/slice_1``), or
    ``root_name`` when they lie at the top; a second series with the same name gets ``_2``.

    Args:
        out_dir: the folder to write into (e.g. ``<predict --out>/exports``).
        slices: every predicted slice.
        labels: its label maps.
        keys: its keys (path below the DICOM folder without suffix).
        roi_names: names of ROIs 1..K.
        formats: a subset of `EXPORT_FORMATS`; empty writes nothing.
        root_name: the name of a series at the top of the DICOM folder.

    Returns:
        One `SeriesExport` per series, in the order the series first appear.

    Example:
        >>> runs = export_predictions(out / "exports", slices, labels, keys, names)
        >>> [f.name for run in runs for f in run.files]
        ['p01.nii.gz', 'p01.seg.nrrd']
    """
    if not parse_exports(list(formats)):
        return []
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(slices):
        groups.setdefault(series_key(image), []).append(index)
    names = series_names(
        {key: [keys[i] for i in members] for key, members in groups.items()}, root_name=root_name
    )
    runs = []
    for key, members in groups.items():
        name = names[key]
        runs.append(
            export_series(
                out_dir,
                name,
                [slices[i] for i in members],
                [labels[i] for i in members],
                roi_names,
                formats=formats,
            )
        )
    return runs
