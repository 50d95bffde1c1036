"""Sliding-window probabilities at the target spacing; one pass when a slice fits the window.

A slice smaller than a window is padded around it (centred, each channel with its own minimum,
as in training: `sliceseg.model_space.padding`) and predicted in one pass; a larger one is
covered by windows placed as MONAI's ``sliding_window_inference`` places them (overlap 0.25,
the last window flush with the far edge) and their probabilities blended with MONAI's Gaussian
weights (sigma 1/8 of the window side, floored at 1e-3: window centres count more than their
edges). The result equals MONAI's (``tests/test_windows.py`` checks it) without importing
MONAI, which costs seconds at start-up. Windows of many slices share each network call.

Which window (:func:`prediction_window`): a network with instance norms normalises by
statistics over what it sees, so it sees windows of ``input_shape`` pixels, as it saw crops in
training. A *size-free* network (batch norms, folded: see ``sliceseg.models.folding``) gives
the same output whatever the size of the input around a pixel, so its window is the whole slice
(padded to what the network's depth divides), up to :data:`MAX_WINDOW_SIDE` pixels a side.

Example:
    >>> probs = window_probabilities(predictor, torch.rand(1, 300, 220), window=160)
    >>> probs.shape[-2:]
    torch.Size([300, 220])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import torch

from sliceseg.model_space.padding import padded_by

__all__ = [
    "GAUSSIAN_SIGMA_SCALE",
    "MAX_WINDOW_SIDE",
    "WINDOW_OVERLAP",
    "Predictor",
    "count_windows",
    "gaussian_weights",
    "prediction_window",
    "spaced_probabilities",
    "window_probabilities",
    "window_starts",
]

WINDOW_OVERLAP = 0.25
"""Fraction of a window shared with its neighbour (MONAI's default)."""

GAUSSIAN_SIGMA_SCALE = 0.125
"""Sigma of the blending weights as a fraction of the window side (MONAI's default)."""

MAX_WINDOW_SIDE = 1024
"""Largest window side (pixels) of a size-free network; larger slices are slid over."""

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""``(B, I, H, W)`` windows → ``(B, C, H, W)`` class probabilities."""

Window = int | tuple[int, int]
"""A square window side, or ``(rows, cols)``."""


def prediction_window(
    shapes: Sequence[Sequence[int]], *, input_size: int, divisor: int, is_size_free: bool
) -> tuple[int, int]:
    """The window a network predicts slices of these ``(…, rows, cols)`` shapes with.

    Args:
        shapes: the slices' shapes at the target spacing (one batch of them).
        input_size: the side of the training crops.
        divisor: what the network needs the window sides to be divisible by.
        is_size_free: the network holds no statistics over space.

    Returns:
        ``(input_size, input_size)``, or for a size-free network the smallest window holding
        every slice (sides rounded up to ``divisor``, at most :data:`MAX_WINDOW_SIDE`).

    Example:
        >>> prediction_window([(1, 250, 231)], input_size=160, divisor=16, is_size_free=True)
        (256, 240)
    """
    if not is_size_free or not shapes:
        return input_size, input_size
    cap = max((MAX_WINDOW_SIDE // divisor) * divisor, divisor)
    sides = [max(int(shape[axis]) for shape in shapes) for axis in (-2, -1)]
    rows, cols = (min(-(-side // divisor) * divisor, cap) for side in sides)
    return rows, cols


def window_starts(length: int, window: int, *, overlap: float = WINDOW_OVERLAP) -> list[int]:
    """First index of each window along an axis of ``length`` (padded to ``window`` if shorter).

    Windows step by ``int(window · (1 − overlap))``; the last one ends at the far edge.

    Example:
        >>> window_starts(256, 160), window_starts(100, 160)
        ([0, 96], [0])
    """
    if length <= window:
        return [0]
    interval = max(int(window * (1.0 - overlap)), 1)
    count = math.ceil((length - window) / interval) + 1
    return [min(i * interval, length - window) for i in range(count)]


def count_windows(shape: Sequence[int], window: Window, *, overlap: float = WINDOW_OVERLAP) -> int:
    """Number of windows the network runs on for a ``(rows, cols)`` slice.

    Example:
        >>> count_windows((256, 256), 160), count_windows((150, 120), 160)
        (4, 1)
    """
    sides = _pair(window)
    starts = [window_starts(int(shape[a]), sides[a], overlap=overlap) for a in (-2, -1)]
    return len(starts[0]) * len(starts[1])


@lru_cache(maxsize=8)
def gaussian_weights(window: Window, sigma_scale: float = GAUSSIAN_SIGMA_SCALE) -> torch.Tensor:
    """``(rows, cols)`` blending weights: MONAI's Gaussian importance map (peak 1).

    Example:
        >>> float(gaussian_weights(160)[80, 80]) > 0.99, float(gaussian_weights(160).min())
        (True, 0.001)
    """
    profiles = []
    for side in _pair(window):
        offsets = torch.arange(side, dtype=torch.float32) - (side - 1) / 2.0
        profiles.append(torch.exp(offsets**2 / (-2.0 * (side * sigma_scale) ** 2)))
    weights = profiles[0][:, None] * profiles[1][None, :]
    return weights.clamp(min=max(float(weights.min()), 1e-3))


@dataclass(frozen=True)
class _Slice:
    """One slice padded to at least a window, and where its windows are."""

    padded: torch.Tensor  # (I, H', W')
    crop: tuple[slice, slice]  # the slice inside ``padded``
    origins: tuple[tuple[int, int], ...]


def spaced_probabilities(
    predictor: Predictor,
    images: Sequence[torch.Tensor],
    *,
    window: Window,
    batch_size: int = 8,
    overlap: float = WINDOW_OVERLAP,
    device: torch.device | None = None,
    keep_on_device: bool = False,
) -> list[torch.Tensor]:
    """Probabilities of slices at the target spacing, by windows of ``window`` pixels.

    Args:
        predictor: the network's probabilities for a batch of windows (on ``device``).
        images: per slice ``(I, H, W)`` normalised intensities, any sizes.
        window: side of the windows, or ``(rows, cols)`` (see :func:`prediction_window`).
        batch_size: windows per predictor call (from one slice or several).
        overlap: shared fraction of neighbouring windows on slices larger than a window.
        device: where the predictor runs (default: the CPU).
        keep_on_device: return the probabilities on ``device`` (for an argmax there, so that
            only label maps travel back), not on the CPU.

    Returns:
        Per slice ``(C, H, W)`` float32 probabilities on the CPU (or ``device``), in input
        order. A slice that fits one window gets that window's probabilities exactly (nothing
        blended).
    """
    target = device or torch.device("cpu")
    rows, cols = _pair(window)
    slices = [_place(image.to(target), (rows, cols), overlap) for image in images]
    jobs = [(i, origin) for i, s in enumerate(slices) for origin in s.origins]
    sums: list[torch.Tensor | None] = [None] * len(slices)
    weights = gaussian_weights((rows, cols)).to(target)
    for start in range(0, len(jobs), batch_size):
        chosen = jobs[start : start + batch_size]
        batch = torch.stack(
            [slices[i].padded[:, r : r + rows, c : c + cols] for i, (r, c) in chosen]
        )
        probs = predictor(batch).float()
        for (i, (r, c)), prob in zip(chosen, probs, strict=True):
            sums[i] = _accumulate(sums[i], slices[i], prob, (r, c), weights)
    out = []
    for s, total in zip(slices, sums, strict=True):
        total = cast(torch.Tensor, total)  # every slice has at least one window
        if len(s.origins) > 1:
            total = total[:-1] / total[-1:]  # the last channel holds the summed weights
        found = total[:, s.crop[0], s.crop[1]]
        out.append(found if keep_on_device else found.cpu())
    return out


def window_probabilities(
    predictor: Predictor,
    image: torch.Tensor,
    *,
    window: Window,
    overlap: float = WINDOW_OVERLAP,
    batch_size: int = 8,
) -> torch.Tensor:
    """Probabilities ``(C, H, W)`` of one ``(I, H, W)`` slice (see :func:`spaced_probabilities`)."""
    return spaced_probabilities(
        predictor, [image], window=window, batch_size=batch_size, overlap=overlap
    )[0]


def _pair(window: Window) -> tuple[int, int]:
    return (window, window) if isinstance(window, int) else (int(window[0]), int(window[1]))


def _place(image: torch.Tensor, window: tuple[int, int], overlap: float) -> _Slice:
    """Pad an ``(I, h, w)`` slice to at least the window (centred, as MONAI does; each channel
    with its own minimum, `padded_by`); place its windows."""
    rows, cols = int(image.shape[-2]), int(image.shape[-1])
    top, left = max(window[0] - rows, 0) // 2, max(window[1] - cols, 0) // 2
    bottom, right = max(window[0] - rows, 0) - top, max(window[1] - cols, 0) - left
    padded = padded_by(image, top, bottom, left, right)
    starts = [window_starts(int(padded.shape[a]), window[a], overlap=overlap) for a in (-2, -1)]
    origins = tuple((r, c) for r in starts[0] for c in starts[1])
    return _Slice(padded, (slice(top, top + rows), slice(left, left + cols)), origins)


def _accumulate(
    total: torch.Tensor | None,
    placed: _Slice,
    prob: torch.Tensor,
    origin: tuple[int, int],
    weights: torch.Tensor,
) -> torch.Tensor:
    """Add one window's probabilities to its slice's sum (weighted, unless it is the only one)."""
    if len(placed.origins) == 1:
        return prob
    if total is None:  # channels 0..C-1: weighted probabilities; channel C: summed weights
        total = prob.new_zeros((prob.shape[0] + 1, *placed.padded.shape[-2:]))
    r, c = origin
    rows, cols = weights.shape
    total[:-1, r : r + rows, c : c + cols] += prob * weights
    total[-1, r : r + rows, c : c + cols] += weights
    return total
