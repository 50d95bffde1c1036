"""Is the confidence useful? Rank a prediction folder's slices by it and compare with the truth.

Reads what ``sliceseg predict`` wrote (``labels/<key>.png`` and ``csa.csv`` with its per-slice
``confidence`` column) and the true label maps (``<truth>/<key>.png`` or ``.npy``, ROI numbers
0..K on the same grid), and prints the two numbers of issue #11:

- Spearman's ρ between a slice's uncertainty (1 − confidence) and its Dice error
  (1 − the mean over ROIs of the slice's Dice, ROIs absent from both truth and prediction left
  out); the goal is ρ ≥ 0.4;
- the share of the total absolute area error (Σ over slices and ROIs of |predicted − true| mm²,
  areas = pixel count × row × column spacing) held by the 10 % least confident slices, and
  that share divided by 10 % (the goal is ≥ 2×).

Usage::

    python bench/confidence.py PRED_DIR TRUTH_LABELS_DIR [--json out.json]
    python bench/confidence.py /tmp/realmr/sliceseg/pred /tmp/realmr/test/labels
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sliceseg.io.labels import read_label_file


@dataclass(frozen=True)
class Usefulness:
    """How well the confidence ranks a prediction's errors.

    Attributes:
        n_slices: slices scored.
        spearman: Spearman's ρ between 1 − confidence and the Dice error.
        spearman_p: its two-sided p-value.
        lowest_share: share of the total absolute area error held by the least confident 10 %.
        lowest_ratio: ``lowest_share`` / the share of slices they are (×, goal ≥ 2).
        n_lowest: how many slices the lowest 10 % is.
        best_share: the share the 10 % slices with the largest area errors hold: the most any
            ranking can reach (``best_ratio`` the same divided by 10 %).
        best_ratio: ``best_share`` / the share of slices.
        spearman_area: Spearman's ρ between 1 − confidence and the absolute area error.
        lowest_ratio_pct: as ``lowest_ratio`` for the relative area error (%), NaN without it.
        best_ratio_pct: as ``best_ratio`` for the relative area error.
        mean_dice_error: mean Dice error over the slices.
        total_abs_area_error_mm2: the total absolute area error.
    """

    n_slices: int
    spearman: float
    spearman_p: float
    lowest_share: float
    lowest_ratio: float
    n_lowest: int
    best_share: float
    best_ratio: float
    spearman_area: float
    mean_dice_error: float
    total_abs_area_error_mm2: float
    lowest_ratio_pct: float = math.nan
    best_ratio_pct: float = math.nan


MIN_TRUE_AREA_MM2 = 20.0  # as bench/real_mr.py: relative errors of tinier areas are noise


def slice_errors(pred_dir: Path, truth_dir: Path) -> pd.DataFrame:
    """Per slice: key, confidence, Dice error and absolute area error against the truth, in mm²
    (summed over ROIs) and relative (Σ over ROIs with a true area ≥ 20 mm² of |predicted − true|
    / true, in %, as ``bench/real_mr.py`` scores its area error).

    Raises:
        SystemExit: a file is missing or a label map has another shape than its truth.
    """
    wide = pd.read_csv(pred_dir / "csa.csv", index_col="slice", dtype={"slice": str})
    if "confidence" not in wide:
        raise SystemExit(f"{pred_dir}/csa.csv has no confidence column; predict again.")
    long = pd.read_csv(pred_dir / "csa_long.csv")
    spacing = long.groupby("file")[["row_spacing_mm", "col_spacing_mm"]].first()
    rois = sorted(set(long["roi"]))
    rows = []
    for key, confidence in wide["confidence"].dropna().items():
        file = str(wide.loc[key, "file"])
        pred = read_label_file(pred_dir / "labels" / f"{file}.png").values
        truth = _truth(truth_dir, file, pred.shape)
        pixel_mm2 = float(spacing.loc[file].prod())
        dice, area_error, relative_error = [], 0.0, 0.0
        for roi in rois:
            p, t = pred == roi, truth == roi
            n_pred, n_true = int(p.sum()), int(t.sum())
            if n_pred + n_true:
                dice.append(2.0 * int((p & t).sum()) / (n_pred + n_true))
            error_mm2 = abs(n_pred - n_true) * pixel_mm2
            area_error += error_mm2
            if n_true * pixel_mm2 >= MIN_TRUE_AREA_MM2:
                relative_error += 100.0 * error_mm2 / (n_true * pixel_mm2)
        rows.append(
            {
                "key": file,
                "confidence": float(confidence),
                "dice_error": 1.0 - float(np.mean(dice)) if dice else 0.0,
                "abs_area_error_mm2": area_error,
                "abs_area_error_pct": relative_error,
            }
        )
    return pd.DataFrame(rows)


def _truth(truth_dir: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    for suffix in (".png", ".npy", ".tif"):
        path = truth_dir / f"{key}{suffix}"
        if path.exists():
            values = read_label_file(path).values
            if values.shape != shape:
                raise SystemExit(f"{path}: shape {values.shape}, prediction {shape}.")
            return values
    raise SystemExit(f"{truth_dir}: no true label for {key} (.png, .npy or .tif).")


def usefulness(errors: pd.DataFrame, *, share: float = 0.1) -> Usefulness:
    """The two numbers of issue #11 from :func:`slice_errors`' table.

    Example:
        >>> table = pd.DataFrame({"confidence": [0.9, 0.2, 0.8, 0.95, 0.7, 0.85, 0.99, 0.6,
        ...                                      0.75, 0.9], "dice_error": [0.1, 0.8, 0.2,
        ...     0.05, 0.3, 0.1, 0.0, 0.4, 0.3, 0.1], "abs_area_error_mm2": [1, 50, 2, 1, 5,
        ...     1, 0, 8, 4, 1]})
        >>> round(usefulness(table).lowest_share, 2)
        0.68
    """
    uncertainty = 1.0 - errors["confidence"].to_numpy()
    rho, p_value = stats.spearmanr(uncertainty, errors["dice_error"].to_numpy())
    n_lowest = max(1, math.ceil(share * len(errors)))
    order = np.argsort(errors["confidence"].to_numpy(), kind="stable")[:n_lowest]
    area = errors["abs_area_error_mm2"].to_numpy()
    lowest, best = _shares(area, order)
    fraction = n_lowest / len(errors)
    relative = (math.nan, math.nan)
    if "abs_area_error_pct" in errors:
        relative = _shares(errors["abs_area_error_pct"].to_numpy(), order)
    return Usefulness(
        n_slices=len(errors),
        spearman=float(rho),
        spearman_p=float(p_value),
        lowest_share=lowest,
        lowest_ratio=lowest / fraction,
        n_lowest=n_lowest,
        best_share=best,
        best_ratio=best / fraction,
        spearman_area=float(stats.spearmanr(uncertainty, area).statistic),
        mean_dice_error=float(errors["dice_error"].mean()),
        total_abs_area_error_mm2=float(area.sum()),
        lowest_ratio_pct=relative[0] / fraction,
        best_ratio_pct=relative[1] / fraction,
    )


def _shares(errors: np.ndarray, chosen: np.ndarray) -> tuple[float, float]:
    """The share of the total error the chosen slices hold, and the most as many slices can."""
    total = float(errors.sum())
    if total <= 0:
        return math.nan, math.nan
    best = float(np.sort(errors)[::-1][: len(chosen)].sum())
    return float(errors[chosen].sum()) / total, best / total


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--json`` write) the confidence's usefulness on one prediction."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pred_dir", type=Path, help="a sliceseg predict output folder")
    parser.add_argument("truth_dir", type=Path, help="the true label maps, <key>.png/.npy")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    result = usefulness(slice_errors(args.pred_dir, args.truth_dir))
    met = "met" if result.spearman >= 0.4 else "NOT met"
    print(
        f"{result.n_slices} slices; mean Dice error {result.mean_dice_error:.3f}; total "
        f"|area error| {result.total_abs_area_error_mm2:.0f} mm²\n"
        f"Spearman ρ(1 − confidence, Dice error) = {result.spearman:.3f} "
        f"(p = {result.spearman_p:.2g}; goal ≥ 0.4, {met})\n"
        f"the {result.n_lowest} least confident slices (10 %) hold {result.lowest_share:.1%} of "
        f"the total |area error| = {result.lowest_ratio:.2f}× their share "
        f"(goal ≥ 2×, {'met' if result.lowest_ratio >= 2 else 'NOT met'}); the 10 % with the "
        f"largest errors hold {result.best_share:.1%} = {result.best_ratio:.2f}× (the most any "
        f"ranking can reach); ρ(1 − confidence, |area error|) = {result.spearman_area:.3f}\n"
        f"relative area error (|predicted − true| / true, true ≥ 20 mm²): the least confident "
        f"10 % hold {result.lowest_ratio_pct:.2f}× their share "
        f"({'met' if result.lowest_ratio_pct >= 2 else 'NOT met'}; best ranking "
        f"{result.best_ratio_pct:.2f}×)"
    )
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
