"""Soft Dice and Dice + CE on hand-worked cases; multi-output weighting and label resizing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sliceseg.errors import ConfigError
from sliceseg.training.losses import (
    DiceCELoss,
    MultiOutputLoss,
    SoftDiceLoss,
    build_loss,
    resize_labels,
)


def confident_logits(labels: torch.Tensor, num_classes: int, scale: float = 50.0) -> torch.Tensor:
    return scale * F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def square_labels() -> torch.Tensor:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, :4, :4] = 1
    labels[0, 4:, 4:] = 2
    return labels


class TestSoftDiceLoss:
    def test_perfect_prediction_is_zero(self):
        labels = square_labels()
        assert float(SoftDiceLoss()(confident_logits(labels, 3), labels)) == pytest.approx(
            0, abs=1e-6
        )

    def test_completely_wrong_is_one(self):
        labels = square_labels()
        wrong = (labels + 1) % 3  # every pixel predicted as another class
        assert float(SoftDiceLoss()(confident_logits(wrong, 3), labels)) == pytest.approx(
            1, abs=1e-4
        )

    def test_hand_computed_value(self):
        # Two classes, 4 pixels; logits 0 everywhere -> p(ROI) = 0.5 at every pixel.
        # Target has the ROI at 1 pixel: Σpt = 0.5, Σp = 2, Σt = 1 -> D = 1 / 3, loss = 2 / 3.
        labels = torch.tensor([[[1, 0], [0, 0]]])
        loss = SoftDiceLoss(smooth=0.0)(torch.zeros(1, 2, 2, 2), labels)
        assert float(loss) == pytest.approx(2 / 3)

    def test_hand_computed_mean_over_rois_summed_over_batch(self):
        # ROI 1 predicted perfectly in image 0 (D = 1 over the batch: image 1 has none of it);
        # ROI 2: target 1 pixel in image 1, predicted at another pixel -> D = 0. Loss = 1 - 1/2.
        labels = torch.zeros(2, 2, 2, dtype=torch.long)
        labels[0, 0, 0], labels[1, 0, 0] = 1, 2
        predicted = labels.clone()
        predicted[1, 0, 0], predicted[1, 1, 1] = 0, 2
        loss = SoftDiceLoss(smooth=0.0)(confident_logits(predicted, 3), labels)
        assert float(loss) == pytest.approx(0.5, abs=1e-6)

    def test_class_absent_from_both_gives_no_nan(self):
        labels = torch.zeros(1, 4, 4, dtype=torch.long)
        labels[0, :2] = 1  # class 2 absent from target and (confidently) from prediction
        loss = SoftDiceLoss()(confident_logits(labels, 3), labels)
        assert math.isfinite(float(loss))
        assert float(loss) == pytest.approx(0, abs=1e-4)

    def test_shape_mismatch_is_reported(self):
        with pytest.raises(ValueError, match=r"labels \(B, H, W\)"):
            SoftDiceLoss()(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long))


class TestDiceCELoss:
    def test_is_dice_plus_cross_entropy(self):
        torch.manual_seed(0)
        logits, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        expected = SoftDiceLoss()(logits, labels) + F.cross_entropy(logits, labels)
        assert float(DiceCELoss()(logits, labels)) == pytest.approx(float(expected))

    def test_holds_its_parts(self):
        loss = DiceCELoss()
        assert isinstance(loss.dice, SoftDiceLoss)
        assert isinstance(loss.cross_entropy, torch.nn.CrossEntropyLoss)


class TestBuildLoss:
    def test_names(self):
        assert isinstance(build_loss("dice"), SoftDiceLoss)
        assert isinstance(build_loss("dice_ce"), DiceCELoss)

    def test_ce_is_the_cross_entropy_of_every_class(self):
        logits = torch.tensor([[[[2.0]], [[0.0]], [[-1.0]]]])  # one pixel, three classes
        labels = torch.tensor([[[1]]])
        expected = -math.log(math.exp(0.0) / (math.exp(2.0) + 1.0 + math.exp(-1.0)))
        assert float(build_loss("ce")(logits, labels)) == pytest.approx(expected, rel=1e-6)

    def test_unknown_name_lists_known(self):
        known = r"use one of dice, dice_ce, ce"
        with pytest.raises(ConfigError, match=rf"loss 'focal' is unknown; {known}"):
            build_loss("focal")


class TestMultiOutputLoss:
    def test_default_weights_halve_per_scale(self):
        labels = torch.zeros(1, 16, 16, dtype=torch.long)
        outputs = [torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 4, 4)]
        weights = MultiOutputLoss(SoftDiceLoss()).output_weights(outputs, labels)
        assert weights == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75])

    def test_two_full_resolution_stages_weigh_equally(self):
        labels = torch.zeros(1, 16, 16, dtype=torch.long)
        outputs = [torch.zeros(1, 2, 16, 16)] * 2
        assert MultiOutputLoss(SoftDiceLoss()).output_weights(outputs, labels) == [0.5, 0.5]

    def test_total_is_weighted_sum_and_final_is_element_zero(self):
        torch.manual_seed(0)
        labels = torch.randint(0, 3, (2, 8, 8))
        outputs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
        base = SoftDiceLoss()
        loss_fn = MultiOutputLoss(base, weights=(3, 1))
        small = resize_labels(labels, (4, 4))
        expected = 0.75 * base(outputs[0], labels) + 0.25 * base(outputs[1], small)
        assert float(loss_fn(outputs, labels)) == pytest.approx(float(expected))
        assert float(loss_fn.final_loss(outputs, labels)) == pytest.approx(
            float(base(outputs[0], labels))
        )

    def test_single_output_equals_base(self):
        labels = torch.randint(0, 3, (1, 8, 8))
        logits = torch.randn(1, 3, 8, 8)
        loss_fn = MultiOutputLoss(SoftDiceLoss())
        assert float(loss_fn([logits], labels)) == pytest.approx(
            float(SoftDiceLoss()(logits, labels))
        )

    def test_too_few_weights(self):
        labels = torch.zeros(1, 8, 8, dtype=torch.long)
        with pytest.raises(ConfigError, match=r"2 outputs but 1 weights"):
            MultiOutputLoss(SoftDiceLoss(), weights=[1])([torch.zeros(1, 2, 8, 8)] * 2, labels)


class TestResizeLabels:
    def test_nearest_keeps_label_values(self):
        labels = torch.arange(16).reshape(1, 4, 4)
        small = resize_labels(labels, (2, 2))
        assert small.dtype == torch.long
        assert small.tolist() == [[[0, 2], [8, 10]]]
