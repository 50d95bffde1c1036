"""Confidence per slice and ROI from the predicted probabilities: which slices to review first.

The score of ROI k on a slice is the Dice the model expects between its own label map and its
probabilities (a soft Dice, 2·Σ pₖ·mₖ / (Σ pₖ + Σ mₖ), with mₖ the predicted mask and pₖ the
probability of k at every pixel of the slice's own grid). It is 1 where the model is sure of
every pixel and falls with the probability mass that disagrees with the label: a blurred
boundary, a second candidate region, an ROI half-believed. Probabilities below
`BELIEF_FLOOR` count as none: a softmax leaks 10⁻⁵–10⁻² of every class over every pixel, which
on a 512² slice sums to a pixel or two of an ROI that is nowhere, and would score such an absent
ROI 0 (on the spine benchmark that made every slice without an iliopsoas look like a failure).
An ROI neither predicted nor believed anywhere (less than one pixel's worth of probability above
the floor) scores 1 — unless the training slices always showed it (the model file's profile,
`TrainingProfile.always_present`): then its absence is an error the model is sure of, and it
scores 0. The slice's score is its least confident ROI's: a slice is wrong when any of its ROIs
is (the mean over ROIs, used before, let one lost ROI hide among sure ones). `bench/confidence.py`
measured this choice against the margin and the entropy in a band around each boundary
(``docs/benchmarks.md``, "Confidence").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from sliceseg.errors import ConfigError
from sliceseg.inference.records import RunSettings
from sliceseg.io.dicom import Slice
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    AreaTable,
    measure_areas,
    slice_positions,
)
from sliceseg.measure.review_order import least_confident

# Below this a pixel's probability of an ROI is leakage, not belief (see the module's docstring).
BELIEF_FLOOR = 0.05

__all__ = [
    "BELIEF_FLOOR",
    "CONFIDENCE_COLUMN",
    "ConfidenceCollector",
    "least_confident",
    "measure_with_confidence",
    "roi_confidence",
    "slice_confidence",
    "with_confidence",
    "with_slice_column",
]


def roi_confidence(
    probabilities: torch.Tensor | np.ndarray,
    label: np.ndarray,
    always_present: np.ndarray | None = None,
) -> np.ndarray:
    """Return the confidence of each ROI 1..K on one slice, each in [0, 1].

    Args:
        probabilities: (K + 1, rows, cols) softmax probabilities on the label's grid,
            background first.
        label: (rows, cols) predicted label map, values 0..K.
        always_present: (K,) bool, True for an ROI the training slices always showed (the
            model's profile); missing from ``label``, such an ROI scores 0. None: no such ROI.

    Returns:
        (K,) float64: per ROI, the soft Dice between its predicted mask and its probability.

    Raises:
        ConfigError: the shapes do not match.

    Example:
        >>> probs = np.zeros((2, 4, 4)); probs[0] = 1.0
        >>> roi_confidence(probs, np.zeros((4, 4), np.uint8))  # nothing there, surely
        array([1.])
    """
    if isinstance(probabilities, torch.Tensor) and probabilities.device.type != "cpu":
        return _roi_confidence_on_device(probabilities, label, always_present)
    _check_shapes(tuple(probabilities.shape), label, always_present)
    probs = probabilities.numpy() if isinstance(probabilities, torch.Tensor) else probabilities
    scores = np.ones(probs.shape[0] - 1)
    for k in range(1, probs.shape[0]):
        mask = label == k
        predicted = int(np.count_nonzero(mask))
        if predicted == 0 and always_present is not None and always_present[k - 1]:
            scores[k - 1] = 0.0
            continue
        belief = np.where(probs[k] >= BELIEF_FLOOR, probs[k], 0)
        believed = float(belief.sum(dtype=np.float64))
        if believed + predicted >= 1.0:
            overlap = float(belief[mask].sum(dtype=np.float64))
            scores[k - 1] = 2.0 * overlap / (believed + predicted)
    return scores


def _check_shapes(
    shape: tuple[int, ...], label: np.ndarray, always_present: np.ndarray | None
) -> None:
    if len(shape) != 3 or shape[1:] != label.shape:
        raise ConfigError(
            f"probabilities of shape {shape} for a label map of shape "
            f"{label.shape}; give (classes, rows, cols) on the label's own grid."
        )
    if always_present is not None and len(always_present) != shape[0] - 1:
        raise ConfigError(
            f"{len(always_present)} ROIs marked always present for {shape[0] - 1} ROIs; give "
            "one flag per ROI (the model's own profile)."
        )


def _roi_confidence_on_device(
    probs: torch.Tensor, label: np.ndarray, always_present: np.ndarray | None = None
) -> np.ndarray:
    """`roi_confidence` where the probabilities lie (a GPU): only K numbers come back."""
    _check_shapes(tuple(probs.shape), label, always_present)
    classes = torch.arange(1, probs.shape[0], device=probs.device).view(-1, 1, 1)
    masks = torch.from_numpy(label).to(probs.device).unsqueeze(0) == classes  # (K, H, W)
    belief = torch.where(probs[1:] >= BELIEF_FLOOR, probs[1:], 0)
    believed = belief.sum(dim=(1, 2), dtype=torch.float64)
    predicted = masks.sum(dim=(1, 2)).to(torch.float64)
    overlap = (belief * masks).sum(dim=(1, 2), dtype=torch.float64)
    total = believed + predicted
    scores = torch.where(total >= 1.0, 2.0 * overlap / total.clamp(min=1.0), torch.ones_like(total))
    result = scores.cpu().numpy()
    if always_present is not None:
        result[np.asarray(always_present, bool) & (predicted.cpu().numpy() == 0)] = 0.0
    return result


def slice_confidence(per_roi: np.ndarray) -> np.ndarray:
    """Return each slice's confidence from its ROIs' (the least confident ROI's).

    Args:
        per_roi: (slices, K) scores from :func:`roi_confidence`.

    Returns:
        (slices,) scores in [0, 1].

    Example:
        >>> slice_confidence(np.array([[1.0, 0.5], [0.9, 0.9]]))
        array([0.5, 0.9])
    """
    scores = np.asarray(per_roi, dtype=np.float64)
    return scores.min(axis=1) if scores.size else np.zeros(len(scores))


class ConfidenceCollector:
    """A probability sink for `predict_slices`: keeps each slice's ROI scores, not the maps.

    Example:
        >>> collector = ConfidenceCollector(always_present_rois(bundle))
        >>> labels = predict_slices(bundle, slices, on_probabilities=collector)
        >>> collector.per_roi.shape  # (slices, K)
    """

    def __init__(self, always_present: np.ndarray | None = None) -> None:
        """``always_present``: per ROI, True where the model's training slices always showed
        it (`inference.familiarity.always_present_rois`); None: no ROI is expected."""
        self._scores: list[np.ndarray] = []
        self._always_present = always_present

    def __call__(self, probabilities: torch.Tensor, label: np.ndarray) -> None:
        """Score one slice (called by `predict_slices`, in slice order)."""
        self._scores.append(roi_confidence(probabilities, label, self._always_present))

    @property
    def per_roi(self) -> np.ndarray:
        """(slices, K) scores so far."""
        return np.stack(self._scores) if self._scores else np.zeros((0, 0))


def measure_with_confidence(
    labels: Sequence[np.ndarray],
    images: Sequence[Slice],
    keys: Sequence[str],
    settings: RunSettings,
    per_roi: np.ndarray,
) -> AreaTable:
    """Measure predicted slices as a run's settings say (`measure_areas`: its ROI names,
    spacing fallback, tissue thresholds, patient columns), with their confidence
    (`with_confidence`): one rule for ``predict_folder`` and each series of a cohort.

    Args:
        labels: the label maps, one per slice.
        images: the slices.
        keys: each slice's `slice_key`, the tables' ``file``.
        settings: the run's settings.
        per_roi: (slices, K) scores from :func:`roi_confidence`, same order.
    """
    areas = measure_areas(
        labels,
        images,
        settings.roi_names,
        names=keys,
        fallback=settings.fallback,
        keep_patient_info=settings.keep_patient_info,
        tissue=settings.tissue,
    )
    return with_confidence(areas, per_roi)


def with_confidence(areas: AreaTable, per_roi: np.ndarray) -> AreaTable:
    """Return ``areas`` with a ``confidence`` column: per slice and ROI in the tidy table, per
    slice (its least confident ROI's) in the wide one, empty on its summary rows.

    Args:
        areas: the table of the predicted slices, in prediction order.
        per_roi: (slices, K) scores from :func:`roi_confidence`, same order.

    Raises:
        ConfigError: the number of slices or ROIs differs from the table's.
    """
    scores = np.asarray(per_roi, dtype=np.float64)
    slice_rows = slice_positions(areas.wide)
    rois = sorted(set(areas.long["roi"])) if len(areas.long) else []
    if scores.shape != (len(slice_rows), len(rois)):
        raise ConfigError(
            f"confidence for {scores.shape[0]} slices × {scores.shape[1] if scores.ndim > 1 else 0}"
            f" ROIs, but the table has {len(slice_rows)} slices × {len(rois)} ROIs; score every "
            "predicted slice."
        )
    long = areas.long.copy()
    position = {roi: j for j, roi in enumerate(rois)}
    long[CONFIDENCE_COLUMN] = [
        scores[int(s) - 1, position[r]] for s, r in zip(long["slice"], long["roi"], strict=True)
    ]
    wide = with_slice_column(areas.wide, CONFIDENCE_COLUMN, slice_confidence(scores))
    return AreaTable(**{**vars(areas), "wide": wide, "long": long})


def with_slice_column(
    wide: pd.DataFrame, column: str, values: Sequence[float] | np.ndarray
) -> pd.DataFrame:
    """A copy of ``wide`` with ``column`` holding ``values`` on its slice rows (in order) and
    empty cells on its summary rows (the confidence and familiarity columns a prediction adds).

    Example:
        >>> table = pd.DataFrame({"disc": [1.0, 2.0]}, index=["1", "mean"])
        >>> with_slice_column(table, "confidence", [0.9])["confidence"].tolist()
        [0.9, nan]
    """
    cells = np.full(len(wide), np.nan)
    cells[slice_positions(wide)] = values
    table = wide.copy()
    table[column] = cells
    return table
