"""Area calibration: a background weight, chosen on validation, so that ROI areas are unbiased.

A network trained with soft Dice + cross-entropy on foreground-oversampled crops draws ROIs a
little too large where it is unsure (soft Dice's volumetric bias, Bertels et al. 2019): on the
real-MR benchmark every ROI came out 2–5 % too large on unseen scanners, a bias that does not
average out over a study. The probability of the background is multiplied by a weight before
the argmax; the weight is the one of :data:`LOG_WEIGHTS` that brings the validation slices' mean
signed area error closest to zero, kept only when that moves the bias by at least
:data:`MIN_BIAS_GAIN` points and costs at most :data:`MAX_DICE_LOSS` of validation Dice. It
travels in the model file and ``predict`` applies it on each slice's own grid.

The choice needs no second pass over the network: per pixel, the most likely ROI and its
log-odds against the background (:func:`foreground_margin`) decide the label for every weight.

Example:
    >>> margins = [foreground_margin(p) for p in validation_probabilities]
    >>> calibration = choose_area_calibration(margins, truth, num_classes=5, pixel_area_mm2=0.8)
    >>> label = calibration.labels(*margins[0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sliceseg.measure.metrics import dice_from_counts

__all__ = [
    "LOG_WEIGHTS",
    "MAX_DICE_LOSS",
    "MIN_AREA_MM2",
    "MIN_BIAS_GAIN",
    "AreaCalibration",
    "choose_area_calibration",
    "foreground_margin",
]

LOG_WEIGHTS: tuple[float, ...] = tuple(float(v) for v in np.arange(-2.0, 2.01, 0.25))
"""Candidate natural logs of the background weight (0 = the plain argmax), e^±2 at most."""

MIN_BIAS_GAIN = 0.5
"""Smallest fall of the validation |mean signed area error| (percentage points) that is kept."""

MAX_DICE_LOSS = 0.005
"""Largest fall of the mean validation Dice a weight may cost."""

MIN_AREA_MM2 = 20.0
"""ROIs with a smaller true area on a slice are left out of the relative area error."""

_MIN_AREA_PIXELS = 20  # the same floor in pixels where the spacing is unknown


@dataclass(frozen=True)
class AreaCalibration:
    """The background weight ``exp(log_weight)`` and the validation numbers behind it.

    Attributes:
        log_weight: natural log of the weight on the background probability (0 = none).
        bias_before_pct: validation mean signed area error without calibration (%).
        bias_after_pct: the same with the chosen weight.
        error_before_pct: validation mean absolute area error without calibration (%).
        error_after_pct: the same with the chosen weight.
    """

    log_weight: float = 0.0
    bias_before_pct: float = float("nan")
    bias_after_pct: float = float("nan")
    error_before_pct: float = float("nan")
    error_after_pct: float = float("nan")

    @property
    def background_weight(self) -> float:
        """The factor on the background probability before the argmax."""
        return math.exp(self.log_weight)

    def labels(self, roi: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
        """Label map from :func:`foreground_margin`'s arrays with this weight."""
        return np.where(log_odds > self.log_weight, roi, 0).astype(np.uint8)

    def describe(self) -> str:
        """One line for the training log, e.g. ``background ×2.12 (area bias +1.7 → +0.1 %)``."""
        if self.log_weight == 0.0:
            return "none"
        if not (math.isfinite(self.bias_before_pct) and math.isfinite(self.bias_after_pct)):
            return f"background ×{self.background_weight:.2f}"
        return (
            f"background ×{self.background_weight:.2f} (validation area bias "
            f"{self.bias_before_pct:+.1f} → {self.bias_after_pct:+.1f} %)"
        )

    def to_dict(self) -> dict[str, float]:
        """Return plain data for the model file."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AreaCalibration:
        """Rebuild from :meth:`to_dict` output; ``None`` or ``{}`` (older files): no weight."""
        return cls(**{k: float(v) for k, v in (data or {}).items() if k in cls.__annotations__})


def foreground_margin(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the most likely ROI and its log-odds against the background.

    Args:
        probs: ``(C, H, W)`` probabilities, background first.

    Returns:
        ``roi`` (H, W) uint8 in 1..C−1 and ``log_odds`` (H, W) float32,
        ``log p_roi − log p_background``; the argmax with background weight ``w`` is ``roi``
        where ``log_odds > log w``, else 0 (ties go to the background, as ``argmax`` does).
    """
    tiny = np.float32(1e-12)
    roi = np.argmax(probs[1:], axis=0).astype(np.uint8) + 1
    best = np.take_along_axis(probs, roi[None].astype(np.int64), axis=0)[0]
    log_odds = np.log(np.maximum(best, tiny)) - np.log(np.maximum(probs[0], tiny))
    return roi, log_odds.astype(np.float32)


def choose_area_calibration(
    margins: Sequence[tuple[np.ndarray, np.ndarray]],
    truth: Sequence[np.ndarray],
    *,
    num_classes: int,
    pixel_area_mm2: float | None = None,
) -> AreaCalibration:
    """The weight of :data:`LOG_WEIGHTS` whose validation areas are least biased.

    Args:
        margins: per validation slice, :func:`foreground_margin` of its probabilities.
        truth: the reference label maps (same shapes).
        num_classes: C = K + 1.
        pixel_area_mm2: area of one pixel, to leave out ROIs under :data:`MIN_AREA_MM2`;
            ``None``: ROIs under 20 pixels are left out.

    Returns:
        The choice (``log_weight`` 0 when no weight helps, or there is nothing to measure).
    """
    floor = _MIN_AREA_PIXELS if pixel_area_mm2 is None else MIN_AREA_MM2 / pixel_area_mm2
    curves = [_roi_curves(m, t, num_classes, floor) for m, t in zip(margins, truth, strict=True)]
    table = _score_weights([c for per_slice in curves for c in per_slice], num_classes)
    if table is None:
        return AreaCalibration()
    bias, error, dice = table
    plain = LOG_WEIGHTS.index(0.0)
    allowed = [i for i in range(len(LOG_WEIGHTS)) if dice[i] >= dice[plain] - MAX_DICE_LOSS]
    best = min(allowed, key=lambda i: (round(float(abs(bias[i])), 6), abs(LOG_WEIGHTS[i])))
    if abs(bias[plain]) - abs(bias[best]) < MIN_BIAS_GAIN:
        best = plain
    return AreaCalibration(
        log_weight=LOG_WEIGHTS[best],
        bias_before_pct=float(bias[plain]),
        bias_after_pct=float(bias[best]),
        error_before_pct=float(error[plain]),
        error_after_pct=float(error[best]),
    )


@dataclass(frozen=True)
class _Curve:
    """One ROI on one slice: predicted and true-positive pixel counts for every weight."""

    roi: int
    true_pixels: int
    predicted: np.ndarray  # (len(LOG_WEIGHTS),)
    overlap: np.ndarray
    is_measured: bool  # true area over the floor: counts in the relative area error


def _roi_curves(
    margin: tuple[np.ndarray, np.ndarray], truth: np.ndarray, num_classes: int, floor: float
) -> list[_Curve]:
    """Counts for every ROI of one slice and every candidate weight (one sort per ROI)."""
    roi_map, log_odds = margin
    thresholds = np.asarray(LOG_WEIGHTS)
    curves = []
    for roi in range(1, num_classes):
        candidate = roi_map == roi
        scores = np.sort(log_odds[candidate])
        hits = np.sort(log_odds[candidate & (truth == roi)])
        predicted = scores.size - np.searchsorted(scores, thresholds, side="right")
        overlap = hits.size - np.searchsorted(hits, thresholds, side="right")
        true_pixels = int((truth == roi).sum())
        curves.append(_Curve(roi, true_pixels, predicted, overlap, true_pixels >= floor))
    return curves


def _score_weights(
    curves: Sequence[_Curve], num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per weight: mean signed and absolute relative area error (%), and mean pooled Dice."""
    measured = [c for c in curves if c.is_measured]
    if not measured:
        return None
    relative = np.stack([100.0 * (c.predicted - c.true_pixels) / c.true_pixels for c in measured])
    dice = []
    for roi in range(1, num_classes):  # every slice has a curve per ROI
        mine = [c for c in curves if c.roi == roi]
        overlap = np.sum([c.overlap for c in mine], axis=0)
        predicted = np.sum([c.predicted for c in mine], axis=0)
        true = sum(c.true_pixels for c in mine)
        dice.append(dice_from_counts(overlap, predicted - overlap, true - overlap))
    # an ROI absent everywhere is nan and left out; a measured ROI is never absent
    return relative.mean(axis=0), np.abs(relative).mean(axis=0), np.nanmean(dice, axis=0)
