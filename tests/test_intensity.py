"""Tests for sliceseg.data.intensity: the robust per-slice z-score."""

from __future__ import annotations

import numpy as np
import pytest

from sliceseg.data.intensity import normalise_intensity


class TestNormaliseIntensity:
    def test_mean_zero_std_one_float32(self):
        pixels = np.random.default_rng(0).normal(500.0, 80.0, (64, 48))
        out = normalise_intensity(pixels)
        assert out.dtype == np.float32
        assert out.shape == (64, 48)
        assert abs(float(out.mean())) < 1e-5
        assert abs(float(out.std()) - 1.0) < 1e-5

    def test_a_few_outliers_are_ignored(self):
        rng = np.random.default_rng(1)
        pixels = rng.normal(0.0, 10.0, (100, 100))
        spoiled = pixels.copy()
        spoiled.flat[[5, 500, 5000, 7000, 9999]] = 1e6  # 5 hot pixels, far below 0.5 %
        clean, hot = normalise_intensity(pixels), normalise_intensity(spoiled)
        keep = np.ones(pixels.size, dtype=bool)
        keep[[5, 500, 5000, 7000, 9999]] = False
        assert np.abs(clean.ravel()[keep] - hot.ravel()[keep]).max() < 0.02
        assert hot.max() < 4.0  # the outliers are clipped, not kept at ~1e6 / std

    def test_constant_slice_gives_zeros(self):
        out = normalise_intensity(np.full((8, 8), 1234.0))
        assert out.dtype == np.float32 and not out.any()

    @pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (0, 5)])
    def test_non_2d_is_refused(self, shape):
        with pytest.raises(ValueError, match="one \\(rows, cols\\) slice"):
            normalise_intensity(np.zeros(shape))

    def test_nan_is_refused(self):
        pixels = np.zeros((4, 4))
        pixels[1, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            normalise_intensity(pixels)
