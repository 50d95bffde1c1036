"""Finding DICOM files by content, whatever their suffix, in natural order, hidden ones left out."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from sliceseg.errors import PairingError
from sliceseg.io.identity import natural_key, relative_to_input
from sliceseg.thread_warnings import silenced

__all__ = [
    "DICOMDIR_REASON",
    "DICOM_SUFFIXES",
    "OS_FILES",
    "PIXEL_KEYWORDS",
    "READ_ERRORS",
    "SkippedFile",
    "find_dicom_files",
    "is_dicom_file",
    "is_hidden_name",
    "not_a_folder",
    "strip_dicom_suffix",
    "visible_files",
]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_PREAMBLE_LESS_GROUPS = (0x0000, 0x0002, 0x0008)
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
DICOMDIR_REASON = (
    "a DICOMDIR, the index of a CD/DVD export, not an image; left out (the images it lists are "
    "read from their own files)"
)
# (0002,0002) MediaStorageSOPClassUID, explicit VR little endian as the file meta always is, and
# the Media Storage Directory Storage class of a DICOMDIR (PS3.10 7.1, PS3.3 F.3).
_MEDIA_STORAGE_CLASS = b"\x02\x00\x02\x00UI"
_DIRECTORY_CLASS = "1.2.840.10008.1.3.10"
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


@dataclass(frozen=True)
class SkippedFile:
    """A file that was left out, with the reason in one line."""

    path: Path
    reason: str

    def describe(self) -> str:
        """``path: reason``, the file named once (read errors already begin with its path).

        Example:
            >>> SkippedFile(Path("a/x.dcm"), "a/x.dcm: not DICOM").describe()
            'a/x.dcm: not DICOM'
        """
        return f"{self.path}: {self.reason.removeprefix(f'{self.path}: ')}"

    def relative_to_input(self, root: Path) -> SkippedFile:
        """The same file and reason, each path under the input folder ``root`` written relative
        to it (`relative_to_input`): as a cohort's own files name it.

        Example:
            >>> SkippedFile(Path("/s/p01/x.dcm"), "/s/p01/x.dcm: not DICOM").relative_to_input(
            ...     Path("/s")).describe()
            'p01/x.dcm: not DICOM'
        """
        path = Path(relative_to_input(str(self.path), root))
        return SkippedFile(path, relative_to_input(self.reason, root))


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


OS_FILES = frozenset(
    {"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r"}
    | {"$recycle.bin", "system volume information", "__macosx"}
)
"""Names (lower case) of the files and folders an OS's file browser writes into any folder it
shows, hidden there as '.DS_Store' is on a Mac: never anyone's data."""


def is_hidden_name(name: str) -> bool:
    """Whether a file or folder named ``name`` is hidden: a dot name, or one of `OS_FILES`.

    Example:
        >>> is_hidden_name(".DS_Store"), is_hidden_name("Thumbs.db"), is_hidden_name("s1.png")
        (True, True, False)
    """
    return name.startswith(".") or name.lower() in OS_FILES


def visible_files(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Return the files under ``folder`` (recursive), naturally sorted, hidden ones left out.

    A file is hidden when its name or a folder between it and ``folder`` is (`is_hidden_name`).
    ``exclude``: a folder whose files are left out too (an output folder inside the inputs),
    however it is reached: by its real path, so a link to it (or to a file in it) is left out,
    and so is a link through which it lies under ``folder``.
    Links to folders are followed (a cohort gathered as links to its patients' folders; a
    link back to a folder it lies in is not, which would never end), as links to files are.
    """
    root = os.path.realpath(folder)
    left_out = None if exclude is None else os.path.realpath(exclude)
    if _within(root, left_out):  # the inputs inside the output folder: nothing to leave out
        left_out = None
    files = _walk(Path(folder), frozenset({root}), left_out)
    return sorted(files, key=lambda p: natural_key(p.relative_to(folder).as_posix()))


def _walk(folder: Path, above: frozenset[str], left_out: str | None) -> Iterator[Path]:
    """The visible files under ``folder``, through links to folders; ``above``: the real paths
    of the folders it lies in (a link to one of them is a loop); ``left_out``: the real path
    of a folder passed over. An unreadable folder is passed over, as ``Path.rglob`` passes it
    over."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if is_hidden_name(entry.name):
            continue
        if entry.is_dir():  # a link to a folder too
            real = os.path.realpath(entry.path)
            if real not in above and not _within(real, left_out):
                yield from _walk(folder / entry.name, above | {real}, left_out)
        elif entry.is_file() and not (
            entry.is_symlink() and _within(os.path.realpath(entry.path), left_out)
        ):  # a file that is no link lies in its folder, whose real path was checked
            yield folder / entry.name


def _within(real: str, folder: str | None) -> bool:
    """Whether the real path ``real`` is the real path ``folder`` or lies under it."""
    return folder is not None and (
        real == folder or real.startswith(folder.rstrip(os.sep) + os.sep)
    )


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
    head = _read_head(path)
    return head is not None and _is_dicom(path, head)


def _read_head(path: Path) -> bytes | None:
    """The file's first bytes: the preamble, and the file meta that follows it; None when the
    file cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read(512)
    except OSError:
        return None


def _is_dicom(path: Path, head: bytes) -> bool:
    """`is_dicom_file` on the file's first bytes (read once with `_read_head`)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    little, big = int.from_bytes(head[:2], "little"), int.from_bytes(head[:2], "big")
    if little not in _PREAMBLE_LESS_GROUPS and big not in _PREAMBLE_LESS_GROUPS:
        return False
    try:
        with silenced():
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=False, defer_size="1 KB")
    except READ_ERRORS:
        return False
    return any(keyword in ds for keyword in PIXEL_KEYWORDS)


def _is_dicomdir(path: Path, head: bytes) -> bool:
    """A DICOM file that is a media index: named DICOMDIR, as the standard names it, or of the
    Media Storage Directory class by its (0002,0002) MediaStorageSOPClassUID."""
    if path.name.upper() == "DICOMDIR":
        return True
    at = head.find(_MEDIA_STORAGE_CLASS, 132)
    if at < 0 or len(head) < at + 8:
        return False
    length = int.from_bytes(head[at + 6 : at + 8], "little")
    return head[at + 8 : at + 8 + length].rstrip(b"\x00 ") == _DIRECTORY_CLASS.encode()


def not_a_folder(file: Path, holds: str) -> PairingError:
    """The one refusal of a file given where the folder that holds ``holds`` is expected.

    Example:
        >>> str(not_a_folder(Path("scans/s1.dcm"), "the DICOM files"))
        'scans/s1.dcm: a file, not a folder; give the folder that holds the DICOM files, e.g. scans.'
    """  # noqa: E501
    return PairingError(
        f"{file}: a file, not a folder; give the folder that holds {holds}, e.g. {file.parent}."
    )


def find_dicom_files(
    folder: Path, *, exclude: Path | None = None
) -> tuple[list[Path], list[SkippedFile]]:
    """Find the DICOM files under ``folder`` (recursive, by content, naturally sorted).

    Hidden files and folders (name starting with '.') are ignored silently; every other
    non-DICOM file, and a DICOMDIR (an index of the files, no image), comes back as a
    `SkippedFile`.

    Args:
        folder: the folder to search.
        exclude: a folder inside it to leave out silently (the run's own output folder).

    Returns:
        (DICOM files, skipped files).

    Raises:
        PairingError: ``folder`` does not exist or is not a folder.

    Example:
        >>> files, skipped = find_dicom_files(Path("data/train/dicoms"))
    """
    folder = Path(folder)
    if folder.is_file():
        raise not_a_folder(folder, "the DICOM files")
    if not folder.is_dir():
        raise PairingError(f"{folder}: folder does not exist; check the path to the DICOM folder.")
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    for path in visible_files(folder, exclude):
        head = _read_head(path)
        if head is None or not _is_dicom(path, head):
            reason = "not a DICOM file (no 'DICM' marker and not readable as DICOM)"
            skipped.append(SkippedFile(path, reason))
        elif _is_dicomdir(path, head):
            skipped.append(SkippedFile(path, DICOMDIR_REASON))
        else:
            found.append(path)
    return found, skipped
