"""Tests for sliceseg.model_space.padding: every padding of a network input, one rule.

A 2.5D stack's channels are normalised alone, so each has its own minimum: crops and windows
padded the whole stack with its single minimum (every channel with the darkest one's), while
augmentation and TTA padded each channel with its own.
"""

from __future__ import annotations

import dataclasses

import torch

from recording_network import Recorder
from sliceseg.augment.transforms import AugmentationDraw, affine_matrices, apply_augmentation
from sliceseg.engine.probabilities import network_probabilities
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.model_space.crops import CropDataset, extract_crop
from sliceseg.model_space.padding import background, padded_by
from sliceseg.model_space.windows import window_probabilities

MINIMA = [-3.0, 1.0, 5.0]  # a slice and its two neighbours: each channel's own background


def stack(rows: int = 20, cols: int = 30) -> torch.Tensor:
    """A ``(3, rows, cols)`` 2.5D input whose channels have the minima :data:`MINIMA`."""
    image = torch.stack([torch.full((rows, cols), low + 4.0) for low in MINIMA])
    for k, low in enumerate(MINIMA):
        image[k, rows // 2, cols // 2] = low
    return image


def corner(image: torch.Tensor) -> list[float]:
    """The top-left pixel of each channel: padding, in every test here."""
    return image[..., 0, 0].flatten().tolist()


class TestBackground:
    def test_each_channel_its_own_minimum(self):
        assert background(stack()).flatten().tolist() == MINIMA
        assert background(stack()[None]).shape == (1, 3, 1, 1)

    def test_an_image_of_no_pixels_has_background_0(self):
        assert background(torch.zeros(2, 0, 5)).flatten().tolist() == [0.0, 0.0]

    def test_padded_by_keeps_the_pixels_and_pads_each_channel(self):
        image = stack()
        padded = padded_by(image, 2, 3, 4, 5)
        assert padded.shape == (3, 25, 39) and torch.equal(padded[:, 2:22, 4:34], image)
        assert corner(padded) == MINIMA and padded[:, -1, -1].tolist() == MINIMA


class TestOneRule:
    """A crop, a window, an augmentation's warp and a TTA view of one 2.5D stack pad each
    channel with its own minimum."""

    def test_a_crop(self):
        image = stack()
        label = torch.ones(20, 30, dtype=torch.int64)
        spaced = SpacedTensors(
            images=(image,), labels=(label,), geometries=(), keys=("s0",),
            reorientations=(), target_spacing_mm=(1.0, 1.0),
        )  # fmt: skip
        crop, crop_label = CropDataset(spaced, size=40, generator=torch.Generator())[0]
        assert crop.shape == (3, 40, 40)  # (I, S, S): every channel of the stack
        assert corner(crop) == MINIMA and int(crop_label.sum()) == 600
        cut, _ = extract_crop(image, label, (-2, -2), 8, pad_value=background(image))
        assert cut.shape == (3, 8, 8) and corner(cut) == MINIMA

    def test_a_window(self):
        network = Recorder()
        window_probabilities(lambda batch: network(batch)[0], stack(), window=64)
        (seen,) = network.inputs
        assert seen.shape == (1, 3, 64, 64) and corner(seen) == MINIMA

    def test_an_augmentation(self):
        images = stack(16, 16)[None]
        labels = torch.ones(1, 16, 16, dtype=torch.int64)
        draw = dataclasses.replace(
            AugmentationDraw.identity(1), theta=affine_matrices(1, scale_xy=(0.5, 0.5))
        )
        warped, _ = apply_augmentation(images, labels, draw)
        assert corner(warped) == MINIMA

    def test_a_tta_view(self):
        network = Recorder()
        network_probabilities(network, stack(64, 64)[None], tta=True)
        for view in network.inputs[1:]:  # the rotated and zoomed views
            assert corner(view) == MINIMA
