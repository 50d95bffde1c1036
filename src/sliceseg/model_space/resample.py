"""Physical scale: every slice resampled to the model's target in-plane spacing (mm) and back.

The model works at one pixel spacing in mm (by default the training set's median, as nnU-Net
does), so a structure has the same size in model pixels whatever the field of view or matrix.
A slice of ``(rows, cols)`` pixels at ``(row_mm, col_mm)`` becomes ``round(rows · row_mm /
target_row_mm) × round(cols · col_mm / target_col_mm)`` pixels; the resampled grid spans the
same extent as the slice (``align_corners=False``), so the map back is exact up to the rounding
of the shape, which :attr:`SpacingGeometry.resampled_spacing_mm` records.

Images and probabilities are resampled bilinearly (antialiased when shrinking); label maps only
ever by nearest neighbour, so a value that was not in the input can never appear.

Example:
    >>> geometry = spacing_geometry((200, 150), (0.6, 1.1), (0.9, 0.9))
    >>> geometry.resampled_shape
    (133, 183)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sliceseg.errors import ConfigError

__all__ = [
    "SpacingGeometry",
    "median_spacing",
    "parse_spacing",
    "probabilities_to_native",
    "resample_image",
    "resample_label",
    "resize_bilinear",
    "resize_nearest",
    "spacing_geometry",
]

Spacing = tuple[float, float]


@dataclass(frozen=True)
class SpacingGeometry:
    """How a ``(rows, cols)`` slice maps onto the model's target spacing, and back.

    Attributes:
        source_shape: ``(rows, cols)`` on the slice's own (DICOM) grid, canonical orientation.
        source_spacing_mm: ``(row, col)`` spacing of the slice; the target itself for a slice
            without (0028,0030) PixelSpacing (it is then taken as it is, not resampled).
        target_spacing_mm: ``(row, col)`` spacing the model works at.
        resampled_shape: ``(rows, cols)`` once resampled to the target spacing.
    """

    source_shape: tuple[int, int]
    source_spacing_mm: Spacing
    target_spacing_mm: Spacing
    resampled_shape: tuple[int, int]

    @property
    def is_identity(self) -> bool:
        """True when the slice is already on the target grid (nothing is resampled)."""
        return self.source_shape == self.resampled_shape

    @property
    def resampled_spacing_mm(self) -> Spacing:
        """The resampled grid's actual spacing: the slice's extent over the rounded shape."""
        return (
            self.source_shape[0] * self.source_spacing_mm[0] / self.resampled_shape[0],
            self.source_shape[1] * self.source_spacing_mm[1] / self.resampled_shape[1],
        )


def parse_spacing(value: Any, *, name: str = "target_spacing_mm") -> Spacing:
    """Return a ``(row, col)`` spacing in mm from a number or a pair of positive numbers.

    Raises:
        ConfigError: not a positive number or a pair of them; the message names ``name``.

    Example:
        >>> parse_spacing(0.8)
        (0.8, 0.8)
    """
    values = value if isinstance(value, (list, tuple)) else (value, value)
    is_numbers = len(values) == 2 and all(
        isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
        for v in values
    )
    if not is_numbers or not all(math.isfinite(float(v)) and float(v) > 0 for v in values):
        raise ConfigError(
            f"{name} must be a spacing in mm (a positive number, or [row, col]), got {value!r}; "
            "e.g. 0.8, or leave it unset for the training set's median spacing."
        )
    return float(values[0]), float(values[1])


def median_spacing(spacings: Iterable[Spacing | None]) -> Spacing | None:
    """Return the per-axis median ``(row, col)`` spacing, as nnU-Net chooses its target.

    Slices without a spacing are left out; None when no slice has one.

    Example:
        >>> median_spacing([(0.7, 0.9), (1.0, 1.0), None, (1.2, 0.8)])
        (1.0, 0.9)
    """
    known = np.asarray([s for s in spacings if s is not None], dtype=np.float64)
    if known.size == 0:
        return None
    return float(np.median(known[:, 0])), float(np.median(known[:, 1]))


def spacing_geometry(
    shape: tuple[int, int], spacing_mm: Spacing | None, target_spacing_mm: Spacing
) -> SpacingGeometry:
    """Return how a slice of ``shape`` at ``spacing_mm`` is resampled to ``target_spacing_mm``.

    Args:
        shape: ``(rows, cols)`` of the slice.
        spacing_mm: its ``(row, col)`` spacing; None keeps the slice as it is (taken to be at
            the target spacing already).
        target_spacing_mm: the model's ``(row, col)`` spacing.

    Returns:
        The geometry; each resampled side is at least 1 pixel.

    Raises:
        ValueError: ``shape`` is not two positive whole numbers.
        ConfigError: a spacing is not positive.
    """
    rows, cols = (int(v) for v in shape)
    if rows < 1 or cols < 1 or (rows, cols) != tuple(shape):
        raise ValueError(f"shape must be two positive whole numbers (rows, cols), got {shape!r}.")
    target = parse_spacing(target_spacing_mm)
    source = target if spacing_mm is None else parse_spacing(spacing_mm, name="PixelSpacing")
    resampled = (
        max(1, math.floor(rows * source[0] / target[0] + 0.5)),
        max(1, math.floor(cols * source[1] / target[1] + 0.5)),
    )
    return SpacingGeometry((rows, cols), source, target, resampled)


def resample_image(image: torch.Tensor | np.ndarray, geometry: SpacingGeometry) -> torch.Tensor:
    """Resample intensities ``(..., rows, cols)`` bilinearly to the target spacing.

    Returns:
        A floating tensor ``(..., R, C)`` (float32 for integer input), on the input's device.

    Raises:
        ValueError: the last two dimensions are not ``geometry.source_shape``.
    """
    tensor = _floating(image, geometry.source_shape, name="image")
    return resize_bilinear(tensor, geometry.resampled_shape)


def resample_label(label: torch.Tensor | np.ndarray, geometry: SpacingGeometry) -> torch.Tensor:
    """Resample an integer label map ``(..., rows, cols)`` by nearest neighbour.

    Raises:
        ValueError: the shape does not match ``geometry.source_shape``, or the map is not
            integer (labels are never interpolated).
    """
    tensor = torch.as_tensor(label)
    _check_shape(tensor, geometry.source_shape, name="label")
    if tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(
            f"label must hold integers, got dtype {tensor.dtype}; labels are never interpolated."
        )
    return resize_nearest(tensor, geometry.resampled_shape)


def probabilities_to_native(probs: torch.Tensor, geometry: SpacingGeometry) -> torch.Tensor:
    """Map per-class maps ``(C, R, C')`` or ``(B, C, R, C')`` back to the slice's own grid.

    A convex combination per pixel (bilinear, antialiased when shrinking), so probabilities stay
    probabilities; the argmax is taken afterwards, on the DICOM's grid.

    Raises:
        ValueError: ``probs`` is not 3D/4D floating, or its grid is not ``resampled_shape``.
    """
    if probs.ndim not in (3, 4) or not probs.is_floating_point():
        raise ValueError(
            f"probabilities_to_native expects floating (C, R, C') or (B, C, R, C'), "
            f"got {tuple(probs.shape)} {probs.dtype}."
        )
    _check_shape(probs, geometry.resampled_shape, name="probs")
    return resize_bilinear(probs, geometry.source_shape)


def resize_bilinear(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(..., H, W)`` floating maps bilinearly (antialiased when shrinking an axis)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    lead = tensor.shape[:-2]
    batch = tensor.reshape(-1, 1, *tensor.shape[-2:])
    is_shrinking = size[0] < batch.shape[-2] or size[1] < batch.shape[-1]
    out = F.interpolate(
        batch, size=size, mode="bilinear", align_corners=False, antialias=is_shrinking
    )
    return out.reshape(*lead, *size)


def resize_nearest(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-exact resize of ``(..., H, W)`` by gathering: ``src = floor((dst + 0.5) · in/out)``.

    Works for every dtype, and every output value is a value of the input.
    """
    rows_in, cols_in = label.shape[-2:]
    if (rows_in, cols_in) == tuple(size):
        return label
    rows = _nearest_index(int(rows_in), size[0], label.device)
    cols = _nearest_index(int(cols_in), size[1], label.device)
    return label[..., rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- helpers


def _nearest_index(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    centres = (torch.arange(size_out, dtype=torch.float64) + 0.5) * (size_in / size_out)
    return centres.floor().to(torch.int64).clamp_(0, size_in - 1).to(device)


def _check_shape(tensor: torch.Tensor, shape: tuple[int, int], *, name: str) -> None:
    if tensor.ndim < 2 or tuple(tensor.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}; expected (..., {shape[0]}, {shape[1]}) "
            "as recorded in its SpacingGeometry."
        )


def _floating(
    image: torch.Tensor | np.ndarray, shape: tuple[int, int], *, name: str
) -> torch.Tensor:
    tensor = torch.as_tensor(image)
    _check_shape(tensor, shape, name=name)
    return tensor if tensor.is_floating_point() else tensor.to(torch.float32)
