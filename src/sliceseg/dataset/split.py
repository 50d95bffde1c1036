"""The training / validation split by patient, so that no patient sits on both sides."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from sliceseg.dataset.pairing import Sample
from sliceseg.errors import ConfigError
from sliceseg.io.dicom_files import natural_key
from sliceseg.io.identity import series_key, series_name_key
from sliceseg.wording import few_of

__all__ = [
    "LEVEL_BANDS",
    "SPLIT_CHOICES",
    "held_out_series",
    "held_out_text",
    "hold_out_levels",
    "patient_group",
    "patient_groups",
    "relative_levels",
    "split_by_patient",
]

SPLIT_CHOICES = ("patient", "levels")
"""The ``validation_split`` setting: "patient" (whole patients held out) or "levels" (whole
patients held out, and on them only levels that no training slice shows; `hold_out_levels`)."""

LEVEL_BANDS = ((0.1267, 0.2067), (0.46, 0.54), (0.7933, 0.8733))
"""Held-out bands of the relative level (0 = a patient's lowest slice position, 1 = highest):
three bands 0.08 wide centred at 1/6, 1/2 and 5/6 (a quarter of the range together), spread
over it as a benchmark's held-out test levels are (between training levels, not at the ends)."""

MIN_LEVELS = 3
"""A patient with fewer distinct slice positions is kept whole on its side (one L3 slice per
patient has no levels to hold out)."""

_ONE_GROUP = {
    "patient": "one PatientID",
    "folder": "one sub-folder",
    "series": "one series",
    "": "no PatientID, sub-folder or series",
}


def patient_group(sample: Sample) -> str:
    """Return the group a sample is split with: its patient, else its subject folder, else series.

    The group is (0010,0020) PatientID when the file has one, else the first folder of the key
    (``p01`` for ``p01/ct/slice_1``), else (0020,000E) SeriesInstanceUID, else "". The PatientID
    is used in memory only, never written. The kind is prefixed (``patient:``, ``folder:``,
    ``series:``) so that a folder named like a PatientID stays a group of its own.

    Example:
        >>> patient_group(sample)  # a slice of dicoms/p01/slice_1.dcm without PatientID
        'folder:p01'
    """
    if sample.image.patient_id:
        return f"patient:{sample.image.patient_id}"
    return _place(sample)


def _place(sample: Sample) -> str:
    """The group a sample would have without its PatientID: its folder, series, or ""."""
    if "/" in sample.key:
        return f"folder:{sample.key.split('/', 1)[0]}"
    if sample.image.series_uid:
        return f"series:{sample.image.series_uid}"
    return ""


def patient_groups(samples: Sequence[Sample]) -> list[str]:
    """Each sample's `patient_group`, where a slice without PatientID joins the one PatientID
    the other slices of its folder (else its series) carry, so that a patient some of whose
    files lost the PatientID stays one group.

    Example:
        >>> patient_groups([sample_with_id_p7, sample_without_id_in_the_same_folder])
        ['patient:P7', 'patient:P7']
    """
    own = [patient_group(s) for s in samples]
    ids_at: dict[str, set[str]] = {}
    for sample, group in zip(samples, own, strict=True):
        if sample.image.patient_id:
            ids_at.setdefault(_place(sample), set()).add(group)
    joined = []
    for sample, group in zip(samples, own, strict=True):
        ids = ids_at.get(group, set()) if group and not sample.image.patient_id else set()
        joined.append(next(iter(ids)) if len(ids) == 1 else group)
    return joined


def split_by_patient(
    samples: Sequence[Sample], *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation by patient, never by slice or series.

    Groups are `patient_groups`: two series of one patient are always on the same side.
    round(fraction × groups) groups go to validation, at least one when there are two or more
    groups and the fraction is > 0, never all. With one group, validation is empty and a
    ``UserWarning`` says so. Deterministic for a seed; sample order is kept on each side.

    Args:
        samples: the samples to split.
        validation_fraction: share of groups for validation, in [0, 1).
        seed: seed of the group shuffle.

    Returns:
        (training samples, validation samples).

    Raises:
        ConfigError: ``validation_fraction`` outside [0, 1).

    Example:
        >>> train, val = split_by_patient(samples, validation_fraction=0.2, seed=0)
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ConfigError(
            f"validation_fraction={validation_fraction}: expected a share in [0, 1), e.g. 0.2."
        )
    group_of = patient_groups(samples)
    groups = sorted(set(group_of), key=lambda g: (natural_key(g), g))  # p1 / p01: one order
    if len(groups) == 1:
        why = _ONE_GROUP[groups[0].split(":", 1)[0]]
        warnings.warn(
            f"all {len(samples)} samples look like one patient ({why}); the validation set is "
            "empty; put each patient in their own sub-folder (or keep PatientID) to validate.",
            UserWarning,
            stacklevel=2,
        )
    num_val = round(validation_fraction * len(groups))
    if len(groups) >= 2 and validation_fraction > 0:
        num_val = min(max(1, num_val), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    val_groups = {groups[i] for i in order[:num_val]} if len(groups) >= 2 else set()
    train = [s for s, g in zip(samples, group_of, strict=True) if g not in val_groups]
    return train, [s for s, g in zip(samples, group_of, strict=True) if g in val_groups]


def relative_levels(samples: Sequence[Sample]) -> list[float | None]:
    """Each sample's level within its patient: 0 at the patient's lowest position (projected
    (0020,0032) ImagePositionPatient, else (0020,1041) SliceLocation), 1 at the highest.

    None for a slice without a position, or of a patient with fewer than `MIN_LEVELS`
    distinct positions.

    Example:
        >>> relative_levels(samples)  # one patient at 10, 20 and 50 mm
        [0.0, 0.25, 1.0]
    """
    groups = patient_groups(samples)
    spans: dict[str, list[float]] = {}
    for sample, group in zip(samples, groups, strict=True):
        if sample.image.position_mm is not None:
            spans.setdefault(group, []).append(float(sample.image.position_mm))
    levels: list[float | None] = []
    for sample, group in zip(samples, groups, strict=True):
        positions = spans.get(group, [])
        z = sample.image.position_mm
        if z is None or len(set(positions)) < MIN_LEVELS:
            levels.append(None)
            continue
        low, high = min(positions), max(positions)
        levels.append((float(z) - low) / (high - low))
    return levels


def hold_out_levels(
    train: Sequence[Sample], validation: Sequence[Sample]
) -> tuple[list[Sample], list[Sample]]:
    """Make validation look like a test on unseen levels: keep the validation patients' slices
    in the `LEVEL_BANDS` and drop the training patients' slices there.

    Patients stay on their side (no patient on both); one whose levels are unknown or too few
    (`relative_levels` None) is kept whole, and a validation slice without a position of a
    patient with levels is left out. When no validation slice lies in a band, the patient split
    is returned unchanged.

    Args:
        train: the training patients' samples (`split_by_patient`).
        validation: the validation patients' samples.

    Returns:
        (training samples, validation samples), each in the order given.
    """

    def in_band(level: float | None) -> bool:
        return level is not None and any(low <= level <= high for low, high in LEVEL_BANDS)

    val_levels = relative_levels(validation)
    groups = patient_groups(validation)
    has_levels = {g for g, lev in zip(groups, val_levels, strict=True) if lev is not None}
    kept_val = [  # a slice without position of a patient with levels may show any level
        s
        for s, g, lev in zip(validation, groups, val_levels, strict=True)
        if in_band(lev) or (lev is None and g not in has_levels)
    ]
    if not any(in_band(lev) for lev in val_levels):
        return list(train), list(validation)
    train_levels = relative_levels(train)
    kept_train = [s for s, lev in zip(train, train_levels, strict=True) if not in_band(lev)]
    return kept_train, kept_val


def held_out_series(
    validation: Sequence[Sample], names: Mapping[str, str]
) -> tuple[tuple[str, int], ...]:
    """Name the series validation holds out, each with its number of slices, in the one series
    order (`series_name_key`).

    A series (`series_key`: (0020,000E) SeriesInstanceUID, else its folder) is named as the
    tables of `sliceseg predict` name it: ``names`` is
    `sliceseg.io.series_plan.planned_series_names` of the training slices, over every series
    of their DICOM folder (``p2/ct`` → ``p2_ct``; two series of one folder ``p01`` and
    ``p01_2``, an unlabelled one counted; the DICOM folder's own series by its name). The
    PatientID the split may go by is never used (sliceseg does not write it).

    Example:
        >>> held_out_series(validation, names)  # sub03's three slices, one series
        (('sub03', 3),)
    """
    counts: dict[str, int] = {}
    for sample in validation:
        key = series_key(sample.image)
        counts[key] = counts.get(key, 0) + 1
    named = [(names[key], count) for key, count in counts.items()]
    return tuple(sorted(named, key=lambda pair: series_name_key(pair[0])))


def held_out_text(series: Sequence[tuple[str, int]], *, shown: int | None = None) -> str:
    """Say which series validation holds out: their count and slices, then each name with its
    slices (the first ``shown`` of them and how many more; None: all).

    Example:
        >>> held_out_text([("sub01", 3), ("sub03", 2), ("sub04", 3)], shown=2)
        '3 series (8 slices): sub01 (3 slices), sub03 (2 slices) and 1 more'
    """
    if not series:
        return "none (no series held out for validation)"
    names = few_of(
        [f"{name} ({_slices(n)})" for name, n in series],
        shown=len(series) if shown is None else shown,
    )
    return f"{len(series)} series ({_slices(sum(n for _, n in series))}): {names}"


def _slices(count: int) -> str:
    return f"{count} slice{'' if count == 1 else 's'}"
