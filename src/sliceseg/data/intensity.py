"""Intensity normalisation of one slice: a robust z-score, the model's view of brightness."""

from __future__ import annotations

import numpy as np

__all__ = ["CLIP_PERCENTILES", "normalise_intensity"]

CLIP_PERCENTILES = (0.5, 99.5)
"""Percentiles that bound the intensities before the z-score (robust to a few hot pixels)."""

_FLAT_STD = 1e-6  # relative to the clipped range: below this a slice is treated as constant


def normalise_intensity(pixels: np.ndarray) -> np.ndarray:
    """Z-score one slice robustly: clip to the 0.5–99.5 percentiles, subtract mean, divide by std.

    Args:
        pixels: ``(rows, cols)`` intensities in modality units (any real dtype).

    Returns:
        ``(rows, cols)`` float32 with mean 0 and standard deviation 1 over the clipped slice;
        all zeros when the slice is (nearly) constant.

    Raises:
        ValueError: ``pixels`` is not 2D, is empty, or holds NaN or infinite values.

    Example:
        >>> out = normalise_intensity(np.arange(100.0).reshape(10, 10))
        >>> abs(float(out.mean())) < 1e-6, round(float(out.std()), 4)
        (True, 1.0)
    """
    array = np.asarray(pixels)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"normalise_intensity expects one (rows, cols) slice, got shape {array.shape}; "
            "normalise each slice separately."
        )
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ValueError(
            "normalise_intensity found NaN or infinite pixels; "
            "replace them (e.g. np.nan_to_num) first."
        )
    low, high = np.percentile(values, CLIP_PERCENTILES)
    clipped = np.clip(values, low, high)
    mean = clipped.mean()
    std = clipped.std()
    if std <= _FLAT_STD * max(high - low, abs(mean), 1.0):
        return np.zeros(array.shape, dtype=np.float32)
    return ((clipped - mean) / std).astype(np.float32)
