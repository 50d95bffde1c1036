"""What the training slices looked like to the model: a compact profile, and each slice's oddness.

The profile (:class:`TrainingProfile`, plain data in the model file) holds what the training
slices looked like to the model: the quantiles of their normalised intensities, each ROI's
area (mm²) and its distance from the centre of all ROIs (mm, orientation-free), how often each
ROI is present, and the statistics of the network's deepest features (mean and a covariance
shrunk towards its diagonal, so that the Mahalanobis distance of a slice measures how unlike
the training slices the network found it, as distance-based out-of-distribution detectors do).
A slice's features are its deepest map averaged over its body (:data:`BODY_POOLING`), so that
how much background a scanner frames around the body does not move them; profiles before
version 5 averaged over the whole slice (:data:`SLICE_POOLING`) and keep doing so.
The feature distance's threshold is a high quantile of the distances of slices the fit did
not see (the validation slices, and training slices each left out of it), with a margin; two
training slices and no validation slice leave none (one slice left out is no fit), so the
feature check is off rather than held to the training slices' own distances (which flagged
every series).

Two thresholds are learnt from the training data itself rather than fixed:

- the intensity histogram's: a slice's quantiles have a Mahalanobis distance from those of the
  training slices; a series' distance is the median over its slices. Each training series in
  turn is left out of the fit and measured like a new one; the largest of those distances is
  the threshold (a series is flagged when it is further from training than every training
  series was from the others). Needs three training series (`series_key`: SeriesInstanceUID,
  else the folder, so a flat folder of several series counts them all). A median of one
  or two slices is no series' median: such short series are held to the largest distance of
  any single left-out training slice instead;
- the field of view's: a slice's share of body along its most covered image edge
  (:func:`body_at_edges`); the threshold is the largest median of a training series (one or two
  slices: of a training slice), plus :data:`EDGE_MARGIN`, so a series whose field of view cuts
  the body more than any training series' did is flagged;
- the area and position check's, per ROI: the share of the validation slices on which the
  model's *own* predicted ROI was off. A series is flagged for an ROI only when more of its
  slices are off than `series_verdict.SHAPE_SHARE` and than on the validation slices, so an
  ROI the model gets wrong on data like its training data does not flag every series.

:func:`slice_oddness` scores single slices against the profile, for ranking and for the
verdict on a whole series (`sliceseg.measure.series_verdict.judge_series`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, replace
from typing import Any

import numpy as np

from sliceseg.measure.feature_pooling import BODY_POOLING, SLICE_POOLING, checked_pooling
from sliceseg.measure.slice_traits import INTENSITY_QUANTILES, SliceTraits

__all__ = [
    "PROFILE_VERSION",
    "TrainingProfile",
    "build_profile",
    "excess_over_training",
    "quantile_skew",
    "slice_oddness",
]

PROFILE_VERSION = 5
FEATURE_QUANTILE, FEATURE_MARGIN = 0.99, 1.5
"""The feature threshold: ``FEATURE_MARGIN`` × this quantile of the reference distances."""
_AREA_FACTOR = 1.5
"""An ROI's area is out of range below min / factor or above max × factor of training."""
_DISTANCE_MARGIN_MM = 15.0
"""An ROI's distance from the centre of all ROIs may pass the training range by this much."""
MIN_REFERENCE, MAX_LEFT_OUT = 5, 64
"""Validation slices the feature threshold needs; fewer: training slices are left out of the
fit in turn (at most this many, evenly spread) and measured like new ones."""
MIN_SERIES = 3
"""Training series needed to learn the intensity distance's threshold (leaving each out)."""
EDGE_MARGIN = 0.1
"""A series may cover an image edge with body by this share of a side more than any training
series (`body_at_edges`)."""
ALWAYS_PRESENT = 0.95
"""An ROI on at least this share of the training slices is expected on every slice: missing, it
is off (`slice_oddness`) and its confidence is 0 (`inference.confidence`)."""


@dataclass(frozen=True)
class TrainingProfile:
    """What the training slices looked like to the model (see the module's docstring)."""

    feature_mean: np.ndarray
    feature_precision: np.ndarray
    feature_threshold: float
    intensity_low: np.ndarray
    intensity_high: np.ndarray
    intensity_std: np.ndarray
    intensity_skew: float
    area_low_mm2: np.ndarray
    area_high_mm2: np.ndarray
    presence: np.ndarray
    distance_low_mm: np.ndarray
    distance_high_mm: np.ndarray
    num_slices: int
    intensity_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intensity_precision: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    intensity_series_threshold: float = float("nan")
    intensity_slice_threshold: float = float("nan")
    shape_off_validation: np.ndarray = field(default_factory=lambda: np.zeros(0))
    edge_series_threshold: float = float("nan")
    edge_slice_threshold: float = float("nan")
    num_series: int = 0  # training series (`series_key`); 0: not known (before version 4)
    feature_pooling: str = SLICE_POOLING  # what the features are averaged over (version 5 on)

    @property
    def always_present(self) -> np.ndarray:
        """Per ROI, True where the training slices (nearly) always showed it."""
        return np.asarray(self.presence) >= ALWAYS_PRESENT

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and numbers) for the model file."""
        data: dict[str, Any] = {"version": PROFILE_VERSION}
        for name, value in vars(self).items():
            if isinstance(value, float) and np.isnan(value):
                value = None  # not learnt; plain data has no NaN
            data[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingProfile:
        """Rebuild from :meth:`to_dict` (a version-1 profile lacks the learnt thresholds, a
        version-2 one the edge check's: those checks are off; before version 4 the number of
        series is not known: 0; before version 5 the features were averaged over the whole
        slice); KeyError / ValueError when malformed."""
        scalars: dict[str, Callable[[Any], Any]] = {
            "feature_threshold": float,
            "intensity_skew": float,
            "num_slices": int,
            "intensity_series_threshold": float,
            "intensity_slice_threshold": float,
            "edge_series_threshold": float,
            "edge_slice_threshold": float,
            "num_series": int,
            "feature_pooling": checked_pooling,
        }
        values: dict[str, Any] = {}
        for name, spec in cls.__dataclass_fields__.items():
            has_default = spec.default is not MISSING or spec.default_factory is not MISSING
            if name not in data and has_default:
                continue  # an older profile: the check it would serve is off
            kind = scalars.get(name)
            value = float("nan") if data[name] is None and kind is float else data[name]
            values[name] = kind(value) if kind else np.asarray(value, dtype=np.float64)
        return cls(**values)

    def feature_distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of ``(slices, channels)`` features from the training mean."""
        return _mahalanobis(features, self.feature_mean, self.feature_precision)

    def intensity_distance(self, intensity: np.ndarray) -> float:
        """A series' intensity distance: the median over its ``(slices, quantiles)`` of each
        slice's Mahalanobis distance from the training slices' quantiles (NaN: not learnt)."""
        if not self.intensity_mean.size or not len(intensity):
            return float("nan")
        return float(
            np.median(_mahalanobis(intensity, self.intensity_mean, self.intensity_precision))
        )


def build_profile(
    train: Sequence[SliceTraits],
    reference_features: np.ndarray | None = None,
    *,
    series: Sequence[str] | None = None,
    checked: Sequence[SliceTraits] = (),
    feature_pooling: str = BODY_POOLING,
) -> TrainingProfile:
    """Describe the training slices.

    Args:
        train: the training slices' traits (features, intensities, true-label geometry).
        reference_features: ``(n, channels)`` features of slices the model did not train on
            (validation); their distances set the threshold (with fewer than five, those of
            training slices each left out of the fit join them).
        series: per training slice its series (`series_key`); with three or more series
            the intensity distance's threshold is learnt by leaving each out (else not
            learnt: only the intensity range is checked).
        checked: the validation slices' traits with the model's *predicted* label maps: the
            share of them on which each ROI is off sets that ROI's share threshold.
        feature_pooling: what the traits' features were averaged over (`FEATURE_POOLINGS`).

    Returns:
        The profile.

    Raises:
        ValueError: fewer than two training slices.
    """
    if len(train) < 2:
        raise ValueError(f"a profile needs at least two training slices, got {len(train)}")
    features = np.stack([t.features for t in train])
    mean, precision = _shrunk_gaussian(features)
    distances = _reference_distances(features, reference_features, mean, precision)
    intensity = np.stack([t.intensity for t in train])
    areas = np.stack([t.areas_mm2 for t in train])
    present = areas > 0
    distance = np.stack([t.distances_mm for t in train])
    intensity_mean, intensity_precision = _shrunk_gaussian(intensity)
    left_out = _left_out_thresholds(intensity, series)
    edges = _edge_thresholds(np.array([t.edge for t in train]), series)
    profile = TrainingProfile(
        feature_mean=mean,
        feature_precision=precision,
        feature_threshold=float(FEATURE_MARGIN * np.quantile(distances, FEATURE_QUANTILE)),
        intensity_low=intensity.min(axis=0),
        intensity_high=intensity.max(axis=0),
        intensity_std=np.maximum(intensity.std(axis=0), 1e-3),
        intensity_skew=float(np.median(quantile_skew(intensity))),
        area_low_mm2=np.array([_min_present(areas[:, k]) for k in range(areas.shape[1])]),
        area_high_mm2=areas.max(axis=0),
        presence=present.mean(axis=0),
        distance_low_mm=np.nanmin(np.where(present, distance, np.inf), axis=0),
        distance_high_mm=np.nanmax(np.where(present, distance, -np.inf), axis=0),
        num_slices=len(train),
        intensity_mean=intensity_mean,
        intensity_precision=intensity_precision,
        intensity_series_threshold=left_out[0],
        intensity_slice_threshold=left_out[1],
        edge_series_threshold=edges[0],
        edge_slice_threshold=edges[1],
        num_series=len(set(series)) if series is not None else 0,
        feature_pooling=checked_pooling(feature_pooling),
    )
    if checked:
        odd = slice_oddness(profile, checked)
        shares = (odd.area_off | odd.distance_off).mean(axis=0)
        profile = replace(profile, shape_off_validation=shares.astype(np.float64))
    return profile


def _reference_distances(
    features: np.ndarray,
    reference: np.ndarray | None,
    mean: np.ndarray,
    precision: np.ndarray,
) -> np.ndarray:
    """Feature distances of slices the fit did not see: the reference (validation) slices'; with
    fewer than :data:`MIN_REFERENCE` of them, also each of up to :data:`MAX_LEFT_OUT` training
    slices' from a fit without it (a slice inside the fit is much nearer its mean than a new
    one: a threshold from those would flag every series). Two training slices cannot be left
    out (a fit on one has no spread): the reference slices' alone, none without them (NaN: the
    feature check is not learnt)."""
    given = np.zeros((0, features.shape[1])) if reference is None else np.atleast_2d(reference)
    if len(given) >= MIN_REFERENCE or len(features) < 3:
        return _mahalanobis(given, mean, precision) if len(given) else np.full(1, np.nan)
    left_out = []
    for i in sorted({round(i) for i in np.linspace(0, len(features) - 1, MAX_LEFT_OUT)}):
        others_mean, others_precision = _shrunk_gaussian(np.delete(features, i, axis=0))
        left_out.append(_mahalanobis(features[i], others_mean, others_precision)[0])
    reached = _mahalanobis(given, mean, precision) if len(given) else np.zeros(0)
    return np.concatenate([np.asarray(left_out), reached])


def _left_out_thresholds(
    intensity: np.ndarray, series: Sequence[str] | None
) -> tuple[float, float]:
    """The largest intensity distance of a training series (the median over its slices) from
    a fit on the other series, and the largest of a single slice (NaN, NaN with fewer than
    :data:`MIN_SERIES` series)."""
    if series is None or len(set(series)) < MIN_SERIES:
        return float("nan"), float("nan")
    names = np.asarray(list(series))
    medians, largest = [], []
    for name in dict.fromkeys(names):
        mine = names == name
        mean, precision = _shrunk_gaussian(intensity[~mine])
        distances = _mahalanobis(intensity[mine], mean, precision)
        medians.append(float(np.median(distances)))
        largest.append(float(distances.max()))
    return max(medians), max(largest)


def _edge_thresholds(edge: np.ndarray, series: Sequence[str] | None) -> tuple[float, float]:
    """The largest median `body_at_edges` of a training series (each slice its own series when
    they are not given) and the largest of a slice, plus :data:`EDGE_MARGIN` (NaN: not
    measured)."""
    if not len(edge) or not np.isfinite(edge).all():
        return float("nan"), float("nan")
    names = np.asarray(list(series)) if series is not None else np.arange(len(edge))
    medians = [float(np.median(edge[names == name])) for name in dict.fromkeys(names)]
    return max(medians) + EDGE_MARGIN, float(edge.max()) + EDGE_MARGIN


def _shrunk_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of a covariance shrunk towards its diagonal by C / (C + n)."""
    n, channels = features.shape
    mean = features.mean(axis=0)
    covariance = np.cov(features, rowvar=False).reshape(channels, channels)
    diagonal = np.diag(np.maximum(np.diag(covariance), 1e-8 + 1e-6 * np.diag(covariance).mean()))
    weight = channels / (channels + n)
    shrunk = (1 - weight) * covariance + weight * diagonal
    return mean, np.linalg.pinv(shrunk, hermitian=True)


def _mahalanobis(features: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = np.atleast_2d(features) - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))


def quantile_skew(intensity: np.ndarray) -> np.ndarray:
    """Per slice, (q95 − q50) − (q50 − q5): positive when bright tails are longer than dark."""
    q5, q50, q95 = (INTENSITY_QUANTILES.index(q) for q in (0.05, 0.5, 0.95))
    return (intensity[:, q95] - intensity[:, q50]) - (intensity[:, q50] - intensity[:, q5])


def _min_present(areas: np.ndarray) -> float:
    present = areas[areas > 0]
    return float(present.min()) if len(present) else 0.0


@dataclass(frozen=True)
class SliceOddness:
    """Per slice, how unlike the training slices it is (0 = within training).

    Attributes:
        feature_ratio: feature distance / the profile's threshold (NaN: not measured).
        intensity_excess: the most any intensity quantile passes the training range, in
            training standard deviations (0 inside; NaN: not measured).
        area_off: per ROI, True where the area is outside the trained range (or the ROI is
            missing though training always had it).
        distance_off: per ROI, True where the position is outside the trained range.
    """

    feature_ratio: np.ndarray
    intensity_excess: np.ndarray
    area_off: np.ndarray
    distance_off: np.ndarray

    @property
    def shape_score(self) -> np.ndarray:
        """Per slice, the share of ROIs whose area or position is off (0..1)."""
        return (self.area_off | self.distance_off).mean(axis=1)


def slice_oddness(profile: TrainingProfile, traits: Sequence[SliceTraits]) -> SliceOddness:
    """Score each slice against the profile (see :class:`SliceOddness`)."""
    n = len(traits)
    ratio, excess = np.full(n, np.nan), np.full(n, np.nan)
    measured = [i for i, t in enumerate(traits) if t.features.size]
    if measured:
        features = np.stack([traits[i].features for i in measured])
        ratio[measured] = profile.feature_distance(features) / profile.feature_threshold
    with_intensity = [i for i, t in enumerate(traits) if t.intensity.size]
    if with_intensity:
        excess[with_intensity] = excess_over_training(
            profile, np.stack([traits[i].intensity for i in with_intensity])
        ).max(axis=1)
    areas = np.stack([t.areas_mm2 for t in traits]) if n else np.zeros((0, len(profile.presence)))
    distances = np.stack([t.distances_mm for t in traits]) if n else areas.copy()
    missing = (areas <= 0) & profile.always_present
    outside = (areas > 0) & (
        (areas < profile.area_low_mm2 / _AREA_FACTOR)
        | (areas > profile.area_high_mm2 * _AREA_FACTOR)
    )
    far = np.nan_to_num(distances, nan=0.0)
    astray = (areas > 0) & (
        (far < profile.distance_low_mm - _DISTANCE_MARGIN_MM)
        | (far > profile.distance_high_mm + _DISTANCE_MARGIN_MM)
    )
    return SliceOddness(ratio, excess, missing | outside, astray)


def excess_over_training(profile: TrainingProfile, intensity: np.ndarray) -> np.ndarray:
    """Per slice and quantile of ``(slices, quantiles)`` intensities, how far each passes the
    training range, in training standard deviations (0 inside)."""
    below = (profile.intensity_low - intensity) / profile.intensity_std
    above = (intensity - profile.intensity_high) / profile.intensity_std
    return np.maximum(np.maximum(below, above), 0.0)
