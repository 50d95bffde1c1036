"""The area calibration a model file carries: per ROI a background weight, applied to a slice.

`AreaCalibration.labels` turns :func:`foreground_margin`'s per-pixel most likely ROI and its
log-odds against the background into a label map; `to_dict` / `from_dict` are the model file's
``postprocessing["area_calibration"]``. How the weights are chosen on validation, and measured
on the slices they were not chosen on, is `sliceseg.postprocess.calibration`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["AreaCalibration", "RoiCalibration", "foreground_margin"]

_NAN = float("nan")


@dataclass(frozen=True)
class RoiCalibration:
    """One ROI's background weight ``exp(log_weight)`` and the validation numbers behind it.

    Attributes:
        log_weight: natural log of the weight on the background against this ROI (0 = none).
        bias_before_pct: mean signed area error of this ROI on the validation slices (%),
            plain argmax; nan when no slice holds it above
            :data:`~sliceseg.postprocess.calibration.MIN_AREA_MM2`.
        bias_after_pct: the same with the chosen weight.
        error_before_pct: mean absolute area error without the weight (%).
        error_after_pct: the same with the chosen weight.
        dice_before: pooled validation Dice of this ROI without the weight.
        dice_after: the same with the chosen weight.
        slices: validation slices its area errors are measured on.
        held_out_before_pct: mean signed area error on validation slices the weight was not
            chosen on (:func:`~sliceseg.postprocess.calibration.held_out_area_bias`), plain
            argmax; nan when not measured.
        held_out_after_pct: the same with the weight chosen on the other half.
        held_out_slices: the slices those two are measured on.
    """

    log_weight: float = 0.0
    bias_before_pct: float = _NAN
    bias_after_pct: float = _NAN
    error_before_pct: float = _NAN
    error_after_pct: float = _NAN
    dice_before: float = _NAN
    dice_after: float = _NAN
    slices: int = 0
    held_out_before_pct: float = _NAN
    held_out_after_pct: float = _NAN
    held_out_slices: int = 0

    def describe(self, name: str) -> str:
        """``name: area bias +46.7 → +13.4 % (background ×4.48)`` or ``… (unchanged)``."""
        change = f"background ×{math.exp(self.log_weight):.2f}" if self.log_weight else "unchanged"
        if not math.isfinite(self.bias_before_pct):
            return f"{name}: not measured ({change})"
        held_out = (
            f"; held-out half {self.held_out_before_pct:+.1f} → {self.held_out_after_pct:+.1f} %"
            if math.isfinite(self.held_out_before_pct) and math.isfinite(self.held_out_after_pct)
            else ""
        )
        return (
            f"{name}: area bias {self.bias_before_pct:+.1f} → {self.bias_after_pct:+.1f} % "
            f"({change}{held_out})"
        )


@dataclass(frozen=True)
class AreaCalibration:
    """Per ROI, the background weight and the validation numbers behind it.

    Attributes:
        log_weight: the one weight of model files from before the per-ROI choice; it applies
            to every ROI without an entry in ``per_roi`` (0 = none).
        bias_before_pct: validation mean signed area error over every (ROI, slice) pair (%),
            plain argmax.
        bias_after_pct: the same with the chosen weights.
        error_before_pct: validation mean absolute area error without calibration (%).
        error_after_pct: the same with the chosen weights.
        per_roi: ROI value → its weight and numbers (empty in older model files).
    """

    log_weight: float = 0.0
    bias_before_pct: float = _NAN
    bias_after_pct: float = _NAN
    error_before_pct: float = _NAN
    error_after_pct: float = _NAN
    per_roi: Mapping[int, RoiCalibration] = field(default_factory=dict)

    @property
    def background_weight(self) -> float:
        """The factor on the background probability of ROIs without their own weight."""
        return math.exp(self.log_weight)

    def log_weight_of(self, roi: int) -> float:
        """The natural log of ROI ``roi``'s background weight."""
        entry = self.per_roi.get(roi)
        return self.log_weight if entry is None else entry.log_weight

    @property
    def is_plain(self) -> bool:
        """True when every weight is 1: the labels are the plain argmax."""
        return self.log_weight == 0.0 and not any(c.log_weight for c in self.per_roi.values())

    def labels(self, roi: np.ndarray, log_odds: np.ndarray) -> np.ndarray:
        """Label map from :func:`foreground_margin`'s arrays: ``roi`` where its log-odds
        exceed its ROI's log-weight, else 0."""
        if not self.per_roi:  # one weight for every ROI, exactly as older versions computed it
            return np.where(log_odds > self.log_weight, roi, 0).astype(np.uint8)
        size = max(int(roi.max(initial=0)), *self.per_roi) + 1
        table = np.full(size, self.log_weight, dtype=np.float64)
        for value, entry in self.per_roi.items():
            table[value] = entry.log_weight
        return np.where(log_odds > table[roi], roi, 0).astype(np.uint8)

    def describe(self, roi_names: Sequence[str] | None = None) -> str:
        """One line for the log, ``info`` and the report.

        Per ROI (``roi_names`` in ROI order, else ``ROI 1``, …), e.g.
        ``fat: area bias +46.7 → +13.4 % (background ×4.48); muscle: area bias −0.4 → −0.4 %
        (unchanged)``; an older file's single weight as ``background ×2.12 (validation area
        bias +1.7 → +0.1 %)``.
        """
        if self.per_roi:
            names = list(roi_names or ())
            return "; ".join(
                entry.describe(names[r - 1] if 0 < r <= len(names) else f"ROI {r}")
                for r, entry in sorted(self.per_roi.items())
            )
        if self.log_weight == 0.0:
            return "none"
        if not (math.isfinite(self.bias_before_pct) and math.isfinite(self.bias_after_pct)):
            return f"background ×{self.background_weight:.2f}"
        return (
            f"background ×{self.background_weight:.2f} (validation area bias "
            f"{self.bias_before_pct:+.1f} → {self.bias_after_pct:+.1f} %)"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for the model file (``per_roi`` keyed by the ROI as a string)."""
        data: dict[str, Any] = {k: float(v) for k, v in asdict(self).items() if k != "per_roi"}
        if self.per_roi:
            data["per_roi"] = {
                str(r): {k: _plain(v) for k, v in asdict(entry).items()}
                for r, entry in sorted(self.per_roi.items())
            }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AreaCalibration:
        """Rebuild from :meth:`to_dict` output; ``None`` or ``{}`` (older files): no weight; an
        older file's single ``log_weight`` applies to every ROI."""
        data = data or {}
        per_roi = {
            int(r): _roi_from_dict(entry) for r, entry in (data.get("per_roi") or {}).items()
        }
        scalars = {
            k: float(v) for k, v in data.items() if k in cls.__annotations__ and k != "per_roi"
        }
        return cls(**scalars, per_roi=per_roi)


def _plain(value: float | int) -> float | int:
    return int(value) if isinstance(value, int) else float(value)


def _roi_from_dict(data: Mapping[str, Any]) -> RoiCalibration:
    numbers = {k: float(v) for k, v in data.items() if k in RoiCalibration.__annotations__}
    slices = int(numbers.pop("slices", 0))
    held_out_slices = int(numbers.pop("held_out_slices", 0))
    return RoiCalibration(**numbers, slices=slices, held_out_slices=held_out_slices)


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
