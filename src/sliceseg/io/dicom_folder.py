"""Reading a folder of DICOM files into one ordered list of `Slice`s: each image once (a copy
left out, named with its original), the files it cannot read named with why.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from sliceseg.errors import DicomReadError, PairingError
from sliceseg.io.dicom import Slice, read_slices
from sliceseg.io.dicom_files import SkippedFile, find_dicom_files
from sliceseg.io.identity import natural_key
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path


@dataclass(frozen=True)
class DicomScan:
    """The readable slices of a folder (ordered by `order_slices`) and the files left out."""

    slices: list[Slice]
    skipped: list[SkippedFile]


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
