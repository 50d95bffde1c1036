"""Tests for sliceseg.measure.calibration: the background weight that makes areas unbiased."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_test_dicom
from sliceseg.data.intensity import normalise_intensity
from sliceseg.inference.predict import calibrated_argmax, predict_slices
from sliceseg.io.dicom import read_slice
from sliceseg.measure.calibration import (
    LOG_WEIGHTS,
    AreaCalibration,
    choose_area_calibration,
    foreground_margin,
)
from sliceseg.measure.postprocess import PostProcessing
from sliceseg.models.bundle import Bundle
from test_predict import Threshold, metadata


def random_probabilities(seed: int, classes: int = 4, shape: tuple[int, int] = (24, 20)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(classes, *shape)) * 2.0
    return (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)


def disk_slice(true_radius: float, predicted_radius: float, size: int = 80):
    """Truth: a disk of ``true_radius``; log-odds fall by 1 per pixel, zero at ``predicted_radius``.

    The plain argmax draws the disk of ``predicted_radius``; a background weight ``e^t`` the
    disk of radius ``predicted_radius − t``.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    radius = np.hypot(rows - size / 2 + 0.5, cols - size / 2 + 0.5)
    truth = (radius <= true_radius).astype(np.uint8)
    log_odds = (predicted_radius - radius).astype(np.float32)
    return (np.ones_like(truth), log_odds), truth


class TestLabels:
    @pytest.mark.parametrize("log_weight", [0.0, 0.75, -1.25])
    def test_equal_the_argmax_of_the_weighted_probabilities(self, log_weight):
        probs = random_probabilities(seed=3)
        weighted = probs.copy()
        weighted[0] *= np.exp(log_weight)
        label = AreaCalibration(log_weight=log_weight).labels(*foreground_margin(probs))
        assert np.array_equal(label, weighted.argmax(axis=0))

    def test_predict_s_argmax_is_the_plain_argmax_without_a_weight(self):
        probs = torch.from_numpy(random_probabilities(seed=4))
        label = calibrated_argmax(probs, AreaCalibration())
        assert np.array_equal(label, probs.argmax(dim=0).numpy())


class TestChoice:
    def test_a_disk_drawn_one_pixel_too_wide_gets_the_weight_that_undoes_it(self):
        slices = [disk_slice(r, r + 1.0) for r in (12.0, 16.0, 20.0)]
        choice = choose_area_calibration(
            [m for m, _ in slices], [t for _, t in slices], num_classes=2
        )
        assert choice.log_weight == 1.0
        assert choice.bias_before_pct > 10.0  # (r+1)²/r² − 1: +11 to +17 %
        assert abs(choice.bias_after_pct) < 1.0
        assert choice.error_after_pct < choice.error_before_pct

    def test_unbiased_areas_keep_the_plain_argmax(self):
        slices = [disk_slice(r, r + 0.05) for r in (12.0, 16.0, 20.0)]
        choice = choose_area_calibration(
            [m for m, _ in slices], [t for _, t in slices], num_classes=2
        )
        assert choice.log_weight == 0.0
        assert choice.bias_after_pct == choice.bias_before_pct

    def test_a_weight_that_costs_dice_is_refused(self):
        # a large ROI drawn exactly but with low confidence (log-odds 0.3), and a small one
        # drawn twice too large: removing the large ROI would cancel the bias, at a Dice cost
        truth_large = np.zeros((60, 60), np.uint8)
        truth_large[5:55, 5:45] = 1
        odds_large = np.where(truth_large == 1, 0.3, -5.0).astype(np.float32)
        truth_small = np.zeros((60, 60), np.uint8)
        truth_small[10:15, 10:15] = 1
        odds_small = np.full((60, 60), -5.0, np.float32)
        odds_small[8:17, 8:17] = 1.9  # 81 pixels predicted, 25 true
        odds_small[truth_small == 1] = 3.0
        margins = [(np.ones_like(truth_large), odds_large), (np.ones_like(truth_small), odds_small)]
        choice = choose_area_calibration(margins, [truth_large, truth_small], num_classes=2)
        assert choice.bias_before_pct == pytest.approx(100 * (81 - 25) / 25 / 2)
        assert choice.log_weight == 0.0

    def test_the_area_floor_in_mm2_leaves_small_rois_out(self):
        tiny = disk_slice(2.0, 4.0, size=20)  # 12 true pixels, drawn ~4× too large
        large = disk_slice(16.0, 16.05)
        margins, truth = [tiny[0], large[0]], [tiny[1], large[1]]
        counted = choose_area_calibration(margins, truth, num_classes=2, pixel_area_mm2=2.0)
        left_out = choose_area_calibration(margins, truth, num_classes=2, pixel_area_mm2=1.0)
        assert counted.bias_before_pct > 50.0  # 12 px × 2 mm² = 24 mm² ≥ 20 mm²
        assert abs(left_out.bias_before_pct) < 1.0 and left_out.log_weight == 0.0

    def test_nothing_to_measure_gives_no_weight(self):
        empty = np.zeros((10, 10), np.uint8)
        margin = (np.ones_like(empty), np.full((10, 10), -3.0, np.float32))
        assert choose_area_calibration([margin], [empty], num_classes=2) == AreaCalibration()

    def test_the_grid_is_symmetric_and_holds_the_plain_argmax(self):
        assert 0.0 in LOG_WEIGHTS and tuple(-w for w in reversed(LOG_WEIGHTS)) == LOG_WEIGHTS


class TestModelFile:
    def test_round_trips_in_the_post_processing_entry(self):
        calibration = AreaCalibration(1.25, 2.0, 0.1, 3.0, 2.5)
        post = PostProcessing(steps={1: ("fill_holes",)}, calibration=calibration)
        assert PostProcessing.from_dict(post.to_dict()).calibration == calibration

    def test_an_entry_from_before_the_calibration_means_no_weight(self):
        post = PostProcessing.from_dict({"steps": {"1": []}, "dice_before": {"1": 0.9}})
        assert post.calibration.log_weight == 0.0 and post.calibration.background_weight == 1.0

    def test_predict_applies_the_weight_on_the_slice_s_grid(self, tmp_path):
        rows, cols = np.mgrid[0:112, 0:96]
        pixels = 1000.0 * np.exp(-((rows - 56.0) ** 2 + (cols - 48.0) ** 2) / (2 * 25.0**2))
        image = read_slice(write_test_dicom(tmp_path / "a.dcm", pixels.astype(np.int16)))
        spacing = image.spacing_mm
        post = PostProcessing(calibration=AreaCalibration(log_weight=2.0)).to_dict()
        plain = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=spacing))
        weighted = Bundle(
            Threshold(), metadata(input_size=32, target_spacing_mm=spacing, postprocessing=post)
        )
        normalised = normalise_intensity(image.pixels)
        # the Threshold network's log-odds are 4 × the normalised intensity
        label = predict_slices(weighted, [image], device="cpu")[0]
        assert np.array_equal(label, (4 * normalised > 2.0).astype(np.uint8))
        assert label.sum() < predict_slices(plain, [image], device="cpu")[0].sum()

    def test_the_report_names_the_weight(self, tmp_path):
        from sliceseg.inference.folder import predict_folder

        rows, cols = np.mgrid[0:40, 0:40]
        pixels = 1000.0 * np.exp(-((rows - 20.0) ** 2 + (cols - 20.0) ** 2) / (2 * 8.0**2))
        write_test_dicom(tmp_path / "in" / "a.dcm", pixels.astype(np.int16))
        calibration = AreaCalibration(2.0, 3.0, 0.2, 4.0, 2.5)
        post = PostProcessing(calibration=calibration).to_dict()
        bundle = Bundle(
            Threshold(), metadata(input_size=32, target_spacing_mm=(0.5, 0.8), postprocessing=post)
        )
        run = predict_folder(bundle, tmp_path / "in", tmp_path / "out")
        assert run.report is not None
        html = run.report.read_text(encoding="utf-8")
        assert "background ×7.39 (validation area bias +3.0 → +0.2 %)" in html
        assert "0.5 × 0.8 mm (row × column)" in html


class TestValidation:
    """Validation chooses the weight ``predict`` will use; ``area_calibration`` turns it off."""

    @pytest.mark.parametrize("calibrate, expected", [(True, 2.0), (False, 0.0)])
    def test_a_network_that_draws_too_wide_gets_its_weight(self, tmp_path, calibrate, expected):
        import dataclasses

        from sliceseg.data.batches import slices_to_spacing
        from sliceseg.training.steps import evaluate_spaced

        rows, cols = np.mgrid[0:64, 0:64]
        pixels = 1000.0 * np.exp(-((rows - 32.0) ** 2 + (cols - 32.0) ** 2) / (2 * 12.0**2))
        image = read_slice(write_test_dicom(tmp_path / "a.dcm", pixels.astype(np.int16)))
        data = slices_to_spacing([image], image.spacing_mm)
        # the truth is where the Threshold network's log-odds 4x exceed 2, its argmax where x > 0
        truth = (4 * data.images[0][0] > 2.0).long()
        data = dataclasses.replace(data, labels=(truth,))
        _, post = evaluate_spaced(
            Threshold(),
            data,
            device=torch.device("cpu"),
            num_classes=2,
            input_size=32,
            divisor=16,
            calibrate=calibrate,
        )
        assert post.calibration.log_weight == expected
        if calibrate:
            assert post.calibration.bias_before_pct > 20 and post.calibration.bias_after_pct == 0


def test_the_setting_must_be_a_boolean():
    from sliceseg.errors import ConfigError
    from sliceseg.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^area_calibration must be true or false, got 'no'\.$"):
        TrainConfig(area_calibration="no")  # type: ignore[arg-type]
    assert TrainConfig().area_calibration is True


def test_the_cli_flag_turns_it_off():
    from sliceseg.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "data", "--no-area-calibration"])
    assert _train_config(args).area_calibration is False
    assert _train_config(build_parser().parse_args(["train", "data"])).area_calibration is True
