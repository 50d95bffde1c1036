"""Tests for sliceseg.postprocess.cleanup: per-ROI clean-up kept only where validation gains."""

from __future__ import annotations

import numpy as np
import pytest

from sliceseg.errors import ConfigError
from sliceseg.postprocess.cleanup import (
    PostProcessing,
    apply_step,
    choose_postprocessing,
    roi_dice_per_slice,
)


def disc(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def truth_and_prediction() -> tuple[np.ndarray, np.ndarray]:
    """ROI 1 a disc, ROI 2 two separate discs (both true); the prediction adds a stray ROI 1 blob
    and puts a hole in ROI 1."""
    truth = np.zeros((60, 80), np.uint8)
    truth[disc(truth.shape, (20, 20), 10)] = 1
    truth[disc(truth.shape, (45, 50), 6)] = 2
    truth[disc(truth.shape, (45, 70), 6)] = 2
    predicted = truth.copy()
    predicted[disc(truth.shape, (50, 10), 3)] = 1  # stray blob, 29 pixels
    predicted[19:22, 19:22] = 0  # a 9-pixel hole
    return truth, predicted


class TestApplyStep:
    def test_largest_component_removes_the_stray_blob_only(self):
        _truth, predicted = truth_and_prediction()
        cleaned = apply_step(predicted, 1, "largest_component")
        assert int((cleaned == 1).sum()) == int((predicted == 1).sum()) - 29
        assert not (cleaned[45:56, 5:16] == 1).any()
        assert np.array_equal(cleaned == 2, predicted == 2)

    def test_fill_holes_fills_background_but_never_another_roi(self):
        label = np.zeros((30, 30), np.uint8)
        label[disc(label.shape, (15, 15), 10)] = 1
        label[13:16, 13:16] = 0  # background hole
        label[8:10, 15:17] = 2  # another ROI enclosed by ROI 1
        filled = apply_step(label, 1, "fill_holes")
        assert (filled[13:16, 13:16] == 1).all()
        assert (filled[8:10, 15:17] == 2).all()

    def test_unknown_step_is_a_config_error(self):
        with pytest.raises(ConfigError, match="post-processing step 'dilate' is unknown"):
            apply_step(np.ones((3, 3), np.uint8), 1, "dilate")

    def test_a_hole_open_to_the_image_edge_is_not_filled(self):
        """ROI 1 a ring cut by the left edge: its inside reaches the border, so it stays."""
        label = np.zeros((20, 20), np.uint8)
        label[disc(label.shape, (10, 3), 7) & ~disc(label.shape, (10, 3), 4)] = 1
        assert np.array_equal(apply_step(label, 1, "fill_holes"), label)
        label[:, 0] = 1  # the edge closes the ring: now its inside is a hole
        inside = disc(label.shape, (10, 3), 4) & (label == 0)
        filled = apply_step(label, 1, "fill_holes")
        assert (filled[inside] == 1).all() and int((filled != label).sum()) == int(inside.sum())

    @pytest.mark.parametrize("seed", range(6))
    def test_equal_to_the_steps_on_the_whole_slice(self, seed):
        """Both steps on the ROI's box give what the textbook definitions give on the whole
        slice (blobs, holes and other ROIs at random, ROIs touching the edges)."""
        from scipy import ndimage

        rng = np.random.default_rng(seed)
        noise = ndimage.gaussian_filter(rng.normal(size=(70, 90)), 2.5)
        label = np.digitize(noise, np.quantile(noise, [0.5, 0.7, 0.85])).astype(np.uint8)
        for roi in (1, 2, 3):
            mask = label == roi
            components, _ = ndimage.label(mask, structure=np.ones((3, 3), bool))
            sizes = np.bincount(components.ravel())[1:]
            largest = label.copy()
            largest[mask & (components != int(np.argmax(sizes)) + 1)] = 0
            filled = label.copy()
            filled[ndimage.binary_fill_holes(mask) & (label == 0)] = roi
            assert np.array_equal(apply_step(label, roi, "largest_component"), largest)
            assert np.array_equal(apply_step(label, roi, "fill_holes"), filled)
        assert np.array_equal(apply_step(label, 4, "fill_holes"), label)  # absent ROI


class TestChoosePostprocessing:
    def test_keeps_the_steps_that_raise_validation_dice(self):
        truth, predicted = truth_and_prediction()
        choice = choose_postprocessing([predicted] * 3, [truth] * 3, num_classes=3)
        assert choice.steps[1] == ("largest_component", "fill_holes")
        # ROI 2 is truly two pieces: keeping the largest would lose one, so nothing is kept
        assert choice.steps[2] == ()
        assert choice.dice_after[1] > choice.dice_before[1]
        assert choice.dice_after[2] == choice.dice_before[2] == 1.0
        assert choice.describe() == "ROI 1: largest_component + fill_holes"
        # the log and info name ROIs as the Dice and calibration lines do, not by number
        assert choice.describe(("disc", "psoas")) == "disc: largest_component + fill_holes"

    def test_a_gain_below_the_margin_keeps_nothing(self):
        truth, predicted = truth_and_prediction()
        before = roi_dice_per_slice([predicted], [truth], 1)
        gain = 1.0 - before  # the best combination restores ROI 1 exactly
        assert gain > 0.05
        choice = choose_postprocessing([predicted], [truth], num_classes=3, min_gain=gain + 1e-9)
        assert choice.steps[1] == () and choice.dice_after[1] == choice.dice_before[1]

    def test_applying_the_choice_restores_the_truth(self):
        truth, predicted = truth_and_prediction()
        choice = choose_postprocessing([predicted], [truth], num_classes=3)
        assert np.array_equal(choice.apply(predicted), truth)
        assert roi_dice_per_slice([choice.apply(predicted)], [truth], 1) == 1.0

    def test_round_trips_through_plain_data(self):
        truth, predicted = truth_and_prediction()
        choice = choose_postprocessing([predicted], [truth], num_classes=3)
        again = PostProcessing.from_dict(choice.to_dict())
        assert again.steps == choice.steps and again.dice_after == choice.dice_after
        assert PostProcessing.from_dict({}).is_empty

    def test_an_area_calibration_alone_is_not_empty(self):
        from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration

        older = PostProcessing(calibration=AreaCalibration(log_weight=1.0))
        per_roi = PostProcessing(calibration=AreaCalibration(per_roi={2: RoiCalibration(-0.5)}))
        unchanged = PostProcessing(calibration=AreaCalibration(per_roi={2: RoiCalibration(0.0)}))
        assert not older.is_empty and not per_roi.is_empty and unchanged.is_empty
        assert not older.has_steps and PostProcessing(steps={1: ("fill_holes",)}).has_steps
        with pytest.raises(ConfigError, match="unknown"):
            PostProcessing.from_dict({"steps": {"1": ["erode"]}})
