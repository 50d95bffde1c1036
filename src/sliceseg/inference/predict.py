"""Segment DICOM slices with a trained model: label maps on each slice's own grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sliceseg.data.batches import GridTensors, slices_to_grid
from sliceseg.data.grid import probabilities_from_grid
from sliceseg.data.orientation import IDENTITY, Reorientation, is_canonicalising, reorientations_for
from sliceseg.io.dicom import Slice
from sliceseg.models.bundle import Bundle
from sliceseg.system import select_device

# Test-time augmentation: small rotations and zooms whose effect is undone on the
# probabilities. No left/right flip: labels are sided.
TTA_TRANSFORMS: tuple[tuple[float, float], ...] = ((0.0, 1.0), (6.0, 1.0), (-6.0, 1.0), (0.0, 0.92))


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


@torch.no_grad()
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
) -> list[np.ndarray]:
    """Segment slices and return one label map per slice on the slice's own grid.

    Each slice is brought to the canonical in-plane orientation the model was trained in
    (an exact flip/transpose from (0020,0037) ImageOrientationPatient); probabilities are mapped
    back from the model grid (aspect and size restored) and the flip/transpose undone before
    the argmax, so a label is never resized and lies on the slice's own grid. A model file
    without an orientation entry (older) sees the slices as stored, as it did in training.

    Args:
        bundle: a loaded model.
        images: the slices, any sizes.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        batch_size: slices per forward pass.
        tta: average over small rotations and zooms (4× slower).
        progress: show a progress bar.

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
    labels: list[np.ndarray] = []
    try:
        bar = tqdm(total=len(images), desc="segmenting", unit="slice", disable=not progress)
        for start in range(0, len(images), batch_size):
            end = start + batch_size
            grid = slices_to_grid(
                images[start:end], bundle.metadata.input_size, reorientations=changes[start:end]
            )
            labels.extend(
                _native_labels(grid, _probabilities(model, grid.images.to(target), tta=tta))
            )
            bar.update(len(grid))
        bar.close()
    finally:
        model.to(original_device).train(was_training)
    return labels


def _native_labels(grid: GridTensors, probs: torch.Tensor) -> list[np.ndarray]:
    """Argmax on each slice's own grid: probabilities off the model grid, flip/transpose undone."""
    labels = []
    for prob, geometry, change in zip(
        probs.cpu(), grid.geometries, grid.reorientations, strict=True
    ):
        native = change.undo(probabilities_from_grid(prob, geometry))
        labels.append(native.argmax(dim=0).to(torch.uint8).numpy())
    return labels


def _model_reorientations(bundle: Bundle, images: Sequence[Slice]) -> list[Reorientation]:
    """Per slice, the flip/transpose to the model's orientation (none for older model files)."""
    if is_canonicalising(bundle.metadata.orientation, source=bundle.source or "the model"):
        return reorientations_for(images)
    return [IDENTITY] * len(images)
