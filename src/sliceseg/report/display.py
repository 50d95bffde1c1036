"""How a slice is shown in pictures: its grey window and the true shape of its pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.measure.tissue import HU_FAT_CEILING, is_ct

CT_WINDOW_HU = (-160.0, 240.0)
"""CT's soft-tissue window (level 40, width 400 HU), the one an abdomen is read in: fat
(-100 HU) shows dark grey and muscle (40 HU) mid grey. Percentiles of a whole CT slice span air
to bone, which leaves fat and muscle a few grey levels apart."""


def display_window(image: Slice) -> tuple[float, float] | None:
    """Return the fixed (low, high) window of ``image.display_pixels``, or None for percentiles.

    CT in Hounsfield units (its lowest value at or below fat's, as `sliceseg.measure.tissue`
    tells HU from stored values) gets :data:`CT_WINDOW_HU`, mirrored for MONOCHROME1 as its
    display pixels are; anything else (MR, CT without its rescale) is windowed by percentiles.

    Example:
        >>> display_window(read_slice(Path("ct/IM-0001.dcm")))
        (-160.0, 240.0)
    """
    if not is_ct(image.modality) or float(np.min(image.pixels)) > HU_FAT_CEILING:
        return None
    low, high = CT_WINDOW_HU
    return (-high, -low) if image.photometric == "MONOCHROME1" else (low, high)


def shown_as(
    image: Slice,
) -> tuple[np.ndarray, tuple[float, float] | None, tuple[float, float] | None]:
    """Return what a picture of ``image`` draws: its display pixels, its `display_window` and its
    (row, col) PixelSpacing (for `display_shape`), so every overlay of a slice looks alike.

    Example:
        >>> pixels, window, spacing_mm = shown_as(read_slice(Path("ct/IM-0001.dcm")))
    """
    return image.display_pixels, display_window(image), image.spacing_mm


def as_array(array: object) -> np.ndarray:
    """Return an array or a torch tensor (without importing torch here) as a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def to_display(image: object, *, window: tuple[float, float] | None = None) -> np.ndarray:
    """Window any grey image to uint8 for display: ``window`` (or the 1st–99th percentile) → 0–255.

    Args:
        image: (rows, cols) or (1, rows, cols) array or tensor, any numeric type; NaNs show black.
        window: the (low, high) values shown black and white (e.g. `display_window`); None
            takes the image's 1st and 99th percentiles.

    Returns:
        (rows, cols) uint8.

    Raises:
        ConfigError: the image is not two-dimensional.
    """
    data = as_array(image).astype(np.float64)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ConfigError(f"expected a 2D grey image (rows, cols), got shape {data.shape}.")
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, np.uint8)
    if window is not None:
        lo, hi = window
    else:
        lo, hi = np.percentile(data[finite], [1, 99])
        if hi <= lo:
            lo, hi = float(data[finite].min()), float(data[finite].max())
    if hi <= lo:
        return np.zeros(data.shape, np.uint8)
    scaled = np.clip((np.where(finite, data, lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.rint(scaled * 255.0).astype(np.uint8)


def display_shape(
    shape: tuple[int, ...], spacing_mm: tuple[float, float] | None
) -> tuple[int, int]:
    """Return the (rows, cols) that show a grid of ``shape`` at its true aspect.

    The axis with the coarser (0028,0030) PixelSpacing is stretched, the finer one kept, so
    no pixel is lost; without a spacing (or a bad one) the grid is shown as it is.

    Example:
        >>> display_shape((100, 100), (0.5, 1.0))
        (100, 200)
    """
    rows, cols = int(shape[0]), int(shape[1])
    if spacing_mm is None or not all(np.isfinite(s) and s > 0 for s in spacing_mm):
        return rows, cols
    row_mm, col_mm = spacing_mm
    finest = min(row_mm, col_mm)
    return max(1, round(rows * row_mm / finest)), max(1, round(cols * col_mm / finest))


def resize_pair(
    grey: np.ndarray, label: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a uint8 grey image (Lanczos) and its label map (nearest neighbour) to ``shape``."""
    if grey.shape == shape:
        return grey, label
    size = (shape[1], shape[0])
    smooth = Image.fromarray(grey).resize(size, Image.Resampling.LANCZOS)
    nearest = Image.fromarray(label.astype(np.int32)).resize(size, Image.Resampling.NEAREST)
    return np.asarray(smooth), np.asarray(nearest).astype(np.int64)


def true_shape(
    grey: np.ndarray,
    label: np.ndarray,
    spacing_mm: tuple[float, float] | None,
    *,
    min_side: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Return a uint8 grey image and its label map at their true aspect (`display_shape`),
    enlarged by a whole factor to at least ``min_side`` pixels, as every overlay draws them.

    Example:
        >>> [a.shape for a in true_shape(grey, label, (0.5, 1.0))]  # grey: 100 × 100
        [(100, 200), (100, 200)]
    """
    rows, cols = display_shape(grey.shape, spacing_mm)
    factor = max(1, -(-min_side // max(rows, cols)))
    return resize_pair(grey, label, (rows * factor, cols * factor))
