"""Tests for sliceseg.model_space.grid: the model grid, there and back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sliceseg.errors import ConfigError
from sliceseg.model_space.grid import (
    GridGeometry,
    fit_geometry,
    image_to_grid,
    label_to_grid,
    probabilities_from_grid,
)


def smooth_image(rows: int, cols: int) -> torch.Tensor:
    r = torch.linspace(0, 1, rows)[:, None]
    c = torch.linspace(0, 1, cols)[None, :]
    return torch.sin(3 * r) * torch.cos(2 * c) + r * c


def blob_label(rows: int, cols: int) -> torch.Tensor:
    """Background 0, a large ellipse 1, and a smaller disc 3 inside it (value 2 never occurs)."""
    r = torch.arange(rows, dtype=torch.float32)[:, None]
    c = torch.arange(cols, dtype=torch.float32)[None, :]
    label = torch.zeros(rows, cols, dtype=torch.int64)
    ellipse = ((r - rows / 2) / (0.4 * rows)) ** 2 + ((c - cols / 2) / (0.35 * cols)) ** 2 < 1
    disc = (r - rows / 2) ** 2 + (c - cols / 2.5) ** 2 < (0.12 * rows) ** 2
    label[ellipse] = 1
    label[disc] = 3
    return label


class TestFitGeometry:
    def test_224_by_192_on_256(self):
        geometry = fit_geometry((224, 192), 256)
        # 192 * 256 / 224 = 219.43 -> 219 (round half up); margin 37 -> 18 left, 19 right
        assert geometry.resized_shape == (256, 219)
        assert geometry.offset == (0, 18)
        assert geometry.scale == pytest.approx(256 / 224)
        aspect_in = 224 / 192
        assert abs(256 / aspect_in - geometry.resized_shape[1]) <= 1.0

    def test_wide_slice_is_centred_vertically(self):
        geometry = fit_geometry((100, 400), 128)
        assert geometry.resized_shape == (32, 128)
        assert geometry.offset == (48, 0)

    def test_rounds_half_up(self):
        assert fit_geometry((2, 5), 9).resized_shape == (4, 9)  # 2 * 9 / 5 = 3.6 -> 4
        assert fit_geometry((4, 16), 10).resized_shape == (3, 10)  # 2.5 -> 3

    def test_dict_round_trip_is_plain_data(self):
        geometry = fit_geometry((224, 192), 256)
        data = geometry.to_dict()
        assert data == {
            "source_shape": [224, 192],
            "model_size": 256,
            "resized_shape": [256, 219],
            "offset": [0, 18],
        }
        assert GridGeometry.from_dict(data) == geometry

    @pytest.mark.parametrize("size", [4, 0, 7, 8.5, "256"])
    def test_bad_model_size(self, size):
        with pytest.raises(ConfigError, match="model_size"):
            fit_geometry((10, 10), size)

    @pytest.mark.parametrize("shape", [(0, 10), (10,), (10, -2), "ab"])
    def test_bad_shape(self, shape):
        with pytest.raises(ValueError, match="shape"):
            fit_geometry(shape, 16)

    def test_damaged_geometry_is_refused(self):
        data = {**fit_geometry((224, 192), 256).to_dict(), "offset": [10, 18]}
        with pytest.raises(ConfigError, match="does not fit"):
            GridGeometry.from_dict(data)
        with pytest.raises(ConfigError, match="expected"):
            GridGeometry.from_dict({"model_size": 256})


class TestImageToGrid:
    def test_shape_padding_and_centre(self):
        geometry = fit_geometry((224, 192), 256)
        grid = image_to_grid(torch.ones(224, 192), geometry)
        assert grid.shape == (1, 256, 256)
        assert torch.all(grid[0, :, 18:237] == 1)
        assert not grid[0, :, :18].any() and not grid[0, :, 237:].any()

    def test_round_trip_of_a_smooth_image(self):
        image = smooth_image(224, 192)
        geometry = fit_geometry((224, 192), 128)
        back = probabilities_from_grid(image_to_grid(image, geometry), geometry)[0]
        assert back.shape == (224, 192)
        assert (back - image).abs().max() < 0.02

    def test_numpy_and_batch_input(self):
        geometry = fit_geometry((30, 20), 16)
        assert image_to_grid(np.zeros((30, 20), dtype=np.uint16), geometry).dtype == torch.float32
        assert image_to_grid(torch.zeros(5, 1, 30, 20), geometry).shape == (5, 1, 16, 16)

    def test_wrong_shape_is_refused(self):
        with pytest.raises(ValueError, match="GridGeometry"):
            image_to_grid(torch.zeros(20, 30), fit_geometry((30, 20), 16))


class TestLabelToGrid:
    def test_only_existing_values_and_nearest_exact_placement(self):
        label = blob_label(224, 192)
        for size in (64, 256, 512):
            geometry = fit_geometry((224, 192), size)
            grid = label_to_grid(label, geometry)
            assert grid.dtype == torch.int64
            assert set(grid.unique().tolist()) <= {0, 1, 3}
            reference = F.interpolate(
                label[None, None].float(), size=geometry.resized_shape, mode="nearest-exact"
            )[0, 0].to(torch.int64)
            rows, cols = geometry.bounds
            assert torch.equal(grid[rows, cols], reference)
            grid[rows, cols] = 0
            assert not grid.any()  # the padding is background

    def test_uint8_numpy_keeps_dtype(self):
        geometry = fit_geometry((6, 4), 8)
        grid = label_to_grid(np.full((6, 4), 200, dtype=np.uint8), geometry)
        assert grid.dtype == torch.uint8
        assert grid.unique().tolist() == [0, 200]

    def test_float_labels_are_refused(self):
        with pytest.raises(ValueError, match="integers"):
            label_to_grid(torch.zeros(6, 4), fit_geometry((6, 4), 8))


class TestProbabilitiesFromGrid:
    @pytest.mark.parametrize(("shape", "size"), [((224, 192), 256), ((300, 420), 128)])
    def test_one_hot_of_grid_label_gives_back_the_source_label(self, shape, size):
        label = blob_label(*shape)
        geometry = fit_geometry(shape, size)
        grid_label = label_to_grid(label, geometry)
        probs = torch.nn.functional.one_hot(grid_label, 4).permute(2, 0, 1).float()
        back = probabilities_from_grid(probs, geometry)
        assert back.shape == (4, *shape)
        assert torch.allclose(back.sum(0), torch.ones(shape), atol=1e-5)
        agreement = (back.argmax(0) == label).float().mean().item()
        assert agreement >= 0.99

    def test_batch_input(self):
        geometry = fit_geometry((30, 20), 16)
        assert probabilities_from_grid(torch.rand(2, 3, 16, 16), geometry).shape == (2, 3, 30, 20)

    def test_wrong_grid_is_refused(self):
        with pytest.raises(ValueError, match="expected"):
            probabilities_from_grid(torch.rand(3, 32, 32), fit_geometry((30, 20), 16))
