"""A cohort's network step: slices of several series in batches, a pass per size, failing alone.

`predict_cohort` (`sliceseg.inference.cohort`) gathers decoded series into a batch; here the
run's `Engine` labels every slice of it, slices of one size sharing forward passes (`_passes`),
and each series gets its label maps, confidences and deepest features. A batch that fails is
retried series by series, so that one bad series fails alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from sliceseg.engine.predictor import Engine, spaced_subset
from sliceseg.inference.cohort_series import DecodedSeries
from sliceseg.inference.confidence import ConfidenceCollector
from sliceseg.inference.familiarity import always_present_rois, checked_slices
from sliceseg.inference.shards import shard_device
from sliceseg.io.series_plan import PlannedSeries
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.models.bundle import Bundle
from sliceseg.system import rank_threads, select_device

__all__ = ["Fail", "bound_predict", "cohort_engine"]

Fail = Callable[[PlannedSeries, Exception], None]
"""Records a failed series (the cohort's `_fail`) and lets the run go on."""


def cohort_engine(bundle: Bundle, device: str, *, tta: bool) -> Engine:
    """The run's engine on its device (torchrun ranks on one machine share its CPUs)."""
    chosen = select_device(shard_device(device))
    threads = rank_threads(chosen.type)
    if threads is not None:
        torch.set_num_threads(threads)
    return Engine(bundle, chosen, tta=tta)


def bound_predict(
    engine: Engine, batch_size: int, fail: Fail
) -> Callable[[list[DecodedSeries]], list[DecodedSeries]]:
    """`_predict` for this run, the ROIs expected on every slice read from the profile once."""
    expected = always_present_rois(engine.bundle)
    return functools.partial(_predict, engine, batch_size=batch_size, fail=fail, expected=expected)


def _predict(
    engine: Engine,
    batch: list[DecodedSeries],
    *,
    batch_size: int,
    fail: Fail,
    expected: np.ndarray | None,
) -> list[DecodedSeries]:
    """Label maps and confidences for a batch of series; a failing batch is retried per series.

    ``expected``: the ROIs the model's training slices always showed (`always_present_rois`).
    """
    if not batch:
        return []
    try:
        _label(engine, batch, batch_size, expected)
        return batch
    except Exception as error:
        if len(batch) == 1:
            fail(batch[0].series, error)
            return []
    kept = []
    for one in batch:
        kept += _predict(engine, [one], batch_size=batch_size, fail=fail, expected=expected)
    return kept


def _label(
    engine: Engine, batch: list[DecodedSeries], batch_size: int, expected: np.ndarray | None
) -> None:
    """Run the network over every slice of the batch, slices of small series together; each
    series gets its label maps, confidences and deepest features (for the familiarity check).
    """
    preparation = engine.preparation
    for decoded in batch:  # what no worker prepared is prepared here, once
        if decoded.spaced is None and preparation is not None:
            decoded.spaced = preparation.prepare(decoded.slices)
    images = [image for decoded in batch for image in decoded.slices]
    prepared = [(d.spaced, j) for d in batch if d.spaced is not None for j in range(len(d.spaced))]
    if len(prepared) != len(images):  # an older model file: the engine's square grid
        prepared = []
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    read = _checked(batch, checks=expected is not None)  # None: no profile, so no check
    for chunk in _passes(batch, prepared, batch_size):
        collector = ConfidenceCollector(expected)
        features: list[np.ndarray | None] = []
        spaced = spaced_subset([prepared[i] for i in chunk]) if prepared else None
        labels = engine.labels(
            [images[i] for i in chunk],
            sink=collector,
            spaced=spaced,
            features=features,
            feature_slices=[k for k, i in enumerate(chunk) if i in read],
        )
        for i, *each in zip(chunk, labels, collector.per_roi, features, strict=True):
            found[i] = (each[0], each[1], each[2])
    position = 0
    for decoded in batch:
        mine = [found[i] for i in range(position, position + len(decoded.slices))]
        decoded.labels = [label for label, _, _ in mine]
        decoded.confidence = [score for _, score, _ in mine]
        decoded.features = [feature for _, _, feature in mine]
        position += len(decoded.slices)


def _checked(batch: Sequence[DecodedSeries], *, checks: bool) -> set[int]:
    """The slices (indices over the batch) whose features the familiarity check reads
    (`checked_slices` of each series; none when the model file has no profile: no check)."""
    read: set[int] = set()
    position = 0
    for decoded in batch:
        count = len(decoded.slices)
        read.update(position + j for j in checked_slices(count) if checks)
        position += count
    return read


def _passes(
    batch: Sequence[DecodedSeries],
    prepared: Sequence[tuple[SpacedTensors, int]],
    batch_size: int,
) -> list[list[int]]:
    """The slices (indices over the batch) of each forward pass, at most ``batch_size``.

    Only slices of one size at the model's spacing (older model files: of one native shape,
    spacing and orientation) share a pass: the window of a size-free network is the largest
    slice of its pass, so a slice's labels and features then never depend on the other slices
    of its batch, shard or run (up to float rounding of the batch's size).
    """
    images = [image for decoded in batch for image in decoded.slices]
    groups: dict[tuple[object, ...], list[int]] = {}
    for index, image in enumerate(images):
        if prepared:
            spaced, j = prepared[index]
            key: tuple[object, ...] = tuple(spaced.images[j].shape)
        else:
            key = (image.shape, image.spacing_mm, image.orientation)
        groups.setdefault(key, []).append(index)
    return [
        members[start : start + batch_size]
        for members in groups.values()
        for start in range(0, len(members), batch_size)
    ]
