"""Which series each label volume labels: the pairing rules, and series labelled twice.

A label folder may hold, beside (or instead of) per-slice label files, one label volume per
series: a 3D Slicer ``.seg.nrrd``, a NIfTI / NRRD label map, or a DICOM-SEG. Pairing rules, in
order (keys are paths relative to the label / DICOM folder, without suffix):

1. a DICOM-SEG pairs with the series it references, (0008,1115) ReferencedSeriesSequence;
2. ``labels/p01.seg.nrrd`` pairs with every DICOM file under ``dicoms/p01/``;
3. ``labels/p01/scan_3.nii.gz`` pairs with the file ``dicoms/p01/scan_3.dcm`` (e.g. multi-frame);
4. the only volume in ``labels/p01/`` (Slicer's ``Segmentation.seg.nrrd``) pairs with
   ``dicoms/p01/``.

Volumes that pair with the same DICOM files (``p01.nii.gz`` beside ``p01.seg.nrrd``) label that
series twice: none of them is used, as with two label maps of one slice, and the check names them
(`VolumePairing.duplicates`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sliceseg.errors import DicomReadError, LabelError
from sliceseg.io.dicom_files import (
    is_dicom_file,
    strip_dicom_suffix,
    visible_files,
)
from sliceseg.io.dicom_seg import is_dicom_seg, referenced_series_uid
from sliceseg.io.identity import natural_key
from sliceseg.io.labels import LABEL_SUFFIXES
from sliceseg.io.series_plan import read_series_uid
from sliceseg.io.volumes import is_volume_name, strip_volume_suffix


@dataclass(frozen=True)
class VolumePair:
    """A label volume and the DICOM files of its series.

    Attributes:
        volume: the label volume file.
        key: the series key, e.g. ``p01`` (the DICOM folder or file it paired with).
        image_paths: the DICOM files, naturally sorted.
        rule: how it paired: "referenced series", "folder", "file" or "parent folder".
    """

    volume: Path
    key: str
    image_paths: tuple[Path, ...]
    rule: str


@dataclass(frozen=True)
class VolumePairing:
    """The result of `pair_volumes`.

    Attributes:
        pairs: each volume and its series, no DICOM file in two pairs.
        unmatched: volumes that found no series.
        duplicates: volumes that share DICOM files (a series labelled twice), grouped; none of
            them is in ``pairs``.
    """

    pairs: list[VolumePair]
    unmatched: list[Path]
    duplicates: list[tuple[VolumePair, ...]] = field(default_factory=list)


def find_label_volumes(labels_dir: Path | str) -> list[Path]:
    """Find the label volumes under a label folder: by suffix, and DICOM-SEG by content.

    Args:
        labels_dir: the label folder (recursive; hidden files ignored).

    Returns:
        The volume files, naturally sorted.

    Example:
        >>> find_label_volumes(Path("data/train/labels"))
        [PosixPath('data/train/labels/p01.seg.nrrd'), PosixPath('data/train/labels/p02.nii.gz')]
    """
    return [
        path
        for path in visible_files(Path(labels_dir))
        if is_volume_name(path.name)
        or (
            path.suffix.lower() not in LABEL_SUFFIXES and is_dicom_file(path) and is_dicom_seg(path)
        )
    ]


def pair_volumes(
    volume_paths: Sequence[Path],
    labels_dir: Path | str,
    images_dir: Path | str,
    image_paths: Sequence[Path],
) -> VolumePairing:
    """Pair each label volume with the DICOM files of its series (rules in the module doc).

    Args:
        volume_paths: from `find_label_volumes`.
        labels_dir: the label folder.
        images_dir: the DICOM folder.
        image_paths: its DICOM files (e.g. from ``find_dicom_files``).

    Returns:
        The pairs, the volumes that found no series, and those that label a series twice.

    Example:
        >>> pairing = pair_volumes(volumes, labels, dicoms, find_dicom_files(dicoms)[0])
        >>> [(p.volume.name, p.key, len(p.image_paths)) for p in pairing.pairs]
        [('p01.seg.nrrd', 'p01', 12)]
    """
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    by_folder: dict[str, list[Path]] = defaultdict(list)
    by_file: dict[str, Path] = {}
    for path in image_paths:
        relative = path.relative_to(images_dir)
        by_file[relative.parent.joinpath(strip_dicom_suffix(path.name)).as_posix()] = path
        for depth in range(1, len(relative.parts)):
            by_folder[Path(*relative.parts[:depth]).as_posix()].append(path)
    per_folder = Counter(p.parent for p in volume_paths)
    uids = (
        _series_uids(image_paths) if any(not is_volume_name(p.name) for p in volume_paths) else {}
    )
    pairs, unmatched = [], []
    for volume in volume_paths:
        relative = volume.relative_to(labels_dir)
        key = relative.parent.joinpath(strip_volume_suffix(volume.name)).as_posix()
        parent = relative.parent.as_posix()
        if not is_volume_name(volume.name):
            uid = _referenced_series(volume)
            files = [p for p in image_paths if uids.get(p) == uid] if uid else []
            found = (_series_key(files, images_dir), files, "referenced series")
        elif key in by_folder:
            found = (key, by_folder[key], "folder")
        elif key in by_file:
            found = (key, [by_file[key]], "file")
        elif parent in by_folder and per_folder[volume.parent] == 1:
            found = (parent, by_folder[parent], "parent folder")
        else:
            found = (key, [], "")
        if found[1]:
            files = sorted(found[1], key=lambda p: natural_key(p.as_posix()))
            pairs.append(VolumePair(volume, found[0], tuple(files), found[2]))
        else:
            unmatched.append(volume)
    groups = _sharing_groups(pairs)
    singles = [group[0] for group in groups if len(group) == 1]
    return VolumePairing(singles, unmatched, [tuple(g) for g in groups if len(g) > 1])


def _sharing_groups(pairs: Sequence[VolumePair]) -> list[list[VolumePair]]:
    """The pairs grouped so that pairs sharing a DICOM file (even through a third) share a group."""
    groups: list[list[VolumePair]] = []
    owner: dict[Path, list[VolumePair]] = {}
    for pair in pairs:
        hits = {id(g): g for p in pair.image_paths if (g := owner.get(p)) is not None}
        found = list(hits.values())
        group = found[0] if found else []
        if not found:
            groups.append(group)
        for other in found[1:]:  # this pair joins two groups into one
            group.extend(other)
            groups = [g for g in groups if g is not other]
        group.append(pair)
        for member in group:
            owner.update(dict.fromkeys(member.image_paths, group))
    return groups


def _series_key(files: Sequence[Path], images_dir: Path) -> str:
    if not files:
        return ""
    parents = {p.parent.relative_to(images_dir).as_posix() for p in files}
    return parents.pop() if len(parents) == 1 else ",".join(sorted(parents))


def _series_uids(paths: Iterable[Path]) -> dict[Path, str]:
    uids = {}
    for path in paths:
        try:
            uids[path] = read_series_uid(path)
        except DicomReadError:  # an unreadable image belongs to no referenced series
            uids[path] = ""
    return uids


def _referenced_series(path: Path) -> str:
    try:
        return referenced_series_uid(path)
    except LabelError:  # an unreadable DICOM-SEG references nothing: left unmatched
        return ""
