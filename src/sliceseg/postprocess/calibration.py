"""Area calibration: per ROI, a background weight that makes its validation areas unbiased.

A network trained with soft Dice + cross-entropy on foreground-oversampled crops draws ROIs a
little too large where it is unsure (soft Dice's volumetric bias, Bertels et al. 2019): on the
real-MR benchmark every ROI came out 2–5 % too large on unseen scanners, a bias that does not
average out over a study. Per pixel, the most likely ROI ``r`` is kept only where its log-odds
against the background exceed ``log w_r`` (:meth:`AreaCalibration.labels`); ``w_r`` is the one
of ``exp(LOG_WEIGHTS)`` that brings ROI ``r``'s mean signed area error over the validation
slices closest to zero, kept only when that lowers its |bias| by at least
:data:`MIN_BIAS_GAIN` points and costs at most :data:`MAX_DICE_LOSS` of its validation Dice,
and, when the slices' patients (else series) are known, only when the weight chosen on either
half of the validation patients also lowers the other half's |bias| by that much (fewer than
two cannot show it, so they keep the plain argmax; a patient's two series are not two).
Weights chosen on one subject's slices carried that subject's noise to the test scanners: on
the spine-MR benchmark they moved an unbiased vertebral body to +13 % (docs/benchmarks.md);
the grid also stops at ×e^±1.
ROI ``r``'s weight moves only pixels where ``r`` is the most likely ROI, between ``r`` and the
background, so no ROI's choice changes another ROI's area: each is chosen on its own, and no
ROI's validation |bias| ever grows. One weight for all ROIs (older model files) is the same
rule with every ``w_r`` equal, and such files predict as before.

The choice needs no second pass over the network: per pixel, the most likely ROI and its
log-odds against the background (:func:`foreground_margin`) decide the label for every weight.
:func:`held_out_area_bias` measures the choice on slices it was not made on.

Example:
    >>> margins = [foreground_margin(p) for p in validation_probabilities]
    >>> calibration = choose_area_calibration(margins, truth, num_classes=5, pixel_area_mm2=0.8)
    >>> label = calibration.labels(*margins[0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sliceseg.measure.metrics import dice_from_counts
from sliceseg.postprocess.calibration_weights import (
    AreaCalibration,
    RoiCalibration,
    foreground_margin,
)

__all__ = [
    "LOG_WEIGHTS",
    "MAX_DICE_LOSS",
    "MIN_AREA_MM2",
    "MIN_BIAS_GAIN",
    "AreaCalibration",  # defined in calibration_weights, with RoiCalibration and foreground_margin
    "HeldOutBias",
    "RoiCalibration",
    "area_bias_per_roi",
    "choose_area_calibration",
    "foreground_margin",
    "held_out_area_bias",
    "split_in_halves",
]

LOG_WEIGHTS: tuple[float, ...] = tuple(float(v) for v in np.arange(-1.0, 1.01, 0.25))
"""Candidate natural logs of an ROI's background weight (0 = the plain argmax), e^±1 at most."""

MIN_BIAS_GAIN = 0.5
"""Smallest fall of an ROI's validation |mean signed area error| (percentage points) kept."""

MAX_DICE_LOSS = 0.005
"""Largest fall of an ROI's pooled validation Dice its weight may cost."""

MIN_AREA_MM2 = 20.0
"""ROIs with a smaller true area on a slice are left out of the relative area error."""

_MIN_AREA_PIXELS = 20  # the same floor in pixels where the spacing is unknown
_NAN = float("nan")


def choose_area_calibration(
    margins: Sequence[tuple[np.ndarray, np.ndarray]],
    truth: Sequence[np.ndarray],
    *,
    num_classes: int,
    pixel_area_mm2: float | None = None,
    groups: Sequence[str] | None = None,
) -> AreaCalibration:
    """Per ROI, the weight of :data:`LOG_WEIGHTS` whose validation areas are least biased.

    Args:
        margins: per validation slice, :func:`foreground_margin` of its probabilities.
        truth: the reference label maps (same shapes).
        num_classes: C = K + 1.
        pixel_area_mm2: area of one pixel, to leave out ROIs under :data:`MIN_AREA_MM2`;
            ``None``: ROIs under 20 pixels are left out.
        groups: per slice, its patient as the validation split groups it
            (`sliceseg.dataset.split.patient_groups`), else its series (`series_key`): when
            given, each ROI also carries its bias on slices its weight was not chosen on
            (:func:`held_out_area_bias`), and keeps its weight only when that held-out bias
            confirms it (two groups at least).

    Returns:
        The choice: every ROI 1..K with its weight (0 when no weight helps it, or it is never
        measured) and numbers; no entries when nothing at all can be measured.
    """
    curves = _all_curves(margins, truth, num_classes, pixel_area_mm2)
    if not any(c.is_measured for c in curves):
        return AreaCalibration()
    per_roi = {
        roi: _choose_roi([c for c in curves if c.roi == roi]) for roi in range(1, num_classes)
    }
    if groups is not None:
        held = held_out_area_bias(
            margins, truth, groups, num_classes=num_classes, pixel_area_mm2=pixel_area_mm2
        )
        per_roi = {
            r: _confirmed(
                replace(
                    entry,
                    held_out_before_pct=held[r].bias_plain_pct,
                    held_out_after_pct=held[r].bias_calibrated_pct,
                    held_out_slices=held[r].slices,
                ),
                confirmed=held[r].confirmed,
            )
            for r, entry in per_roi.items()
        }
    before = _relative_errors(curves, {roi: 0.0 for roi in per_roi})
    after = _relative_errors(curves, {r: e.log_weight for r, e in per_roi.items()})
    return AreaCalibration(
        bias_before_pct=float(before.mean()),
        bias_after_pct=float(after.mean()),
        error_before_pct=float(np.abs(before).mean()),
        error_after_pct=float(np.abs(after).mean()),
        per_roi=per_roi,
    )


@dataclass(frozen=True)
class _Curve:
    """One ROI on one slice: predicted and true-positive pixel counts for every weight."""

    roi: int
    true_pixels: int
    predicted: np.ndarray  # (len(LOG_WEIGHTS),)
    overlap: np.ndarray
    is_measured: bool  # true area over the floor: counts in the relative area error

    def relative_error(self) -> np.ndarray:
        """Signed area error (%) for every weight."""
        return 100.0 * (self.predicted - self.true_pixels) / self.true_pixels


def _all_curves(
    margins: Sequence[tuple[np.ndarray, np.ndarray]],
    truth: Sequence[np.ndarray],
    num_classes: int,
    pixel_area_mm2: float | None,
) -> list[_Curve]:
    floor = _MIN_AREA_PIXELS if pixel_area_mm2 is None else MIN_AREA_MM2 / pixel_area_mm2
    return [
        curve
        for margin, true in zip(margins, truth, strict=True)
        for curve in _roi_curves(margin, true, num_classes, floor)
    ]


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


def _choose_roi(curves: Sequence[_Curve]) -> RoiCalibration:
    """One ROI's weight from its curves over the validation slices."""
    measured = [c for c in curves if c.is_measured]
    if not measured:
        return RoiCalibration()
    relative = np.stack([c.relative_error() for c in measured])
    bias, error = relative.mean(axis=0), np.abs(relative).mean(axis=0)
    overlap = np.sum([c.overlap for c in curves], axis=0)
    predicted = np.sum([c.predicted for c in curves], axis=0)
    true = sum(c.true_pixels for c in curves)
    dice = dice_from_counts(overlap, predicted - overlap, true - overlap)
    plain = LOG_WEIGHTS.index(0.0)
    allowed = [i for i in range(len(LOG_WEIGHTS)) if dice[i] >= dice[plain] - MAX_DICE_LOSS]
    best = min(allowed, key=lambda i: (round(float(abs(bias[i])), 6), abs(LOG_WEIGHTS[i])))
    if abs(bias[plain]) - abs(bias[best]) < MIN_BIAS_GAIN:
        best = plain
    return RoiCalibration(
        log_weight=LOG_WEIGHTS[best],
        bias_before_pct=float(bias[plain]),
        bias_after_pct=float(bias[best]),
        error_before_pct=float(error[plain]),
        error_after_pct=float(error[best]),
        dice_before=float(dice[plain]),
        dice_after=float(dice[best]),
        slices=len(measured),
    )


def _confirmed(entry: RoiCalibration, *, confirmed: bool) -> RoiCalibration:
    """``entry``, or the plain argmax when the held-out halves do not confirm its weight."""
    if entry.log_weight == 0.0 or confirmed:
        return entry
    return replace(
        entry,
        log_weight=0.0,
        bias_after_pct=entry.bias_before_pct,
        error_after_pct=entry.error_before_pct,
        dice_after=entry.dice_before,
        held_out_after_pct=entry.held_out_before_pct,
    )


def _relative_errors(curves: Sequence[_Curve], log_weights: Mapping[int, float]) -> np.ndarray:
    """Signed area errors (%) of the measured (ROI, slice) pairs at each ROI's weight."""
    values = []
    for c in curves:
        if c.is_measured:
            values.append(float(c.relative_error()[_grid_index(log_weights[c.roi])]))
    return np.asarray(values)


def _grid_index(log_weight: float) -> int:
    """The position of a weight on :data:`LOG_WEIGHTS` (weights are chosen from it)."""
    return int(np.argmin(np.abs(np.asarray(LOG_WEIGHTS) - log_weight)))


@dataclass(frozen=True)
class HeldOutBias:
    """One ROI's mean signed area error on slices its weight was not chosen on.

    Attributes:
        roi: the ROI value.
        slices: held-out slices holding it above :data:`MIN_AREA_MM2`.
        bias_plain_pct: mean signed area error of the plain argmax (%).
        bias_calibrated_pct: the same with the weight chosen on the other half.
        confirmed: each half's weight lowered the |mean signed area error| of the other half
            by at least :data:`MIN_BIAS_GAIN` points (both halves measured, and the halves are
            made of whole groups, patients or series: two at least).
    """

    roi: int
    slices: int
    bias_plain_pct: float
    bias_calibrated_pct: float
    confirmed: bool = False


def split_in_halves(groups: Sequence[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split slices in two halves, each group (a patient, or a series) whole in one half.

    Groups go, largest first, to the half with fewer slices so far; with a single group the
    slices alternate (neighbouring slices of one patient are alike: a weaker test).

    Args:
        groups: per slice, the key of its group.

    Returns:
        The slice indices of each half, in order.

    Example:
        >>> split_in_halves(["a", "a", "b", "c"])
        ((0, 1), (2, 3))
    """
    indices = range(len(groups))
    if len(set(groups)) < 2:
        return tuple(indices[0::2]), tuple(indices[1::2])
    sizes = {g: list(groups).count(g) for g in set(groups)}
    halves: tuple[list[int], list[int]] = ([], [])
    for group in sorted(sizes, key=lambda g: (-sizes[g], g)):
        smaller = halves[0] if len(halves[0]) <= len(halves[1]) else halves[1]
        smaller.extend(i for i in indices if groups[i] == group)
    return tuple(sorted(halves[0])), tuple(sorted(halves[1]))


def area_bias_per_roi(
    margins: Sequence[tuple[np.ndarray, np.ndarray]],
    truth: Sequence[np.ndarray],
    calibration: AreaCalibration,
    *,
    num_classes: int,
    pixel_area_mm2: float | None = None,
) -> dict[int, list[float]]:
    """Per ROI 1..K, the signed area errors (%) of ``calibration``'s labels, one per slice
    where the ROI's true area reaches :data:`MIN_AREA_MM2` (20 pixels without a spacing)."""
    floor = _MIN_AREA_PIXELS if pixel_area_mm2 is None else MIN_AREA_MM2 / pixel_area_mm2
    errors: dict[int, list[float]] = {roi: [] for roi in range(1, num_classes)}
    for margin, true in zip(margins, truth, strict=True):
        label = calibration.labels(*margin)
        for roi, found in errors.items():
            true_pixels = int((true == roi).sum())
            if true_pixels >= floor:
                found.append(100.0 * (int((label == roi).sum()) - true_pixels) / true_pixels)
    return errors


def held_out_area_bias(
    margins: Sequence[tuple[np.ndarray, np.ndarray]],
    truth: Sequence[np.ndarray],
    groups: Sequence[str],
    *,
    num_classes: int,
    pixel_area_mm2: float | None = None,
) -> dict[int, HeldOutBias]:
    """Per ROI, the area bias on slices the calibration was not chosen on.

    The slices are split in two halves by group (:func:`split_in_halves`); the weights are
    chosen on one half and measured on the other, then the other way round, so every slice
    is measured once by weights chosen without it.

    Args:
        margins, truth, num_classes, pixel_area_mm2: as :func:`choose_area_calibration`.
        groups: per slice, its patient or series (as :func:`choose_area_calibration`).

    Returns:
        ROI value → its held-out bias, plain and calibrated (nan where never measured).

    Example:
        >>> bias = held_out_area_bias(margins, truth, series, num_classes=3)
        >>> bias[1].bias_plain_pct, bias[1].bias_calibrated_pct
        (4.1, 0.6)

    Raises:
        ValueError: ``groups`` does not give one series per slice.
    """
    if len(groups) != len(margins):
        raise ValueError(f"{len(groups)} series keys for {len(margins)} slices: give one each")
    plain: dict[int, list[float]] = {roi: [] for roi in range(1, num_classes)}
    calibrated: dict[int, list[float]] = {roi: [] for roi in range(1, num_classes)}
    gains: dict[int, list[float]] = {roi: [] for roi in range(1, num_classes)}
    first, second = split_in_halves(groups)
    by_series = len(set(groups)) >= 2  # alternate slices of one series confirm nothing
    for chosen_on, measured_on in ((first, second), (second, first)):
        if not chosen_on or not measured_on:
            continue
        choice = choose_area_calibration(
            [margins[i] for i in chosen_on],
            [truth[i] for i in chosen_on],
            num_classes=num_classes,
            pixel_area_mm2=pixel_area_mm2,
        )
        found = [
            area_bias_per_roi(
                [margins[i] for i in measured_on],
                [truth[i] for i in measured_on],
                calibration,
                num_classes=num_classes,
                pixel_area_mm2=pixel_area_mm2,
            )
            for calibration in (AreaCalibration(), choice)
        ]
        for roi in plain:
            plain[roi].extend(found[0][roi])
            calibrated[roi].extend(found[1][roi])
            if found[0][roi]:
                gains[roi].append(abs(_mean(found[0][roi])) - abs(_mean(found[1][roi])))
    return {
        roi: HeldOutBias(
            roi,
            len(plain[roi]),
            _mean(plain[roi]),
            _mean(calibrated[roi]),
            confirmed=by_series and len(gains[roi]) == 2 and min(gains[roi]) >= MIN_BIAS_GAIN,
        )
        for roi in plain
    }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else _NAN
