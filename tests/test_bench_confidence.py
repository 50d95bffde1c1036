"""bench/confidence.py: the errors it reads from a prediction folder and the shares it reports."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from confidence import slice_errors, usefulness


def write_prediction(tmp_path: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray, float]]):
    """A folder as ``sliceseg predict`` writes it: labels/, csa.csv and csa_long.csv."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    (pred / "labels").mkdir(parents=True)
    truth.mkdir()
    wide, long = [], []
    for n, (file, (predicted, true, confidence)) in enumerate(pairs.items(), 1):
        Image.fromarray(predicted).save(pred / "labels" / f"{file}.png")
        Image.fromarray(true).save(truth / f"{file}.png")
        wide.append({"slice": str(n), "file": file, "confidence": confidence})
        for roi in (1, 2):
            long.append({"file": file, "roi": roi, "row_spacing_mm": 0.5, "col_spacing_mm": 0.5})
    pd.DataFrame(wide).to_csv(pred / "csa.csv", index=False)
    pd.DataFrame(long).to_csv(pred / "csa_long.csv", index=False)
    return pred, truth


def test_area_errors_in_mm2_and_percent_of_the_true_area(tmp_path):
    true = np.zeros((40, 40), np.uint8)
    true[0:10, 0:10] = 1  # 100 px = 25 mm²
    true[20:22, 20:24] = 2  # 8 px = 2 mm²: below 20 mm², left out of the relative error
    predicted = np.zeros_like(true)
    predicted[0:12, 0:10] = 1  # 120 px: +5 mm², +20 %
    predicted[20:22, 20:26] = 2  # 12 px: +1 mm²
    pred, truth = write_prediction(tmp_path, {"a": (predicted, true, 0.8)})
    row = slice_errors(pred, truth).iloc[0]
    assert row["abs_area_error_mm2"] == pytest.approx(5.0 + 1.0)
    assert row["abs_area_error_pct"] == pytest.approx(20.0)
    assert row["dice_error"] == pytest.approx(1 - (2 * 100 / 220 + 2 * 8 / 20) / 2)


def test_shares_of_the_least_confident_tenth_and_of_the_best_ranking():
    confidence = np.linspace(0.5, 0.95, 20)  # slices 0 and 1 are the least confident 10 %
    mm2 = np.ones(20)
    mm2[[0, 1]] = 4.0  # they hold 8 of 26 mm²
    pct = np.ones(20)
    pct[[5, 6]] = 10.0  # confident slices hold the largest relative errors
    table = pd.DataFrame(
        {
            "confidence": confidence,
            "dice_error": 1 - confidence,
            "abs_area_error_mm2": mm2,
            "abs_area_error_pct": pct,
        }
    )
    result = usefulness(table)
    assert result.n_lowest == 2
    assert result.spearman == pytest.approx(1.0)
    assert result.lowest_ratio == pytest.approx((8 / 26) / 0.1)
    assert result.best_ratio == pytest.approx((8 / 26) / 0.1)
    assert result.lowest_ratio_pct == pytest.approx((2 / 38) / 0.1)
    assert result.best_ratio_pct == pytest.approx((20 / 38) / 0.1)
    assert math.isnan(usefulness(table.drop(columns="abs_area_error_pct")).lowest_ratio_pct)
