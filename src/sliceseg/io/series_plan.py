"""A cohort's plan from headers alone: which files form which series, and which are not images.

Planning reads no pixels ((0020,000E) SeriesInstanceUID, (0028,0010) Rows and (0028,0008)
NumberOfFrames, read with ``stop_before_pixels``), so it costs about a millisecond per file and
no memory per slice. Each series is then decoded on its own (`decode_series`, which orders its
slices with `order_slices`), so that a run holds one series' pixels at a time. Series are
grouped by `sliceseg.io.identity.series_key` and named by `series_names`; the plan lists them
by name (`series_name_key`: ``p9`` before ``p10``), which is also the order in which shards
take them (`sliceseg.inference.shards`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom

from sliceseg.errors import DicomReadError, PairingError
from sliceseg.io.dicom import Slice, read_slices
from sliceseg.io.dicom_files import READ_ERRORS, SkippedFile, find_dicom_files, strip_dicom_suffix
from sliceseg.io.dicom_folder import read_files
from sliceseg.io.dicom_headers import not_an_image
from sliceseg.io.identity import (
    Identified,
    series_key,
    series_name_key,
    series_names,
    slice_key,
    slices_series_names,
    top_series_name,
)
from sliceseg.thread_warnings import silenced

__all__ = [
    "CohortPlan",
    "PlannedFile",
    "PlannedSeries",
    "decode_series",
    "plan_cohort",
    "planned_series_names",
    "read_series_uid",
]

_HEADER_TAGS = ["SeriesInstanceUID", "Rows", "NumberOfFrames", "SOPClassUID", "Modality"]


@dataclass(frozen=True, slots=True)  # one per file of a cohort: kept small
class PlannedFile:
    """One DICOM file of the plan, from its header: where it is, its series, its frame count.

    Attributes:
        source: the file.
        series_uid: (0020,000E) SeriesInstanceUID, "" when absent.
        num_frames: (0028,0008) NumberOfFrames, 1 when absent.
        size_bytes: the file's size when planned.
        mtime_ns: its modification time when planned (ns since the epoch).
    """

    source: Path
    series_uid: str
    num_frames: int
    size_bytes: int
    mtime_ns: int

    @property
    def name(self) -> str:
        """File name without a DICOM suffix (frames are not told apart here)."""
        return strip_dicom_suffix(self.source.name)


@dataclass(frozen=True)
class PlannedSeries:
    """One series of the plan: its identity, its unique name on disk and its files.

    Attributes:
        key: its `series_key` (SeriesInstanceUID, else its folder).
        name: its unique name (`series_names`): the folder of its files, ``_2`` when shared.
        files: its files, in natural order of their paths.
    """

    key: str
    name: str
    files: tuple[PlannedFile, ...]

    @property
    def num_slices(self) -> int:
        """Slices the series will give: frames summed over its files."""
        return sum(f.num_frames for f in self.files)

    def inputs(self, root: Path) -> list[dict[str, object]]:
        """Its input files as plain data (relative path, size, mtime): a record's ``inputs``."""
        return [
            {
                "file": f.source.relative_to(root).as_posix(),
                "size_bytes": f.size_bytes,
                "mtime_ns": f.mtime_ns,
            }
            for f in self.files
        ]


@dataclass(frozen=True)
class CohortPlan:
    """Every series under a folder, by name, and the files left out with the reason.

    Attributes:
        root: the DICOM folder.
        series: the series, sorted by name.
        skipped: non-DICOM files, DICOM files without an image, unreadable headers.
    """

    root: Path
    series: tuple[PlannedSeries, ...]
    skipped: tuple[SkippedFile, ...]

    @property
    def num_slices(self) -> int:
        """Slices over every series."""
        return sum(s.num_slices for s in self.series)


def plan_cohort(root: Path | str, *, exclude: Path | None = None) -> CohortPlan:
    """Plan a run from headers: group the DICOM files under ``root`` into named series.

    Args:
        root: the DICOM folder (searched recursively; files recognised by content).
        exclude: a folder under ``root`` left out (the run's output folder: its DICOM-SEG
            exports are not inputs).

    Returns:
        The series in name order (`series_name_key`: ``p9`` before ``p10``), and the skipped
        files.

    Raises:
        PairingError: ``root`` does not exist, or holds no DICOM image.

    Example:
        >>> plan = plan_cohort(Path("scans"))
        >>> [(s.name, s.num_slices) for s in plan.series]
        [('p01', 10), ('p02', 10)]
    """
    root = Path(root)
    paths, skipped = find_dicom_files(root, exclude=exclude)
    planned: list[PlannedFile] = []
    for path in paths:
        try:
            planned.append(_plan_file(path))
        except DicomReadError:  # the full reader gives the one canonical reason
            found = _plan_by_reading(path)
            if isinstance(found, SkippedFile):
                skipped.append(found)
            else:
                planned.append(found)
    if not planned:
        raise PairingError(
            f"{root}: no readable DICOM files found"
            + (f" ({len(skipped)} other files skipped)" if skipped else "")
            + "; point to the folder holding the .dcm slices."
        )
    groups: dict[str, list[PlannedFile]] = {}
    for item in planned:
        groups.setdefault(series_key(item), []).append(item)
    names = series_names(
        {key: [slice_key(f, root) for f in files] for key, files in groups.items()},
        root_name=top_series_name(root),
    )
    series = [PlannedSeries(key, names[key], tuple(files)) for key, files in groups.items()]
    return CohortPlan(
        root, tuple(sorted(series, key=lambda s: series_name_key(s.name))), tuple(skipped)
    )


def planned_series_names(
    plan: CohortPlan, images: Sequence[Identified], keys: Sequence[str]
) -> dict[str, str]:
    """Name the series of some of a folder's slices (a labelled set's) as `sliceseg predict`
    names them: over every DICOM file of the folder (``plan``), so that a series without label
    maps, or whose first file has none, does not shift the ``_2``, ``_3``, ... of the others.

    Args:
        plan: the folder's plan (`plan_cohort`).
        images: some of its slices.
        keys: each slice's `slice_key`.

    Returns:
        Per `series_key` of ``images``, the series' name.

    Example:
        >>> planned_series_names(plan_cohort(Path("train/dicoms")), slices, keys)
        {'1.2.3': 'p01_2'}
    """
    planned = {s.key: s.name for s in plan.series}
    found = slices_series_names(  # a series the plan did not see (not expected): its own name
        images, keys, root_name=top_series_name(plan.root)
    )
    return {key: planned.get(key, name) for key, name in found.items()}


def read_series_uid(path: Path) -> str:
    """Return a DICOM file's (0020,000E) SeriesInstanceUID from its header ("" when it has none).

    Raises:
        DicomReadError: the header cannot be read (names the file).
    """
    try:
        with silenced():
            ds = pydicom.dcmread(
                path, force=True, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]
            )
    except READ_ERRORS as exc:
        raise DicomReadError(
            f"{path}: cannot read the DICOM header ({' '.join(str(exc).split())}); the file may "
            "be truncated or corrupt; copy it again from the scanner/PACS."
        ) from exc
    return str(ds.get("SeriesInstanceUID") or "")


# pydicom's errors on a damaged header, and int() on a multi-valued NumberOfFrames.
_HEADER_ERRORS: tuple[type[BaseException], ...] = (*READ_ERRORS, TypeError)


def _plan_file(path: Path) -> PlannedFile:
    """Read one file's header (no pixels) into a `PlannedFile`."""
    try:
        with silenced():
            ds = pydicom.dcmread(
                path, force=True, stop_before_pixels=True, specific_tags=_HEADER_TAGS
            )
            frames = int(ds.get("NumberOfFrames") or 1)  # converted here: said when decoded
    except _HEADER_ERRORS as exc:  # the caller asks the full reader for the one canonical reason
        raise DicomReadError(
            f"{path}: cannot read the DICOM header ({' '.join(str(exc).split())}); the file may "
            "be truncated or corrupt; copy it again from the scanner/PACS."
        ) from exc
    if "Rows" not in ds or not_an_image(ds):  # the full reader says why
        raise DicomReadError(
            f"{path}: DICOM file holds no image (no Rows); expected an image; move it out of "
            "the folder."
        )
    stat = os.stat(path)
    uid = str(ds.get("SeriesInstanceUID") or "")
    return PlannedFile(path, uid, max(1, frames), stat.st_size, stat.st_mtime_ns)


def _plan_by_reading(path: Path) -> PlannedFile | SkippedFile:
    """Plan a file whose header alone looks wrong by reading it whole (rare, so affordable)."""
    try:
        with silenced():  # said again when the series is decoded
            slices = read_slices(path)
    except DicomReadError as exc:
        return SkippedFile(path, str(exc))
    stat = os.stat(path)
    return PlannedFile(path, slices[0].series_uid, len(slices), stat.st_size, stat.st_mtime_ns)


def decode_series(files: Sequence[Path]) -> tuple[list[Slice], list[SkippedFile]]:
    """Decode one series' files into ordered slices (`read_files`: a file that cannot be
    decoded, or a copy of another, is skipped with the reason).

    A top-level function, so that worker processes can run it.

    Example:
        >>> slices, skipped = decode_series([f.source for f in plan.series[0].files])
    """
    return read_files(files)
