"""The real-MR benchmark's calibration check: per-ROI bias, plain argmax vs calibrated."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from real_mr_calibration import bias_table, markdown, plain_model_copy
from real_mr_score import Score
from sliceseg.models import build_model
from sliceseg.models.bundle import load_bundle, save_bundle
from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
from sliceseg.postprocess.cleanup import PostProcessing
from test_predict import metadata


def score(pred_mm2: dict[tuple[str, int], float]) -> Score:
    true = {("a", 1): 100.0, ("b", 1): 50.0, ("a", 2): 40.0, ("b", 2): 5.0}
    rows = tuple(
        {"key": k, "roi": r, "dice": 1.0, "true_mm2": t, "pred_mm2": pred_mm2[(k, r)]}
        for (k, r), t in true.items()
    )
    return Score((1.0, 1.0), (0.0, 0.0), 2, rows)


@pytest.fixture
def model(tmp_path):
    calibration = AreaCalibration(per_roi={1: RoiCalibration(0.5), 2: RoiCalibration(0.0)})
    meta = metadata(
        num_classes=3,
        roi_names=("wm", "gm"),
        hyperparameters={"depth": 3},
        postprocessing=PostProcessing(
            steps={2: ("fill_holes",)}, calibration=calibration
        ).to_dict(),
    )
    unet = build_model("unet", num_classes=3, input_size=32, depth=3)
    return save_bundle(tmp_path / "m.pt", unet, meta)


def test_the_table_gives_each_roi_s_signed_bias_plain_and_calibrated(model):
    plain = score({("a", 1): 106.0, ("b", 1): 54.0, ("a", 2): 44.0, ("b", 2): 9.0})
    calibrated = score({("a", 1): 101.0, ("b", 1): 49.0, ("a", 2): 44.0, ("b", 2): 9.0})
    table = bias_table(calibrated, plain, roi_names=["wm", "gm"], model=model)
    # wm: (+6 %, +8 %) → (+1 %, −2 %); gm: b's 5 mm² is under the 20 mm² floor
    assert table.loc["wm"].tolist() == pytest.approx([2, 7.0, -0.5, 1.6487212707])
    assert table.loc["gm"].tolist() == pytest.approx([1, 10.0, 10.0, 1.0])
    lines = markdown(table, ["WM", "GM"]).splitlines()
    assert lines[0] == "Area bias on held-out slices (test scanners): plain argmax vs calibrated"
    assert lines[4:] == [
        "| WM | 2 | +7.00 | -0.50 | ×1.65 |",
        "| GM | 1 | +10.00 | +10.00 | ×1.00 |",
    ]


def test_the_plain_copy_drops_only_the_calibration(model, tmp_path):
    copy = load_bundle(plain_model_copy(model, tmp_path / "plain.pt"))
    post = PostProcessing.from_dict(copy.metadata.postprocessing)
    assert post.calibration.is_plain and post.steps == {2: ("fill_holes",)}
