"""The real-MR benchmark's scorer: per-ROI Dice and area error on each test slice's native grid.

Both contenders are scored by this one function from the label maps they wrote
(``<pred>/labels/<subject>/<name>.png``) against the truth (``test/labels/...``).

- Dice per ROI: the mean over test slices of the slice's Dice for that ROI; a slice where the
  ROI is absent from both truth and prediction is left out (never happens on this data: every
  test level holds all four ROIs).
- Area error per ROI: the mean over slices with a true area ≥ ``MIN_AREA_MM2`` of
  |predicted − true| / true × 100, areas = pixel count × row spacing × column spacing.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from sliceseg.io.labels import read_label_file

MIN_AREA_MM2 = 20.0


class ScoreRow(TypedDict):
    """One test slice and ROI: its key, the ROI, the Dice, the true and predicted areas."""

    key: str
    roi: int
    dice: float
    true_mm2: float
    pred_mm2: float


@dataclass(frozen=True)
class Score:
    """One contender's score on the test slices.

    Attributes:
        dice: mean Dice per ROI 1..K.
        area_error_pct: mean absolute area error % per ROI 1..K.
        n_slices: test slices scored.
        rows: per slice and ROI: key, roi, dice, true_mm2, pred_mm2 (for a CSV).
    """

    dice: tuple[float, ...]
    area_error_pct: tuple[float, ...]
    n_slices: int
    rows: tuple[ScoreRow, ...]

    @property
    def mean_dice(self) -> float:
        """Mean of the per-ROI Dice."""
        return float(np.mean(self.dice))

    @property
    def worst_dice(self) -> float:
        """The worst ROI's Dice."""
        return float(np.min(self.dice))

    @property
    def mean_area_error_pct(self) -> float:
        """Mean of the per-ROI area errors (%)."""
        return float(np.mean(self.area_error_pct))


def slice_dice(truth: np.ndarray, pred: np.ndarray, roi: int) -> float:
    """Dice of one ROI on one slice; NaN when it is absent from both."""
    t, p = truth == roi, pred == roi
    total = int(t.sum()) + int(p.sum())
    return float("nan") if total == 0 else 2.0 * int((t & p).sum()) / total


def score_slices(
    truth: Mapping[str, np.ndarray],
    pred: Mapping[str, np.ndarray],
    spacing_mm: Mapping[str, tuple[float, float]],
    *,
    num_rois: int,
) -> Score:
    """Score predicted label maps against the truth, slice by slice on the native grid.

    Args:
        truth: key → true label map (ROI numbers 0..K).
        pred: key → predicted label map on the same grid; every truth key must be present.
        spacing_mm: key → (row, col) pixel spacing.
        num_rois: K.

    Raises:
        ValueError: a prediction is missing or has another shape than its truth.
    """
    rows: list[ScoreRow] = []
    for key, true_label in truth.items():
        if key not in pred or pred[key].shape != true_label.shape:
            found = "missing" if key not in pred else f"shape {pred[key].shape}"
            raise ValueError(
                f"prediction for {key}: {found}; expected a label map of shape "
                f"{true_label.shape}; rerun the contender's prediction."
            )
        pixel_mm2 = spacing_mm[key][0] * spacing_mm[key][1]
        for roi in range(1, num_rois + 1):
            rows.append(
                {
                    "key": key,
                    "roi": roi,
                    "dice": slice_dice(true_label, pred[key], roi),
                    "true_mm2": float(np.count_nonzero(true_label == roi)) * pixel_mm2,
                    "pred_mm2": float(np.count_nonzero(pred[key] == roi)) * pixel_mm2,
                }
            )
    return _summarise(rows, num_rois, len(truth))


def _summarise(rows: Sequence[ScoreRow], num_rois: int, n_slices: int) -> Score:
    dice, errors = [], []
    for roi in range(1, num_rois + 1):
        mine = [r for r in rows if r["roi"] == roi]
        dice.append(float(np.nanmean([r["dice"] for r in mine])))
        big = [r for r in mine if r["true_mm2"] >= MIN_AREA_MM2]
        relative = [abs(r["pred_mm2"] - r["true_mm2"]) / r["true_mm2"] * 100 for r in big]
        errors.append(float(np.mean(relative)) if relative else float("nan"))
    return Score(tuple(dice), tuple(errors), n_slices, tuple(rows))


def read_truth(test_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """Read the true label maps and each slice's spacing (from ``truth.csv``)."""
    spacing: dict[str, tuple[float, float]] = {}
    with (Path(test_dir) / "truth.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            spacing[row["key"]] = (float(row["row_spacing_mm"]), float(row["col_spacing_mm"]))
    labels = {
        key: read_label_file(Path(test_dir) / "labels" / f"{key}.png").values for key in spacing
    }
    return labels, spacing


def prediction_path(pred_labels_dir: Path, key: str) -> Path:
    """A contender's label map of ``key``: ``<pred>/labels/<key>.png``, or in sliceseg's
    per-series layout ``<pred>/series/<series>/labels/<key>.png`` (the one match)."""
    flat = Path(pred_labels_dir) / f"{key}.png"
    if flat.exists():
        return flat
    found = sorted(Path(pred_labels_dir).parent.glob(f"series/*/labels/{key}.png"))
    return found[0] if len(found) == 1 else flat


def score_folder(test_dir: Path, pred_labels_dir: Path, *, num_rois: int) -> Score:
    """Score the label maps under ``pred_labels_dir`` (``<key>.png``) against ``test_dir``."""
    truth, spacing = read_truth(test_dir)
    paths = {key: prediction_path(pred_labels_dir, key) for key in truth}
    pred = {key: read_label_file(path).values for key, path in paths.items() if path.exists()}
    return score_slices(truth, pred, spacing, num_rois=num_rois)
