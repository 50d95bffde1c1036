"""Segment DICOM slices with a trained model: label maps on each slice's own grid."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sliceseg.data.batches import GridTensors, slices_to_grid, slices_to_spacing
from sliceseg.data.grid import probabilities_from_grid
from sliceseg.data.orientation import IDENTITY, Reorientation, is_canonicalising, reorientations_for
from sliceseg.data.resample import probabilities_to_native
from sliceseg.data.windows import prediction_window, spaced_probabilities
from sliceseg.io.dicom import Slice
from sliceseg.measure.calibration import AreaCalibration, foreground_margin
from sliceseg.measure.postprocess import PostProcessing
from sliceseg.models import required_divisor
from sliceseg.models.bundle import Bundle
from sliceseg.models.inference import inference_network, is_size_free
from sliceseg.system import select_device

# Test-time augmentation: small rotations and zooms whose effect is undone on the
# probabilities. No left/right flip: labels are sided.
TTA_TRANSFORMS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (6.0, 1.0), (-6.0, 1.0), (0.0, 0.92))

ProbabilitySink = Callable[[torch.Tensor, np.ndarray], None]
"""Called once per slice, in order, with its (C, rows, cols) probabilities on its own grid and
its label map (e.g. to score the confidence without keeping every probability map)."""


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


def _affine(angle_deg: float, zoom: float) -> torch.Tensor:
    """Return a 3×3 affine (normalised coordinates) rotating by ``angle_deg`` and zooming."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _warp(batch: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    theta = matrix[:2].to(batch).expand(batch.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.inference_mode()
def _probabilities(model: torch.nn.Module, images: torch.Tensor, *, tta: bool) -> torch.Tensor:
    """Softmax probabilities (B, C, S, S), averaged over TTA transforms when asked."""
    device = images.device
    amp = device.type == "cuda"
    transforms = TTA_TRANSFORMS if tta else TTA_TRANSFORMS[:1]
    total = torch.zeros((), device=device)  # 0 + p == p exactly
    for angle, zoom in transforms:
        matrix = _affine(angle, zoom)
        warped = images if (angle, zoom) == (0.0, 1.0) else _warp(images, matrix)
        with torch.autocast(device_type=device.type, enabled=amp):
            probs = torch.softmax(model(warped)[0].float(), dim=1)
        if (angle, zoom) != (0.0, 1.0):
            probs = _warp(probs, torch.linalg.inv(matrix))
        total = total + probs
    return total / len(transforms)


def predict_slices(
    bundle: Bundle,
    images: Sequence[Slice],
    *,
    device: str | torch.device = "auto",
    batch_size: int = 8,
    tta: bool = False,
    progress: bool = False,
    on_probabilities: ProbabilitySink | None = None,
) -> list[np.ndarray]:
    """Segment slices and return one label map per slice on the slice's own grid.

    Each slice is flipped/transposed to the model's canonical orientation (from (0020,0037)
    ImageOrientationPatient) and resampled to its target spacing; the network sees the whole
    slice (or ``input_size`` windows, see ``data.windows``); probabilities go back to the
    slice's own grid before the argmax, then the model file's post-processing is applied.
    Older model files (no target spacing / no orientation) predict as they were trained.

    Args:
        bundle: a loaded model.
        images: the slices, any sizes.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        batch_size: slices per forward pass.
        tta: average over small rotations and zooms (4× slower).
        progress: show a progress bar.
        on_probabilities: called per slice with its native-grid probabilities and label map.

    Returns:
        uint8 label maps (rows, cols) with values 0..K.

    Raises:
        BundleError: the model records an orientation convention this sliceseg does not know.

    Warns:
        OrientationWarning: once per series for slices without orientation or oblique ones.

    Example:
        >>> labels = predict_slices(load_bundle("model/sliceseg_best.pt"), read_series("scans"))
    """
    target = device if isinstance(device, torch.device) else select_device(device)
    changes = _model_reorientations(bundle, images)
    model = bundle.model
    original_device = next(model.parameters()).device
    was_training = model.training
    model.to(target).eval()
    try:
        is_spaced = bundle.metadata.target_spacing_mm is not None
        network = inference_network(model) if is_spaced else model  # folded, channels-last
        with torch.inference_mode():
            return _predict_batches(
                bundle,
                network,
                images,
                changes,
                target,
                batch_size,
                tta,
                progress,
                on_probabilities,
            )
    finally:
        model.to(original_device).train(was_training)


def _predict_batches(
    bundle: Bundle,
    network: torch.nn.Module,
    images: Sequence[Slice],
    changes: Sequence[Reorientation],
    device: torch.device,
    batch_size: int,
    tta: bool,
    progress: bool,
    sink: ProbabilitySink | None,
) -> list[np.ndarray]:
    bar = tqdm(total=len(images), desc="segmenting", unit="slice", disable=not progress)
    labels: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = slice(start, start + batch_size)
        labels += _predict_chunk(bundle, network, images[chunk], changes[chunk], device, tta, sink)
        bar.update(len(images[chunk]))
    bar.close()
    return labels


def _predict_chunk(
    bundle: Bundle,
    network: torch.nn.Module,
    images: Sequence[Slice],
    changes: Sequence[Reorientation],
    device: torch.device,
    tta: bool,
    sink: ProbabilitySink | None,
) -> list[np.ndarray]:
    """Labels of a few slices: through the target spacing, or the square grid of older models."""
    spacing = bundle.metadata.target_spacing_mm
    if spacing is not None:
        return _spaced_labels(
            bundle, network, images, changes, spacing, device=device, tta=tta, sink=sink
        )
    grid = slices_to_grid(images, bundle.metadata.input_size, reorientations=changes)
    return _native_labels(grid, _probabilities(network, grid.images.to(device), tta=tta), sink)


def _native_labels(
    grid: GridTensors, probs: torch.Tensor, sink: ProbabilitySink | None = None
) -> list[np.ndarray]:
    """Argmax on each slice's own grid: probabilities off the model grid, flip/transpose undone."""
    labels = []
    for prob, geometry, change in zip(
        probs.cpu(), grid.geometries, grid.reorientations, strict=True
    ):
        native = change.undo(probabilities_from_grid(prob, geometry))
        labels.append(native.argmax(dim=0).to(torch.uint8).numpy())
        if sink is not None:
            sink(native, labels[-1])
    return labels


def _spaced_labels(
    bundle: Bundle,
    network: torch.nn.Module,
    images: Sequence[Slice],
    changes: Sequence[Reorientation],
    spacing_mm: tuple[float, float],
    *,
    device: torch.device,
    tta: bool,
    sink: ProbabilitySink | None = None,
) -> list[np.ndarray]:
    """Labels of slices through the model's target spacing, windows and post-processing."""
    meta = bundle.metadata
    spaced = slices_to_spacing(images, spacing_mm, reorientations=changes)
    window = prediction_window(
        [image.shape for image in spaced.images],
        input_size=meta.input_size,
        divisor=required_divisor(meta.arch, meta.hyperparameters),
        is_size_free=is_size_free(network),
    )
    probs = spaced_probabilities(
        lambda batch: _probabilities(network, batch, tta=tta),
        spaced.images,
        window=window,
        device=device,
    )
    post = PostProcessing.from_dict(meta.postprocessing or {})
    labels = []
    for prob, geometry, change in zip(probs, spaced.geometries, spaced.reorientations, strict=True):
        native = change.undo(probabilities_to_native(prob, geometry))
        label = calibrated_argmax(native, post.calibration)
        labels.append(label if post.is_empty else post.apply(label))
        if sink is not None:
            sink(native, labels[-1])
    return labels


def calibrated_argmax(probs: torch.Tensor, calibration: AreaCalibration) -> np.ndarray:
    """Label map ``(H, W)`` uint8 of ``(C, H, W)`` probabilities with the model's background weight.

    Without a weight (older model files, or none chosen) this is the plain argmax.
    """
    if calibration.log_weight == 0.0:
        return probs.argmax(dim=0).to(torch.uint8).numpy()
    return calibration.labels(*foreground_margin(probs.numpy()))


def _model_reorientations(bundle: Bundle, images: Sequence[Slice]) -> list[Reorientation]:
    """Per slice, the flip/transpose to the model's orientation (none for older model files)."""
    if is_canonicalising(bundle.metadata.orientation, source=bundle.source or "the model"):
        return reorientations_for(images)
    return [IDENTITY] * len(images)
