"""The dataset check's findings: `Problem`, and the finders that turn the data into them.

Each finder returns `Problem`s of one line each (what was found, expected, what to do);
`check_dataset` (in `sliceseg.dataset.samples`) gathers them into the `CheckReport` of
`sliceseg.dataset.check`, which words them for the command that asked (`reworded`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sliceseg.dataset.pairing import (
    Pairing,
    Sample,
    duplicate_finding,
    duplicate_message,
    frame_map_names,
    image_key,
    label_key,
    likely_images,
    near_misses,
)
from sliceseg.dataset.source import is_roi_names_file
from sliceseg.io.dicom_files import SkippedFile
from sliceseg.io.dicom_headers import MALFORMED_SPACING_SOURCE
from sliceseg.io.labels import LABEL_SUFFIXES
from sliceseg.io.roi_values import NUM_LABELS_OPTION, LabelScheme
from sliceseg.wording import few_of

if TYPE_CHECKING:
    import warnings


@dataclass(frozen=True)
class Problem:
    """One finding of `check_dataset`; errors make the data unfit, warnings do not, notes are
    for the record (a notes file beside the data: nothing to fix).

    Attributes:
        severity: "error", "warning" or "note".
        kind: e.g. "unmatched_image", "shape_mismatch", "stray_value", "lossy_label".
        message: one line: what was found, what was expected, what to do.
        paths: the files concerned.
    """

    severity: str
    kind: str
    message: str
    paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Unmatched:
    """The files left unpaired, each once as what it is: the ``Unmatched:`` line counts these
    lists and ``--json`` gives them.

    Attributes:
        images_without_labels: DICOM files without a label map.
        labels_without_images: label maps without a DICOM file (none whose DICOM is there).
        labels_of_unreadable_images: label map -> its DICOM file, there but skipped (empty, not
            DICOM): neither a label without a DICOM nor, its DICOM, one more skipped file.
        skipped: the other files skipped.
    """

    images_without_labels: list[Path]
    labels_without_images: list[Path]
    labels_of_unreadable_images: dict[Path, SkippedFile]
    skipped: list[SkippedFile]


def unmatched_files(pairing: Pairing, images: Path, labels: Path) -> Unmatched:
    """The pairing's unpaired files, each once as what it is (see `Unmatched`).

    Example:
        >>> unmatched_files(pairing, Path("dicoms"), Path("labels")).labels_without_images
        [PosixPath('labels/p01/s3.png')]
    """
    unreadable = labels_of_skipped_images(pairing, images, labels)
    their_images = {item.path for item in unreadable.values()}
    return Unmatched(
        images_without_labels=list(pairing.images_without_labels),
        labels_without_images=[p for p in pairing.labels_without_images if p not in unreadable],
        labels_of_unreadable_images=unreadable,
        skipped=[item for item in pairing.skipped if item.path not in their_images],
    )


def near_miss_problems(pairing: Pairing, images: Path, labels: Path) -> list[Problem]:
    """One warning naming the label maps `near_misses` finds, with the first one's rename.

    Example:
        >>> near_miss_problems(pairing, Path("dicoms"), Path("labels"))[0].message
        '1 label map(s) would pair with a DICOM but for ... (e.g. S01_mask.png → s01.png)'
    """
    found = near_misses(pairing, images, labels)
    if not found:
        return []
    label, key = found[0]
    example = f"{label.relative_to(labels).as_posix()} → {key}{label.suffix}"
    message = (
        f"{len(found)} label map(s) would pair with a DICOM but for their path's letter case, "
        "an ending such as _mask, or one folder more (left out); name each as its DICOM is "
        f"named, at the same path below the label folder (e.g. {example})"
    )
    return [Problem("warning", "near_miss", message, tuple(label for label, _ in found))]


def pairing_problems(pairing: Pairing, images: Path, labels: Path) -> list[Problem]:
    """Report duplicates, label maps of skipped DICOM files and an empty pairing (errors);
    unmatched and skipped files (warnings)."""
    problems = []
    for shared in pairing.duplicates:
        message = duplicate_message(duplicate_finding(shared), shared, "one file per slice")
        problems.append(Problem("error", "duplicate", message, tuple(shared)))
    found = unmatched_files(pairing, images, labels)
    unreadable = found.labels_of_unreadable_images
    problems += _unreadable_image_problems(unreadable, images)
    # the rename line names these: each label map on one line
    explained = {label for label, _ in near_misses(pairing, images, labels)}
    typos = likely_images(pairing, images, labels, leave_out=[*explained, *unreadable])
    for kind, paths, what, use in (
        (
            "unmatched_image",
            pairing.images_without_labels,
            "DICOM file(s) without a label map",
            NOT_TRAINED_ON,
        ),
        (
            "unmatched_label",
            [p for p in found.labels_without_images if p not in explained],
            "label map(s) without a DICOM file",
            "left out; name each as its DICOM is named" + _typo_hint(typos, images, labels),
        ),
    ):
        if paths:
            message = f"{len(paths)} {what} of the same relative name ({use})"
            problems.append(Problem("warning", kind, message, tuple(paths)))
    problems += _skipped_problems(found.skipped)
    problems += near_miss_problems(pairing, images, labels)
    if not pairing.pairs:
        # the folders as given (DATA_DIR's, or --images / --labels, or measure's LABELS_DIR and
        # --dicoms): a layout one command does not have would send the user looking for it
        message = (
            f"no DICOM file in {images} pairs with a label map in {labels}; expected "
            f"{images / '<name>.dcm'} beside {labels / '<name>.png'} (same relative path)."
        )
        problems.append(Problem("error", "empty", message))
    return problems


SIDECAR_SUFFIXES = frozenset(
    {".txt", ".csv", ".tsv", ".json", ".md", ".rtf", ".doc", ".docx", ".odt", ".xls", ".xlsx"}
    | {".ods", ".pdf", ".log", ".xml", ".yaml", ".yml", ".ini", ".html", ".htm", ".py", ".ipynb"}
    | {".mrml"}  # a 3D Slicer scene saved beside its segmentations
)
"""Suffixes of the notes, tables and scripts users keep beside their data: never an image."""


def _skipped_problems(skipped: list[SkippedFile]) -> list[Problem]:
    """One warning per reason files were skipped (a .bmp label map, a damaged DICOM; not the
    DICOMs of `Unmatched.labels_of_unreadable_images`); the notes and tables among them
    (`SIDECAR_SUFFIXES`) are one note: nothing to fix."""
    by_reason: dict[str, list[Path]] = defaultdict(list)
    sidecars = []
    for item in skipped:
        # a labels.txt in the wrong folder keeps its own warning: its names are not used
        if item.path.suffix.lower() in SIDECAR_SUFFIXES and not is_roi_names_file(item.path):
            sidecars.append(item.path)
        else:
            by_reason[item.reason].append(item.path)
    problems = [
        Problem("warning", "skipped", f"{len(paths)} file(s) skipped: {reason}", tuple(paths))
        for reason, paths in by_reason.items()
    ]
    if sidecars:
        message = f"{len(sidecars)} text or table file(s) left out (not images)"
        problems.append(Problem("note", "sidecar", message, tuple(sidecars)))
    return problems


def _typo_hint(typos: list[tuple[Path, Path]], images: Path, labels: Path) -> str:
    """``; did you mean <DICOM> for <label map>, ...?`` for `likely_images`' finds; "" for none."""
    if not typos:
        return ""
    named = [
        f"{image.relative_to(images).as_posix()} for {label.relative_to(labels).as_posix()}"
        for label, image in typos
    ]
    return f"; did you mean {few_of(named)}?"


def labels_of_skipped_images(
    pairing: Pairing, images: Path, labels: Path
) -> dict[Path, SkippedFile]:
    """The label maps without a DICOM whose DICOM file is there but was skipped (empty, not
    DICOM): label map -> its skipped file. Such a slice was labelled to be used, as one whose
    DICOM cannot be decoded: an error naming both files, not a label without a DICOM.

    Example:
        >>> labels_of_skipped_images(pairing, Path("dicoms"), Path("labels"))
        {PosixPath('labels/p01/s2.png'): SkippedFile(path=PosixPath('dicoms/p01/s2.dcm'), ...)}
    """
    by_key = {
        image_key(item.path, images): item
        for item in pairing.skipped
        if item.path.is_relative_to(images) and item.path.suffix.lower() not in LABEL_SUFFIXES
    }
    found = {label: by_key.get(label_key(label, labels)) for label in pairing.labels_without_images}
    return {label: item for label, item in found.items() if item is not None}


def _unreadable_image_problems(unreadable: dict[Path, SkippedFile], images: Path) -> list[Problem]:
    """One error per skip reason naming each skipped DICOM file and its label map."""
    by_reason: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    for label, item in unreadable.items():
        by_reason[item.reason].append((item.path, label))
    problems = []
    for reason, files in by_reason.items():
        example = files[0][0].relative_to(images).as_posix()
        message = (
            f"{len(files)} label map(s) whose file in the DICOM folder is {reason}, e.g. "
            f"{example}: the slice is left out; copy the DICOM file again from the scanner or "
            "PACS, or remove its label map"
        )
        paths = tuple(path for pair in files for path in pair)
        problems.append(Problem("error", "unreadable_image", message, paths))
    return problems


def shape_mismatch(
    image_shape: tuple[int, int], num_frames: int, label_shape: tuple[int, ...], *, name: str = ""
) -> str:
    """Return why a label of ``label_shape`` does not fit the image, or "" when it does.

    A single-frame image takes a (rows, cols) or (1, rows, cols) label; a multi-frame image
    takes (frames, rows, cols), or one map per frame named ``<name>_f000`` ... (``name``: the
    DICOM's name without suffix).
    """
    rows, cols = image_shape
    if num_frames == 1 and label_shape in ((rows, cols), (1, rows, cols)):
        return ""
    if label_shape == (num_frames, rows, cols):
        return ""
    image = f"{num_frames} frames of {rows}×{cols}" if num_frames > 1 else f"{rows}×{cols}"
    expected = f"a ({num_frames}, {rows}, {cols}) .npy, one map per frame"
    hint = " (it looks transposed)" if label_shape == (cols, rows) else ""
    fix = "re-export the label on the DICOM's own grid."
    if num_frames > 1 and label_shape[-2:] == (rows, cols):  # the grid is right, the frames not
        fix = f"or save each frame's map as {frame_map_names(name, num_frames)}."
    return (
        f"image is {image} but the label is {'×'.join(map(str, label_shape))}{hint}; expected "
        f"{expected if num_frames > 1 else image}; {fix}"
    )


def scheme_problems(scheme: LabelScheme, lossy: dict[Path, int]) -> list[Problem]:
    """Warn about JPEG labels (``lossy`` maps file -> pixels snapped) and display-scaled values."""
    problems: list[Problem] = []
    if lossy:
        message = (
            f"{len(lossy)} JPEG label map(s): {sum(lossy.values())} pixels snapped to the nearest "
            "label value; JPEG blurs edges: save labels as PNG or NPY."
        )
        problems.append(Problem("warning", "lossy_label", message, tuple(lossy)))
    if scheme.is_display_scaled:
        mapping = ", ".join(f"{v}→{k}" for k, v in enumerate(scheme.stored_values))
        message = (
            f"label values {scheme.describe()} look saved for viewing; mapped in order: {mapping}."
        )
        problems.append(Problem("warning", "display_scaled", message))
    return problems


def consistency_problems(
    class_sets: dict[Path, set[int]], scheme: LabelScheme, names: tuple[str, ...], *, stray: bool
) -> list[Problem]:
    """Compare the ROIs present in each label file with the rest of the dataset.

    With ``stray`` (K not given by the user), an ROI above every common ROI that only a small
    minority of files hold (at most max(1, 5 %) of them, and fewer than half) is an error: a
    stray value such as 7 in one file when the others hold 0..6. An ROI that 90 % or more of the
    files hold is a warning for the files lacking it; an ROI in no file is a warning.

    Args:
        class_sets: label file -> the class indices (0..K) it contains.
        scheme: the dataset's scheme.
        names: names of ROIs 1..K.
        stray: look for stray values.
    """
    problems: list[Problem] = []
    total = len(class_sets)
    holders = {k: [p for p, s in class_sets.items() if k in s] for k in range(1, len(names) + 1)}
    few = max(1, total // 20)
    minority = {k for k, p in holders.items() if p and len(p) <= few and 2 * len(p) < total}
    top_common = max((k for k, p in holders.items() if p and k not in minority), default=0)
    for k, paths in holders.items():
        value, name = scheme.stored_values[k], names[k - 1]
        if stray and k in minority and k > top_common:
            message = (
                f"value {value} ({name}) appears in only {len(paths)} of {total} label files "
                f"while the others hold at most {scheme.stored_values[top_common]}; fix those "
                f"pixels, or set {NUM_LABELS_OPTION} to {k} if it is a real ROI."
            )
            problems.append(Problem("error", "stray_value", message, tuple(paths)))
        elif not paths:
            message = f"{name} (value {value}) appears in no label file."
            problems.append(Problem("warning", "absent_roi", message))
        elif 10 * len(paths) >= 9 * total and len(paths) < total:
            lacking = tuple(p for p, s in class_sets.items() if k not in s)
            message = (
                f"inconsistent labelling: {name} (value {value}) is in {len(paths)} of {total} "
                f"label files but missing from {len(lacking)}"
            )
            problems.append(Problem("warning", "missing_roi", message, lacking))
    return problems


NOT_TRAINED_ON = "not trained on; a --context-slices run reads them as neighbours"
"""What `check` / `train` say of DICOMs without a label map (`problem_lines` rewords it)."""
_IN_PIXELS = "their areas are in pixels."
_FROM_FOV = "their spacing is field of view / matrix (--fov, --matrix): their areas are in mm²."


def spacing_problems(samples: list[Sample]) -> list[Problem]:
    """Warn about slices without pixel spacing (their areas are counted in pixels); one whose
    (0028,0030) PixelSpacing is there but malformed is not called absent."""
    without = [s for s in samples if s.image.spacing_mm is None]
    if not without:
        return []
    malformed = sum(s.image.spacing_source == MALFORMED_SPACING_SOURCE for s in without)
    what = "no pixel spacing ((0028,0030) PixelSpacing)"
    if malformed:
        what = (
            "a malformed pixel spacing ((0028,0030) PixelSpacing not two positive numbers)"
            if malformed == len(without)
            else f"no pixel spacing ((0028,0030) PixelSpacing; malformed in {malformed} of them)"
        )
    message = f"{len(without)} of {len(samples)} slices have {what}; {_IN_PIXELS}"
    paths = tuple(dict.fromkeys(s.image.source for s in without))
    return [Problem("warning", "no_spacing", message, paths)]


def warning_problems(caught: list[warnings.WarningMessage]) -> list[Problem]:
    """Turn the warnings raised while reading files into report warnings (duplicates dropped)."""
    messages = dict.fromkeys(" ".join(str(w.message).split()) for w in caught)
    return [Problem("warning", "reader", m) for m in messages]


def reworded(problem: Problem, *, fov_given: bool, unlabelled_use: str) -> str:
    """Return ``problem``'s message as a command words it (see `CheckReport.problem_lines`)."""
    if fov_given and problem.kind == "no_spacing":
        return problem.message.replace(_IN_PIXELS, _FROM_FOV)
    if unlabelled_use and problem.kind == "unmatched_image":
        return problem.message.replace(NOT_TRAINED_ON, unlabelled_use)
    return problem.message
