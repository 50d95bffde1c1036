"""Each ROI's one colour, the same in every picture and export: overlays, batch grids,
animations, plots, the reports and the 3D Slicer / DICOM-SEG segments.

Kept apart from the drawing code (matplotlib, PIL) so that the tables and reports that only
name a colour do not import it.
"""

from __future__ import annotations

import colorsys

__all__ = ["ROI_COLOURS", "roi_colour", "roi_colour_hex"]

# Distinct colours that stay visible on grey CT/MR (no grey, white or black): ROIs 1..12
ROI_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (255, 225, 25),  # yellow
    (0, 130, 200),  # blue
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (210, 245, 60),  # lime
    (250, 190, 212),  # pink
    (0, 128, 128),  # teal
    (170, 110, 40),  # brown
)
_GOLDEN = 0.618033988749895  # hue step that keeps successive hues far apart on the wheel
_SATURATIONS = (0.9, 0.6)  # both far from grey
_VALUES = (0.95, 0.75, 0.55)  # none near black or white


def roi_colour(k: int) -> tuple[int, int, int]:
    """Return the fixed (r, g, b) colour, 0–255, of ROI number ``k`` (1..K).

    ROIs 1..12 take `ROI_COLOURS`; above that each ROI gets its own colour, its hue a golden-
    ratio step from the last one's, with saturation and brightness taking turns, so that a
    model with many ROIs never paints two of them alike.

    Raises:
        ValueError: ``k`` < 1 (0 is background, which is transparent).

    Example:
        >>> roi_colour(1), roi_colour(13) != roi_colour(1)
        ((230, 25, 75), True)
    """
    if k < 1:
        raise ValueError(f"ROI numbers start at 1, got {k}; 0 is background and has no colour.")
    if k <= len(ROI_COLOURS):
        return ROI_COLOURS[k - 1]
    step = k - len(ROI_COLOURS) - 1
    hue = (0.05 + step * _GOLDEN) % 1.0
    saturation = _SATURATIONS[step // len(_VALUES) % len(_SATURATIONS)]
    value = _VALUES[step % len(_VALUES)]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def roi_colour_hex(k: int) -> str:
    """Return ROI ``k``'s colour as ``"#rrggbb"`` (matplotlib, HTML)."""
    return "#{:02x}{:02x}{:02x}".format(*roi_colour(k))
