"""A network's softmax probabilities over slices: windows, shape groups, test-time augmentation.

`network_probabilities` runs one batch (optionally averaged over the `TTA_TRANSFORMS` views);
`spaced_window_probabilities` covers slices at the target spacing with the windows of
`sliceseg.model_space.windows`, slices of one shape sharing passes (`shape_groups`), as
validation and ``predict`` (`sliceseg.engine.predictor.Engine`) both compute them. The same
passes give each slice's deepest features (`slice_features`) for the familiarity check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from sliceseg.augment.pixels import sample_images
from sliceseg.augment.transforms import affine_matrices
from sliceseg.model_space.windows import count_windows, prediction_window, spaced_probabilities
from sliceseg.models.features import padded_shape
from sliceseg.models.folding import is_size_free

__all__ = [
    "TTA_TRANSFORMS",
    "autocasts",
    "feature_windows",
    "network_probabilities",
    "network_window",
    "shape_groups",
    "slice_features",
    "spaced_window_probabilities",
]

# Test-time augmentation: small rotations and a zoom out, views as training's augmentation
# makes them, undone on the probabilities. No left/right flip: labels are sided.
TTA_TRANSFORMS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (6.0, 1.0), (-6.0, 1.0), (0.0, 0.92))


def _tta_grid(batch: torch.Tensor, angle: float, zoom: float, back: bool) -> torch.Tensor:
    """``F.affine_grid`` of a TTA view of ``batch`` (`affine_matrices`, as training: pixels
    turned by ``angle``° on windows of any shape, zoomed out); ``back``: view to window."""
    shape = (int(batch.shape[-2]), int(batch.shape[-1]))
    theta = affine_matrices(1, rotation_deg=angle, scale_xy=(zoom, zoom), image_shape=shape)
    if back:
        theta = torch.linalg.inv(torch.cat([theta[0], torch.tensor([[0.0, 0.0, 1.0]])]))[None, :2]
    theta = theta.to(batch).expand(batch.shape[0], 2, 3)
    return F.affine_grid(theta, list(batch.shape), align_corners=False)


@torch.inference_mode()
def network_probabilities(
    model: torch.nn.Module, images: torch.Tensor, *, tta: bool = False
) -> torch.Tensor:
    """Softmax probabilities (B, C, S, S) of a batch, averaged over TTA transforms when asked.

    Runs under autocast on CUDA; the probabilities are float32 on the batch's device.
    """
    device = images.device
    amp = autocasts(device)
    transforms = TTA_TRANSFORMS if tta else TTA_TRANSFORMS[:1]
    total = torch.zeros((), device=device)  # 0 + p == p exactly
    for angle, zoom in transforms:
        is_view = (angle, zoom) != (0.0, 1.0)
        # a view padded with the background, as training's augmentation pads
        warped = sample_images(images, _tta_grid(images, angle, zoom, False)) if is_view else images
        with torch.autocast(device_type=device.type, enabled=amp):
            probs = torch.softmax(model(warped)[0].float(), dim=1)
        if is_view:  # back onto the window; outside the view no class has any probability
            back = _tta_grid(probs, angle, zoom, True)
            probs = F.grid_sample(probs, back, padding_mode="zeros", align_corners=False)
        total = total + probs
    return total / len(transforms)


def autocasts(device: torch.device) -> bool:
    """The network runs under autocast (half precision) on CUDA, in float32 elsewhere."""
    return device.type == "cuda"


def network_window(
    network: torch.nn.Module, images: Sequence[torch.Tensor], *, input_size: int, divisor: int
) -> tuple[int, int]:
    """The window ``network`` predicts these ``(I, H, W)`` slices with (`prediction_window`)."""
    return prediction_window(
        [tuple(image.shape[-2:]) for image in images],
        input_size=input_size,
        divisor=divisor,
        is_size_free=is_size_free(network),
    )


def slice_features(
    images: Sequence[torch.Tensor],
    window: tuple[int, int],
    passes: Sequence[torch.Tensor],
    divisor: int,
    *,
    wanted: Sequence[bool] | None = None,
) -> list[np.ndarray | None]:
    """Per slice its deepest features from the prediction's own passes, where they are those of
    `sliceseg.models.features.deepest_features`: a slice in one window that is the slice
    padded up to ``divisor`` (the same network input); None elsewhere.

    Args:
        images: the slices as predicted, ``(I, H, W)`` each.
        window: their window (`network_window`).
        passes: per network call the ``(windows, C)`` pooled features of the windows
            `feature_windows` marks, in the order `spaced_probabilities` runs them.
        divisor: what the network needs sides to divide by.
        wanted: per slice, whether its features are asked for (None: all; the others get None).

    Returns:
        Per slice ``(C,)`` float64, or None.
    """
    rows = iter(torch.cat(list(passes))) if passes else iter(())
    found: list[np.ndarray | None] = []
    for is_pooled in _pooled_slices(images, window, divisor, wanted):
        row = next(rows, None) if is_pooled else None
        found.append(None if row is None else row.double().numpy())
    return found


def feature_windows(
    images: Sequence[torch.Tensor],
    window: tuple[int, int],
    divisor: int,
    *,
    wanted: Sequence[bool] | None = None,
) -> list[bool]:
    """Per window `spaced_probabilities` runs (slice by slice), whether the prediction pools
    its features: a wanted slice's that `slice_features` hands on (finding the body of the
    others would be wasted).

    Example:
        >>> feature_windows([torch.zeros(1, 64, 64), torch.zeros(1, 64, 130)], (64, 64), 16)
        [True, False, False, False]
    """
    pooled = _pooled_slices(images, window, divisor, wanted)
    flags: list[bool] = []
    for image, is_pooled in zip(images, pooled, strict=True):
        flags += [is_pooled] + [False] * (count_windows(tuple(image.shape[-2:]), window) - 1)
    return flags


def _pooled_slices(
    images: Sequence[torch.Tensor],
    window: tuple[int, int],
    divisor: int,
    wanted: Sequence[bool] | None,
) -> list[bool]:
    """Per slice: wanted (None: all), and run in one window that is the slice padded up to
    ``divisor``, as `deepest_features` runs it."""
    wanted = [True] * len(images) if wanted is None else wanted
    return [
        wants
        and count_windows(tuple(image.shape[-2:]), window) == 1
        and padded_shape(image.shape, divisor) == tuple(window)
        for image, wants in zip(images, wanted, strict=True)
    ]


def shape_groups(images: Sequence[torch.Tensor]) -> list[list[int]]:
    """The indices of the slices of each shape, in first-seen order: the slices that share
    passes. A size-free network's window is the largest slice of its pass, so a slice's
    probabilities (and labels, and features) never depend on slices of other sizes beside it.

    Example:
        >>> shape_groups([torch.zeros(1, 4, 4), torch.zeros(1, 8, 8), torch.zeros(1, 4, 4)])
        [[0, 2], [1]]
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(index)
    return list(groups.values())


def spaced_window_probabilities(
    network: torch.nn.Module,
    images: Sequence[torch.Tensor],
    *,
    input_size: int,
    divisor: int,
    device: torch.device,
    tta: bool = False,
    batch_size: int = 8,
    keep_on_device: bool = False,
) -> list[torch.Tensor]:
    """Per slice ``(C, H, W)`` probabilities at the target spacing, as ``predict`` computes them.

    Args:
        network: the network in its inference form (`inference_network`), on ``device``.
        images: per slice ``(I, H, W)`` normalised intensities at the target spacing.
        input_size: the model's training crop side (the window of size-bound networks).
        divisor: what window sides must divide by (`required_divisor`).
        device: where the network runs.
        tta: test-time augmentation.
        batch_size: windows per forward pass.
        keep_on_device: leave the probabilities on ``device`` (``Engine`` takes the argmax
            and the confidence there; only label maps and scores come back).

    Returns:
        One float32 tensor per slice on the CPU (or ``device``), in input order. Slices of one
        shape share passes, as in ``predict`` (a size-free network's window is the largest
        slice of its pass, so a slice's probabilities never depend on the other slices given).
    """
    out: list[torch.Tensor | None] = [None] * len(images)
    for members in shape_groups(images):
        group = [images[i] for i in members]
        window = network_window(network, group, input_size=input_size, divisor=divisor)
        found = spaced_probabilities(
            lambda batch: network_probabilities(network, batch, tta=tta),
            group,
            window=window,
            device=device,
            batch_size=batch_size,
            keep_on_device=keep_on_device,
        )
        for i, probabilities in zip(members, found, strict=True):
            out[i] = probabilities
    return [cast(torch.Tensor, p) for p in out]
