"""Pairing DICOM slices with label maps, checking the pairs, and splitting samples by series.

Files pair by their path relative to ``dicoms/`` and ``labels/`` without suffix, so
``dicoms/p01/slice_1.dcm`` pairs with ``labels/p01/slice_1.png``. `check_dataset` reads every
pair and returns a `CheckReport` (what is wrong, what is usable); `load_samples` raises when the
data is unfit.
"""

from __future__ import annotations

import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sliceseg.data.check import (
    CheckReport,
    Problem,
    RoiStat,
    consistency_problems,
    find_roi_names,
    pairing_problems,
    roi_stats,
    scheme_problems,
    shape_mismatch,
    spacing_problems,
    warning_problems,
)
from sliceseg.errors import ConfigError, DicomReadError, LabelError, PairingError
from sliceseg.io.dicom import (
    SkippedFile,
    Slice,
    find_dicom_files,
    natural_key,
    read_slices,
    strip_dicom_suffix,
    visible_files,
)
from sliceseg.io.labels import (
    LABEL_SUFFIXES,
    LabelScheme,
    RawLabel,
    dominant_values,
    infer_label_scheme,
    read_label_file,
    snap_lossy,
)

__all__ = [
    "CheckReport",
    "Pair",
    "Pairing",
    "Problem",
    "RoiStat",
    "Sample",
    "check_dataset",
    "load_samples",
    "pair_files",
    "resolve_data_dirs",
    "split_by_series",
]

_PAIRING_KINDS = ("empty", "duplicate", "unreadable_image", "shape_mismatch")


@dataclass(frozen=True)
class Pair:
    """A DICOM file and its label map; ``key`` is the relative path without suffix, '/'-joined."""

    key: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class Pairing:
    """The result of `pair_files`.

    Attributes:
        pairs: matched files, naturally sorted by key.
        images_without_labels: DICOM files with no label map of the same key.
        labels_without_images: label maps with no DICOM of the same key.
        skipped: non-DICOM files in the image folder, non-label files in the label folder.
        duplicates: files sharing one key inside a folder (``slice_1.png`` + ``slice_1.npy``);
            they are not paired.
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
        key: the pair's key; ``<key>#f<frame>`` for a frame of a multi-frame DICOM.
        image: the DICOM slice.
        label: (rows, cols) uint8 class map 0..K on the image's grid.
    """

    key: str
    image: Slice
    label: np.ndarray


def resolve_data_dirs(
    data_dir: Path | str | None,
    *,
    images_dir: Path | str | None = None,
    labels_dir: Path | str | None = None,
) -> tuple[Path, Path]:
    """Return the (images, labels) folders: ``DATA_DIR/dicoms`` and ``DATA_DIR/labels`` by default.

    Args:
        data_dir: the folder holding ``dicoms/`` and ``labels/``; may be None when both
            ``images_dir`` and ``labels_dir`` are given.
        images_dir: overrides ``DATA_DIR/dicoms``.
        labels_dir: overrides ``DATA_DIR/labels``.

    Returns:
        (images folder, labels folder).

    Raises:
        ConfigError: neither ``data_dir`` nor both overrides are given.
        PairingError: a folder does not exist (the message lists the folders that do).

    Example:
        >>> resolve_data_dirs(Path("data/train"))
        (PosixPath('data/train/dicoms'), PosixPath('data/train/labels'))
    """
    if data_dir is None and (images_dir is None or labels_dir is None):
        raise ConfigError(
            "no data folder: give DATA_DIR (holding dicoms/ and labels/), or both images_dir "
            "and labels_dir."
        )
    root = Path(data_dir or ".")
    images = Path(images_dir) if images_dir is not None else root / "dicoms"
    labels = Path(labels_dir) if labels_dir is not None else root / "labels"
    for folder, role in ((images, "DICOM"), (labels, "label")):
        if not folder.is_dir():
            parent = folder.parent
            found = (
                sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
            )
            raise PairingError(
                f"{folder}: {role} folder does not exist (folders in {folder.parent}: "
                f"{', '.join(found) or 'none'}); expected DATA_DIR/dicoms/ and DATA_DIR/labels/, "
                "or pass images_dir / labels_dir (--images / --labels)."
            )
    return images, labels


def pair_files(images_dir: Path, labels_dir: Path) -> Pairing:
    """Pair DICOM files with label maps by relative path without suffix.

    Image keys drop only a DICOM suffix (.dcm, .dicom, .ima, any case); files without one keep
    their full name. Label keys drop the label suffix (.npy, .png, .tif, .tiff, .jpg, .jpeg);
    other files in the label folder are skipped with a reason. Hidden files are ignored.

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
    image_paths, skipped = find_dicom_files(images_dir)
    if not labels_dir.is_dir():
        raise PairingError(f"{labels_dir}: folder does not exist; check the path to the labels.")
    images: dict[str, list[Path]] = defaultdict(list)
    for path in image_paths:
        images[_key(path, images_dir, strip_dicom_suffix(path.name))].append(path)
    labels: dict[str, list[Path]] = defaultdict(list)
    for path in visible_files(labels_dir):
        if path.suffix.lower() in LABEL_SUFFIXES:
            labels[_key(path, labels_dir, path.stem)].append(path)
        else:
            valid = ", ".join(LABEL_SUFFIXES)
            reason = f"not a label map: suffix '{path.suffix}' is not one of {valid}"
            skipped.append(SkippedFile(path, reason))
    duplicates = [tuple(v) for d in (images, labels) for v in d.values() if len(v) > 1]
    single_images = {k: v[0] for k, v in images.items() if len(v) == 1}
    single_labels = {k: v[0] for k, v in labels.items() if len(v) == 1}
    keys = sorted(single_images.keys() & single_labels.keys(), key=natural_key)
    return Pairing(
        pairs=[Pair(k, single_images[k], single_labels[k]) for k in keys],
        images_without_labels=[p for k, p in single_images.items() if k not in labels],
        labels_without_images=[p for k, p in single_labels.items() if k not in images],
        skipped=skipped,
        duplicates=duplicates,
    )


def check_dataset(
    data_dir: Path | str | None = None,
    *,
    images_dir: Path | str | None = None,
    labels_dir: Path | str | None = None,
    num_labels: int | None = None,
    roi_names: Sequence[str] | None = None,
    progress: bool = False,
) -> CheckReport:
    """Pair, read and check a labelled dataset; report what is wrong and what is usable.

    ROI names come from ``roi_names``, else a ``labels.txt`` (one name per line) in DATA_DIR or
    beside the label folder, else "ROI 1".."ROI K". Given names also fix K when ``num_labels``
    is None.

    Args:
        data_dir: folder holding ``dicoms/`` and ``labels/``.
        images_dir: overrides ``DATA_DIR/dicoms``.
        labels_dir: overrides ``DATA_DIR/labels``.
        num_labels: K, the number of ROIs, when known (checked against the data).
        roi_names: names of ROIs 1..K.
        progress: show a tqdm bar (only when stderr is a terminal).

    Returns:
        The `CheckReport`; ``report.is_trainable`` says whether training can proceed.

    Raises:
        ConfigError: no folder given, or ``num_labels`` < 1.
        PairingError: a folder does not exist.

    Example:
        >>> print(check_dataset(Path("data/train")).to_text())
    """
    images, labels = resolve_data_dirs(data_dir, images_dir=images_dir, labels_dir=labels_dir)
    names, names_source = find_roi_names(roi_names, data_dir, labels)
    if num_labels is not None and names is not None and len(names) != num_labels:
        raise ConfigError(
            f"{names_source}: {len(names)} ROI names but num_labels={num_labels}; give one name "
            "per ROI 1..K."
        )
    expected_k = num_labels if num_labels is not None else (len(names) if names else None)
    pairing = pair_files(images, labels)
    problems = pairing_problems(pairing, images, labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _load_pairs(pairing.pairs, problems, progress=progress)
        note = (
            f" (K = {len(names)} ROI names in {names_source})"
            if names and num_labels is None
            else ""
        )
        scheme = _infer_scheme(loaded, expected_k, problems, note=note)
    problems += warning_problems(caught)
    samples, value_files, class_sets = (
        _normalise(loaded, scheme, problems) if scheme else ([], {}, {})
    )
    k = scheme.num_labels if scheme else (expected_k or 0)
    final_names = (
        tuple(names) if names and len(names) == k else tuple(f"ROI {i + 1}" for i in range(k))
    )
    if names is not None and scheme is not None and len(names) != k:
        problems.append(
            Problem(
                "error",
                "roi_names",
                f"{names_source}: {len(names)} ROI names "
                f"for {k} ROIs (label values {scheme.describe()}); expected one "
                f"name per ROI 1..{k}; fix the names or the labels.",
            )
        )
    if scheme is not None:
        problems += consistency_problems(class_sets, scheme, final_names, stray=expected_k is None)
        problems += spacing_problems(samples)
    return CheckReport(
        images_dir=images,
        labels_dir=labels,
        pairing=pairing,
        samples=samples,
        scheme=scheme,
        roi_names=final_names,
        roi_stats=roi_stats(samples, scheme, final_names) if scheme else [],
        value_files=value_files,
        problems=problems,
    )


def load_samples(
    data_dir: Path | str | None = None,
    *,
    images_dir: Path | str | None = None,
    labels_dir: Path | str | None = None,
    num_labels: int | None = None,
    roi_names: Sequence[str] | None = None,
    progress: bool = False,
) -> list[Sample]:
    """Check a dataset and return its samples, or raise when it is unfit for training.

    Args:
        data_dir, images_dir, labels_dir, num_labels, roi_names, progress: as `check_dataset`.

    Returns:
        The samples of the good pairs (labels uint8 0..K on the image grid).

    Raises:
        PairingError: no pairs, duplicates, unreadable DICOMs or shape mismatches.
        LabelError: damaged or inconsistent labels.
        ConfigError: as `check_dataset`.

    Example:
        >>> samples = load_samples(Path("data/train"))
    """
    report = check_dataset(
        data_dir,
        images_dir=images_dir,
        labels_dir=labels_dir,
        num_labels=num_labels,
        roi_names=roi_names,
        progress=progress,
    )
    if report.is_trainable:
        return report.samples
    errors = report.errors
    command = (
        f"sliceseg check {data_dir}"
        if data_dir
        else (f"sliceseg check --images {report.images_dir} --labels {report.labels_dir}")
    )
    error_type = PairingError if errors and errors[0].kind in _PAIRING_KINDS else LabelError
    raise error_type(
        f"{data_dir or report.labels_dir}: not fit for training ({len(errors)} error(s)): "
        f"{report.summary_line()} Run `{command}` for the full report."
    )


def split_by_series(
    samples: Sequence[Sample], *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation by series, never by slice.

    A group is the SeriesInstanceUID, else the sub-folder of the key (``p01`` for
    ``p01/slice_1``). round(fraction × groups) groups go to validation, at least one when there
    are two or more groups and the fraction is > 0, never all. With one group, validation is empty
    and a ``UserWarning`` says so. Deterministic for a seed; sample order is kept on each side.

    Args:
        samples: the samples to split.
        validation_fraction: share of groups for validation, in [0, 1).
        seed: seed of the group shuffle.

    Returns:
        (training samples, validation samples).

    Raises:
        ConfigError: ``validation_fraction`` outside [0, 1).

    Example:
        >>> train, val = split_by_series(samples, validation_fraction=0.2, seed=0)
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(
            f"validation_fraction={validation_fraction}: expected a share in [0, 1), e.g. 0.2."
        )
    groups = sorted({_group(s) for s in samples}, key=natural_key)
    if len(groups) == 1:
        warnings.warn(
            f"all {len(samples)} samples belong to one series ({groups[0] or 'no sub-folder'}); "
            "the validation set is empty; put each subject in its own sub-folder to validate.",
            UserWarning,
            stacklevel=2,
        )
    num_val = round(validation_fraction * len(groups))
    if len(groups) >= 2 and validation_fraction > 0:
        num_val = min(max(1, num_val), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:num_val]} if len(groups) >= 2 else set()
    train = [s for s in samples if _group(s) not in val_groups]
    return train, [s for s in samples if _group(s) in val_groups]


@dataclass(frozen=True, eq=False)
class _Loaded:
    pair: Pair
    slices: list[Slice]
    raw: RawLabel


def _key(path: Path, root: Path, name: str) -> str:
    return path.parent.relative_to(root).joinpath(name).as_posix()


def _group(sample: Sample) -> str:
    return sample.image.series_uid or (sample.key.rsplit("/", 1)[0] if "/" in sample.key else "")


def _load_pairs(pairs: list[Pair], problems: list[Problem], *, progress: bool) -> list[_Loaded]:
    loaded = []
    disable = not (progress and sys.stderr.isatty())
    for pair in tqdm(pairs, desc="Checking pairs", unit="pair", disable=disable):
        slices = raw = None
        try:
            slices = read_slices(pair.image_path)
        except DicomReadError as exc:
            problems.append(Problem("error", "unreadable_image", str(exc), (pair.image_path,)))
        try:
            raw = read_label_file(pair.label_path)
        except LabelError as exc:
            problems.append(Problem("error", "unreadable_label", str(exc), (pair.label_path,)))
        if slices is None or raw is None:
            continue
        mismatch = shape_mismatch(slices[0].shape, len(slices), raw.values.shape)
        if mismatch:
            paths = (pair.image_path, pair.label_path)
            problems.append(Problem("error", "shape_mismatch", f"{pair.key}: {mismatch}", paths))
        else:
            loaded.append(_Loaded(pair, slices, raw))
    return loaded


def _infer_scheme(
    loaded: list[_Loaded], num_labels: int | None, problems: list[Problem], *, note: str
) -> LabelScheme | None:
    lossless = [item.raw for item in loaded if not item.raw.is_lossy]
    raws = lossless or [item.raw for item in loaded]
    if not raws:
        return None
    sets = [
        set(np.unique(r.values).tolist()) if not r.is_lossy else dominant_values(r.values)
        for r in raws
    ]
    if not lossless:
        message = (
            "no lossless (PNG/NPY/TIFF) label map: the label values were guessed from the JPEG "
            "files; save labels as PNG or NPY, or pass num_labels."
        )
        problems.append(Problem("warning", "lossy_only", message, tuple(r.source for r in raws)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return infer_label_scheme(sets, num_labels=num_labels)
    except LabelError as exc:
        # A few files with stray values must not hide the rest of the report: infer the scheme
        # from the files without them; those files then fail one by one in _normalise.
        common = _scheme_without_rare_values(sets, num_labels)
        if common is not None:
            return common
        by_value: dict[int, list[Path]] = defaultdict(list)
        for raw, values in zip(raws, sets, strict=True):
            for v in values:
                by_value[v].append(raw.source)
        detail = "; ".join(f"{v}: {_count_or_names(p)}" for v, p in sorted(by_value.items()))
        message = f"{exc}{note} Files per value: {detail}."
        problems.append(Problem("error", "label_scheme", message))
        return None


def _scheme_without_rare_values(sets: list[set[int]], num_labels: int | None) -> LabelScheme | None:
    counts: dict[int, int] = defaultdict(int)
    for values in sets:
        for v in values:
            counts[v] += 1
    rare = {v for v, n in counts.items() if n <= max(1, len(sets) // 10)}
    kept = [values for values in sets if not values & rare]
    if not rare or not kept:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return infer_label_scheme(kept, num_labels=num_labels)
    except LabelError:
        return None


def _count_or_names(paths: list[Path]) -> str:
    names = [f"{p.parent.name}/{p.name}" for p in paths]
    return ", ".join(names) if len(paths) <= 3 else f"{len(paths)} files"


def _normalise(
    loaded: list[_Loaded], scheme: LabelScheme, problems: list[Problem]
) -> tuple[list[Sample], dict[int, int], dict[Path, set[int]]]:
    samples: list[Sample] = []
    value_files: dict[int, int] = defaultdict(int)
    class_sets: dict[Path, set[int]] = {}
    lossy: dict[Path, int] = {}
    for item in loaded:
        values = item.raw.values
        if item.raw.is_lossy:
            values, lossy[item.raw.source] = snap_lossy(values, scheme)
        try:
            classes = scheme.to_classes(values, source=item.raw.source)
        except LabelError as exc:
            problems.append(Problem("error", "label_values", str(exc), (item.raw.source,)))
            continue
        for v in np.unique(values).tolist():
            value_files[int(v)] += 1
        class_sets[item.raw.source] = set(np.unique(classes).tolist())
        frames = classes if classes.ndim == 3 else classes[np.newaxis]
        for image, label in zip(item.slices, frames, strict=True):
            key = item.pair.key if len(item.slices) == 1 else f"{item.pair.key}#f{image.frame}"
            samples.append(Sample(key=key, image=image, label=label))
    problems += scheme_problems(scheme, lossy)
    return samples, dict(value_files), class_sets
