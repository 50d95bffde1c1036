"""Evaluation: per-slice metrics at native resolution, agreement statistics, files."""

import numpy as np
import pandas as pd
import pytest

from sliceseg.inference.evaluate import _slice_rows, evaluate_model

pytestmark = pytest.mark.slow


def test_identical_maps_score_perfectly():
    truth = np.zeros((20, 30), np.uint8)
    truth[2:8, 3:9] = 1
    rows = _slice_rows("k", truth.copy(), truth, (0.5, 0.8), ["a", "b"])
    assert rows[0]["dice"] == 1.0 and rows[0]["hd95_mm"] == 0.0 and rows[0]["area_error_mm2"] == 0.0
    assert rows[0]["area_manual_mm2"] == pytest.approx(36 * 0.4)
    assert np.isnan(rows[1]["dice"]) and not rows[1]["missed"]


def test_missed_roi_is_counted_not_dropped():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:5, 2:5] = 1
    rows = _slice_rows("k", np.zeros_like(truth), truth, (1.0, 1.0), ["a"])
    assert rows[0]["missed"] and rows[0]["dice"] == 0.0 and np.isinf(rows[0]["hd95_mm"])
    assert rows[0]["area_error_pct"] == -100.0


def test_evaluate_model_writes_consistent_tables(tiny_model, tiny_phantom, tmp_path):
    result = evaluate_model(tiny_model, tiny_phantom / "test", tmp_path / "ev")
    per_slice = pd.read_csv(tmp_path / "ev" / "evaluation_per_slice.csv")
    summary = pd.read_csv(tmp_path / "ev" / "evaluation_summary.csv", index_col="roi_name")
    assert len(summary) == 6 and (tmp_path / "ev" / "bland_altman.png").stat().st_size > 5000
    part = per_slice[per_slice["roi"] == 1]
    diff = part["area_auto_mm2"] - part["area_manual_mm2"]
    assert summary.loc["vertebral body", "ba_bias_mm2"] == pytest.approx(diff.mean())
    assert summary.loc["vertebral body", "dice_mean"] == pytest.approx(part["dice"].mean())
    assert "Evaluation per ROI" in result.to_text()
