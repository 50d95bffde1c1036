"""Tests for sliceseg.model_space.batches: the spacing that shows a whole slice (``view``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceseg.dataset.pairing import Sample
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.model_space.batches import whole_slice_spacing
from sliceseg.model_space.orientation import IDENTITY
from sliceseg.training.config import TrainConfig


def sample(rows: int, cols: int, spacing_mm: tuple[float, float] | None) -> Sample:
    image = Slice(np.zeros((rows, cols), np.float32), spacing_mm, "PixelSpacing", Path("a.dcm"))
    return Sample(key="a", image=image, label=np.zeros((rows, cols), np.uint8))


def spacing(samples: list[Sample], input_size: int) -> tuple[float, float]:
    return whole_slice_spacing(samples, input_size, reorientations=[IDENTITY] * len(samples))


class TestWholeSliceSpacing:
    def test_the_median_extent_fits_the_crop(self):
        # extents 409.6 mm (×3) and 256 mm (×2): median 409.6 mm / 160 = 2.56 mm
        samples = [sample(512, 512, (0.8, 0.8))] * 3 + [sample(256, 256, (1.0, 1.0))] * 2
        assert spacing(samples, 160) == pytest.approx((2.56, 2.56))

    def test_the_longer_side_decides_and_the_aspect_is_kept(self):
        # 200 × 0.7 = 140 mm rows, 300 × 1.1 = 330 mm columns: 330 / 160 = 2.0625 on both axes
        assert spacing([sample(200, 300, (0.7, 1.1))], 160) == pytest.approx((2.0625, 2.0625))

    def test_slices_coarse_enough_keep_their_median_spacing(self):
        # 100 × 2 mm = 200 mm fits 160 pixels at 1.25 mm: the median 2 mm stays
        assert spacing([sample(100, 100, (2.0, 2.0))], 160) == (2.0, 2.0)

    def test_a_share_of_the_extent_fits_the_crop(self):
        # 512 × 0.8 = 409.6 mm; 70 % of it is 286.72 mm over 160 pixels = 1.792 mm
        samples = [sample(512, 512, (0.8, 0.8))]
        got = whole_slice_spacing(samples, 160, share=0.7, reorientations=[IDENTITY])
        assert got == pytest.approx((1.792, 1.792))

    def test_without_any_spacing_the_median_rule_applies(self):
        assert spacing([sample(300, 300, None)], 160) == (1.0, 1.0)


def test_the_view_setting_is_checked():
    assert TrainConfig().view == "native"
    with pytest.raises(ConfigError, match="view must be one of native, whole, wide"):
        TrainConfig(view="all")


def test_the_wide_view_shows_seventy_percent_of_the_median_slice():
    samples = [sample(400, 400, (1.0, 1.0))]  # 400 mm: 0.7 × 400 / 160 = 1.75 mm
    assert TrainConfig(view="wide").view_spacing(samples) == pytest.approx((1.75, 1.75))
    assert TrainConfig(view="whole").view_spacing(samples) == pytest.approx((2.5, 2.5))
    assert TrainConfig(view="native").view_spacing(samples) is None
