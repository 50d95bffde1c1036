"""A slice's neighbours in its series: the slices a 2.5D network sees beside it.

A model trained with ``context_slices = k`` takes each slice together with the k slices on
either side of it in its series (`sliceseg.io.identity.series_key`), ordered along the slice
normal. Training, validation and prediction all find them here, so that a network sees the
same kind of neighbours everywhere. Where a series ends (or a slice is alone) the nearest
slice that exists stands in, down to the slice itself: a lone L3 slice still works.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_folder import order_slices
from sliceseg.io.dicom_headers import projected_position
from sliceseg.io.identity import series_key

__all__ = ["SPACING_TOLERANCE", "neighbour_step_mm", "series_order", "slice_neighbours"]

SPACING_TOLERANCE = 1.5
"""A series whose slice step is more than this factor off a 2.5D model's training step is told."""


# How far (0020,1041) SliceLocation may stray from the position along the normal (up to a
# shift and a sign, which DICOM leaves open) before the two disagree: far above DS rounding.
_LOCATION_TOLERANCE_MM = 0.1


def series_order(slices: Sequence[Slice]) -> list[Slice]:
    """One series' slices in order along the slice normal.

    By position when every slice has one from the same source (ImagePositionPatient on the
    normal, else SliceLocation for every slice), else as `order_slices` orders them
    (InstanceNumber, then name) with a ``UserWarning``: never by a mix of the two coordinate
    systems. A SliceLocation that disagrees with the position is told, naming the series.
    """
    if not slices:
        return []
    _warn_disagreeing_locations(slices)
    if all(s.position_mm is not None for s in slices):
        if len({_is_projected(s) for s in slices}) == 1:
            ordered = order_slices(slices)  # ties keep a stable, documented order
            return sorted(ordered, key=lambda s: float(s.position_mm or 0.0))
        warnings.warn(
            f"series {series_key(slices[0])}: some slices have only (0020,1041) SliceLocation, "
            "others (0020,0032) ImagePositionPatient; ordered by InstanceNumber, not by the two "
            "mixed coordinate systems; give every file its ImagePositionPatient.",
            UserWarning,
            stacklevel=2,
        )
    return order_slices(slices)


def _is_projected(image: Slice) -> bool:
    """Whether ``position_mm`` is ImagePositionPatient on the normal (else SliceLocation)."""
    return projected_position(image.orientation, image.image_position_mm) is not None


def _warn_disagreeing_locations(slices: Sequence[Slice]) -> None:
    both = [s for s in slices if _is_projected(s) and s.slice_location_mm is not None]
    if len(both) < 2:
        return
    pairs = np.asarray([(s.slice_location_mm, s.position_mm) for s in both], dtype=np.float64)
    # DICOM leaves SliceLocation's origin and sign open: it agrees up to a shift and a sign.
    offsets = min((pairs[:, 0] - pairs[:, 1], pairs[:, 0] + pairs[:, 1]), key=np.ptp)
    if np.ptp(offsets) <= _LOCATION_TOLERANCE_MM:
        return
    worst = both[int(np.argmax(np.abs(offsets - np.median(offsets))))]
    warnings.warn(
        f"series {series_key(worst)}: (0020,1041) SliceLocation disagrees with (0020,0032) "
        f"ImagePositionPatient along the slice normal (e.g. {worst.source.name}: "
        f"{worst.slice_location_mm:g} vs {worst.position_mm:g} mm; an anonymiser or reformatter "
        "may have changed one); slices are placed by ImagePositionPatient; check the series.",
        UserWarning,
        stacklevel=3,
    )


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
