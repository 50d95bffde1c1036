"""One name for a slice and one identity for a series, used by every table, picture and export.

A slice's key is its file's path under the DICOM folder without the DICOM suffix (plus
``_f003`` for frame 3 of a multi-frame file): ``p01/slice_1``. A series is its (0020,000E)
SeriesInstanceUID; files without one form one series per folder. Areas, plots, GIFs, exports,
``suggest``, the cohort records, the training profile and the area calibration's held-out
halves all group slices with `series_key`, so a folder without UIDs gets the same series
everywhere. A series' name on disk (`series_names`) is the folder of its
slices' keys, else the name of the DICOM folder; names shared by several series get ``_2``,
``_3`` in order. A file is named in a cohort's own files by its path under the input folder
(`relative_to_input`), so that a results folder moved elsewhere names no one's absolute paths.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "MAX_NAME_BYTES",
    "Identified",
    "natural_key",
    "relative_to_input",
    "series_key",
    "series_name",
    "series_name_key",
    "series_names",
    "slice_key",
    "slices_series_names",
    "top_series_name",
    "used_series_names",
]

MAX_NAME_BYTES = 200
"""The longest series name (UTF-8 bytes): with ``_2``, the temporary folder's prefix and pid and
``OUT/failed/``'s temporary file name around it, a name still fits a file system's 255 bytes."""


class Identified(Protocol):
    """What naming needs of a slice: a decoded `Slice` or a header-only planned one."""

    @property
    def source(self) -> Path: ...

    @property
    def series_uid(self) -> str: ...

    @property
    def name(self) -> str: ...


def slice_key(image: Identified, root: Path | str) -> str:
    """Name a slice by its file's path under ``root``: folders, then its name, '/'-joined.

    This is the one name of a slice in every table (check, training, predict, measure,
    evaluate), so that they join: the file's path relative to ``root`` without its DICOM suffix,
    plus ``_f003`` for frame 3 of a multi-frame file.

    Args:
        image: the slice; ``image.source`` must lie under ``root``.
        root: the folder the names are relative to (the DICOM folder).

    Returns:
        E.g. ``"p01/slice_1"``, or ``"p01/cine_f003"`` for a frame of a multi-frame file.

    Raises:
        ValueError: ``image.source`` is not under ``root``.

    Example:
        >>> slice_key(read_slice(Path("scans/p01/cine.dcm"), frame=3), Path("scans"))
        'p01/cine_f003'
    """
    root = Path(root)
    try:
        folder = image.source.parent.relative_to(root)
    except ValueError:
        absolute = Path(os.path.abspath(image.source.parent))
        try:
            folder = absolute.relative_to(os.path.abspath(root))
        except ValueError:
            raise ValueError(
                f"{image.source}: not inside {root}; name slices relative to their own folder."
            ) from None
    return folder.joinpath(image.name).as_posix()


def relative_to_input(text: str, root: Path | str) -> str:
    """Write every path under the input folder ``root`` in ``text`` relative to it.

    ``text`` is a path, or a message naming files (``"<file>: the same image as <file> ..."``).
    A path counts when it begins with ``root`` as given or as an absolute path, not inside
    another path; other text is kept as it is.

    Example:
        >>> relative_to_input("/data/scans/p01/b.dcm: the same image as /data/scans/p01/a.dcm",
        ...                   Path("/data/scans"))
        'p01/b.dcm: the same image as p01/a.dcm'
    """
    # as given, its files are ``root / name`` (``Path`` keeps ".."); "." names them bare
    prefixes = {os.path.join(folder, "") for folder in (str(Path(root)), os.path.abspath(root))}
    prefixes.discard(os.path.join(".", ""))
    found = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.sub(rf"(?<![\w./\\~-])(?:{found})", "", text)


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``slice_2`` before ``slice_10``."""
    # isdecimal, not isdigit: "²" is a digit to isdigit, not to \d, and int() refuses it
    return tuple(int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", text))


def series_name_key(name: str) -> tuple[Any, ...]:
    """Sort key of a series by its name: the one order of series in every plan, table,
    report and merge (digit runs compared as numbers: ``p9`` before ``p10``, ``patient2``
    before ``patient10``; then the name itself, so ``p1`` and ``p01`` keep one order), so
    that a cohort's shards, its merge and a single run list the series alike.

    Example:
        >>> sorted(["p10", "patient10", "p9", "patient2"], key=series_name_key)
        ['p9', 'p10', 'patient2', 'patient10']
    """
    return (natural_key(name), name)


def series_key(image: Identified) -> str:
    """The series a slice belongs to: (0020,000E) SeriesInstanceUID, else its folder.

    Example:
        >>> series_key(read_slice(Path("scans/p01/slice_1.dcm")))  # a file without a UID
        'scans/p01'
    """
    return image.series_uid or str(image.source.parent)


def series_name(keys: Sequence[str], *, root_name: str = "series") -> str:
    """A series' name on disk: the folder of its slices' keys ("/" → "_"), else ``root_name``.

    A name longer than `MAX_NAME_BYTES` (nested long folders) keeps its start and ends in 12
    hex digits of its SHA-256, so that it is still one name per folder and a valid file name.
    A name never starts with "." (a DICOM folder ``.scans``: ``scans``): a hidden folder is a
    temporary one to the cohort's readers (`sliceseg.inference.records`), which never saw it.

    Example:
        >>> series_name(["p01/slice_1", "p01/slice_2"]), series_name(["a", "b"], root_name="scans")
        ('p01', 'scans')
    """
    folders = {key.rsplit("/", 1)[0] if "/" in key else "" for key in keys}
    stem = (folders.pop() if len(folders) == 1 else "") or root_name or "series"
    return _shortened(stem.replace("/", "_").lstrip(".") or "series")


def _shortened(name: str) -> str:
    data = name.encode()
    if len(data) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(data).hexdigest()[:12]
    head = data[: MAX_NAME_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{head}_{digest}"


def top_series_name(root: Path | str) -> str:
    """The name of a series lying at the top of the DICOM folder ``root`` (`series_name`'s
    ``root_name``): the folder's own name, from its real path, so that every command names a
    series in "." as the folder it is.

    Example:
        >>> top_series_name(Path("scans/p01/"))
        'p01'
    """
    return Path(root).resolve().name


def series_names(
    groups: Mapping[str, Sequence[str]], *, root_name: str = "series"
) -> dict[str, str]:
    """Name every series (`series_name`); a name already taken gets ``_2``, ``_3``, ... in order,
    skipping a suffixed name that another series' folder already has (``p01_2/``).

    Args:
        groups: per `series_key`, in order, its slices' keys.
        root_name: the name of a series lying at the top of the DICOM folder.

    Returns:
        Per series key, its unique name.

    Example:
        >>> series_names({"1.2.3": ["p01/a"], "1.2.4": ["p01/b"]})
        {'1.2.3': 'p01', '1.2.4': 'p01_2'}
    """
    stems = {key: series_name(keys, root_name=root_name) for key, keys in groups.items()}
    taken = set(stems.values())  # a folder's own name is never given to another series
    counts: dict[str, int] = {}
    names = {}
    for key, stem in stems.items():
        counts[stem] = counts.get(stem, 0) + 1
        if counts[stem] == 1:
            names[key] = stem
            continue
        while f"{stem}_{counts[stem]}" in taken:
            counts[stem] += 1
        names[key] = f"{stem}_{counts[stem]}"
        taken.add(names[key])
    return names


def slices_series_names(
    images: Sequence[Identified],
    keys: Sequence[str],
    *,
    root_name: str = "series",
    series_name: str | None = None,
) -> dict[str, str]:
    """Name the series of some slices, as their exports' files and their tables do: series
    that share a name take ``_2``, ``_3``, ... in the order of their files' paths, as
    `sliceseg predict` names them (`sliceseg.io.series_plan.plan_cohort`), whatever the order
    of ``images``.

    Args:
        images: the slices; grouped by `series_key`, series in order of first appearance
            (the order of `sliceseg.measure.areas.AreaTable.series`' numbers, and of the
            result).
        keys: each slice's `slice_key`.
        root_name: the name of a series lying at the top of the DICOM folder.
        series_name: the name a cohort gave these slices, when they are one series.

    Returns:
        Per series key, its name (`series_names`).

    Example:
        >>> list(slices_series_names(slices, ["p01/a", "p02/a"]).values())
        ['p01', 'p02']
    """
    groups: dict[str, list[str]] = {}
    for image, key in zip(images, keys, strict=True):
        groups.setdefault(series_key(image), []).append(key)
    if series_name is not None and len(groups) == 1:
        return dict.fromkeys(groups, series_name)
    first: dict[str, tuple[Any, ...]] = {}  # per series, its first file's path
    for image in images:
        path = natural_key(image.source.as_posix())
        first[series_key(image)] = min(first.get(series_key(image), path), path)
    by_path = {key: groups[key] for key in sorted(groups, key=first.__getitem__)}
    names = series_names(by_path, root_name=root_name)
    return {key: names[key] for key in groups}


def used_series_names(images: Sequence[Identified], names: Mapping[str, str]) -> dict[str, str]:
    """The named series (``names``: per `series_key`, as `slices_series_names` gives them) of
    ``images``, in order of their first slice: the order of
    `sliceseg.measure.areas.AreaTable.series`' numbers, which the tables name by it.

    Example:
        >>> list(used_series_names(slices, {"uid2": "p02", "uid1": "p01"}).values())
        ['p01', 'p02']
    """
    return {key: names[key] for key in dict.fromkeys(map(series_key, images))}
