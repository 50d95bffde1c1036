"""DICOM-SEG (highdicom): recognised by content and read as a label volume, a series' labels
written as a BINARY segmentation that references its images (PACS, OHIF, 3D Slicer).

A DICOM-SEG written here must copy the patient and study modules of its source images (the
standard requires it, so that a PACS files it with them); nothing else about the patient is
written.
"""

from __future__ import annotations

import hashlib
import struct
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sliceseg._version import __version__
from sliceseg.errors import LabelError
from sliceseg.io.dicom import (
    MAGNIFIED_SPACING_SOURCE,
    ULTRASOUND_SPACING_SOURCE,
    USER_OVER_MALFORMED_SOURCE,
    USER_SPACING_SOURCE,
    Slice,
)
from sliceseg.io.dicom_files import READ_ERRORS
from sliceseg.io.files import atomic_path
from sliceseg.io.label_volume import LabelVolume, Segment, as_labels, check_roi_values, unreadable
from sliceseg.io.neighbours import neighbour_step_mm
from sliceseg.io.series_grid import series_grid
from sliceseg.io.slice_geometry import TOLERANCE_VOXELS
from sliceseg.thread_warnings import silenced

if TYPE_CHECKING:
    from highdicom import Volume
    from highdicom.seg import Segmentation, SegmentDescription
    from pydicom import Dataset

_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
"""(0008,0016) SOPClassUID of Segmentation Storage (DICOM-SEG)."""

_DICOM_SEG_ERRORS: tuple[type[BaseException], ...] = (
    *READ_ERRORS,  # pydicom's, as for DICOM images
    zlib.error,  # deflated transfer syntax
    struct.error,
    KeyError,  # a required attribute missing
    IndexError,
    RuntimeError,  # highdicom: frames that do not form a regularly spaced volume
)
_UID_ROOT = "sliceseg-export"
_MAX_LABEL = 64  # (0062,0005) SegmentLabel is an LO: at most 64 characters, one value


class SegNotWritten(LabelError):
    """A DICOM-SEG `write_dicom_seg` refused: ``path: DICOM-SEG not written: reason``.

    ``reason`` alone says why (without the file it was to be: an export note names the series
    and the format, `sliceseg.report.exports`).
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: DICOM-SEG not written: {reason}")
        self.path, self.reason = path, reason

    def __reduce__(self) -> tuple[type[SegNotWritten], tuple[Path | str, str]]:
        return type(self), (self.path, self.reason)  # pickled as it was made


def is_dicom_seg(path: Path) -> bool:
    """Tell whether ``path`` is a DICOM Segmentation Storage object (reads the header only)."""
    import pydicom

    try:
        with silenced():
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except READ_ERRORS:
        return False
    return str(ds.get("SOPClassUID", "")) == _SEGMENTATION_STORAGE


def referenced_series_uid(path: Path) -> str:
    """Return the series a DICOM-SEG segments: its first ReferencedSeriesSequence item's
    SeriesInstanceUID ("" when it names none).

    Raises:
        LabelError: the header cannot be read (names the file).
    """
    import pydicom

    try:
        with silenced():
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except READ_ERRORS as exc:
        raise unreadable(path, exc, "DICOM-SEG header") from exc
    references = ds.get("ReferencedSeriesSequence") or []
    return str(references[0].get("SeriesInstanceUID", "")) if len(references) else ""


def read_dicom_seg(path: Path) -> LabelVolume:
    """Read a DICOM-SEG as one label map: segment numbers as values, SegmentLabel as names.

    Frames are placed by their (0020,0032) positions in the PlanePositionSequence; they form a
    volume where each lies within `TOLERANCE_VOXELS` of a step of a regular grid (highdicom's
    own rule, 1% of the step, refused a series whose scanner rounds its positions).

    Raises:
        LabelError: the file is damaged, its frames have no positions or do not form a
            regularly spaced volume, its segments overlap, or it is FRACTIONAL.

    Example:
        >>> read_dicom_seg(Path("labels/p01.seg.dcm")).series_uid
        '1.2.826.0.1.3680043.8.498.1'
    """
    import highdicom as hd

    what = "DICOM-SEG (or its frames are not on a regular grid)"
    try:
        with silenced():
            seg = hd.seg.segread(path)
    except _DICOM_SEG_ERRORS as exc:
        _check_positions(path)
        raise unreadable(path, exc, what) from exc
    try:
        with silenced():
            volume = _combined_volume(seg, path)
    except RuntimeError as exc:  # highdicom: the frames' positions form no volume
        raise LabelError(
            f"{path}: cannot read the DICOM-SEG as a volume: its frames are not on a regular "
            f"grid ({' '.join(str(exc).split())}): slices at irregular gaps, or stacked "
            "obliquely to their normal (a gantry tilt); a viewer shows it, but use per-slice "
            "label files for this series as training labels."
        ) from exc
    except _DICOM_SEG_ERRORS as exc:
        raise unreadable(path, exc, what) from exc
    segments = tuple(
        Segment(str(item.SegmentLabel), int(item.SegmentNumber)) for item in seg.SegmentSequence
    )
    references = seg.get("ReferencedSeriesSequence") or []
    series_uid = str(references[0].SeriesInstanceUID) if references else ""
    values = as_labels(np.asarray(volume.array), path)
    return LabelVolume(
        values, np.asarray(volume.affine, np.float64), segments, path, "dicom-seg", series_uid
    )


def _check_positions(path: Path) -> None:
    """Where highdicom could not read a DICOM-SEG: say so if its frames have no position (they
    could only be placed by the images they reference, which a label volume does not hold)."""
    import pydicom

    try:
        with silenced():
            ds = pydicom.dcmread(path, defer_size=1024)  # the pixels left on disk
    except READ_ERRORS:
        return
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])[:1]]
    frames = ds.get("PerFrameFunctionalGroupsSequence") or []
    placed = [g for g in (*groups, *frames) if "PlanePositionSequence" in g]
    if placed or not frames or "PixelData" not in ds:  # a header cut short says nothing
        return
    raise LabelError(
        f"{path}: DICOM-SEG frames without (0020,9113) PlanePositionSequence; sliceseg places "
        "each frame by its position; export it again from a tool that writes them (3D Slicer, "
        "highdicom, dcmqi)."
    )


def _combined_volume(seg: Segmentation, path: Path) -> Volume:
    """highdicom's volume of the segment numbers; a FRACTIONAL one, or overlapping segments,
    refused as such (highdicom's error read as a damaged file).

    Raises:
        LabelError: overlapping segments, or fractional values.
    """
    try:
        return seg.get_volume(combine_segments=True, relabel=False, rtol=TOLERANCE_VOXELS)
    except (RuntimeError, ValueError) as exc:
        if str(seg.get("SegmentationType", "")) == "FRACTIONAL":
            raise LabelError(
                f"{path}: a FRACTIONAL DICOM-SEG (values between 0 and 1); expected one label "
                "per pixel; export a BINARY or LABELMAP segmentation."
            ) from exc
        try:  # where it reads without the overlap check, the overlap was what failed
            seg.get_volume(combine_segments=True, rtol=TOLERANCE_VOXELS, skip_overlap_checks=True)
        except (RuntimeError, ValueError):
            raise exc from None
        raise LabelError(
            f"{path}: DICOM-SEG segments overlap (a pixel in two segments); sliceseg needs one "
            "label per pixel; remove the overlap (3D Slicer: Segment Editor, masking 'Allow "
            "overlap' off) and export it again."
        ) from exc


def write_dicom_seg(
    path: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
    *,
    colours_rgb: Sequence[tuple[int, int, int]],
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
        colours_rgb: the (r, g, b) colour, 0–255, of ROIs 1..K.

    Returns:
        ``path``.

    Raises:
        LabelError: the slices mix several series or several multi-frame files, or a label
            value exceeds K.
        SegNotWritten: slices of several sizes or pixel spacings, a slice without (0028,0030)
            PixelSpacing, or source images highdicom refuses (the reason says why; what to use
            instead is the caller's to say: `sliceseg.report.exports` knows what else works).

    Example:
        >>> write_dicom_seg(out / "p01.seg.dcm", slices, labels, names, colours_rgb=colours)
    """
    import highdicom as hd
    import pydicom

    sources, order = _sources(slices)
    _check_one_grid(path, slices)
    _check_own_spacing(path, slices)
    stack = np.stack([np.asarray(labels[i], dtype=np.uint8) for i in order])
    check_roi_values(stack, roi_names, slices[0])
    descriptions = _segment_descriptions(roi_names, colours_rgb)
    datasets = _prepared([pydicom.dcmread(p, stop_before_pixels=True) for p in sources], slices)
    digest = hashlib.sha256(stack.tobytes() + "|".join(roi_names).encode()).hexdigest()
    uid = pydicom.uid.generate_uid(entropy_srcs=[_UID_ROOT, slices[0].series_uid, digest])
    try:
        with silenced():
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
        raise SegNotWritten(
            path,
            f"highdicom refused the source images of series {slices[0].series_uid} "
            f"({' '.join(str(exc).split())}).",
        ) from exc
    _save(seg, Path(path), roi_names)
    return Path(path)


def _save(seg: Dataset, path: Path, roi_names: Sequence[str]) -> None:
    """Write the DICOM-SEG atomically; in UTF-8 (ISO_IR 192) when a name is not ASCII:
    highdicom keeps its sources' character set (none: ASCII; or Latin-1), where "椎体" or "–"
    would be saved as "?". UTF-8 holds every name and the copied patient module."""
    if not all(name.isascii() for name in roi_names):
        seg.SpecificCharacterSet = "ISO_IR 192"
    with atomic_path(path) as tmp:
        seg.save_as(tmp)


_SPACING_ORIGINS = {
    USER_SPACING_SOURCE: "came from --fov / --matrix",
    USER_OVER_MALFORMED_SOURCE: "came from --fov / --matrix",
    "ImagerPixelSpacing": "is (0018,1164) ImagerPixelSpacing, the detector's",
    MAGNIFIED_SPACING_SOURCE: (
        "is (0018,1164) ImagerPixelSpacing divided by (0018,1114) "
        "EstimatedRadiographicMagnificationFactor, the patient's as the scanner estimated it"
    ),
    ULTRASOUND_SPACING_SOURCE: (
        "is (0018,6011) SequenceOfUltrasoundRegions' PhysicalDeltaY / PhysicalDeltaX, in cm"
    ),
}


def _check_own_spacing(path: Path | str, slices: Sequence[Slice]) -> None:
    """A DICOM-SEG takes its pixel spacing from its source files' (0028,0030) PixelSpacing: one
    measured otherwise (ImagerPixelSpacing, the user's ``--fov`` / ``--matrix``) cannot be
    referenced (highdicom fails on it in its own words, "no attribute 'PixelSpacing'")."""
    given = [image for image in slices if image.spacing_source != "PixelSpacing"]
    if given:
        origin = _SPACING_ORIGINS.get(given[0].spacing_source, "is unknown")
        malformed = given[0].spacing_source == USER_OVER_MALFORMED_SOURCE
        has = "a malformed PixelSpacing" if malformed else "no PixelSpacing"
        raise SegNotWritten(
            path,
            f"{given[0].source.name} has {has} (its spacing {origin}), which a DICOM-SEG takes "
            "from its source images.",
        )


def _segment_descriptions(
    roi_names: Sequence[str], colours_rgb: Sequence[tuple[int, int, int]]
) -> list[SegmentDescription]:
    """One SegmentDescription per ROI: Slicer's generic Tissue codes, sliceseg as the algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="sliceseg", family=codes.DCM.ArtificialIntelligence, version=__version__
    )
    return [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*colour),
        )
        for k, (label, colour) in enumerate(
            zip(segment_labels(roi_names), colours_rgb, strict=True), start=1
        )
    ]


class SegmentLabelWarning(UserWarning):
    """A ROI's name changed to fit (0062,0005) SegmentLabel (`segment_labels`)."""


def segment_labels(roi_names: Sequence[str]) -> list[str]:
    """The (0062,0005) SegmentLabel of each ROI: its name where an LO holds it, else a distinct,
    single-valued one; each changed name is said once (a `SegmentLabelWarning` naming the ROI,
    as `renamed_segments` words it).

    An LO holds 64 characters and no backslash (the value separator: ``a\\b`` reads back as
    two values), so a long name is cut, and one cut to a name already given (two names that
    differ past character 64) ends in its ROI number: ``… (3)``.

    Example:
        >>> segment_labels(["disc", "left\\right"])
        ['disc', 'left/right']
    """
    for line in renamed_segments(roi_names):
        warnings.warn(line, SegmentLabelWarning, stacklevel=2)
    return _labels(roi_names)


def renamed_segments(roi_names: Sequence[str]) -> list[str]:
    """One line per ROI whose SegmentLabel (`segment_labels`) is not its name: a model's
    names, so a run of many series says them once.

    Example:
        >>> len(renamed_segments(["disc", "left\\right"]))
        1
    """
    return [
        f"DICOM-SEG: ROI {k}'s name '{name}' is written as SegmentLabel '{label}' (at most "
        f"{_MAX_LABEL} characters, no backslash, one name per segment); the .seg.nrrd export "
        "and the tables keep the whole name."
        for k, (name, label) in enumerate(zip(roi_names, _labels(roi_names), strict=True), 1)
        if label != name
    ]


def _labels(roi_names: Sequence[str]) -> list[str]:
    labels: list[str] = []
    for k, name in enumerate(roi_names, start=1):
        label = name.replace("\\", "/")[:_MAX_LABEL]
        if label in labels:
            suffix = f" ({k})"
            label = label[: _MAX_LABEL - len(suffix)] + suffix
        labels.append(label)
    return labels


def _check_one_grid(path: Path | str, slices: Sequence[Slice]) -> None:
    """Refuse slices of several sizes or pixel spacings: a DICOM-SEG's frames share one
    (0028,0030) PixelSpacing (highdicom copies the first image's), so another slice's labels
    would lie at the wrong place in the patient; several sizes do not stack into its frames.

    Raises:
        SegNotWritten: a slice's size or PixelSpacing differs from the first's (names both).
    """
    first = slices[0]
    for image in slices[1:]:
        mm, first_mm = image.spacing_mm, first.spacing_mm
        same_spacing = mm == first_mm or (
            mm is not None and first_mm is not None and np.allclose(mm, first_mm, rtol=1e-4)
        )
        if image.shape != first.shape or not same_spacing:
            raise SegNotWritten(
                path,
                f"slice {image.source.name} has {image.shape[0]}×{image.shape[1]} pixels of "
                f"{image.spacing_mm} mm, the first ({first.source.name}) {first.shape[0]}×"
                f"{first.shape[1]} of {first.spacing_mm} mm; a DICOM-SEG holds one pixel grid "
                "per series.",
            )


def _prepared(datasets: list[Dataset], slices: Sequence[Slice]) -> list[Dataset]:
    """The source headers, in memory, with the slice step and thickness that highdicom copies
    into the DICOM-SEG's (0028,9110) PixelMeasuresSequence, as its readers need them.

    (0018,0088) SpacingBetweenSlices of several images becomes the step of the series' grid
    (`series_grid`, fitted to the positions): a header's value often disagrees with them (a
    vendor's gap, a thinned-out series), and without one highdicom's ``get_volume`` takes the
    smallest gap, from which positions as scanners round them (3 mm, one slice 0.1 mm off)
    fall off the grid: the file was refused as "not regularly spaced". Slices on no grid get
    none. A single image keeps it where it is positive: its position tells no step, and a "0"
    one is refused as a step of 0.

    (0018,0050) SliceThickness may be absent or empty in an image (type 2) but not in a
    DICOM-SEG's pixel measures (highdicom refuses the images, or writes a file it cannot read
    back): a missing one is the series' step (`neighbour_step_mm`), a single image's positive
    SpacingBetweenSlices, else 1 mm, as the NIfTI export takes.
    """
    single = len(datasets) == 1
    grid_step = None if single else _grid_step_mm(slices)
    for ds in datasets:
        if single and _positive(ds, "SpacingBetweenSlices"):
            continue
        if grid_step:
            ds.SpacingBetweenSlices = f"{grid_step:.6g}"  # a DS holds 16 characters
        elif "SpacingBetweenSlices" in ds:
            del ds.SpacingBetweenSlices
    if slices[0].num_frames > 1:  # an enhanced file's measures lie in its functional groups
        return datasets
    step = neighbour_step_mm(slices) if not single else None
    for ds in datasets:
        if not _positive(ds, "SliceThickness"):
            thickness = step or _positive(ds, "SpacingBetweenSlices") or 1.0
            ds.SliceThickness = f"{thickness:.6g}"  # a DS holds 16 characters
    return datasets


def _grid_step_mm(slices: Sequence[Slice]) -> float | None:
    """The plane step of the series' grid, as the NIfTI and NRRD exports take it; None where
    the slices form no grid (irregular gaps, a gantry tilt)."""
    try:
        grid = series_grid(slices)
    except LabelError:
        return None
    return float(np.linalg.norm(grid.ijk_to_lps[:3, 2]))


def _positive(ds: Dataset, keyword: str) -> float | None:
    """A header's number where it is one above 0, else None."""
    try:
        value = float(ds.get(keyword) or 0.0)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


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
        f"other file (got {len(slices)} slices from {len(files)} files)."
    )
