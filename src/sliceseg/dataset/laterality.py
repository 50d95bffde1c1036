"""Left/right ROI pairs on the wrong side of the patient: a mirrored label volume, or swapped names.

A NIfTI saved with its LPS affine as RAS (x and y negated) is turned 180° in-plane; where the
series' field of view is centred on the isocentre the turned grid is the DICOM's own, so no
geometry check can see it, and areas do not change under the turn: only the left and right
ROIs trade places (and areas). Names that carry the side tell: in LPS, +x is the patient's left,
so a left ROI's centre lies at a larger x than its right partner's on every slice holding both.
Names without a side (one vertebral body) give nothing to compare, and nothing is said.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.problems import Problem
from sliceseg.measure.plausibility import sided_pairs_from_names

__all__ = ["mirrored_side_problems", "side_pairs"]


def side_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """The (left, right) ROI numbers (1..K) of names equal but for a side word, paired as the
    area tables' left/right ratio check pairs them (`sided_pairs_from_names`: left / right,
    L / R, lt / rt, in any case).

    Example:
        >>> side_pairs(["right psoas", "vertebral body", "Left Psoas", "erector_L", "erector_R"])
        [(3, 1), (4, 5)]
    """
    number = {name: k for k, name in reversed(list(enumerate(names, start=1)))}  # the first
    return [(number[left], number[right]) for left, right in sided_pairs_from_names(names)]


def mirrored_side_problems(
    samples: Sequence[Sample], label_files: Sequence[Path], names: Sequence[str]
) -> list[Problem]:
    """Warn, per left/right pair, about the label files whose left ROI lies on the patient's
    right of its partner on most of their slices holding both.

    Args:
        samples: the dataset's slices, labels as ROI numbers 0..K.
        label_files: the label file of each sample (a volume repeats).
        names: names of ROIs 1..K.

    Returns:
        One "mirrored_sides" warning per pair with such files, naming them; [] otherwise.
    """
    problems = []
    for left, right in side_pairs(names):
        votes: dict[Path, list[tuple[float, float]]] = defaultdict(list)
        for sample, file in zip(samples, label_files, strict=True):
            xs = [_centre_x_mm(sample, k) for k in (left, right)]
            if xs[0] is not None and xs[1] is not None:
                votes[file].append((xs[0], xs[1]))
        flagged = {f: v for f, v in votes.items() if sum(a < b for a, b in v) * 2 > len(v)}
        if flagged:
            problems.append(_warning((left, right), names, flagged))
    return problems


def _centre_x_mm(sample: Sample, k: int) -> float | None:
    """LPS x of ROI k's centre on the slice; None where it is absent or the slice unplaced."""
    image = sample.image
    if image.image_position_mm is None or image.orientation is None:
        return None
    rows, cols = np.nonzero(sample.label == k)
    if rows.size == 0:
        return None
    row_mm, col_mm = image.spacing_mm or (1.0, 1.0)  # the side, not the distance, matters
    cosines = np.asarray(image.orientation, dtype=np.float64)
    along = cols.mean() * col_mm * cosines[0] + rows.mean() * row_mm * cosines[3]
    return float(image.image_position_mm[0] + along)


def _warning(
    pair: tuple[int, int], names: Sequence[str], flagged: dict[Path, list[tuple[float, float]]]
) -> Problem:
    (left, right), votes = pair, [v for found in flagged.values() for v in found]
    wrong = sum(a < b for a, b in votes)
    x_left, x_right = np.mean([a for a, _ in votes]), np.mean([b for _, b in votes])
    message = (
        f"{len(flagged)} label file(s) put ROI {left} ({names[left - 1]}) on the patient's "
        f"right of ROI {right} ({names[right - 1]}), in {wrong} of the {len(votes)} slices "
        f"holding both (LPS x {x_left:.0f} mm vs {x_right:.0f} mm; the patient's left is +x): "
        "mirrored labels (a NIfTI saved with its LPS affine as RAS turns them 180° in-plane) "
        "or swapped names; open the file over its DICOM series in a viewer, and save it with "
        "the series' own affine or fix the names"
    )
    return Problem("warning", "mirrored_sides", message, tuple(sorted(flagged)))
