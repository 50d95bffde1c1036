"""The way a slice goes onto the square model grid and its predictions come back.

A slice of ``(rows, cols)`` pixels is scaled so that its longer side fills the model grid of
``S × S`` pixels, its shorter side scaled by the same factor (aspect kept), and centred with
zero padding. :class:`GridGeometry` records that placement so predictions can be cropped and
resampled back to the DICOM's own grid, where areas are measured.

Images and probabilities are resampled bilinearly; label maps only ever by nearest neighbour,
so a label value that was not in the input can never appear.

Example:
    >>> geometry = fit_geometry((224, 192), 256)
    >>> geometry.resized_shape, geometry.offset
    ((256, 219), (0, 18))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sliceseg.errors import ConfigError
from sliceseg.model_space.resample import resize_bilinear, resize_nearest

__all__ = [
    "MIN_MODEL_SIZE",
    "GridGeometry",
    "fit_geometry",
    "image_to_grid",
    "label_to_grid",
    "probabilities_from_grid",
]

MIN_MODEL_SIZE = 8
"""Smallest side of the model grid accepted by :func:`fit_geometry`."""


@dataclass(frozen=True)
class GridGeometry:
    """How a ``(rows, cols)`` slice sits on the square ``model_size`` grid, aspect kept.

    Attributes:
        source_shape: ``(rows, cols)`` of the slice on its own (DICOM) grid.
        model_size: side ``S`` of the square model grid in pixels.
        resized_shape: ``(rows, cols)`` of the slice once resized; the longer side equals ``S``.
        offset: ``(top, left)`` of the resized slice inside the grid; the rest is padding.

    Raises:
        ConfigError: a field is not a positive whole number, or the resized slice does not
            fit inside the grid at its offset (e.g. a damaged model file).
    """

    source_shape: tuple[int, int]
    model_size: int
    resized_shape: tuple[int, int]
    offset: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("source_shape", "resized_shape", "offset"):
            value = getattr(self, name)
            object.__setattr__(self, name, _int_pair(value, name=name))
        object.__setattr__(self, "model_size", _whole(self.model_size, name="model_size"))
        if min(self.source_shape) < 1 or min(self.resized_shape) < 1 or min(self.offset) < 0:
            raise ConfigError(
                f"GridGeometry needs positive shapes and a non-negative offset, got {self!r}."
            )
        for axis in (0, 1):
            if self.offset[axis] + self.resized_shape[axis] > self.model_size:
                raise ConfigError(
                    f"GridGeometry: resized_shape {self.resized_shape} at offset {self.offset} "
                    f"does not fit in a {self.model_size}×{self.model_size} grid; "
                    "rebuild it with fit_geometry."
                )

    @property
    def scale(self) -> float:
        """Resize factor (model pixels per source pixel): ``model_size / max(source_shape)``."""
        return self.model_size / max(self.source_shape)

    @property
    def bounds(self) -> tuple[slice, slice]:
        """Row and column slices of the grid that hold the resized slice (the padding excluded)."""
        top, left = self.offset
        rows, cols = self.resized_shape
        return slice(top, top + rows), slice(left, left + cols)

    def to_dict(self) -> dict[str, Any]:
        """Return the geometry as plain data (lists and ints) for a model file or JSON."""
        return {
            "source_shape": list(self.source_shape),
            "model_size": self.model_size,
            "resized_shape": list(self.resized_shape),
            "offset": list(self.offset),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridGeometry:
        """Rebuild a geometry from :meth:`to_dict` output.

        Raises:
            ConfigError: a key is missing or unknown, or a value is invalid.
        """
        expected = {"source_shape", "model_size", "resized_shape", "offset"}
        if set(data) != expected:
            raise ConfigError(
                f"GridGeometry.from_dict got keys {sorted(data)}; expected {sorted(expected)}."
            )
        return cls(
            source_shape=tuple(data["source_shape"]),
            model_size=data["model_size"],
            resized_shape=tuple(data["resized_shape"]),
            offset=tuple(data["offset"]),
        )


def fit_geometry(shape: tuple[int, int], model_size: int) -> GridGeometry:
    """Place a ``(rows, cols)`` slice on a square grid: longer side = ``model_size``, aspect kept.

    The shorter side is scaled by the same factor and rounded half up (at least 1 pixel); the
    slice is centred, the extra pixel of an odd margin going to the bottom / right.

    Args:
        shape: ``(rows, cols)`` of the slice.
        model_size: side ``S`` of the square model grid in pixels (≥ 8).

    Returns:
        The :class:`GridGeometry`.

    Raises:
        ConfigError: ``model_size`` is not a whole number ≥ 8.
        ValueError: ``shape`` is not two positive whole numbers.

    Example:
        >>> geometry = fit_geometry((224, 192), 256)
        >>> geometry.resized_shape, geometry.offset
        ((256, 219), (0, 18))
    """
    if isinstance(model_size, bool) or not isinstance(model_size, (int, np.integer)):
        raise ConfigError(
            f"model_size must be a whole number ≥ {MIN_MODEL_SIZE}, got {model_size!r}."
        )
    if model_size < MIN_MODEL_SIZE:
        raise ConfigError(
            f"model_size must be ≥ {MIN_MODEL_SIZE} pixels, got {model_size}; use e.g. 128 or 256."
        )
    try:
        rows, cols = (int(v) for v in shape)
    except (TypeError, ValueError) as error:
        raise ValueError(f"shape must be (rows, cols), got {shape!r}.") from error
    if rows < 1 or cols < 1 or (rows, cols) != tuple(shape):
        raise ValueError(f"shape must be two positive whole numbers (rows, cols), got {shape!r}.")
    size = int(model_size)
    scale = size / max(rows, cols)
    resized_rows, resized_cols = (
        min(size, max(1, math.floor(n * scale + 0.5))) for n in (rows, cols)
    )
    resized = (resized_rows, resized_cols)
    offset = ((size - resized_rows) // 2, (size - resized_cols) // 2)
    return GridGeometry(
        source_shape=(rows, cols), model_size=size, resized_shape=resized, offset=offset
    )


def image_to_grid(
    image: torch.Tensor | np.ndarray, geometry: GridGeometry, *, pad_value: float = 0.0
) -> torch.Tensor:
    """Resize an image bilinearly onto the model grid and pad it around (aspect kept).

    Downscaling is antialiased so that thin structures are averaged rather than aliased.

    Args:
        image: ``(rows, cols)``, ``(C, rows, cols)`` or ``(B, C, rows, cols)`` intensities on the
            source grid of ``geometry``; a numpy array is converted to a tensor.
        geometry: from :func:`fit_geometry` for this image's shape.
        pad_value: value of the padding (0 is the mean of a normalised slice).

    Returns:
        A floating tensor ``(1, S, S)`` for a 2D input, else ``(C, S, S)`` / ``(B, C, S, S)``,
        on the input's device (float32 for integer input).

    Raises:
        ValueError: the image's last two dimensions are not ``geometry.source_shape``.

    Example:
        >>> geometry = fit_geometry((224, 192), 256)
        >>> image_to_grid(torch.rand(224, 192), geometry).shape
        torch.Size([1, 256, 256])
    """
    batch, restore = _as_float_batch(image, geometry.source_shape, name="image")
    resized = resize_bilinear(batch, geometry.resized_shape)
    grid = resized.new_full(
        (*resized.shape[:2], geometry.model_size, geometry.model_size), pad_value
    )
    rows, cols = geometry.bounds
    grid[..., rows, cols] = resized
    return restore(grid)


def label_to_grid(label: torch.Tensor | np.ndarray, geometry: GridGeometry) -> torch.Tensor:
    """Resize a label map by nearest neighbour onto the model grid, padding with 0 (background).

    Nearest neighbour follows ``F.interpolate(mode="nearest-exact")`` but is done by indexing, so
    it works for every integer dtype and every output value is a value of the input.

    Args:
        label: ``(rows, cols)`` or ``(B, rows, cols)`` integer label map on the source grid;
            a numpy array is converted to a tensor.
        geometry: from :func:`fit_geometry` for this label's shape.

    Returns:
        ``(S, S)`` or ``(B, S, S)`` with the input's dtype and device.

    Raises:
        ValueError: the label's shape does not match ``geometry.source_shape``.

    Example:
        >>> geometry = fit_geometry((6, 4), 8)
        >>> label_to_grid(torch.ones(6, 4, dtype=torch.int64), geometry).unique().tolist()
        [0, 1]
    """
    tensor = _as_label(label, geometry.source_shape)
    resized = resize_nearest(tensor, geometry.resized_shape)
    grid = resized.new_zeros((*resized.shape[:-2], geometry.model_size, geometry.model_size))
    rows, cols = geometry.bounds
    grid[..., rows, cols] = resized
    return grid


def probabilities_from_grid(probs: torch.Tensor, geometry: GridGeometry) -> torch.Tensor:
    """Crop the padding off per-class maps and resize them bilinearly to the source grid.

    This is how predictions return to the DICOM's own grid before the argmax. Resampling is a
    convex combination (antialiased when shrinking), so probabilities stay probabilities;
    logits work too.

    Args:
        probs: ``(C, S, S)`` or ``(B, C, S, S)`` floating maps on the model grid (all of a batch
            share ``geometry``).
        geometry: the geometry the input slice was placed with.

    Returns:
        ``(C, rows, cols)`` or ``(B, C, rows, cols)`` on the source grid, input dtype and device.

    Raises:
        ValueError: ``probs`` is not 3D/4D or its grid is not ``S × S``.

    Example:
        >>> geometry = fit_geometry((224, 192), 256)
        >>> probabilities_from_grid(torch.rand(3, 256, 256), geometry).shape
        torch.Size([3, 224, 192])
    """
    if probs.ndim not in (3, 4):
        raise ValueError(
            f"probabilities_from_grid expects (C, S, S) or (B, C, S, S), got {tuple(probs.shape)}."
        )
    return _float_from_grid(probs, geometry, name="probs")


# --------------------------------------------------------------------------- helpers


def _whole(value: Any, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"GridGeometry.{name} must be a whole number, got {value!r}.")
    return int(value)


def _int_pair(value: Any, *, name: str) -> tuple[int, int]:
    try:
        first, second = value
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"GridGeometry.{name} must be a pair of whole numbers, got {value!r}."
        ) from error
    return _whole(first, name=name), _whole(second, name=name)


def _as_float_batch(
    image: torch.Tensor | np.ndarray, shape: tuple[int, int], *, name: str
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """Return a ``(B, C, H, W)`` floating tensor and a function restoring the caller's layout."""
    tensor = torch.as_tensor(image)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    if tensor.ndim not in (2, 3, 4) or tuple(tensor.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}; expected (..., {shape[0]}, {shape[1]}) "
            "with 2 to 4 dimensions, as recorded in its GridGeometry."
        )
    if tensor.ndim == 4:
        return tensor, lambda out: out
    if tensor.ndim == 3:
        return tensor[None], lambda out: out[0]
    return tensor[None, None], lambda out: out[0]  # (H, W) -> (1, S, S)


def _as_label(label: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    tensor = torch.as_tensor(label)
    if tensor.ndim not in (2, 3) or tuple(tensor.shape[-2:]) != tuple(shape):
        raise ValueError(
            f"label has shape {tuple(tensor.shape)}; expected ({shape[0]}, {shape[1]}) or "
            f"(B, {shape[0]}, {shape[1]})."
        )
    if tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(
            f"label must hold integers, got dtype {tensor.dtype}; labels are never interpolated."
        )
    return tensor


def _float_from_grid(maps: torch.Tensor, geometry: GridGeometry, *, name: str) -> torch.Tensor:
    size = geometry.model_size
    if maps.ndim not in (3, 4) or tuple(maps.shape[-2:]) != (size, size):
        raise ValueError(
            f"{name} has shape {tuple(maps.shape)}; "
            f"expected (..., {size}, {size}) for this geometry."
        )
    if not maps.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {maps.dtype}.")
    rows, cols = geometry.bounds
    batch = maps[None] if maps.ndim == 3 else maps
    out = resize_bilinear(batch[..., rows, cols], geometry.source_shape)
    return out[0] if maps.ndim == 3 else out
