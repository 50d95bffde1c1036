"""The training / validation split by patient, so that no patient sits on both sides."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from sliceseg.data.pairing import Sample
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import natural_key

__all__ = ["patient_group", "split_by_patient"]

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
    if "/" in sample.key:
        return f"folder:{sample.key.split('/', 1)[0]}"
    if sample.image.series_uid:
        return f"series:{sample.image.series_uid}"
    return ""


def split_by_patient(
    samples: Sequence[Sample], *, validation_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split samples into training and validation by patient, never by slice or series.

    Groups are `patient_group`: two series of one patient are always on the same side.
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
    group_of = [patient_group(s) for s in samples]
    groups = sorted(set(group_of), key=natural_key)
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
