"""How a labelled dataset's DICOMs pair with its label maps, and the slice keys they pair by.

Files pair by their path relative to ``dicoms/`` and ``labels/`` without suffix, so
``dicoms/p01/slice_1.dcm`` pairs with ``labels/p01/slice_1.png``. A slice is named everywhere
(check, training, predict, measure, evaluate) by `slice_key`: that relative path, plus
``_f003`` for frame 3 of a multi-frame file, exactly as `Slice.name` ends.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sliceseg.dataset.source import ROI_NAMES_FILE, is_roi_names_file
from sliceseg.errors import PairingError
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_files import (
    SkippedFile,
    find_dicom_files,
    natural_key,
    strip_dicom_suffix,
    visible_files,
)
from sliceseg.io.dicom_seg import is_dicom_seg
from sliceseg.io.identity import slice_key
from sliceseg.io.labels import LABEL_SUFFIXES
from sliceseg.io.seg_nrrd import detached_data_file
from sliceseg.io.volumes import is_volume_name

__all__ = [
    "Pair",
    "Pairing",
    "Sample",
    "duplicate_finding",
    "duplicate_message",
    "frame_map_names",
    "image_key",
    "label_key",
    "likely_images",
    "near_misses",
    "pair_files",
    "slice_key",
]


@dataclass(frozen=True)
class Pair:
    """A DICOM file and its label map; ``key`` is the relative path without suffix, '/'-joined.

    ``frame``: the one frame of a multi-frame file the label map holds, when it is named as
    `slice_key` names that frame (``cine_f003.png`` for frame 3 of ``cine.dcm``, as ``predict``
    writes them); None when it labels the whole file.
    """

    key: str
    image_path: Path
    label_path: Path
    frame: int | None = None


@dataclass(frozen=True)
class Pairing:
    """The result of `pair_files`.

    Attributes:
        pairs: matched files, naturally sorted by key.
        images_without_labels: DICOM files with no label map of the same key.
        labels_without_images: label maps with no DICOM of the same key.
        skipped: non-DICOM files in the image folder, non-label files in the label folder.
        duplicates: files sharing one key inside a folder (``slice_1.png`` + ``slice_1.npy``),
            or label maps naming one frame (``cine_f001.png`` + ``cine_f0001.png``); they are
            not paired.
    """

    pairs: list[Pair]
    images_without_labels: list[Path]
    labels_without_images: list[Path]
    skipped: list[SkippedFile]
    duplicates: list[tuple[Path, ...]] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class Sample:
    """A slice and its label map on the same grid.

    Attributes:
        key: the slice's `slice_key` under the image folder (``p01/cine_f002`` for frame 2 of
            ``dicoms/p01/cine.dcm``).
        image: the DICOM slice.
        label: (rows, cols) uint8 class map 0..K on the image's grid.
    """

    key: str
    image: Slice
    label: np.ndarray


def pair_files(images_dir: Path, labels_dir: Path) -> Pairing:
    """Pair DICOM files with label maps by relative path without suffix.

    Image keys drop only a DICOM suffix (.dcm, .dicom, .ima, any case); files without one keep
    their full name. Label keys drop the label suffix (.npy, .png, .tif, .tiff, .jpg, .jpeg);
    ``cine_f003.png`` pairs with frame 3 of ``cine.dcm`` when no label map is named ``cine``;
    label volumes (.seg.nrrd, .nrrd, .nii, .nii.gz, DICOM-SEG; a .seg.nhdr with its data file)
    are left to `sliceseg.dataset.volume_labels`; other files in the label folder are skipped
    with a reason. Hidden files are ignored.

    Args:
        images_dir: folder of DICOM files (nested patient folders allowed).
        labels_dir: folder of label maps mirroring ``images_dir``.

    Returns:
        The `Pairing`.

    Raises:
        PairingError: a folder does not exist.

    Example:
        >>> [p.key for p in pair_files(Path("d/dicoms"), Path("d/labels")).pairs]
        ['p01/slice_1', 'p01/slice_2']
    """
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    # A label folder inside the DICOM folder (or the same folder) holds the other side's files:
    # neither side's are "skipped" by the other.
    image_paths, skipped = find_dicom_files(images_dir, exclude=labels_dir)
    if not labels_dir.is_dir():
        raise PairingError(f"{labels_dir}: folder does not exist; check the path to the labels.")
    label_files = visible_files(labels_dir)
    data_files = _volume_data_files(label_files)
    is_shared = labels_dir.resolve() == images_dir.resolve()
    if is_shared:
        skipped = [  # a label file, a volume's data, ROI names: the label side says what they are
            s
            for s in skipped
            if not _is_label_name(s.path.name)
            and s.path not in data_files
            and not is_roi_names_file(s.path)
        ]
    # In one folder a stray file (notes.txt) is already skipped as no DICOM: list it once.
    known = (set(image_paths) if is_shared else set()) | {s.path for s in skipped} | data_files
    images: dict[str, list[Path]] = defaultdict(list)
    for path in image_paths:
        images[image_key(path, images_dir)].append(path)
    labels, not_labels = _label_maps(label_files, labels_dir, known)
    skipped += not_labels
    duplicates = [tuple(v) for d in (images, labels) for v in d.values() if len(v) > 1]
    single_images = {k: v[0] for k, v in images.items() if len(v) == 1}
    single_labels = {k: v[0] for k, v in labels.items() if len(v) == 1}
    keys = single_images.keys() & single_labels.keys()
    all_framed = _frame_pairs(single_images, single_labels, set(labels))
    framed_images, framed_keys = {p.image_path for p in all_framed}, {p.key for p in all_framed}
    framed, frame_duplicates = _one_label_per_frame(all_framed)
    return Pairing(
        pairs=sorted(
            [Pair(k, single_images[k], single_labels[k]) for k in keys] + framed,
            key=lambda pair: natural_key(pair.key),
        ),
        images_without_labels=[
            p for k, p in single_images.items() if k not in labels and p not in framed_images
        ],
        labels_without_images=[
            p for k, p in single_labels.items() if k not in images and k not in framed_keys
        ],
        skipped=skipped,
        duplicates=duplicates + frame_duplicates,
    )


def _volume_data_files(paths: Sequence[Path]) -> set[Path]:
    """The data files that detached NRRD headers (3D Slicer's .seg.nhdr) among ``paths`` name:
    part of their label volume, not stray files."""
    found = (detached_data_file(p) for p in paths if p.name.lower().endswith(".nhdr"))
    return {Path(os.path.normpath(data)) for data in found if data is not None}


def _label_maps(
    paths: Sequence[Path], labels_dir: Path, known: set[Path]
) -> tuple[dict[str, list[Path]], list[SkippedFile]]:
    """The label maps among a label folder's files by key, and its other files skipped with a
    reason; ``known`` files (the image side's, a volume's data files) are neither."""
    labels: dict[str, list[Path]] = defaultdict(list)
    skipped = []
    for path in paths:
        if path.suffix.lower() in LABEL_SUFFIXES:
            labels[label_key(path, labels_dir)].append(path)
        elif path in known:
            continue
        elif is_volume_name(path.name) or is_dicom_seg(path):
            continue  # paired per series by sliceseg.dataset.volume_labels
        else:
            skipped.append(SkippedFile(path, _not_a_label_map(path, labels_dir)))
    return labels, skipped


def _not_a_label_map(path: Path, labels_dir: Path) -> str:
    """Why a file of the label folder is skipped; ROI names there get where they are read."""
    if is_roi_names_file(path):
        beside = labels_dir.parent / ROI_NAMES_FILE
        fix = (
            f"the names are read from {beside}; remove this one"
            if beside.is_file()
            else f"move it to {beside}"
        )
        return (
            f"ROI names inside the label folder are not read; expected {ROI_NAMES_FILE} beside "
            f"the label folder; {fix}"
        )
    valid = ", ".join(LABEL_SUFFIXES)
    return f"not a label map: suffix '{path.suffix}' is not one of {valid}"


def _is_label_name(name: str) -> bool:
    """A label map's or label volume's file name (by suffix)."""
    return Path(name).suffix.lower() in LABEL_SUFFIXES or is_volume_name(name)


def duplicate_finding(shared: Sequence[Path]) -> str:
    """What files of `Pairing.duplicates` share: a name in one folder, or one frame.

    Example:
        >>> duplicate_finding((Path("l/s1.png"), Path("l/s1.npy")))
        "2 files share the name 's1' in one folder"
    """
    names = {strip_dicom_suffix(path.stem) for path in shared}
    if len(names) == 1:
        return f"{len(shared)} files share the name '{names.pop()}' in one folder"
    return f"{len(shared)} label maps name the same frame of one DICOM file"


def duplicate_message(found: str, paths: Sequence[Path], expected: str) -> str:
    """The one wording for files that each claim the same slice or series, so none is used:
    two label maps of one slice (`Pairing.duplicates`), two label volumes of one series.

    Example:
        >>> duplicate_message("2 label volumes for the series 'p01'", paths, "one per series")
        "2 label volumes for the series 'p01' (p01.nii.gz, p01.seg.nrrd); expected one per ..."
    """
    files = ", ".join(path.name for path in paths)
    return (
        f"{found} ({files}); expected {expected}; keep one of them (delete or rename the others)."
    )


_FRAME_KEY = re.compile(r"(.+)_f(\d{3,})")
"""A frame's slice key: the file's key, ``_f`` and the frame number (``p01/cine_f003``)."""


def frame_map_names(name: str, frames: int) -> str:
    """The names of a multi-frame DICOM file's per-frame label maps, first to last, as
    `_FRAME_KEY` reads them (``name``: the file's name without suffix).

    Example:
        >>> frame_map_names("cine", 3)
        'cine_f000 .. cine_f002'
    """
    return f"{name}_f000 .. {name}_f{frames - 1:03d}"


def _frame_pairs(
    images: dict[str, Path], labels: dict[str, Path], label_keys: set[str]
) -> list[Pair]:
    """Label maps named for one frame of a DICOM file (``cine_f003`` → ``cine``, frame 3).

    Only where no DICOM file has the label map's own name and no label map (``label_keys``:
    every label key) labels the file whole.
    """
    pairs = []
    for key, label in labels.items():
        match = _FRAME_KEY.fullmatch(key)
        if key in images or match is None or match[1] not in images or match[1] in label_keys:
            continue
        pairs.append(Pair(key, images[match[1]], label, frame=int(match[2])))
    return pairs


def _one_label_per_frame(framed: list[Pair]) -> tuple[list[Pair], list[tuple[Path, ...]]]:
    """The frame pairs, and the label maps that name one frame twice (``cine_f001.png`` beside
    ``cine_f0001.png``): none of those is used, as with two label maps of one slice."""
    by_frame: dict[tuple[Path, int | None], list[Pair]] = defaultdict(list)
    for pair in framed:
        by_frame[(pair.image_path, pair.frame)].append(pair)
    kept = [pairs[0] for pairs in by_frame.values() if len(pairs) == 1]
    shared = [
        tuple(sorted((p.label_path for p in pairs), key=lambda x: (natural_key(x.name), x.name)))
        for pairs in by_frame.values()
        if len(pairs) > 1
    ]
    return kept, shared


LABEL_ENDINGS = ("_label", "_labels", "_mask", "_seg", "_gt", "-label", "-mask", "-seg", "_roi")
"""Endings label tools add to a slice's name (``s01_mask.png`` for ``s01.dcm``)."""


def near_misses(pairing: Pairing, images: Path, labels: Path) -> list[tuple[Path, str]]:
    """Unmatched label maps that would pair with an unmatched DICOM but for the letter case of
    their path, an ending such as ``_mask`` (`LABEL_ENDINGS`), the DICOM's suffix kept
    (``s01.dcm.png``), or one folder more on either side (``labels/export/p01/s01.png`` for
    ``dicoms/p01/s01.dcm``).

    Returns:
        (label map, the key it should have: the DICOM's `image_key`) per near miss.

    Example:
        >>> near_misses(pairing, Path("dicoms"), Path("labels"))
        [(PosixPath('labels/S01_mask.png'), 's01')]
    """

    def loose(key: str) -> str:
        key = key.lower()
        ending = next((e for e in LABEL_ENDINGS if key.endswith(e)), "")
        # s01.dcm.png: the DICOM's whole file name with .png added
        return strip_dicom_suffix(key.removesuffix(ending) if ending else key)

    def deeper(key: str) -> str:
        return key.split("/", 1)[-1]

    # Only one side one folder deeper: p01/s0.png must not be offered p02/s0.dcm.
    same: dict[str, str] = {}
    shallower: dict[str, str] = {}
    for image in pairing.images_without_labels:
        key = image_key(image, images)
        same.setdefault(loose(key), key)
        shallower.setdefault(loose(deeper(key)), key)
    found = []
    for label in pairing.labels_without_images:
        key = loose(label_key(label, labels))
        match = same.get(key) or same.get(deeper(key)) or shallower.get(key)
        if match is not None:
            found.append((label, match))
    return found


TYPO_CUTOFF = 0.8
"""The least `difflib` ratio of a label map's key to a DICOM's for `likely_images`."""
# DICOMs compared per label map, and in all: bound the cost in 100,000-file folders (about a
# second a 100,000 comparisons); past them no DICOM is named
_MAX_CANDIDATES, _MAX_COMPARISONS = 200, 200_000
_LOOKALIKE = re.compile(r"(?<=\d)[lo]|[lo](?=\d)")  # a letter typed for a digit: img00l2


def likely_images(
    pairing: Pairing, images: Path, labels: Path, *, leave_out: Sequence[Path] = ()
) -> list[tuple[Path, Path]]:
    """Unmatched label maps whose path looks mistyped from one unlabelled DICOM's: a letter
    for a digit (``img00l2``), a character left out, added or swapped, ``p1`` for ``p01``.

    Only DICOMs without a label map whose path holds the same numbers (``l`` and ``o`` beside
    a digit read as 1 and 0, leading zeros dropped) are compared: the next slice's DICOM
    (img0013 for img0012) or another patient's (p02/img0012) is never offered. The best
    `difflib` ratio of the keys (lower case) must reach `TYPO_CUTOFF` and beat every other
    DICOM's, else no DICOM is named.

    Args:
        leave_out: label maps already explained (`near_misses`).

    Returns:
        (label map, the DICOM it likely labels) per label map, in the pairing's order.

    Example:
        >>> likely_images(pairing, Path("dicoms"), Path("labels"))
        [(PosixPath('labels/p01/img0012.npy'), PosixPath('dicoms/p01/img00l2.dcm'))]
    """
    # by the numbers, and by the numbers and folder (tried where the first holds too many)
    by_numbers: dict[tuple[object, ...], list[tuple[str, Path]]] = defaultdict(list)
    for image in pairing.images_without_labels:
        key = _typed(image_key(image, images))
        by_numbers[_numbers(key)].append((key, image))
        by_numbers[_numbers_in_folder(key)].append((key, image))
    found, compared, explained = [], 0, set(leave_out)
    for label in (p for p in pairing.labels_without_images if p not in explained):
        key = _typed(label_key(label, labels))
        candidates = by_numbers.get(_numbers(key), [])
        if len(candidates) > _MAX_CANDIDATES:
            candidates = by_numbers.get(_numbers_in_folder(key), [])
        if len(candidates) > _MAX_CANDIDATES:
            continue
        compared += len(candidates)
        if compared > _MAX_COMPARISONS:
            break
        best = _unique_best(key, candidates)
        if best is not None:
            found.append((label, best))
    return found


def _typed(key: str) -> str:
    """A key as `likely_images` compares it: lower case, an l or o beside a digit a 1 or 0."""
    return _LOOKALIKE.sub(lambda m: "1" if m[0] == "l" else "0", key.lower())


def _numbers(key: str) -> tuple[int, ...]:
    """The numbers in a key, folders too (``p01/img0012`` -> (1, 12)): a patient's number."""
    return tuple(int(n) for n in re.findall(r"\d+", key))


def _numbers_in_folder(key: str) -> tuple[object, ...]:
    """`_numbers` and the key's folder: the DICOMs of one folder with those numbers."""
    folder = key.rpartition("/")[0]
    return (*_numbers(key), folder)


def _unique_best(key: str, candidates: list[tuple[str, Path]]) -> Path | None:
    """The candidate whose key is closest to ``key`` by `difflib`, when it reaches
    `TYPO_CUTOFF` and no other is as close."""
    matcher = difflib.SequenceMatcher(b=key, autojunk=False)
    scores = []
    for other, path in candidates:
        matcher.set_seq1(other)
        if matcher.real_quick_ratio() >= TYPO_CUTOFF and matcher.quick_ratio() >= TYPO_CUTOFF:
            scores.append((matcher.ratio(), path))
    scores.sort(key=lambda score: score[0], reverse=True)
    if (
        not scores
        or scores[0][0] < TYPO_CUTOFF
        or (len(scores) > 1 and scores[1][0] == scores[0][0])
    ):
        return None
    return scores[0][1]


def image_key(path: Path, root: Path) -> str:
    """A DICOM file's pairing key: its path below ``root`` without a DICOM suffix.

    Example:
        >>> image_key(Path("d/dicoms/p01/s1.dcm"), Path("d/dicoms"))
        'p01/s1'
    """
    return path.parent.relative_to(root).joinpath(strip_dicom_suffix(path.name)).as_posix()


def label_key(path: Path, root: Path) -> str:
    """A label map's pairing key: its path below ``root`` without its suffix.

    Example:
        >>> label_key(Path("d/labels/p01/s1.png"), Path("d/labels"))
        'p01/s1'
    """
    return path.parent.relative_to(root).joinpath(path.stem).as_posix()
