"""The check report's lines about label volumes: a slice or a series labelled twice, renumbered
segments beside unnamed label files, slices a volume leaves empty, labelled planes no slice takes.

What they report is `sliceseg.dataset.volume_labels`' (`VolumeLabels`); this module only words it.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sliceseg.dataset.pairing import Pair, Pairing, duplicate_message
from sliceseg.dataset.problems import Problem
from sliceseg.dataset.volume_labels import VolumeLabels
from sliceseg.wording import few_of


def _unnamed_problems(pairing: Pairing, found: VolumeLabels) -> list[Problem]:
    """Warn when named segments were renumbered but other label files carry no names."""
    renumbered = any(p.kind == "renumbered" for p in found.segments.problems)
    if not (renumbered and found.segments.is_from_segment_names):
        return []
    claimed = found.labelled_images
    paths = tuple(
        dict.fromkeys([p.label_path for p in pairing.pairs if p.image_path not in claimed])
    ) + tuple(found.unnamed)
    if not paths:
        return []
    message = (
        f"{len(paths)} label file(s) without segment names are read with the ROI values of the "
        "segment names (renumbered); check that their values follow that order, or add "
        "labels.txt (one name per line)"
    )
    return [Problem("warning", "unnamed_labels", message, paths)]


def volume_problems(pairing: Pairing, found: VolumeLabels, unlabelled: str) -> list[Problem]:
    """Check-report lines for the volumes: a slice or a series labelled twice (errors),
    renumbered segments, unlabelled slices.

    Args:
        pairing: the per-slice pairing (before `merge_pairing`).
        found: from `load_volume_labels`.
        unlabelled: "skip" or "background", as given.
    """
    problems = []
    by_image = {path: pair.volume for pair in found.pairing.pairs for path in pair.image_paths}
    twice: dict[Path, list[Pair]] = defaultdict(list)  # one line per volume, not per slice
    for pair in pairing.pairs:
        if pair.image_path in by_image:
            twice[by_image[pair.image_path]].append(pair)
    for volume, pairs in twice.items():
        message = (
            f"{len(pairs)} slice(s) labelled twice, by their label maps and by the volume "
            f"{volume.name} (e.g. {pairs[0].key}: {pairs[0].label_path.name}); expected one "
            "label per slice; remove the label maps or the volume."
        )
        paths = (volume, *(pair.label_path for pair in pairs))
        problems.append(Problem("error", "duplicate", message, paths))
    for group in found.pairing.duplicates:
        series = " / ".join(dict.fromkeys(pair.key for pair in group))
        found_text = f"{len(group)} label volumes for the series '{series}'"
        volumes = tuple(pair.volume for pair in group)
        message = duplicate_message(found_text, volumes, "one label volume per series")
        problems.append(Problem("error", "duplicate", message, volumes))
    problems += found.segments.problems + _unnamed_problems(pairing, found)
    return problems + _unlabelled_problems(found, unlabelled) + _untaken_problems(found)


def _unlabelled_problems(found: VolumeLabels, unlabelled: str) -> list[Problem]:
    """Warn, per volume, about the slices it leaves empty; an empty volume is named so."""
    by_volume: dict[Path, list[str]] = defaultdict(list)
    for key, volume in found.unlabelled:
        by_volume[volume].append(key)
    action = (
        "left out (--unlabelled-slices background trains on them as background)"
        if unlabelled == "skip"
        else "used as background (--unlabelled-slices background)"
    )
    problems = []
    for volume, keys in by_volume.items():
        if volume in found.empty:
            message = (
                f"{volume.name}: the segmentation is empty (none of its segments holds a voxel; "
                f"3D Slicer saves it as a single voxel), its {len(keys)} slice(s) {action}; "
                "paint the segments and save it again, or remove the file"
            )
            problems.append(Problem("warning", "empty_volume", message, (volume,)))
            continue
        message = f"{volume.name}: {len(keys)} slice(s) the volume leaves empty, {action}"
        problems.append(Problem("warning", "unlabelled_slices", message, (volume,)))
    return problems


def _untaken_problems(found: VolumeLabels) -> list[Problem]:
    """Warn about labels on volume planes that no DICOM slice lies on: they are not used, as a
    label map without its DICOM file is not."""
    problems = []
    for volume, planes in found.untaken.items():
        if not planes:
            continue
        where = few_of([f"{'ijk'[axis]} = {index}" for axis, index in planes], shown=8)
        message = (
            _finer_planes_message(volume, len(planes), *found.finer_planes[volume])
            if volume in found.finer_planes
            else f"{volume.name}: {len(planes)} labelled plane(s) ({where}) lie on no DICOM "
            "slice of the series; their labels are not used; add the missing DICOM file(s), or "
            "remove those labels"
        )
        problems.append(Problem("warning", "untaken_planes", message, (volume,)))
    return problems


def _finer_planes_message(volume: Path, count: int, stride: int, spacing: float) -> str:
    """The ``count`` untaken planes of a volume ``stride`` times finer along the normal than its
    series (planes ``spacing`` mm apart): they lie between the slices, no DICOM file is missing."""
    return (
        f"{volume.name}: its planes lie {spacing:.3g} mm apart along the slice normal, the "
        f"series' slices {spacing * stride:.3g} mm ({stride} planes per slice: drawn on a thinner "
        f"reconstruction); only the planes on the slices are used, the labels of {count} "
        "planes between them are not; give the segmentation this series as its reference "
        "geometry (Segment Editor: Specify geometry, oversampling 1) and save it again"
    )
