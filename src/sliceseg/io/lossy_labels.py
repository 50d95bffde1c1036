"""Lossy (JPEG) label maps: the values that look like labels, and snapping JPEG noise back to
the dataset's stored values, refused where the values lie too close to be told apart.

JPEG moves every value by a few units and blurs edges: a pixel between background 0 and an ROI
stored as 240 may read 120, which the nearest stored value would make an ROI that is not there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.roi_values import LabelScheme

__all__ = ["LOSSY_RADIUS_PX", "MIN_LOSSY_STEP", "dominant_values", "snap_lossy"]

# JPEG moves a label map's values by up to about 8 even at quality 95 (phantom maps, step 1..42):
# stored values closer than this cannot be told apart, and snapping turns one ROI into another.
MIN_LOSSY_STEP = 16
LOSSY_RADIUS_PX = 2  # how far `snap_lossy` looks for the values a blurred pixel lies between


def snap_lossy(
    values: np.ndarray, scheme: LabelScheme, *, source: Path | None = None
) -> tuple[np.ndarray, int]:
    """Snap lossy (JPEG) values to the nearest stored value seen within `LOSSY_RADIUS_PX`.

    A blurred edge between 0 and 240 holds 40..200: the nearest stored value there would be an
    ROI that is not there. So a pixel takes the nearest of the values found close to it (within
    a quarter step of a stored value), or the nearest stored value when none is.

    Args:
        values: integer array of stored values, any shape (the last two axes are rows, cols).
        scheme: the dataset's scheme.
        source: the file the values came from, named in the error message.

    Returns:
        (snapped int64 array of stored values, number of pixels changed). Ties go to the lower
        stored value.

    Raises:
        LabelError: stored values lie closer than `MIN_LOSSY_STEP` (ROI numbers 0..K): JPEG
            noise of ±1 is already another ROI, so the map cannot be recovered.

    Example:
        >>> snap_lossy(np.array([0, 37, 44, 90]), LabelScheme((0, 40, 80), is_display_scaled=True))
        (array([ 0, 40, 40, 80]), 3)
    """
    stored = np.asarray(scheme.stored_values, dtype=np.int64)
    step = int(np.diff(stored).min()) if len(stored) > 1 else MIN_LOSSY_STEP
    if step < MIN_LOSSY_STEP:
        raise LabelError(
            f"{source or 'label map'}: JPEG label map with label values {scheme.describe()}, "
            f"{step} apart: JPEG changes pixel values by several units, so one ROI turns into "
            f"another (areas wrong); expected values at least {MIN_LOSSY_STEP} apart; save the "
            "label map as PNG or NPY."
        )
    upper = np.minimum(np.searchsorted(stored, values), len(stored) - 1)
    lower = np.maximum(upper - 1, 0)
    use_upper = np.abs(stored[upper] - values) < np.abs(values - stored[lower])
    nearest = np.where(use_upper, stored[upper], stored[lower])
    snapped = _nearest_seen(values, nearest, step)
    return snapped, int(np.count_nonzero(snapped != values))


def _nearest_seen(values: np.ndarray, nearest: np.ndarray, step: int) -> np.ndarray:
    from scipy import ndimage  # only JPEG labels need it

    clean = np.abs(values - nearest) * 4 <= step
    width = 2 * LOSSY_RADIUS_PX + 1
    footprint = np.ones((1,) * max(values.ndim - 2, 0) + (width,) * min(values.ndim, 2), bool)
    snapped, best = nearest.copy(), np.full(values.shape, np.inf)
    for value in np.unique(nearest[clean]):  # ascending: a tie keeps the lower value
        seen = ndimage.binary_dilation(clean & (nearest == value), structure=footprint)
        distance = np.where(seen, np.abs(values - value), np.inf)
        closer = distance < best
        snapped[closer], best[closer] = value, distance[closer]
    return snapped


def dominant_values(
    values: np.ndarray, *, min_fraction: float = 0.0005, min_pixels: int = 20
) -> set[int]:
    """Return the values of a lossy map that look like real labels rather than JPEG edge noise.

    A value counts when it covers at least ``max(min_pixels, min_fraction × pixels)`` pixels and
    is a local maximum of the histogram within ±3. A best-effort guess, used only when a dataset
    has no lossless label map: with plain 0..K values a small ROI next to a larger one is missed,
    so give ``num_labels`` there.

    Example:
        >>> from sliceseg.io.labels import read_label_file
        >>> sorted(dominant_values(read_label_file(Path("labels/s1.jpg")).values))
        [0, 40, 80]
    """
    counts = np.bincount(np.asarray(values, dtype=np.int64).ravel())
    padded = np.pad(counts, 3)
    threshold = max(min_pixels, min_fraction * counts.sum())
    neighbours = np.stack([padded[i : i + len(counts)] for i in (0, 1, 2, 4, 5, 6)])
    is_peak = (counts >= threshold) & np.all(counts >= neighbours, axis=0)
    return {int(v) for v in np.flatnonzero(is_peak)}
