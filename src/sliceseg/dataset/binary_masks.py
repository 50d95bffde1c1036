"""Label maps that hold one ROI far larger than it is anywhere else: a binary mask saved in place of
the map of ROI numbers.

``np.save(path, label > 0)`` turns every ROI of a slice into ROI 1; training would learn every
muscle as ROI 1, and ``measure`` would publish the union as ROI 1's area. ROIs legitimately come
and go along the body (a slice with only the vertebral body, the iliopsoas on a quarter of the
slices), so the rule compares sizes, not ROI lists: a slice whose only ROI k covers more than
:data:`MASK_FACTOR` times the largest area ROI k has on any slice that also holds another ROI.
Those reference slices cannot be such masks, so a whole series saved as masks is still caught.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.problems import Problem
from sliceseg.measure.areas import area_mm2

__all__ = ["MASK_FACTOR", "binary_mask_problems"]

MASK_FACTOR = 3.0
"""How many times its largest area beside other ROIs a lone ROI may cover before it is flagged.
A real ROI varies along the body by well under this; the union of a lumbar slice's ROIs is 6–10×
its vertebral body."""

_Group = tuple[int, str]  # (ROI k, area unit: "mm²", or "px" for slices without spacing)


def binary_mask_problems(
    samples: Sequence[Sample], label_files: Sequence[Path], names: tuple[str, ...]
) -> list[Problem]:
    """Warn, per ROI, about the label maps where it is the only ROI and too large to be itself.

    A slice holding only ROI k is flagged when ROI k's area there exceeds :data:`MASK_FACTOR`
    times the largest area ROI k has on a slice holding another ROI too. Areas are in mm² (as
    `measure` gives them) and compared only with areas in the same unit: slices without pixel
    spacing count pixels among themselves.

    Args:
        samples: the dataset's slices, labels as ROI numbers 0..K.
        label_files: the label file of each sample (a multi-frame file or volume repeats).
        names: names of ROIs 1..K.

    Returns:
        One "binary_mask" warning per ROI with flagged files, naming them; [] otherwise.

    Example:
        >>> binary_mask_problems(samples, files, ROI_NAMES)[0].message
        '1 label map holds only ROI 1 (vertebral body), over 11,231 mm²: 6.6× the largest ...'
    """
    largest: dict[_Group, float] = {}
    alone: dict[_Group, dict[Path, float]] = defaultdict(dict)
    for sample, file in zip(samples, label_files, strict=True):
        rois = [k for k in np.unique(sample.label).tolist() if k > 0]
        for k in rois:
            area, unit = _area(sample, k)
            if len(rois) > 1:
                largest[(k, unit)] = max(largest.get((k, unit), 0.0), area)
            else:
                alone[(k, unit)][file] = max(alone[(k, unit)].get(file, 0.0), area)
    problems = []
    for (k, unit), areas in sorted(alone.items()):
        reference = largest.get((k, unit), 0.0)
        flagged = {f: a for f, a in areas.items() if reference and a > MASK_FACTOR * reference}
        if flagged:
            problems.append(_warning(k, names, unit, flagged, reference))
    return problems


def _area(sample: Sample, k: int) -> tuple[float, str]:
    mask = sample.label == k
    spacing = sample.image.spacing_mm
    if spacing is None:
        return float(np.count_nonzero(mask)), "px"
    return area_mm2(mask, spacing), "mm²"


def _warning(
    k: int, names: tuple[str, ...], unit: str, flagged: dict[Path, float], reference: float
) -> Problem:
    name, top = names[k - 1], max(flagged.values())
    held = "label map holds" if len(flagged) == 1 else "label maps hold"
    size = "over" if len(flagged) == 1 else "up to"
    message = (
        f"{len(flagged)} {held} only ROI {k} ({name}), {size} {top:,.0f} {unit}: "
        f"{top / reference:.1f}× the largest {name} in the maps that hold other ROIs too "
        f"({reference:,.0f} {unit}); a binary mask saved instead of the ROI numbers? Save the "
        f"map of ROI numbers 0..{len(names)} (0 = background)."
    )
    return Problem("warning", "binary_mask", message, tuple(sorted(flagged)))
