"""Exports for other tools, per series: DICOM-SEG (PACS, OHIF, Slicer), NIfTI, 3D Slicer .seg.nrrd.

This module chooses the formats (``--export``), groups the predictions by series and names the
files; each format's writer lives beside its reader in `sliceseg.io` (`sliceseg.io.dicom_seg`,
`sliceseg.io.nifti`, `sliceseg.io.seg_nrrd`). Every export carries the series' geometry from its
DICOM headers: slices are placed by ImagePositionPatient along the slice normal (never by file
order), so a series with missing slices keeps empty planes where they were, and a single slice
works. ROI ``k`` is segment / label value ``k`` with the ROI's name and the colour of
`sliceseg.report.visualize.roi_colour`.

Patient data: the NIfTI and .seg.nrrd files hold none (only voxels, geometry, ROI names). A
DICOM-SEG must copy the patient and study modules of its source images (the standard requires
it, so that a PACS files it with them); nothing else about the patient is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import ConfigError, SlicesegError
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_seg import SegNotWritten, write_dicom_seg
from sliceseg.io.identity import series_key
from sliceseg.io.nifti import write_nifti
from sliceseg.io.seg_nrrd import write_seg_nrrd
from sliceseg.io.series_grid import series_grid
from sliceseg.io.slice_geometry import PREDICTED_LABEL_MAPS
from sliceseg.report.colours import roi_colour

EXPORT_FORMATS = ("seg", "nifti", "nrrd")
"""``seg``: DICOM-SEG (``<series>.seg.dcm``), ``nifti``: ``<series>.nii.gz``, ``nrrd``:
3D Slicer segmentation ``<series>.seg.nrrd``."""

DEFAULT_EXPORTS = ("nifti", "nrrd")
"""What ``predict`` writes unless told otherwise: the two formats without patient data."""

_SUFFIXES = {"seg": ".seg.dcm", "nifti": ".nii.gz", "nrrd": ".seg.nrrd"}


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
    is left out with a note; the others are still written. A note's advice names only what
    holds this series (`_note`).

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
    colours = [roi_colour(k) for k in range(1, len(roi_names) + 1)]
    files: list[Path] = []
    failed: dict[str, str] = {}
    for fmt in formats:
        path = Path(out_dir) / f"{name}{_SUFFIXES[fmt]}"
        try:
            if fmt == "seg":
                files.append(write_dicom_seg(path, slices, labels, roi_names, colours_rgb=colours))
            elif fmt == "nifti":
                files.append(write_nifti(path, slices, labels))
            else:
                files.append(write_seg_nrrd(path, slices, labels, roi_names, colours_rgb=colours))
        except SlicesegError as exc:
            # the reason only, not the file the writer was given (in a cohort, a temporary
            # folder's, gone once the series is in place): the note's "<name>: <format>" says it
            reason = exc.reason if isinstance(exc, SegNotWritten) else str(exc)
            failed[fmt] = reason.rstrip(".")
    notes = tuple(_note(name, fmt, reason, slices, files) for fmt, reason in failed.items())
    return SeriesExport(name, slices[0].series_uid if slices else "", tuple(files), notes)


def _note(name: str, fmt: str, reason: str, slices: Sequence[Slice], written: list[Path]) -> str:
    """One line: the format not written, why, and what holds the series instead (only what
    works for it: a volume format only where its slices form a regular grid)."""
    written_volumes = [p.name for p in written if not p.name.endswith(_SUFFIXES["seg"])]
    written_seg = [p.name for p in written if p.name.endswith(_SUFFIXES["seg"])]
    if fmt == "seg":
        if written_volumes:
            holds = "hold" if len(written_volumes) > 1 else "holds"
            fix = f"its {' and '.join(written_volumes)} {holds} its predictions"
        else:
            fix = "use --export nifti,nrrd" if _fits_a_volume(slices) else PREDICTED_LABEL_MAPS
        return f"{name}: seg not written: {reason}; {fix}."
    if written_seg:  # written, yet off a regular grid: highdicom's get_volume refuses it too
        reason += (
            f"; its DICOM-SEG ({written_seg[0]}) holds them for a viewer (PACS, OHIF, "
            "3D Slicer) but cannot be read back as training labels, which need a regular grid"
        )
    return f"{name}: {fmt} not written: {reason}."


def _fits_a_volume(slices: Sequence[Slice]) -> bool:
    """Whether the series' slices form the regular grid NIfTI and .seg.nrrd need."""
    try:
        series_grid(slices)
    except SlicesegError:
        return False
    return True


def export_predictions(
    out_dir: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    series_names: Mapping[str, str],
    roi_names: Sequence[str],
    *,
    formats: Sequence[str] = DEFAULT_EXPORTS,
) -> list[SeriesExport]:
    """Group predictions by series and write each series' exports into ``out_dir``.

    Args:
        out_dir: the folder to write into (e.g. ``<predict --out>/exports``).
        slices: every predicted slice.
        labels: its label maps.
        series_names: per `series_key`, the series' name, its files' stem
            (`sliceseg.io.identity.slices_series_names`: ``p01``, ``p01_2``).
        roi_names: names of ROIs 1..K.
        formats: a subset of `EXPORT_FORMATS`; empty writes nothing.

    Returns:
        One `SeriesExport` per series, in the order the series first appear.

    Example:
        >>> named = slices_series_names(slices, [slice_key(s, root) for s in slices])
        >>> runs = export_predictions(out / "exports", slices, labels, named, names)
        >>> [f.name for run in runs for f in run.files]
        ['p01.nii.gz', 'p01.seg.nrrd']
    """
    if not parse_exports(list(formats)):
        return []
    groups: dict[str, list[int]] = {}
    for index, image in enumerate(slices):
        groups.setdefault(series_key(image), []).append(index)
    runs = []
    for key, members in groups.items():
        runs.append(
            export_series(
                out_dir,
                series_names[key],
                [slices[i] for i in members],
                [labels[i] for i in members],
                roi_names,
                formats=formats,
            )
        )
    return runs
