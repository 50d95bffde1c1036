"""Sliding-window probabilities at the target spacing; one pass when a slice fits the window.

The network sees windows of ``input_shape`` pixels a side, as it saw crops in training. A slice
that fits one window is padded around (centred, with its own minimum, as in training) and
predicted in one pass, many slices per batch; a larger one goes through MONAI's
``sliding_window_inference`` (overlap 0.25, Gaussian weighting: window centres count more than
their edges) and its probabilities are blended. Either way the result covers the slice exactly.

Example:
    >>> probs = window_probabilities(predictor, torch.rand(1, 300, 220), window=160)
    >>> probs.shape[-2:]
    torch.Size([300, 220])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F

__all__ = [
    "WINDOW_OVERLAP",
    "Predictor",
    "count_windows",
    "fits_window",
    "spaced_labels",
    "spaced_probabilities",
    "window_probabilities",
]

WINDOW_OVERLAP = 0.25
"""Fraction of a window shared with its neighbour (MONAI's default)."""

Predictor = Callable[[torch.Tensor], torch.Tensor]
"""``(B, 1, S, S)`` images → ``(B, C, S, S)`` class probabilities."""


def fits_window(shape: Sequence[int], window: int) -> bool:
    """Whether a ``(rows, cols)`` slice fits one ``window × window`` pass."""
    return int(shape[-2]) <= window and int(shape[-1]) <= window


def count_windows(shape: Sequence[int], window: int, *, overlap: float = WINDOW_OVERLAP) -> int:
    """Number of windows the network runs on for a ``(rows, cols)`` slice (as MONAI places them).

    Example:
        >>> count_windows((256, 256), 160), count_windows((150, 120), 160)
        (4, 1)
    """
    total = 1
    for length in (int(shape[-2]), int(shape[-1])):
        if length > window:
            stride = max(int(window * (1.0 - overlap)), 1)
            total *= -(-(length - window) // stride) + 1
    return total


def window_probabilities(
    predictor: Predictor,
    image: torch.Tensor,
    *,
    window: int,
    overlap: float = WINDOW_OVERLAP,
    pad_value: float | None = None,
    windows_per_pass: int = 8,
) -> torch.Tensor:
    """Class probabilities of one slice at the target spacing, by windows of ``window`` pixels.

    Args:
        predictor: the network's probabilities for a batch of windows.
        image: ``(1, H, W)`` normalised intensities.
        window: side of the windows (the model's ``input_size``).
        overlap: shared fraction of neighbouring windows (slices larger than one window).
        pad_value: value around a slice smaller than a window; default the slice's minimum.
        windows_per_pass: windows per predictor call for a large slice.

    Returns:
        ``(C, H, W)`` probabilities.
    """
    pad = float(image.min()) if pad_value is None else float(pad_value)
    if fits_window(image.shape, window):
        return _padded_pass(predictor, [image], window, [pad])[0]
    from monai.inferers import sliding_window_inference  # MONAI imports slowly; only when needed

    blended = sliding_window_inference(
        image[None],
        roi_size=(window, window),
        sw_batch_size=windows_per_pass,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        padding_mode="constant",
        cval=pad,
    )
    return cast(torch.Tensor, blended)[0]  # a tensor predictor gives a tensor


def spaced_probabilities(
    predictor: Predictor,
    images: Sequence[torch.Tensor],
    *,
    window: int,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """Probabilities of many slices at the target spacing, on the CPU, in input order.

    Slices that fit one window are padded to it and predicted ``batch_size`` at a time (no
    overlap, no blending); larger slices by :func:`window_probabilities`.

    Args:
        predictor: the network's probabilities for a batch of windows (on ``device``).
        images: per slice ``(1, H, W)``, any sizes.
        window: side of the windows.
        batch_size: windows per predictor call.
        device: where the predictor runs (default: the CPU).

    Returns:
        Per slice ``(C, H, W)`` float32 probabilities on the CPU.
    """
    target = device or torch.device("cpu")
    out: list[torch.Tensor | None] = [None] * len(images)
    small = [i for i, image in enumerate(images) if fits_window(image.shape, window)]
    for start in range(0, len(small), batch_size):
        chosen = small[start : start + batch_size]
        batch = [images[i].to(target) for i in chosen]
        probs = _padded_pass(predictor, batch, window, [float(b.min()) for b in batch])
        for i, prob in zip(chosen, probs, strict=True):
            out[i] = prob.float().cpu()
    for i, image in enumerate(images):
        if out[i] is None:
            prob = window_probabilities(
                predictor, image.to(target), window=window, windows_per_pass=batch_size
            )
            out[i] = prob.float().cpu()
    return [p for p in out if p is not None]


def _padded_pass(
    predictor: Predictor, images: Sequence[torch.Tensor], window: int, pads: Sequence[float]
) -> list[torch.Tensor]:
    """Pad each ``(1, h, w)`` image (centred, as MONAI pads) to the window, one predictor call."""
    padded, spans = [], []
    for image, pad in zip(images, pads, strict=True):
        rows, cols = int(image.shape[-2]), int(image.shape[-1])
        top, left = (window - rows) // 2, (window - cols) // 2
        widths = (left, window - cols - left, top, window - rows - top)
        padded.append(F.pad(image, widths, mode="constant", value=pad))
        spans.append((slice(top, top + rows), slice(left, left + cols)))
    probs = predictor(torch.stack(padded))
    return [p[:, rows, cols] for p, (rows, cols) in zip(probs, spans, strict=True)]


def spaced_labels(
    predictor: Predictor,
    images: Sequence[torch.Tensor],
    *,
    window: int,
    batch_size: int = 8,
    device: torch.device | None = None,
) -> list[torch.Tensor]:
    """Argmax label maps ``(H, W)`` int64 of slices at the target spacing (no post-processing)."""
    probs = spaced_probabilities(
        predictor, images, window=window, batch_size=batch_size, device=device
    )
    return [p.argmax(dim=0) for p in probs]
