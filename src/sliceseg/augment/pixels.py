"""The pixel operations of augmentation: resampling through a grid (affine plus an optional
elastic field), the label swap of a mirror, a per-sample Gaussian blur. Pure functions of
their inputs; the random draws live in `sliceseg.augment.transforms`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sliceseg.model_space.padding import background

__all__ = ["ELASTIC_SALT", "blur", "elastic_offsets", "sample_images", "swap_labels", "warp"]

ELASTIC_SALT = 0x5EED_E1A5
"""XORed into the noise seed for the elastic draws (which samples: the salt; their
displacements: the salt + 1), so that they are independent of the noise and of each other."""


def elastic_offsets(
    images: torch.Tensor,
    deformed: torch.Tensor,
    *,
    seed: int,
    spacing_px: float,
    magnitude_px: float,
) -> torch.Tensor:
    """``(B, H, W, 2)`` displacements in normalised grid units for ``images`` (0 where
    ``deformed`` is False): Gaussian displacements of sd ``magnitude_px`` at control points
    ``spacing_px`` apart, bicubically interpolated; drawn from ``seed`` XOR the salt + 1."""
    batch, _, height, width = images.shape
    rows, cols = (max(2, round(side / spacing_px) + 1) for side in (height, width))
    salted = torch.Generator().manual_seed(seed ^ (ELASTIC_SALT + 1))
    control = torch.randn((batch, 2, rows, cols), generator=salted) * magnitude_px
    control = control * deformed.cpu().view(-1, 1, 1, 1)
    pixels = F.interpolate(control, size=(height, width), mode="bicubic", align_corners=True)
    to_unit = torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)  # grid is (x, y)
    return (pixels * to_unit).permute(0, 2, 3, 1).to(images.device, images.dtype)


def warp(
    images: torch.Tensor,
    labels: torch.Tensor,
    theta: torch.Tensor,
    moved: torch.Tensor,
    offsets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample images (bilinear, padded with each image's minimum) and labels (nearest, 0);
    ``offsets`` (normalised, per output pixel) are added to the affine grid."""
    batch, _, height, width = images.shape
    grid = F.affine_grid(theta, [batch, 1, height, width], align_corners=False)
    if offsets is not None:
        grid = grid + offsets.to(grid.dtype)
    images = torch.where(moved.view(-1, 1, 1, 1), sample_images(images, grid), images)
    # float32 holds every label value below 2**24 exactly; nearest never mixes values
    sampled = F.grid_sample(
        labels[:, None].to(torch.float32),
        grid,
        mode="nearest",
        padding_mode="zeros",
        align_corners=False,
    )
    sampled = sampled[:, 0].round().to(labels.dtype)
    return images, torch.where(moved.view(-1, 1, 1), sampled, labels)


def sample_images(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample ``(B, C, H, W)`` images bilinearly at ``grid`` (``F.affine_grid``'s normalised
    ``(B, H', W', 2)``), padded with each image's own minimum per channel (its `background`)."""
    low = background(images)
    warped = F.grid_sample(
        images - low,
        grid.to(images.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return warped + low


def swap_labels(
    labels: torch.Tensor, flip: torch.Tensor, pairs: tuple[tuple[int, int], ...]
) -> torch.Tensor:
    size = max(max(pair) for pair in pairs) + 1
    lookup = torch.arange(size, dtype=labels.dtype, device=labels.device)
    for left, right in pairs:
        lookup[left], lookup[right] = right, left
    inside = (labels >= 0) & (labels < size)
    swapped = torch.where(inside, lookup[labels.clamp(0, size - 1)], labels)
    return torch.where(flip.view(-1, 1, 1), swapped, labels)


def blur(images: torch.Tensor, sigma_px: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample (replicate padding); sigma 0 = identity."""
    batch, channels, height, width = images.shape
    radius = max(1, math.ceil(3.0 * float(sigma_px.max())))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    sigma = sigma_px.to(torch.float32).clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).to(images.dtype)
    kernel = kernel.repeat_interleave(channels, dim=0)  # (B*C, k)
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.conv2d(
        F.pad(flat, (radius, radius, 0, 0), mode="replicate"),
        kernel[:, None, None, :],
        groups=batch * channels,
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, radius, radius), mode="replicate"),
        kernel[:, None, :, None],
        groups=batch * channels,
    )
    return flat.reshape(batch, channels, height, width)
