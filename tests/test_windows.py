"""Tests for sliceseg.model_space.windows: one pass when a slice fits, else a sliding window."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sliceseg.model_space.windows import (
    count_windows,
    gaussian_weights,
    spaced_probabilities,
    window_probabilities,
    window_starts,
)
from sliceseg.models import build_model

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("unet", num_classes=NUM_CLASSES, input_size=64, base_channels=8, depth=3)
    return model.eval()


def probabilities_of(model: torch.nn.Module):
    def predictor(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(model(images)[0], dim=1)

    return predictor


def pointwise(images: torch.Tensor) -> torch.Tensor:
    """A 'network' that looks at each pixel alone: its result cannot depend on the windows."""
    return torch.softmax(torch.cat([torch.zeros_like(images), images, 2 * images - 1], 1), dim=1)


def test_windows_are_placed_as_monai_places_them():
    assert window_starts(256, 160) == [0, 96]  # stride 120, the last flush with the edge
    assert window_starts(400, 160) == [0, 120, 240]
    assert window_starts(161, 160) == [0, 1]
    assert window_starts(90, 160) == [0]
    assert count_windows((256, 256), 160) == 4
    assert count_windows((150, 120), 160) == 1
    assert count_windows((400, 100), 160) == 3


def test_gaussian_weights_equal_monais_importance_map():
    compute_importance_map = pytest.importorskip("monai.data.utils").compute_importance_map

    expected = compute_importance_map((64, 64), mode="gaussian", sigma_scale=0.125)
    assert torch.allclose(gaussian_weights(64), expected, rtol=1e-6, atol=1e-7)


class TestWindowProbabilities:
    def test_a_slice_that_fits_equals_the_whole_padded_image_in_one_pass(self, network):
        image = torch.randn(1, 40, 52)
        predictor = probabilities_of(network)
        result = window_probabilities(predictor, image, window=64)
        # by hand: centred in 64 × 64 with its minimum around it, one forward, cut out
        padded = F.pad(image, (6, 6, 12, 12), value=float(image.min()))
        expected = predictor(padded[None])[0, :, 12:52, 6:58]
        assert result.shape == (NUM_CLASSES, 40, 52)
        assert torch.allclose(result, expected, atol=1e-6)
        sliding_window_inference = pytest.importorskip("monai.inferers").sliding_window_inference
        monai = sliding_window_inference(
            image[None], (64, 64), 4, predictor, mode="gaussian", cval=float(image.min())
        )
        assert torch.allclose(result, monai[0], atol=1e-5)

    def test_a_larger_slice_matches_monai_sliding_window(self, network):
        image = torch.randn(1, 150, 200)
        predictor = probabilities_of(network)
        result = window_probabilities(predictor, image, window=64)
        sliding_window_inference = pytest.importorskip("monai.inferers").sliding_window_inference
        monai = sliding_window_inference(
            image[None],
            (64, 64),
            4,
            predictor,
            overlap=0.25,
            mode="gaussian",
            cval=float(image.min()),
        )
        assert result.shape == (NUM_CLASSES, 150, 200)
        assert torch.allclose(result, monai[0], atol=1e-5)
        assert torch.allclose(result.sum(dim=0), torch.ones(150, 200), atol=1e-4)

    def test_blending_leaves_a_pointwise_prediction_unchanged(self):
        image = torch.randn(1, 150, 200)
        result = window_probabilities(pointwise, image, window=64)
        assert torch.allclose(result, pointwise(image[None])[0], atol=1e-5)


def test_spaced_probabilities_shares_network_calls_and_keeps_the_order(network):
    predictor = probabilities_of(network)
    images = [torch.randn(1, 40, 52), torch.randn(1, 130, 70), torch.randn(1, 64, 64)]
    calls: list[tuple[int, ...]] = []

    def counting(batch: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(batch.shape))
        return predictor(batch)

    results = spaced_probabilities(counting, images, window=64, batch_size=8)
    assert [r.shape[-2:] for r in results] == [(40, 52), (130, 70), (64, 64)]
    # 1 window + 3 × 2 windows (rows 0, 48, 66; columns 0, 6) + 1 window: one call of 8
    assert calls == [(8, 1, 64, 64)]
    for image, result in zip(images, results, strict=True):
        alone = window_probabilities(predictor, image, window=64)
        assert torch.allclose(result, alone, atol=1e-5)
