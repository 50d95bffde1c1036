"""Segment DICOM slices with a trained model: label maps on each slice's own grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sliceseg.engine.predictor import (
    Engine,
    ProbabilitySink,
    calibrated_argmax,
    check_batch_size,
    spaced_subset,
)
from sliceseg.engine.probabilities import TTA_TRANSFORMS
from sliceseg.io.dicom import Slice
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.system import select_device

__all__ = [
    "TTA_TRANSFORMS",
    "Prediction",
    "ProbabilitySink",
    "calibrated_argmax",
    "predict_slices",
]


@dataclass(frozen=True)
class Prediction:
    """A slice and the label map predicted for it on its own grid.

    Attributes:
        image: the input slice.
        label: (rows, cols) uint8, ROI numbers 0..K, same shape as ``image.pixels``.
        key: the slice's path relative to the predicted folder, without suffix.
    """

    image: Slice
    label: np.ndarray
    key: str


def predict_slices(
    bundle: Bundle | Path | str,
    images: Sequence[Slice],
    *,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    tta: bool = False,
    progress: bool = False,
    on_probabilities: ProbabilitySink | None = None,
    context_pool: Sequence[Slice] = (),
) -> list[np.ndarray]:
    """Segment slices and return one label map per slice on the slice's own grid.

    Each slice is flipped/transposed to the model's canonical orientation (from (0020,0037)
    ImageOrientationPatient) and resampled to its target spacing; the network sees the whole
    slice (or ``input_size`` windows, see ``data.windows``); probabilities go back to the
    slice's own grid before the argmax, then the model file's post-processing is applied
    (the one path of `sliceseg.engine.predictor`, which validation shares). Older model files
    (no target spacing / no orientation) predict as they were trained.

    Args:
        bundle: a loaded model (`load_bundle`), or the path of a model file.
        images: the slices, any sizes.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        batch_size: slices per forward pass.
        tta: average over small rotations and zooms (4× slower).
        progress: show a progress bar.
        on_probabilities: called per slice with its native-grid probabilities and label map.
        context_pool: slices a 2.5D model may read as the slices' neighbours without
            predicting them (a labelled test set's unlabelled DICOMs).

    Returns:
        uint8 label maps (rows, cols) with values 0..K.

    Raises:
        BundleError: the model file is missing or not a sliceseg model, or the model records an
            orientation convention this sliceseg does not know.
        ConfigError: ``batch_size`` is not a whole number ≥ 1, or ``device`` is unknown.

    Warns:
        OrientationWarning: once per series for slices without orientation or oblique ones.

    Example:
        >>> labels = predict_slices(load_bundle("model/sliceseg_best.pt"), read_series("scans"))
    """
    check_batch_size(batch_size)
    target = device if isinstance(device, torch.device) else select_device(device)
    bundle = as_bundle(bundle)
    model = bundle.model
    original_device = next(model.parameters()).device
    was_training = model.training
    try:
        engine = Engine(bundle, target, tta=tta)
        changes = engine.reorientations(images)
        # a 2.5D model's slices are prepared together, so that each finds its neighbours
        context = bundle.metadata.context_slices
        spaced = engine.prepare(images, changes, pool=context_pool) if context else None
        bar = tqdm(total=len(images), desc="segmenting", unit="slice", disable=not progress)
        labels: list[np.ndarray] = []
        for start in range(0, len(images), batch_size):  # slices of one shape share passes
            chunk = range(start, min(start + batch_size, len(images)))
            labels += engine.labels(
                [images[i] for i in chunk],
                changes=[changes[i] for i in chunk],
                sink=on_probabilities,
                spaced=None if spaced is None else spaced_subset([(spaced, i) for i in chunk]),
            )
            bar.update(len(chunk))
        bar.close()
        return labels
    finally:
        model.to(original_device).train(was_training)
