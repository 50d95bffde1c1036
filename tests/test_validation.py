"""Validation during training: Dice over the ROIs the validation labels hold, the best model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.models.bundle import load_bundle
from sliceseg.training import loop
from sliceseg.training.steps import evaluate_spaced, mean_dice
from test_predict import Threshold


def bright_square(labels: torch.Tensor) -> SpacedTensors:
    """One 32 × 32 slice whose centre square is bright (the Threshold network's ROI 1)."""
    image = torch.full((1, 32, 32), -1.0)
    image[0, 8:24, 8:24] = 1.0
    return SpacedTensors(
        images=(image,),
        labels=(labels,),
        geometries=(),
        keys=("p1/a",),
        reorientations=(),
        target_spacing_mm=(1.0, 1.0),
    )


def validation_dice(data: SpacedTensors) -> np.ndarray:
    dice, _ = evaluate_spaced(
        Threshold(), data, device=torch.device("cpu"), num_classes=2, input_size=32, divisor=16,
        calibrate=False,
    )  # fmt: skip
    return dice


class TestEvaluateSpaced:
    def test_an_roi_the_labels_hold_is_scored(self):
        truth = torch.zeros(32, 32, dtype=torch.long)
        truth[8:24, 8:16] = 1  # half the drawn square: 2·128 / (2·128 + 128) = 2/3
        assert validation_dice(bright_square(truth)).tolist() == pytest.approx([2 / 3])

    def test_an_roi_the_labels_do_not_hold_has_no_dice(self):
        """The network draws 256 pixels of ROI 1 on a slice without it: that scored Dice 0,
        so an epoch's mean averaged whichever ROIs it happened to draw (MONAI's DiceMetric
        ignores an empty truth, `ignore_empty=True`)."""
        dice = validation_dice(bright_square(torch.zeros(32, 32, dtype=torch.long)))
        assert np.isnan(dice).tolist() == [True]


class TestMeanDice:
    @pytest.mark.parametrize(
        "values, expected",
        [
            ([0.8, math.nan, 0.6], 0.7),
            ([0.5], 0.5),
            ([math.nan, math.nan], math.nan),
            ([], math.nan),
        ],
    )
    def test_mean_of_the_finite_values(self, values, expected):
        mean = mean_dice(np.array(values, dtype=np.float64))
        assert mean == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow
def test_validation_without_any_roi_keeps_the_last_model_and_says_why(
    tiny_phantom, tmp_path, monkeypatch, recwarn
):
    """Validation labels of background only: no epoch has a Dice. The first epoch that drew a
    false positive scored 0.0 and stayed the best model (nothing beats 0.0 that is not nan),
    and the progress line read 'mean nan'."""
    real = loop.load_training_data

    def background_only(*args, **kwargs):
        data = real(*args, **kwargs)
        labels = tuple(torch.zeros_like(t) for t in data.validation.labels)
        return dataclasses.replace(
            data, validation=dataclasses.replace(data.validation, labels=labels)
        )

    monkeypatch.setattr(loop, "load_training_data", background_only)
    out = tmp_path / "m"
    lines: list[str] = []
    result = loop.train(tiny_config(tiny_phantom / "train", out, epochs=2), log=lines.append)
    assert result.history["val_dice"].isna().all()
    assert math.isnan(result.best_val_dice)
    assert load_bundle(result.best_model).metadata.epoch == 2
    assert lines.count("Validation dice: none, the validation slices hold no ROI.") == 2
    assert (
        "No validation Dice: the validation slices hold no ROI, so sliceseg_best.pt is the last "
        "epoch's model (epoch 2); give validation patients with labelled ROIs to choose the best "
        "epoch by Dice." in lines
    )
    assert not [w for w in recwarn if "Mean of empty slice" in str(w.message)]
