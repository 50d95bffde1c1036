"""The pixel spacing of an ultrasound image, from its (0018,6011) SequenceOfUltrasoundRegions.

An ultrasound image has no (0028,0030) PixelSpacing: each region of the image (a B-mode sector,
a Doppler strip, an M-mode trace) says its own physical size per pixel, (0018,602C)
PhysicalDeltaX and (0018,602E) PhysicalDeltaY, in the units of (0018,6024)
PhysicalUnitsXDirection and (0018,6026) PhysicalUnitsYDirection (PS3.3 C.8.5.5.1). Only one
spacing for the whole image is safe to measure with: every region in cm (code 3) with the same
deltas. Anything else (a Doppler strip in seconds and cm/s beside the B-mode image, two zooms)
leaves the image without a spacing, with a ``UserWarning`` saying why.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from pydicom.dataset import Dataset

__all__ = [
    "ULTRASOUND_DISAGREE_SOURCE",
    "ULTRASOUND_NOT_CM_SOURCE",
    "ULTRASOUND_SPACING_SOURCE",
    "ultrasound_spacing",
]

ULTRASOUND_SPACING_SOURCE = "SequenceOfUltrasoundRegions PhysicalDeltaY / PhysicalDeltaX"
"""``Slice.spacing_source`` of an ultrasound image's spacing: its regions' (0018,602E)
PhysicalDeltaY (rows) and (0018,602C) PhysicalDeltaX (columns), in cm, times 10."""
ULTRASOUND_DISAGREE_SOURCE = "SequenceOfUltrasoundRegions (regions disagree)"
"""``Slice.spacing_source`` of an ultrasound image whose regions are all in cm but not of one
spacing: no spacing in mm, and the refusal says why (the read's warning, which names the
values, is not said before a refusal in every command)."""
ULTRASOUND_NOT_CM_SOURCE = "SequenceOfUltrasoundRegions (not in cm)"
"""``Slice.spacing_source`` of an ultrasound image with a region not in cm (a Doppler or M-mode
strip in seconds or cm/s) or whose PhysicalDelta is not > 0: no spacing in mm."""

_CM = 3  # PhysicalUnitsX/YDirection code 3: cm (PS3.3 C.8.5.5.1.15)
_UNIT_NAMES = {0: "none", 1: "percent", 2: "dB", 3: "cm", 4: "seconds", 5: "hertz", 7: "cm/sec"}


def ultrasound_spacing(ds: Dataset, path: Path) -> tuple[tuple[float, float] | None, str]:
    """Return the (row, col) spacing in mm of an ultrasound image and its source.

    Returns:
        ``((PhysicalDeltaY × 10, PhysicalDeltaX × 10), ULTRASOUND_SPACING_SOURCE)`` when every
        region is in cm with the same deltas; ``(None, ULTRASOUND_DISAGREE_SOURCE)`` or
        ``(None, ULTRASOUND_NOT_CM_SOURCE)``, with a ``UserWarning`` naming the regions, when
        they are not; ``(None, "none")`` without
        regions.

    Example:
        >>> region = Dataset()
        >>> region.PhysicalDeltaX, region.PhysicalDeltaY = 0.02, 0.03
        >>> region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
        >>> ultrasound_spacing(Dataset(SequenceOfUltrasoundRegions=[region]), Path("us.dcm"))
        ((0.3, 0.2), 'SequenceOfUltrasoundRegions PhysicalDeltaY / PhysicalDeltaX')
    """
    regions = ds.get("SequenceOfUltrasoundRegions") or []
    if not regions:
        return None, "none"
    found = [_region_spacing(region) for region in regions]
    spacings = [spacing for spacing in found if isinstance(spacing, tuple)]
    if len(spacings) == len(found) and len(set(spacings)) == 1:
        row_cm, col_cm = spacings[0]  # rounded: 0.03 cm is 0.3 mm, not 0.30000000000000004
        return (round(row_cm * 10.0, 9), round(col_cm * 10.0, 9)), ULTRASOUND_SPACING_SOURCE
    described = "; ".join(
        f"region {n}: {value if isinstance(value, str) else _cm_text(value)}"
        for n, value in enumerate(found, 1)
    )
    warnings.warn(
        f"{path}: no (0028,0030) PixelSpacing, and its {len(found)} (0018,6011) "
        f"SequenceOfUltrasoundRegions give no one spacing in cm ({described}); treating the "
        "spacing as missing.",
        UserWarning,
        stacklevel=5,
    )
    all_cm = len(spacings) == len(found)
    return None, ULTRASOUND_DISAGREE_SOURCE if all_cm else ULTRASOUND_NOT_CM_SOURCE


def _region_spacing(region: Dataset) -> tuple[float, float] | str:
    """A region's (row, col) spacing in cm, rounded to 9 digits so that equal ones compare
    equal; else why not, in words."""
    units = (region.get("PhysicalUnitsYDirection"), region.get("PhysicalUnitsXDirection"))
    if units != (_CM, _CM):
        return (
            f"PhysicalUnitsYDirection {_unit_text(units[0])}, PhysicalUnitsXDirection "
            f"{_unit_text(units[1])}, not cm"
        )
    try:
        deltas = (float(region.get("PhysicalDeltaY")), float(region.get("PhysicalDeltaX")))
    except (TypeError, ValueError):
        return "no PhysicalDeltaY / PhysicalDeltaX"
    if not all(math.isfinite(v) and v > 0 for v in deltas):
        return f"PhysicalDeltaY / PhysicalDeltaX {deltas[0]:g} / {deltas[1]:g}, not > 0"
    return round(deltas[0], 9), round(deltas[1], 9)


def _unit_text(code: object) -> str:
    return _UNIT_NAMES.get(code, f"code {code}") if isinstance(code, int) else repr(code)


def _cm_text(spacing: tuple[float, float]) -> str:
    return f"PhysicalDeltaY {spacing[0]:g} cm, PhysicalDeltaX {spacing[1]:g} cm"
