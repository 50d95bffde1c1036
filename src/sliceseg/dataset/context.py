"""The unlabelled neighbours of a training set's labelled slices, for a 2.5D model.

A 2.5D model (``context_slices = k``) sees each slice with the k slices on either side of it
in its series. A researcher labels some slices of a series and leaves the others beside them
in the DICOM folder: those are found in the folder's plan (`plan_cohort`, one header pass,
which the caller builds once and also names the series by), then the pixels of the labelled
slices' series are read one series at a time, and only the slices that are some labelled
slice's neighbour are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from sliceseg.dataset.pairing import Sample
from sliceseg.io.dicom import Slice
from sliceseg.io.identity import series_key
from sliceseg.io.neighbours import slice_neighbours
from sliceseg.io.series_plan import CohortPlan, PlannedFile, decode_series
from sliceseg.thread_warnings import silenced

__all__ = ["context_pool"]


def context_pool(
    samples: Sequence[Sample], plan: CohortPlan, k: int, *, progress: bool = False
) -> list[Slice]:
    """The unlabelled slices that are within ``k`` places of a labelled slice in its series.

    Args:
        samples: the labelled slices.
        plan: the dataset's DICOM folder, planned from its headers (`plan_cohort`: labelled
            and unlabelled files), as the caller names its series by.
        k: neighbours on each side (0: none are read).
        progress: show a progress bar over the series read.

    Returns:
        The neighbours that are not samples themselves (files that cannot be read are left
        out: their labelled neighbours see the nearest slice that can).

    Example:
        >>> plan = plan_cohort(Path("data/dicoms"), exclude=Path("data/labels"))
        >>> pool = context_pool(samples, plan, 1)
    """
    if k <= 0 or not samples:
        return []
    by_series: dict[str, list[Slice]] = {}
    for sample in samples:
        by_series.setdefault(series_key(sample.image), []).append(sample.image)
    labelled = {str(sample.image.source) for sample in samples}
    chosen = [series for series in plan.series if series.key in by_series]
    pool: list[Slice] = []
    for series in tqdm(chosen, desc="neighbours", unit="series", disable=not progress):
        files = [f.source for f in series.files if _may_hold_neighbours(f, labelled)]
        with silenced():  # `check` reports these files; training only looks
            found, _ = decode_series(files)
        pool += _neighbours_among(by_series[series.key], found, k)
    return pool


def _may_hold_neighbours(planned: PlannedFile, labelled: set[str]) -> bool:
    """An unlabelled file, or a multi-frame one (its other frames may be unlabelled)."""
    return planned.num_frames > 1 or str(planned.source) not in labelled


def _neighbours_among(centres: Sequence[Slice], found: Sequence[Slice], k: int) -> list[Slice]:
    """The slices of ``found`` that are some centre's neighbour, not a centre themselves."""
    centre_ids = {(str(c.source), c.frame) for c in centres}
    kept: dict[tuple[str, int], Slice] = {}
    for near in slice_neighbours(centres, k, pool=found):
        for image in near:
            identity = (str(image.source), image.frame)
            if identity not in centre_ids:
                kept.setdefault(identity, image)
    return list(kept.values())
