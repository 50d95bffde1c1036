"""Samples and slices on the model grid as tensors, ready to batch.

Training and prediction both pass here: each slice is first brought to the canonical in-plane
orientation (:mod:`sliceseg.data.orientation`; image and label by the same exact flip/transpose,
spacing permuted with them), then normalised and placed on the square model grid. The
reorientation of every slice is kept in :class:`GridTensors` so predictions can be undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sliceseg.data.grid import GridGeometry, fit_geometry, image_to_grid, label_to_grid
from sliceseg.data.intensity import normalise_intensity
from sliceseg.data.orientation import Reorientation, orient_slice, reorientations_for
from sliceseg.data.pairing import Sample
from sliceseg.io.dicom import Slice


@dataclass(frozen=True)
class GridTensors:
    """Images (N, 1, S, S) float32 and labels (N, S, S) int64 on the model grid.

    Attributes:
        images: normalised intensities, zero-padded around each slice's resized extent.
        labels: ROI numbers 0..K (nearest-neighbour resampled), or None for unlabelled slices.
        geometries: how each slice sits on the grid, to map predictions back.
        keys: the sample keys (relative paths) in order.
        reorientations: how each slice was brought to the canonical orientation before its
            geometry (undo it after ``probabilities_from_grid`` to reach the DICOM's grid).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    geometries: tuple[GridGeometry, ...]
    keys: tuple[str, ...]
    reorientations: tuple[Reorientation, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def slice_to_grid(image: Slice, input_size: int) -> tuple[torch.Tensor, GridGeometry]:
    """Normalise one slice and place it on the square model grid, aspect kept, as stored.

    Orientation is the caller's business: pass a slice from
    :func:`~sliceseg.data.orientation.orient_slice` to work in the canonical orientation.

    Returns:
        ``(tensor (1, S, S), geometry)``.
    """
    geometry = fit_geometry(image.shape, input_size)
    pixels = torch.from_numpy(np.ascontiguousarray(normalise_intensity(image.pixels)))
    return image_to_grid(pixels, geometry).reshape(1, input_size, input_size), geometry


def slices_to_grid(
    images: Sequence[Slice],
    input_size: int,
    *,
    reorientations: Sequence[Reorientation] | None = None,
) -> GridTensors:
    """Place unlabelled slices on the model grid (for prediction), in canonical orientation.

    Args:
        images: the slices.
        input_size: side ``S`` of the model grid.
        reorientations: one per slice; by default chosen by
            :func:`~sliceseg.data.orientation.reorientations_for` (which warns once per
            series); pass ``[IDENTITY] * n`` to keep the slices as stored.

    Returns:
        Images ``(N, 1, S, S)``, no labels, with each slice's geometry and reorientation.

    Raises:
        ValueError: ``reorientations`` does not have one entry per slice.
    """
    changes = _reorientations(images, reorientations)
    oriented = [orient_slice(s, r) for s, r in zip(images, changes, strict=True)]
    if not oriented:
        return GridTensors(torch.zeros(0, 1, input_size, input_size), None, (), (), ())
    tensors, geometries = zip(*(slice_to_grid(s, input_size) for s in oriented), strict=True)
    return GridTensors(
        images=torch.stack(tensors),
        labels=None,
        geometries=tuple(geometries),
        keys=tuple(s.name for s in images),
        reorientations=tuple(changes),
    )


def samples_to_grid(
    samples: Sequence[Sample],
    input_size: int,
    *,
    reorientations: Sequence[Reorientation] | None = None,
) -> GridTensors:
    """Place labelled samples on the model grid (for training and validation).

    Image and label go through the same exact flip/transpose to the canonical orientation,
    so a label never moves relative to its image (and is never interpolated).

    Args:
        samples: the labelled slices.
        input_size: side ``S`` of the model grid.
        reorientations: one per sample, as for :func:`slices_to_grid`.

    Raises:
        ValueError: ``reorientations`` does not have one entry per sample.

    Example:
        >>> grid = samples_to_grid(samples, 128)
        >>> grid.images.shape, grid.labels.shape
        (torch.Size([N, 1, 128, 128]), torch.Size([N, 128, 128]))
    """
    changes = _reorientations([s.image for s in samples], reorientations)
    if not samples:
        return GridTensors(
            images=torch.zeros(0, 1, input_size, input_size),
            labels=torch.zeros(0, input_size, input_size, dtype=torch.int64),
            geometries=(),
            keys=(),
            reorientations=(),
        )
    images, labels, geometries = [], [], []
    for sample, change in zip(samples, changes, strict=True):
        tensor, geometry = slice_to_grid(orient_slice(sample.image, change), input_size)
        label = torch.from_numpy(change.apply(np.asarray(sample.label)).astype(np.int64))
        images.append(tensor)
        labels.append(label_to_grid(label, geometry).reshape(input_size, input_size))
        geometries.append(geometry)
    return GridTensors(
        images=torch.stack(images),
        labels=torch.stack(labels).to(torch.int64),
        geometries=tuple(geometries),
        keys=tuple(s.key for s in samples),
        reorientations=tuple(changes),
    )


def _reorientations(
    images: Sequence[Slice], given: Sequence[Reorientation] | None
) -> list[Reorientation]:
    if given is None:
        return reorientations_for(images)
    if len(given) != len(images):
        raise ValueError(
            f"reorientations has {len(given)} entries for {len(images)} slices; give one per "
            "slice (or None to choose them from ImageOrientationPatient)."
        )
    return list(given)
