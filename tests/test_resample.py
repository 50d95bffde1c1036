"""Tests for sliceseg.model_space.resample: slices to the model's target spacing and back."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sliceseg.errors import ConfigError
from sliceseg.model_space.resample import (
    median_spacing,
    parse_spacing,
    probabilities_to_native,
    resample_image,
    resample_label,
    spacing_geometry,
)

# A non-square, anisotropic grid: 0.55 mm rows, 1.15 mm columns, 180 × 130 pixels
# (99 mm × 149.5 mm), and an ellipse of semi-axes 40 mm (rows) and 60 mm (columns) inside it.
SHAPE, SPACING = (180, 130), (0.55, 1.15)
SEMI_AXES_MM = (40.0, 60.0)
TRUE_AREA_MM2 = math.pi * SEMI_AXES_MM[0] * SEMI_AXES_MM[1]  # 7539.8 mm²


def ellipse_label(shape: tuple[int, int], spacing: tuple[float, float]) -> torch.Tensor:
    """ROI 2 where the pixel centre lies inside the ellipse centred on the field of view."""
    rows = (torch.arange(shape[0], dtype=torch.float64) + 0.5) * spacing[0]
    cols = (torch.arange(shape[1], dtype=torch.float64) + 0.5) * spacing[1]
    centre = (shape[0] * spacing[0] / 2, shape[1] * spacing[1] / 2)
    inside = ((rows[:, None] - centre[0]) / SEMI_AXES_MM[0]) ** 2 + (
        (cols[None, :] - centre[1]) / SEMI_AXES_MM[1]
    ) ** 2 <= 1
    return inside.to(torch.int64) * 2


class TestSpacingGeometry:
    def test_shape_follows_the_extent_in_mm(self):
        geometry = spacing_geometry((200, 150), (0.6, 1.1), (0.9, 0.9))
        # 200 · 0.6 / 0.9 = 133.3 → 133; 150 · 1.1 / 0.9 = 183.3 → 183
        assert geometry.resampled_shape == (133, 183)
        assert geometry.resampled_spacing_mm == pytest.approx((120 / 133, 165 / 183))

    def test_a_slice_without_spacing_is_taken_as_it_is(self):
        geometry = spacing_geometry((50, 70), None, (0.8, 0.8))
        assert geometry.is_identity and geometry.resampled_shape == (50, 70)

    @pytest.mark.parametrize("bad", [0, -1.0, "1mm", (1.0,), (1.0, float("nan"))])
    def test_bad_target_spacing_is_a_config_error(self, bad):
        with pytest.raises(ConfigError, match="target_spacing_mm must be a spacing in mm"):
            spacing_geometry((10, 10), (1.0, 1.0), bad)

    def test_parse_spacing_accepts_a_number_or_a_pair(self):
        assert parse_spacing(0.8) == (0.8, 0.8)
        assert parse_spacing([0.7, 1.2]) == (0.7, 1.2)


def test_median_spacing_is_per_axis_and_skips_unknown():
    assert median_spacing([(0.7, 0.9), (1.0, 1.0), None, (1.2, 0.8)]) == (1.0, 0.9)
    assert median_spacing([None]) is None


class TestThereAndBack:
    """An analytic ellipse keeps its area within 1 % through the target spacing and back."""

    @pytest.mark.parametrize("target", [(0.8, 0.8), (1.3, 0.6)])
    def test_area_at_the_target_spacing(self, target):
        label = ellipse_label(SHAPE, SPACING)
        native_area = float((label == 2).sum()) * SPACING[0] * SPACING[1]
        assert native_area == pytest.approx(TRUE_AREA_MM2, rel=0.01)
        geometry = spacing_geometry(SHAPE, SPACING, target)
        resampled = resample_label(label, geometry)
        row_mm, col_mm = geometry.resampled_spacing_mm
        assert float((resampled == 2).sum()) * row_mm * col_mm == pytest.approx(
            TRUE_AREA_MM2, rel=0.01
        )

    @pytest.mark.parametrize("target", [(0.8, 0.8), (1.3, 0.6)])
    def test_area_back_on_the_native_grid(self, target):
        geometry = spacing_geometry(SHAPE, SPACING, target)
        at_target = ellipse_label(geometry.resampled_shape, geometry.resampled_spacing_mm)
        probs = F.one_hot(at_target, 3).permute(2, 0, 1).to(torch.float32)
        native = probabilities_to_native(probs, geometry)
        assert native.shape == (3, *SHAPE)
        assert torch.allclose(native.sum(dim=0), torch.ones(SHAPE), atol=1e-5)
        area = float((native.argmax(dim=0) == 2).sum()) * SPACING[0] * SPACING[1]
        assert area == pytest.approx(TRUE_AREA_MM2, rel=0.01)


def test_labels_are_never_interpolated():
    label = ellipse_label(SHAPE, SPACING)
    label[50:60, 20:30] = 5
    resampled = resample_label(label, spacing_geometry(SHAPE, SPACING, (0.7, 0.7)))
    assert set(resampled.unique().tolist()) == {0, 2, 5}
    with pytest.raises(ValueError, match="labels are never interpolated"):
        resample_label(label.float(), spacing_geometry(SHAPE, SPACING, (0.7, 0.7)))


def test_image_keeps_its_values_range_and_refuses_a_wrong_shape():
    image = torch.linspace(0, 1, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    geometry = spacing_geometry(SHAPE, SPACING, (0.9, 0.9))
    resampled = resample_image(image, geometry)
    assert resampled.shape == geometry.resampled_shape
    assert float(resampled.min()) >= 0.0 and float(resampled.max()) <= 1.0
    with pytest.raises(ValueError, match="as recorded in its SpacingGeometry"):
        resample_image(np.zeros((10, 10), np.float32), geometry)
