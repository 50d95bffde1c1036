"""Small overlay pictures for the report's slice grid: a few kilobytes each, so a study fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from sliceseg.errors import ConfigError
from sliceseg.io.files import atomic_path
from sliceseg.report.display import display_shape
from sliceseg.report.visualize import overlay

THUMBNAIL_SIDE = 180
"""Longest side of a thumbnail in pixels (a 256² slice becomes 180², about 8 kB as JPEG)."""


def save_thumbnail(
    path: Path | str,
    image: np.ndarray,
    label: np.ndarray,
    *,
    max_side: int = THUMBNAIL_SIDE,
    quality: int = 70,
    window: tuple[float, float] | None = None,
    spacing_mm: tuple[float, float] | None = None,
) -> Path:
    """Save the slice with its ROIs coloured in, shrunk to ``max_side`` pixels, as a JPEG.

    Only the overlay is drawn (no title, no legend: the report shows them); the slice keeps
    its true aspect (its grid's, stretched along the coarser ``spacing_mm``), and a slice
    smaller than ``max_side`` is not enlarged.

    Args:
        path: output ``.jpg``; written atomically.
        image: (rows, cols) grey image in any units.
        label: (rows, cols) label map 0..K.
        max_side: longest side of the thumbnail in pixels.
        quality: JPEG quality 1..95.
        window: the (low, high) values shown black and white (`display_window`); None takes
            the image's percentiles.
        spacing_mm: the (row, col) pixel spacing; None shows the grid as it is.

    Returns:
        ``path``.

    Raises:
        ConfigError: the suffix is not .jpg/.jpeg, a size or quality is out of range, or the
            shapes differ.

    Example:
        >>> save_thumbnail("thumbnails/s01.jpg", image.pixels, label)
    """
    target = Path(path)
    if target.suffix.lower() not in (".jpg", ".jpeg"):
        raise ConfigError(f"{target}: thumbnails are saved as .jpg, got {target.suffix!r}.")
    if max_side < 16 or not 1 <= quality <= 95:
        raise ConfigError(
            f"thumbnail max_side must be ≥ 16 and quality 1..95, got {max_side} and {quality}."
        )
    picture = Image.fromarray(overlay(image, label, window=window))
    rows, cols = display_shape((picture.height, picture.width), spacing_mm)
    scale = min(1.0, max_side / max(rows, cols))
    size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    if size != picture.size:
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    with atomic_path(target) as tmp:
        picture.save(tmp, format="JPEG", quality=quality, optimize=True)
    return target
