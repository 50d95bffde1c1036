"""Tests for sliceseg.inference.area_bias: plain vs calibrated area bias on unseen slices."""

from __future__ import annotations

import math

import pytest

from sliceseg.inference.area_bias import (
    area_bias_table,
    format_area_bias,
    without_area_calibration,
)
from sliceseg.models.bundle import Bundle
from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
from sliceseg.postprocess.cleanup import PostProcessing
from test_predict import Threshold, metadata


def test_the_table_averages_signed_errors_over_slices_with_the_roi():
    true = {("s1", 1): 100.0, ("s2", 1): 200.0, ("s1", 2): 10.0, ("s2", 2): 50.0}
    plain = {("s1", 1): 110.0, ("s2", 1): 210.0, ("s2", 2): 60.0}
    calibrated = {("s1", 1): 100.0, ("s2", 1): 196.0, ("s2", 2): 55.0}
    calibration = AreaCalibration(per_roi={1: RoiCalibration(math.log(2.0))})
    table = area_bias_table(true, plain, calibrated, roi_names=["disc", "psoas", "none"],
                            calibration=calibration)  # fmt: skip
    # disc: (+10 %, +5 %) → (0 %, −2 %); psoas: s1's 10 mm² is under the 20 mm² floor
    assert table.loc["disc"].tolist() == pytest.approx([2, 7.5, -1.0, 2.0])
    assert table.loc["psoas"].tolist() == pytest.approx([1, 20.0, 10.0, 1.0])
    assert table.loc["none", "slices"] == 0 and math.isnan(table.loc["none", "plain_bias_pct"])
    text = format_area_bias(table).splitlines()
    assert text[1].split() == ["disc", "2", "+7.5%", "-1.0%", "2.00×"]


def test_without_area_calibration_keeps_the_steps():
    post = PostProcessing(
        steps={1: ("fill_holes",)}, calibration=AreaCalibration(per_roi={1: RoiCalibration(1.0)})
    )
    bundle = Bundle(Threshold(), metadata(postprocessing=post.to_dict()))
    plain = PostProcessing.from_dict(without_area_calibration(bundle).metadata.postprocessing)
    assert plain.steps == {1: ("fill_holes",)} and plain.calibration.is_plain
    assert (
        PostProcessing.from_dict(bundle.metadata.postprocessing).calibration.log_weight_of(1) == 1
    )
