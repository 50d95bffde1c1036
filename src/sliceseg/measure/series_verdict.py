"""Judge a series against the training profile: a `Verdict`, flagged or not, with its reasons.

`judge_series` compares one series with the profile (`sliceseg.measure.familiarity`) and
returns a :class:`Verdict`: flagged or not, and the reasons in words. A series is judged as a
whole (medians and shares over its slices), so one odd slice does not flag it;
`slice_oddness` scores the single slices it judges over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sliceseg.measure.familiarity import (
    EDGE_MARGIN,
    TrainingProfile,
    excess_over_training,
    quantile_skew,
    slice_oddness,
)
from sliceseg.measure.slice_traits import SliceTraits

__all__ = ["Verdict", "judge_series"]

INTENSITY_MARGIN = 3.0
"""A series' median quantile may pass the training range by this many training std."""
SHAPE_SHARE = 0.5
"""A series is flagged for areas / positions when more than this share of slices is off."""
_MIN_SERIES_SLICES = 3
"""Slices a series needs for its median intensity distance to meet the series threshold."""


@dataclass(frozen=True)
class Verdict:
    """Whether a series is unlike the training data, and why.

    Attributes:
        is_flagged: True when any check failed.
        reasons: one phrase per failed check, e.g. "ROI areas outside the trained range
            (left psoas major)".
    """

    is_flagged: bool
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        """The reasons joined into one line ("" when not flagged)."""
        return "; ".join(self.reasons)


def judge_series(
    profile: TrainingProfile, traits: Sequence[SliceTraits], roi_names: Sequence[str]
) -> Verdict:
    """Judge one series: unlike the training data when its median feature distance passes the
    threshold, its intensities are further from training than every training series was from
    the others (or its median intensity quantiles leave the training range by more than
    :data:`INTENSITY_MARGIN` std), or more of its slices than :data:`SHAPE_SHARE` (and than
    on the validation slices) have an ROI whose area or position is outside the trained range
    (or an ROI that no training slice showed: "never seen in training").

    Example:
        >>> judge_series(profile, traits, ["vertebral body"]).describe()  # doctest: +SKIP
        'intensity quantiles far outside training (inverted contrast?)'
    """
    if not traits:
        return Verdict(False)
    odd = slice_oddness(profile, traits)
    reasons = []
    if np.isfinite(odd.feature_ratio).any() and np.nanmedian(odd.feature_ratio) > 1:
        distance = np.nanmedian(odd.feature_ratio) * profile.feature_threshold
        reasons.append(
            f"the network's deepest features are far from training (distance {distance:.0f}, "
            f"training ≤ {profile.feature_threshold:.0f})"
        )
    intensity = [t.intensity for t in traits if t.intensity.size]
    if intensity:
        reasons += _intensity_reasons(profile, np.stack(intensity))
    reasons += _edge_reasons(profile, np.array([t.edge for t in traits]))
    limits = np.maximum(SHAPE_SHARE, _validation_shares(profile))
    unseen = np.asarray(profile.presence) <= 0  # no trained range: every area of it is off
    for what, off in (("areas", odd.area_off), ("positions", odd.distance_off)):
        shares = off.mean(axis=0)
        off_rois = (shares > limits) & ~unseen
        rois = [name for k, name in enumerate(roi_names) if off_rois[k]]
        if rois:
            reasons.append(f"ROI {what} outside the trained range ({', '.join(rois)})")
    shares = odd.area_off.mean(axis=0)  # of an unseen ROI: the slices that show it
    rois = [name for k, name in enumerate(roi_names) if unseen[k] and shares[k] > limits[k]]
    if rois:
        reasons.append(f"ROI never seen in training found on most slices ({', '.join(rois)})")
    return Verdict(bool(reasons), tuple(reasons))


def _edge_reasons(profile: TrainingProfile, edge: np.ndarray) -> list[str]:
    """The field-of-view check: the series' median `body_at_edges` against training's."""
    edge = edge[np.isfinite(edge)]
    if not len(edge):
        return []
    limit = _limit(len(edge), profile.edge_series_threshold, profile.edge_slice_threshold)
    median = float(np.median(edge))
    if median > limit:  # False when not learnt (NaN)
        return [
            f"the body reaches the image's edge (field of view cut? {median:.0%} of a side, "
            f"training ≤ {limit - EDGE_MARGIN:.0%})"
        ]
    return []


def _is_series(slices: int) -> bool:
    """Whether the median over ``slices`` is a series' median (:data:`_MIN_SERIES_SLICES` on)."""
    return slices >= _MIN_SERIES_SLICES


def _limit(slices: int, series_threshold: float, slice_threshold: float) -> float:
    """A learnt threshold for a series of ``slices``: the series one when its median is a
    series' (`_is_series`), else the single-slice one."""
    return series_threshold if _is_series(slices) else slice_threshold


def _validation_shares(profile: TrainingProfile) -> np.ndarray:
    """Per ROI the share of validation slices the model's own prediction had off (0: unknown)."""
    k = len(profile.presence)
    shares = profile.shape_off_validation
    return shares if shares.shape == (k,) else np.zeros(k)


def _intensity_reasons(profile: TrainingProfile, intensity: np.ndarray) -> list[str]:
    """The intensity check of a series' ``(slices, quantiles)``: its range, then its distance."""
    median = np.median(intensity, axis=0)
    skew = float(quantile_skew(median[None])[0])
    inverted = " (inverted contrast?)" * (skew * profile.intensity_skew < 0 and abs(skew) > 0.2)
    if excess_over_training(profile, median[None]).max() > INTENSITY_MARGIN:
        return ["intensity quantiles far outside training" + inverted]
    distance = profile.intensity_distance(intensity)
    is_series = _is_series(len(intensity))
    limit = _limit(
        len(intensity), profile.intensity_series_threshold, profile.intensity_slice_threshold
    )
    if distance > limit:  # False when not learnt (NaN)
        return [
            f"intensities unlike every training {'series' if is_series else 'slice'} "
            f"(distance {distance:.1f}, training ≤ {limit:.1f}){inverted}"
        ]
    return []
