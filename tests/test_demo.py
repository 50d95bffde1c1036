"""The demo's comparison against the phantom's true areas."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sliceseg.demo import compare_with_truth
from sliceseg.label_areas import measure_label_folder


@pytest.fixture
def measured_test_labels(tiny_phantom, tmp_path):
    test = tiny_phantom / "test"
    areas, _paths, _notes = measure_label_folder(test / "labels", test / "dicoms", tmp_path / "m")
    return areas


def test_phantom_labels_measure_close_to_truth(tiny_phantom, measured_test_labels):
    errors = compare_with_truth(measured_test_labels, tiny_phantom / "truth.csv")
    truth = pd.read_csv(tiny_phantom / "truth.csv")
    assert len(errors) == 6
    assert (errors["slices"] == (truth["split"] == "test").sum() / 6).all()
    # The tiny phantom's 96-px grids give a psoas of ~100 pixels, so boundary quantisation
    # alone costs up to ~3%; the default phantom's test holds the 1% on average.
    assert errors["mean_abs_error_pct"].max() < 3.0
    assert errors.loc["vertebral body", "true_area_mm2"] == pytest.approx(
        truth[(truth["split"] == "test") & (truth["roi"] == 1)]["area_mm2"].mean()
    )


def test_a_ten_percent_over_segmentation_reads_as_ten_percent(tiny_phantom, measured_test_labels):
    truth = pd.read_csv(tiny_phantom / "truth.csv")[["key", "roi", "area_mm2"]]
    exact = measured_test_labels.long.drop(columns="area_mm2").merge(
        truth.rename(columns={"key": "file"}), on=["file", "roi"]
    )
    exact["area_mm2"] *= 1.10
    errors = compare_with_truth(
        dataclasses.replace(measured_test_labels, long=exact), tiny_phantom / "truth.csv"
    )
    assert errors["mean_abs_error_pct"].to_numpy() == pytest.approx(10.0, abs=1e-6)


@pytest.mark.slow
def test_area_bias_table_compares_plain_and_calibrated_on_the_test_subjects(
    tiny_model, tiny_phantom, tmp_path
):
    """A weight on ROI 1 alone: the other ROIs' plain and calibrated biases are equal, and ROI
    1's calibrated area can only be smaller (e² on its background keeps a subset of its pixels)."""
    from conftest import with_postprocessing
    from sliceseg.demo import area_bias_on_test
    from sliceseg.inference.folder import predict_folder
    from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
    from sliceseg.postprocess.cleanup import PostProcessing

    calibration = AreaCalibration(per_roi={1: RoiCalibration(2.0)})
    post = PostProcessing(calibration=calibration).to_dict()
    model = with_postprocessing(tiny_model, tmp_path / "pinned.pt", post)
    run = predict_folder(model, tiny_phantom / "test" / "dicoms", tmp_path / "out", report=False)
    bias = area_bias_on_test(run, model, tiny_phantom / "truth.csv")
    truth = pd.read_csv(tiny_phantom / "truth.csv")
    test = truth[(truth["split"] == "test") & (truth["area_mm2"] >= 20.0)]
    assert bias["slices"].tolist() == [int((test["roi"] == r).sum()) for r in range(1, 7)]
    assert (
        bias.loc["vertebral body", "calibrated_bias_pct"]
        <= bias.loc["vertebral body", "plain_bias_pct"]
    )
    assert bias.loc["vertebral body", "background_weight"] == pytest.approx(np.exp(2.0))
    others = bias.iloc[1:]
    assert (others["plain_bias_pct"] == others["calibrated_bias_pct"]).all()
    assert (others["background_weight"] == 1.0).all()


@pytest.mark.parametrize("minutes", ["0", "-1", "nan"])
def test_demo_minutes_not_above_zero_is_refused_before_any_work(tmp_path, capsys, minutes):
    """One line naming ``--minutes`` (exit 2), before the phantom is generated."""
    from sliceseg.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", minutes]) == 2
    assert f"--minutes must be more than 0, got {minutes}" in capsys.readouterr().err
    assert not out.exists()
