"""Reading a labelled dataset: every pair checked, label values mapped to ROIs 0..K, samples.

`check_dataset` reads every pair of a `DataSource` and returns a `CheckReport` (what is wrong,
what is usable); `load_samples` returns the samples beside it and raises when the data is unfit
for training. The label scheme (stored value → ROI) is inferred from all label files together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sliceseg.dataset.binary_masks import binary_mask_problems
from sliceseg.dataset.check import CheckReport, find_roi_names, roi_stats
from sliceseg.dataset.label_scheme import given_scheme, infer_scheme
from sliceseg.dataset.laterality import mirrored_side_problems
from sliceseg.dataset.left_out import no_slice_refusal
from sliceseg.dataset.pairing import Pair, Pairing, Sample, frame_map_names, pair_files, slice_key
from sliceseg.dataset.problems import (
    NOT_TRAINED_ON,
    Problem,
    consistency_problems,
    pairing_problems,
    scheme_problems,
    shape_mismatch,
    spacing_problems,
    warning_problems,
)
from sliceseg.dataset.source import DataSource
from sliceseg.dataset.volume_labels import (
    VolumeLabels,
    load_volume_labels,
    merge_pairing,
)
from sliceseg.dataset.volume_report import volume_problems
from sliceseg.errors import ConfigError, DicomReadError, LabelError, PairingError
from sliceseg.io.dicom import Slice, read_slice, read_slices
from sliceseg.io.dicom_files import strip_dicom_suffix
from sliceseg.io.dicom_folder import find_copies
from sliceseg.io.labels import LABEL_SUFFIXES, RawLabel, read_label_file
from sliceseg.io.lossy_labels import snap_lossy
from sliceseg.io.roi_values import LabelScheme
from sliceseg.progress_bars import shows_progress
from sliceseg.thread_warnings import recorded

__all__ = ["check_dataset", "load_samples"]

_PAIRING_KINDS = ("empty", "duplicate", "unreadable_image", "shape_mismatch", "copied_image")


def check_dataset(source: DataSource | Path | str, *, progress: bool = False) -> CheckReport:
    """Pair, read and check a labelled dataset; report what is wrong and what is usable.

    ROI names come from ``source.roi_names``, else a ``labels.txt`` (one name per line) in
    DATA_DIR or beside the label folder, else "ROI 1".."ROI K". Given names also fix K when
    ``source.num_labels`` is None.

    Args:
        source: the dataset; a path is DATA_DIR, holding ``dicoms/`` and ``labels/``
            (`DataSource.from_dirs`).
        progress: show a tqdm bar (only in a terminal or a Jupyter notebook: `shows_progress`).

    Returns:
        The `CheckReport`; ``report.is_trainable`` says whether training can proceed.

    Raises:
        ConfigError: ``labels.txt`` names disagree with ``source.num_labels``, or it is not UTF-8.
        PairingError: a folder does not exist.

    Example:
        >>> print(check_dataset("data/train").to_text())
    """
    return _read_dataset(_as_source(source), progress=progress)[1]


def load_samples(
    source: DataSource | Path | str, *, progress: bool = False
) -> tuple[list[Sample], CheckReport]:
    """Check a dataset and return its samples beside the report, or raise when it is unfit.

    Args:
        source: the dataset, as `check_dataset`.
        progress: show a tqdm bar (only in a terminal or a Jupyter notebook: `shows_progress`).

    Returns:
        (the samples of the good pairs, labels uint8 0..K on the image grid and keyed by
        `slice_key`; the `CheckReport`, whose warnings the caller may show).

    Raises:
        PairingError: no pairs, duplicates, unreadable DICOMs or shape mismatches.
        LabelError: damaged or inconsistent labels.
        (Both: where no slice is usable, "nothing to train on", as `no_slice_refusal` words it
        for ``measure`` and ``evaluate``; else "not fit for training", counts and the first
        errors.)
        ConfigError: as `check_dataset`.

    Example:
        >>> samples, report = load_samples("data/train")
    """
    source = _as_source(source)
    samples, report = _read_dataset(source, progress=progress)
    if report.is_trainable:
        return samples, report
    errors = report.errors
    error_type = PairingError if errors and errors[0].kind in _PAIRING_KINDS else LabelError
    if report.num_samples == 0:  # as measure and evaluate say it (their lines: `check`'s)
        raise error_type(no_slice_refusal("train on", report, source))
    raise error_type(
        f"{source.data_dir or source.labels_dir}: not fit for training ({len(errors)} error(s)): "
        f"{report.summary_line()} Run `{source.check_command}` for the full report."
    )


def load_usable_samples(
    source: DataSource | Path | str, *, progress: bool = False
) -> tuple[list[Sample], CheckReport]:
    """Return the samples of the good pairs beside the report, even when the data is unfit.

    For measuring existing label maps, where one bad file must not stop the rest (a damaged label
    volume, or one unfit for its series, leaves its series out); the report's problems name what
    was left out.

    Args:
        source: the dataset, as `check_dataset`.
        progress: show a tqdm bar (only in a terminal or a Jupyter notebook: `shows_progress`).

    Returns:
        (samples, possibly empty; the `CheckReport`).

    Raises:
        ConfigError, PairingError: as `check_dataset`.

    Example:
        >>> samples, report = load_usable_samples("manual")
    """
    return _read_dataset(_as_source(source), progress=progress, leave_out=True)


def _as_source(source: DataSource | Path | str) -> DataSource:
    return source if isinstance(source, DataSource) else DataSource.from_dirs(source)


def _read_dataset(
    source: DataSource, *, progress: bool, leave_out: bool = False
) -> tuple[list[Sample], CheckReport]:
    """Pair, read and check; ``leave_out``: a damaged or unfit label volume is an error line
    (its series left out), not a LabelError."""
    names, names_source = _given_names(source)
    per_slice = pair_files(source.images_dir, source.labels_dir)
    with recorded() as caught:  # the readers' warnings: a NIfTI's sform and qform disagreeing too
        volumes = _read_volumes(source, per_slice, names, names_source, leave_out=leave_out)
        names, names_source = _with_segment_names(names, names_source, volumes)
        expected_k = _fixed_k(source, names)
        pairing = merge_pairing(per_slice, volumes)
        problems = volumes.unfit + pairing_problems(pairing, source.images_dir, source.labels_dir)
        problems += volume_problems(per_slice, volumes, source.unlabelled_slices)
        claimed = volumes.labelled_images
        slice_pairs = [p for p in per_slice.pairs if p.image_path not in claimed]
        loaded = _load_pairs(slice_pairs, problems, progress=progress) + _volume_items(volumes)
        problems += _unlabelled_frames(slice_pairs, loaded, source.images_dir)
        note = ""
        if names and source.num_labels is None:
            note = f" (K = {len(names)} ROI names in {names_source})"
        raws = [item.raw for item in loaded]
        scheme = given_scheme(source) or infer_scheme(raws, expected_k, problems, note=note)
    problems += warning_problems(caught)
    samples, label_files, value_files, class_sets = (
        _normalise(loaded, scheme, problems, images_dir=source.images_dir)
        if scheme
        else ([], [], {}, {})
    )
    final_names = _final_names(names, scheme.num_labels if scheme else (expected_k or 0))
    if scheme is not None:
        problems += _name_count_problems(names, names_source, scheme)
        problems += _content_problems(class_sets, scheme, final_names, stray=expected_k is None)
        for check in (binary_mask_problems, mirrored_side_problems):  # what the pixels show
            problems += check(samples, label_files, final_names)
        problems += spacing_problems(samples)
    report = CheckReport(
        images_dir=source.images_dir,
        labels_dir=source.labels_dir,
        pairing=pairing,
        num_samples=len(samples),
        scheme=scheme,
        roi_names=final_names,
        roi_stats=roi_stats(samples, scheme, final_names) if scheme else [],
        value_files=value_files,
        problems=problems,
        roi_values_line=volumes.segments.values_line,
    )
    return samples, report


def _given_names(source: DataSource) -> tuple[list[str] | None, str]:
    """The ROI names of ``labels.txt`` (or the source's), refused when they miscount K."""
    names, names_source = find_roi_names(source)
    num_labels = source.num_labels
    if num_labels is not None and names is not None and len(names) != num_labels:
        raise ConfigError(
            f"{names_source}: {len(names)} ROI names but num_labels={num_labels}; give one name "
            "per ROI 1..K."
        )
    return names, names_source


def _with_segment_names(
    names: list[str] | None, names_source: str, volumes: VolumeLabels
) -> tuple[list[str] | None, str]:
    """The given names (and where from), else the label volumes' segment names by value."""
    if names is None and volumes.names_by_value:
        names = [volumes.names_by_value[v] for v in sorted(volumes.names_by_value)]
        names_source = "the segment names of the label volumes"
    return names, names_source


def _fixed_k(source: DataSource, names: list[str] | None) -> int | None:
    """K as the caller fixes it: a model's label values, ``num_labels``, else the names' count;
    None to infer it from the label files."""
    if source.label_values:
        return len(source.label_values) - 1
    if source.num_labels is not None:
        return source.num_labels
    return len(names) if names else None


def _final_names(names: list[str] | None, k: int) -> tuple[str, ...]:
    """The given names when there is one per ROI, else ``ROI 1`` .. ``ROI K``."""
    return tuple(names) if names and len(names) == k else tuple(f"ROI {i + 1}" for i in range(k))


def _name_count_problems(
    names: list[str] | None, names_source: str, scheme: LabelScheme
) -> list[Problem]:
    if names is None or len(names) == (k := scheme.num_labels):
        return []
    message = (
        f"{names_source}: {len(names)} ROI names for {k} ROIs (label values "
        f"{scheme.describe()}); expected one name per ROI 1..{k}; fix the names or the labels."
    )
    return [Problem("error", "roi_names", message)]


def _content_problems(
    class_sets: dict[Path, set[int]], scheme: LabelScheme, names: tuple[str, ...], *, stray: bool
) -> list[Problem]:
    """`consistency_problems`, and a warning naming the per-slice label maps that hold no ROI.

    A blank export (all background) would teach the network that the slice's muscles are
    background, and ``measure`` would give it 0 mm². A label volume's empty slices are left
    out (or kept as background) by ``--unlabelled-slices``, so only label maps (.png, .npy,
    ...) count here; those are left out of the per-ROI comparison, which would name them once
    per ROI.
    """
    empty = tuple(
        p for p, found in class_sets.items() if found == {0} and p.suffix.lower() in LABEL_SUFFIXES
    )
    rest = {p: found for p, found in class_sets.items() if p not in empty}
    problems = consistency_problems(rest, scheme, names, stray=stray)
    if empty:
        message = (
            f"{len(empty)} label map(s) hold no ROI, only background (0): trained as slices "
            "without any ROI, measured as 0 mm²; label the ROIs, or remove the map if the "
            "slice was not labelled"
        )
        problems.append(Problem("warning", "empty_label", message, empty))
    return problems


@dataclass(frozen=True, eq=False)
class _Loaded:
    pair: Pair
    slices: list[Slice]
    raw: RawLabel


def _read_volumes(
    source: DataSource,
    pairing: Pairing,
    names: list[str] | None,
    names_source: str,
    *,
    leave_out: bool,
) -> VolumeLabels:
    """The labels of the label volumes (.seg.nrrd, NIfTI, NRRD, DICOM-SEG) in the label folder.

    ``leave_out``: as `load_volume_labels`'s ``leave_out_unfit``.
    """
    image_paths = [p.image_path for p in pairing.pairs] + pairing.images_without_labels
    return load_volume_labels(
        source.labels_dir,
        source.images_dir,
        sorted(set(image_paths)),
        roi_names=names,
        names_source=names_source or "the ROI names",
        unlabelled=source.unlabelled_slices,
        leave_out_unfit=leave_out,
    )


def _volume_items(volumes: VolumeLabels) -> list[_Loaded]:
    """One item per volume and slice shape: its slices and their planes, stacked like a 3D .npy."""
    groups: dict[tuple[Path, tuple[int, int]], list[int]] = defaultdict(list)
    for index, label in enumerate(volumes.labels):
        groups[(label.volume, label.image.shape)].append(index)
    items = []
    for (volume, _shape), members in groups.items():
        labels = [volumes.labels[i] for i in members]
        values = np.stack([label.values.astype(np.int64) for label in labels])
        pair = Pair(labels[0].key, labels[0].image.source, volume)
        items.append(
            _Loaded(pair, [label.image for label in labels], RawLabel(values, volume, False))
        )
    return items


def _load_pairs(pairs: list[Pair], problems: list[Problem], *, progress: bool) -> list[_Loaded]:
    loaded = []
    disable = not (progress and shows_progress())
    for pair in tqdm(pairs, desc="Checking pairs", unit="pair", disable=disable):
        slices = raw = None
        try:
            slices = _pair_slices(pair)
        except DicomReadError as exc:
            problems.append(Problem("error", "unreadable_image", str(exc), (pair.image_path,)))
        except _MissingFrame as exc:
            paths = (pair.image_path, pair.label_path)
            problems.append(Problem("error", "shape_mismatch", str(exc), paths))
        try:
            raw = read_label_file(pair.label_path)
        except LabelError as exc:
            problems.append(Problem("error", "unreadable_label", str(exc), (pair.label_path,)))
        if slices is None or raw is None:
            continue
        name = strip_dicom_suffix(pair.image_path.name)
        mismatch = shape_mismatch(slices[0].shape, len(slices), raw.values.shape, name=name)
        if mismatch:
            paths = (pair.image_path, pair.label_path)
            problems.append(Problem("error", "shape_mismatch", f"{pair.key}: {mismatch}", paths))
        else:
            loaded.append(_Loaded(pair, slices, raw))
    return _without_copies(loaded, problems)


def _without_copies(loaded: list[_Loaded], problems: list[Problem]) -> list[_Loaded]:
    """Leave out, as an error, a pair whose DICOM file copies another pair's (`find_copies`: a
    folder copied under another name): that slice would be trained on, counted and measured
    twice, and under another folder name it may even sit on both sides of the split."""
    pair_of = {item.pair.image_path: item.pair for item in loaded}
    copies = {c.source: o.source for c, o, _ in find_copies([s for i in loaded for s in i.slices])}
    if copies:
        copy, original = next(iter(copies.items()))
        message = (
            f"{len(copies)} labelled DICOM file(s) hold the same image as another labelled file "
            "(same series, InstanceNumber and position, and the same pixels or SOPInstanceUID; "
            f"e.g. {pair_of[copy].key} is {pair_of[original].key}): each slice would count twice; "
            "expected each slice once; "
            "remove the copies and their label maps"
        )
        paths = tuple(path for c in copies for path in (c, pair_of[c].label_path))
        problems.append(Problem("error", "copied_image", message, paths))
    return [item for item in loaded if item.pair.image_path not in copies]


class _MissingFrame(Exception):
    """A per-frame label map names a frame its DICOM file does not have."""


def _pair_slices(pair: Pair) -> list[Slice]:
    """The slices a pair's label map covers: the file's, or the one frame it is named for.

    Raises:
        DicomReadError: the file cannot be read.
        _MissingFrame: the label map is named for a frame the file lacks (names both).
    """
    if pair.frame is None:
        return read_slices(pair.image_path)
    try:
        return [read_slice(pair.image_path, frame=pair.frame)]
    except ConfigError as exc:  # a frame outside the file's
        frames = len(read_slices(pair.image_path))
        raise _MissingFrame(
            f"{pair.key}: frame {pair.frame} of {pair.image_path.name}, which has {frames} "
            f"frame{'s' if frames > 1 else ''} (0 to {frames - 1}); expected one label map per "
            f"frame named {frame_map_names(strip_dicom_suffix(pair.image_path.name), frames)}; "
            f"rename or remove {pair.label_path.name}."
        ) from exc


def _unlabelled_frames(pairs: list[Pair], loaded: list[_Loaded], images_dir: Path) -> list[Problem]:
    """A warning naming, by slice key, the frames without a label map of a multi-frame file
    labelled frame by frame (``cine_f002`` beside ``cine_f000.png``, ``cine_f001.png``), as
    `pairing_problems` names the DICOM files without one: neither is trained on."""
    labelled: dict[Path, set[int]] = defaultdict(set)
    for pair in pairs:
        if pair.frame is not None:
            labelled[pair.image_path].add(pair.frame)
    framed = {
        item.pair.image_path: item.slices[0] for item in loaded if item.pair.frame is not None
    }
    keys = [
        slice_key(replace(image, frame=frame), images_dir)
        for path, image in framed.items()
        for frame in range(image.num_frames)
        if frame not in labelled[path]
    ]
    if not keys:
        return []
    message = (
        f"{len(keys)} frame(s) of multi-frame DICOM file(s) without a label map named for the "
        f"frame ({NOT_TRAINED_ON})"
    )
    return [Problem("warning", "unmatched_image", message, tuple(images_dir / k for k in keys))]


def _normalise(
    loaded: list[_Loaded], scheme: LabelScheme, problems: list[Problem], *, images_dir: Path
) -> tuple[list[Sample], list[Path], dict[int, int], dict[Path, set[int]]]:
    """The samples, the label file of each, files per stored value, and each file's ROIs."""
    samples: list[Sample] = []
    label_files: list[Path] = []
    value_files: dict[int, int] = defaultdict(int)
    class_sets: dict[Path, set[int]] = {}
    lossy: dict[Path, int] = {}
    for item in loaded:
        values = item.raw.values
        try:
            if item.raw.is_lossy:
                values, lossy[item.raw.source] = snap_lossy(values, scheme, source=item.raw.source)
            classes = scheme.to_classes(values, source=item.raw.source)
        except LabelError as exc:
            problems.append(Problem("error", "label_values", str(exc), (item.raw.source,)))
            continue
        for v in np.unique(values).tolist():
            value_files[int(v)] += 1
        class_sets[item.raw.source] = set(np.unique(classes).tolist())
        frames = classes if classes.ndim == 3 else classes[np.newaxis]
        for image, label in zip(item.slices, frames, strict=True):
            samples.append(Sample(key=slice_key(image, images_dir), image=image, label=label))
            label_files.append(item.raw.source)
    problems += scheme_problems(scheme, lossy)
    return samples, label_files, dict(value_files), class_sets
