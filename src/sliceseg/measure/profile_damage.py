"""Which checks of a training profile its damaged numbers (NaN, infinite) would switch off.

A model file's profile (`sliceseg.measure.familiarity.TrainingProfile`) is plain data, and a
hand-edited or damaged file can hold NaN or infinite numbers where training writes none. A
comparison with NaN is False and one with an infinity always or never true, so the check they
feed would be off (or flag every series) without a word. :func:`damaged_checks` names those
checks; :func:`without_checks` turns exactly them off, as a profile that never learnt them, so
that predict runs with the other checks and says which are off.

Numbers training does write as not finite: a threshold it could not learn is NaN (None in the
file), and an ROI no training slice showed has no position range (``distance_low_mm`` +inf,
``distance_high_mm`` −inf).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from sliceseg.measure.familiarity import TrainingProfile

__all__ = ["CHECK_FIELDS", "damage_in_words", "damaged_checks", "without_checks"]

CHECK_FIELDS: dict[str, tuple[str, ...]] = {
    "deepest-features check": ("feature_mean", "feature_precision", "feature_threshold"),
    "intensity range check": ("intensity_low", "intensity_high", "intensity_std", "intensity_skew"),
    "intensity distance check": (
        "intensity_mean",
        "intensity_precision",
        "intensity_series_threshold",
        "intensity_slice_threshold",
    ),
    "ROI area and position check (and the confidence 0 of a missing expected ROI)": (
        "area_low_mm2",
        "area_high_mm2",
        "presence",
        "distance_low_mm",
        "distance_high_mm",
        "shape_off_validation",
    ),
    "field-of-view check": ("edge_series_threshold", "edge_slice_threshold"),
}
"""Each check of `judge_series` and the profile's numbers it compares with."""

_MAY_BE_NAN = {name for name in TrainingProfile.__dataclass_fields__ if "threshold" in name}
_NO_RANGE = {"distance_low_mm": np.inf, "distance_high_mm": -np.inf}  # of an ROI never shown


def damaged_checks(profile: TrainingProfile) -> dict[str, list[str]]:
    """The checks fed by numbers training never writes (NaN, infinite), each with those fields.

    Example:
        >>> damaged_checks(replace(profile, feature_threshold=float("inf")))
        {'deepest-features check': ['feature_threshold']}
    """
    found: dict[str, list[str]] = {}
    for check, fields in CHECK_FIELDS.items():
        bad = [name for name in fields if _is_damaged(profile, name)]
        if bad:
            found[check] = bad
    return found


def damage_in_words(damaged: dict[str, list[str]]) -> tuple[str, str]:
    """The damaged fields and the checks they switch off, as a message names them.

    Example:
        >>> damage_in_words({"field-of-view check": ["edge_slice_threshold"]})
        ('edge_slice_threshold', 'field-of-view check')
    """
    fields = ", ".join(name for names in damaged.values() for name in names)
    return fields, " and the ".join(damaged)


def without_checks(profile: TrainingProfile, checks: Iterable[str]) -> TrainingProfile:
    """``profile`` with the named checks off: their numbers NaN, which every comparison of
    `judge_series` reads as "not learnt" (a NaN threshold or range flags nothing).

    Example:
        >>> without_checks(profile, ["field-of-view check"]).edge_series_threshold
        nan
    """
    changes: dict[str, object] = {}
    for check in checks:
        for name in CHECK_FIELDS[check]:
            value = getattr(profile, name)
            is_array = isinstance(value, np.ndarray)
            changes[name] = np.full(value.shape, np.nan) if is_array else float("nan")
    return replace(profile, **changes)  # type: ignore[arg-type]


def _is_damaged(profile: TrainingProfile, name: str) -> bool:
    """Whether field ``name`` holds a number training never writes there."""
    value = np.asarray(getattr(profile, name), dtype=np.float64)
    if name in _MAY_BE_NAN:
        return bool(np.isinf(value).any())  # NaN: not learnt, the check is off by design
    if name in _NO_RANGE:  # an infinity only of an ROI no training slice showed, of its sign
        allowed = (value == _NO_RANGE[name]) & (np.asarray(profile.presence) == 0)
        return bool((~np.isfinite(value) & ~allowed).any())
    return not bool(np.isfinite(value).all())
