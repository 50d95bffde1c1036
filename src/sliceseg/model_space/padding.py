"""What a network input is padded with: each channel's own minimum (its background).

A 2.5D input (``context_slices`` k > 0) stacks a slice with its k neighbours a side, each
normalised alone, so each channel has its own background. Training crops
(`sliceseg.model_space.crops`), prediction windows (`sliceseg.model_space.windows`),
augmentation's warps and predict's TTA views (`sliceseg.augment.pixels.sample_images`) all pad
with :func:`background`: a channel padded with another's minimum would show the network an edge
that training's crops never showed it.
"""

from __future__ import annotations

import torch

__all__ = ["background", "padded_by"]


def background(images: torch.Tensor) -> torch.Tensor:
    """Each channel's own minimum of ``(..., I, H, W)`` images, as ``(..., I, 1, 1)`` (0 for an
    image of no pixels), to broadcast over the channel's pixels.

    Example:
        >>> background(torch.tensor([[[1.0, -2.0]], [[5.0, 3.0]]])).flatten().tolist()
        [-2.0, 3.0]
    """
    if images.shape[-2] * images.shape[-1] == 0:
        return images.new_zeros((*images.shape[:-2], 1, 1))
    return images.amin(dim=(-2, -1), keepdim=True)


def padded_by(image: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """An ``(I, H, W)`` image with rows and columns added around it, each channel's filled with
    its :func:`background` (its own pixels copied, not recomputed: exactly the same numbers).

    Example:
        >>> padded_by(torch.tensor([[[1.0, -2.0]], [[5.0, 3.0]]]), 1, 0, 0, 1)[:, 0].tolist()
        [[-2.0, -2.0, -2.0], [3.0, 3.0, 3.0]]
    """
    channels, rows, cols = image.shape
    padded = background(image).expand(channels, top + rows + bottom, left + cols + right).clone()
    padded[:, top : top + rows, left : left + cols] = image
    return padded
