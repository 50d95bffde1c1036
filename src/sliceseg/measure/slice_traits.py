"""What one slice looks like to the "unlike the training data" check (`measure.familiarity`).

Per slice: the network's deepest features, the quantiles of its normalised intensities, how
much of an image edge its body covers (a field of view that cuts the body), and each ROI's area
and distance from the centre of all ROIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EDGE_BAND",
    "EDGE_BODY_LEVEL",
    "INTENSITY_QUANTILES",
    "SliceTraits",
    "body_at_edges",
    "body_mask",
    "intensity_quantiles",
    "roi_geometry",
    "slice_traits",
]

INTENSITY_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
"""Quantiles of a slice's normalised intensities (the model's input) kept per slice."""
EDGE_BAND, EDGE_BODY_LEVEL = 0.02, 0.2
"""`body_at_edges`: a band of this share of each side; body (`body_mask`) is above this share of
the way from the 1st to the 99th percentile."""
_PRESENT_PIXELS = 1


@dataclass(frozen=True)
class SliceTraits:
    """One slice as the check sees it (arrays may be empty when not measured).

    Attributes:
        features: ``(channels,)`` deepest features (empty: not measured).
        intensity: ``(len(INTENSITY_QUANTILES),)`` normalised intensity quantiles (or empty).
        areas_mm2: ``(K,)`` each ROI's area.
        distances_mm: ``(K,)`` each ROI's centroid distance from the centroid of all ROIs,
            NaN where the ROI is absent.
        edge: the slice's `body_at_edges` (NaN: not measured).
    """

    features: np.ndarray
    intensity: np.ndarray
    areas_mm2: np.ndarray
    distances_mm: np.ndarray
    edge: float = float("nan")


def intensity_quantiles(image: np.ndarray) -> np.ndarray:
    """Return the :data:`INTENSITY_QUANTILES` of one normalised image.

    Example:
        >>> intensity_quantiles(np.arange(101.0))[3]
        50.0
    """
    return np.quantile(np.asarray(image, dtype=np.float64).ravel(), INTENSITY_QUANTILES)


def body_at_edges(image: np.ndarray, quantiles: np.ndarray | None = None) -> float:
    """Return the share of body along the image's most covered edge (0: no edge touches it).

    Body is what is brighter than :data:`EDGE_BODY_LEVEL` of the way from the 1st to the 99th
    percentile; each edge is a band of :data:`EDGE_BAND` of the side (at least a pixel). A
    field of view that cuts the body shows as a side full of it. ``quantiles``: the image's
    `intensity_quantiles`, when already computed.

    Example:
        >>> image = np.zeros((50, 50)); image[10:40, 0:30] = 1.0  # cut on the left
        >>> round(body_at_edges(image), 2)
        0.6
    """
    body = body_mask(image, quantiles)
    rows = max(1, round(EDGE_BAND * body.shape[0]))
    cols = max(1, round(EDGE_BAND * body.shape[1]))
    sides = (body[:rows], body[-rows:], body[:, :cols], body[:, -cols:])
    return float(max(np.count_nonzero(side) / side.size for side in sides))


def body_mask(image: np.ndarray, quantiles: np.ndarray | None = None) -> np.ndarray:
    """Return where one normalised image shows body: brighter than :data:`EDGE_BODY_LEVEL` of
    the way from its 1st to its 99th percentile (all False when the image is flat).

    Example:
        >>> image = np.zeros((4, 4)); image[1:3, 1:3] = 1.0
        >>> int(body_mask(image).sum())
        4
    """
    image = np.asarray(image)
    if quantiles is None:
        low, high = _quantiles(image.ravel(), (0.01, 0.99))
    else:
        low = quantiles[INTENSITY_QUANTILES.index(0.01)]
        high = quantiles[INTENSITY_QUANTILES.index(0.99)]
    if not high > low:
        return np.zeros(image.shape, dtype=bool)
    return image > low + EDGE_BODY_LEVEL * (high - low)


def _quantiles(values: np.ndarray, levels: Sequence[float]) -> list[float]:
    """``np.quantile(values, levels)`` to the bit (its linear method), by partial sorting: a
    body mask per predicted slice must not cost a full sort of the slice."""
    n = len(values)
    positions = [level * (n - 1) for level in levels]
    below = [min(int(np.floor(p)), n - 1) for p in positions]
    above = [min(i + 1, n - 1) for i in below]
    ordered = np.partition(values, sorted(set(below + above))).astype(np.float64)
    found = []
    for p, i, j in zip(positions, below, above, strict=True):
        a, b, t = ordered[i], ordered[j], p - i
        found.append(float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t))  # numpy's lerp
    return found


def roi_geometry(
    label: np.ndarray, spacing_mm: tuple[float, float], num_labels: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each ROI's area (mm²) and centroid distance (mm) from the centroid of all ROIs.

    Distances do not depend on flips, transposes or in-plane rotation, so a label map on the
    DICOM's own grid and one in the canonical orientation give the same numbers.

    Example:
        >>> label = np.zeros((10, 10), np.uint8); label[0, 0] = 1; label[0, 4] = 2
        >>> roi_geometry(label, (1.0, 0.5), 2)
        (array([0.5, 0.5]), array([1., 1.]))
    """
    rows, cols = np.nonzero(label)
    areas, distances = np.zeros(num_labels), np.full(num_labels, np.nan)
    if not len(rows):
        return areas, distances
    pixel_mm2 = float(spacing_mm[0]) * float(spacing_mm[1])
    values = label[rows, cols]
    centre = np.array([rows.mean() * spacing_mm[0], cols.mean() * spacing_mm[1]])
    for k in range(1, num_labels + 1):
        mine = values == k
        count = int(np.count_nonzero(mine))
        areas[k - 1] = count * pixel_mm2
        if count >= _PRESENT_PIXELS:
            at = np.array([rows[mine].mean() * spacing_mm[0], cols[mine].mean() * spacing_mm[1]])
            distances[k - 1] = float(np.linalg.norm(at - centre))
    return areas, distances


def slice_traits(
    features: np.ndarray | None,
    images: Sequence[np.ndarray | None],
    labels: Sequence[np.ndarray],
    spacings_mm: Sequence[tuple[float, float] | None],
    num_labels: int,
) -> list[SliceTraits]:
    """Return each slice's traits from what was measured (one entry per label map).

    Args:
        features: ``(slices, channels)`` deepest features, rows of NaN (or None) where not
            measured.
        images: per slice the normalised model input (or None: not measured).
        labels: per slice its label map (true in training, predicted otherwise).
        spacings_mm: per slice the label map's ``(row, col)`` spacing (None: no geometry).
        num_labels: K.
    """
    empty = np.zeros(0)
    traits = []
    for i, label in enumerate(labels):
        row = empty if features is None or not np.isfinite(features[i]).all() else features[i]
        image = images[i]
        spacing = spacings_mm[i]
        if spacing is None:
            areas, distances = np.full(num_labels, np.nan), np.full(num_labels, np.nan)
        else:
            areas, distances = roi_geometry(label, spacing, num_labels)
        quantiles = empty if image is None else intensity_quantiles(image)
        edge = float("nan") if image is None else body_at_edges(image, quantiles)
        traits.append(SliceTraits(row, quantiles, areas, distances, edge))
    return traits
