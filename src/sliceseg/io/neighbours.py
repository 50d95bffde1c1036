"""A slice's neighbours in its series: the slices a 2.5D network sees beside it.

A model trained with ``context_slices = k`` takes each slice together with the k slices on
either side of it in its series (`sliceseg.io.identity.series_key`), ordered along the slice
normal. Training, validation and prediction all find them here, so that a network sees the
same kind of neighbours everywhere. Where a series ends (or a slice is alone) the nearest
slice that exists stands in, down to the slice itself: a lone L3 slice still works.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sliceseg.io.dicom import Slice, order_slices
from sliceseg.io.identity import series_key

__all__ = ["SPACING_TOLERANCE", "neighbour_step_mm", "series_order", "slice_neighbours"]

SPACING_TOLERANCE = 1.5
"""A series whose slice step is more than this factor off a 2.5D model's training step is told."""


def series_order(slices: Sequence[Slice]) -> list[Slice]:
    """One series' slices in order along the slice normal.

    By position (SliceLocation, else ImagePositionPatient on the normal) when every slice has
    one, else as `order_slices` orders them (InstanceNumber, then name): the physical order
    where the headers give it, whatever the InstanceNumbers say.
    """
    if slices and all(s.position_mm is not None for s in slices):
        ordered = order_slices(slices)  # ties keep a stable, documented order
        return sorted(ordered, key=lambda s: float(s.position_mm or 0.0))
    return order_slices(slices)


def slice_neighbours(
    centres: Sequence[Slice], k: int, *, pool: Sequence[Slice] = ()
) -> list[tuple[Slice, ...]]:
    """Per centre, the ``2k`` slices beside it in its series: ``(-k, ..., -1, +1, ..., +k)``.

    Args:
        centres: the slices to give neighbours to (any series, any order).
        k: neighbours on each side (0: none).
        pool: further slices that may be neighbours but are not centres themselves (a
            training set's unlabelled DICOMs of the same series).

    Returns:
        One tuple per centre, in the centres' order. At a series' end the last slice that
        exists on that side stands in for the missing ones, down to the centre itself.

    Example:
        >>> below, above = slice_neighbours(read_series(Path("scans/p01")), 1)[4]
    """
    if k <= 0:
        return [() for _ in centres]
    members: dict[str, dict[tuple[str, int], Slice]] = {}
    for image in (*centres, *pool):
        members.setdefault(series_key(image), {}).setdefault(_identity(image), image)
    orders = {key: series_order(list(found.values())) for key, found in members.items()}
    places = {
        key: {_identity(s): i for i, s in enumerate(ordered)} for key, ordered in orders.items()
    }
    steps = [*range(-k, 0), *range(1, k + 1)]
    result = []
    for image in centres:
        key = series_key(image)
        ordered, at = orders[key], places[key][_identity(image)]
        last = len(ordered) - 1
        result.append(tuple(ordered[min(max(at + step, 0), last)] for step in steps))
    return result


def neighbour_step_mm(centres: Sequence[Slice], *, pool: Sequence[Slice] = ()) -> float | None:
    """How far apart a 2.5D model's neighbours are: the median distance in mm between each
    centre and the slices right beside it in its series (`slice_neighbours` with k = 1).

    Returns:
        None when no centre has a neighbour with a position (lone slices, no positions).

    Example:
        >>> neighbour_step_mm(read_series(Path("scans/p01")))
        3.0
    """
    distances = [
        abs(float(near.position_mm) - float(centre.position_mm))
        for centre, beside in zip(centres, slice_neighbours(centres, 1, pool=pool), strict=True)
        for near in beside
        if centre.position_mm is not None and near.position_mm is not None
    ]
    steps = [d for d in distances if d > 0]
    return float(np.median(steps)) if steps else None


def _identity(image: Slice) -> tuple[str, int]:
    return str(image.source), image.frame
