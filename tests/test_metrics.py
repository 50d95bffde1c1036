"""Metrics pinned to hand-worked values: Dice, IoU, HD95 in mm, Bland–Altman, ICC."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sliceseg.errors import ConfigError, LabelError
from sliceseg.measure.metrics import (
    bland_altman,
    dice_per_class,
    hausdorff95_mm,
    icc,
    icc_from_ratings,
    iou_per_class,
)

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float
)


def square_and_rectangle() -> tuple[np.ndarray, np.ndarray]:
    square = np.zeros((20, 20), np.uint8)
    square[0:10, 0:10] = 1
    rectangle = np.zeros((20, 20), np.uint8)
    rectangle[0:10, 0:12] = 1
    return square, rectangle


class TestDicePerClass:
    def test_square_vs_rectangle(self):
        # |A∩B| = 100, |A| + |B| = 100 + 120 -> 200 / 220.
        square, rectangle = square_and_rectangle()
        assert dice_per_class(square, rectangle, 2) == pytest.approx([200 / 220])

    def test_absent_in_both_is_nan_and_missed_is_zero(self):
        square, _ = square_and_rectangle()
        target = square * 2  # ROI 2 only in the target, ROI 1 only in the prediction
        dice = dice_per_class(square, target, 4)
        assert dice[0] == 0 and dice[1] == 0 and math.isnan(dice[2])

    def test_torch_and_batched_input_pool_the_pixels(self):
        square, rectangle = square_and_rectangle()
        pred = torch.from_numpy(np.stack([square, square])).long()
        target = torch.from_numpy(np.stack([rectangle, square])).long()
        # TP 200, |A| + |B| = 200 + 220 -> 400 / 420.
        assert dice_per_class(pred, target, 2) == pytest.approx([400 / 420])

    def test_shape_mismatch(self):
        with pytest.raises(LabelError, match=r"differ in shape"):
            dice_per_class(np.zeros((4, 4), int), np.zeros((4, 5), int), 2)

    def test_values_out_of_range(self):
        with pytest.raises(LabelError, match=r"span 0\.\.5; expected 0\.\.2"):
            dice_per_class(np.array([[0, 5]]), np.array([[0, 1]]), 3)


class TestIouPerClass:
    def test_square_vs_rectangle(self):
        square, rectangle = square_and_rectangle()
        assert iou_per_class(square, rectangle, 2) == pytest.approx([100 / 120])


class TestHausdorff95Mm:
    def test_shift_uses_column_spacing(self):
        # Shifted 2 columns: the farthest boundary pixels are 2 columns away -> 2 × 0.8 mm.
        square = np.zeros((20, 20), bool)
        square[5:15, 5:15] = True
        shifted = np.roll(square, 2, axis=1)
        assert hausdorff95_mm(square, shifted, (0.5, 0.8)) == pytest.approx(1.6)

    def test_identical_is_zero(self):
        square, _ = square_and_rectangle()
        assert hausdorff95_mm(square > 0, square > 0, (1.0, 1.0)) == 0

    def test_both_empty_is_nan_and_one_empty_is_inf(self):
        empty = np.zeros((8, 8), bool)
        full = empty.copy()
        full[2:4, 2:4] = True
        assert math.isnan(hausdorff95_mm(empty, empty, (1.0, 1.0)))
        assert hausdorff95_mm(empty, full, (1.0, 1.0)) == math.inf
        assert hausdorff95_mm(full, empty, (1.0, 1.0)) == math.inf

    def test_bad_spacing(self):
        mask = np.ones((4, 4), bool)
        with pytest.raises(ConfigError, match=r"spacing_mm must be two values > 0"):
            hausdorff95_mm(mask, mask, (0.0, 1.0))


class TestBlandAltman:
    def test_hand_worked(self):
        # differences 1, 2, 3: bias 2, sd 1, limits 2 ± 1.96.
        result = bland_altman([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
        assert (result.bias, result.sd, result.n) == (2.0, 1.0, 3)
        assert (result.lower_loa, result.upper_loa) == pytest.approx((0.04, 3.96))

    def test_non_finite_pairs_are_dropped_and_few_pairs_give_nan(self):
        result = bland_altman([1.0, np.nan], [0.0, 2.0])
        assert result.n == 1 and result.bias == 1.0 and math.isnan(result.sd)
        assert math.isnan(bland_altman([], []).bias)

    def test_lengths_differ(self):
        with pytest.raises(ConfigError, match=r"differ in length \(2 auto, 3 manual\)"):
            bland_altman([1, 2], [1, 2, 3])


class TestIcc:
    def test_shrout_fleiss_table_2(self):
        assert icc_from_ratings(SHROUT_FLEISS, kind="2,1") == pytest.approx(0.29, abs=0.005)
        assert icc_from_ratings(SHROUT_FLEISS, kind="3,1") == pytest.approx(0.71, abs=0.005)

    def test_two_judges_hand_worked(self):
        # Judges 1 and 4: rows means 8.5 4 8 6.5 9.5 6.5, grand 43/6, judge means 23/3, 20/3.
        # BMS = 2·Σ(row − grand)² / 5 = 113/15; JMS = 6·(0.5² + 0.5²) / 1 = 3;
        # EMS = Σ(d − d̄)²/2 / 5 with d = 1 4 0 1 1 −1 -> 7/5.
        # ICC(3,1) = (113/15 − 21/15) / (113/15 + 21/15) = 46/67;
        # ICC(2,1) = (92/15) / (134/15 + 2·(3 − 7/5)/6) = 46/71.
        judge1, judge4 = SHROUT_FLEISS[:, 0], SHROUT_FLEISS[:, 3]
        assert icc(judge1, judge4) == pytest.approx(46 / 67)
        assert icc(judge1, judge4, kind="2,1") == pytest.approx(46 / 71)

    def test_constant_offset_is_consistent_not_in_agreement(self):
        assert icc([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], kind="3,1") == pytest.approx(1.0)
        assert icc([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], kind="2,1") == pytest.approx(2 / 3)

    def test_fewer_than_two_targets_is_nan(self):
        assert math.isnan(icc([1.0], [2.0]))

    def test_unknown_kind(self):
        with pytest.raises(ConfigError, match=r"ICC kind '1,1' is unknown; use one of 3,1, 2,1"):
            icc([1.0, 2.0], [1.0, 2.0], kind="1,1")
