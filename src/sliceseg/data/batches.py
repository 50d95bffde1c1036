"""Samples and slices on the model grid as tensors, ready to batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sliceseg.data.grid import GridGeometry, fit_geometry, image_to_grid, label_to_grid
from sliceseg.data.intensity import normalise_intensity
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
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    geometries: tuple[GridGeometry, ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def slice_to_grid(image: Slice, input_size: int) -> tuple[torch.Tensor, GridGeometry]:
    """Normalise one slice and place it on the square model grid, aspect kept.

    Returns:
        ``(tensor (1, S, S), geometry)``.
    """
    geometry = fit_geometry(image.shape, input_size)
    pixels = torch.from_numpy(np.ascontiguousarray(normalise_intensity(image.pixels)))
    return image_to_grid(pixels, geometry).reshape(1, input_size, input_size), geometry


def slices_to_grid(images: Sequence[Slice], input_size: int) -> GridTensors:
    """Place unlabelled slices on the model grid (for prediction)."""
    tensors, geometries = zip(*(slice_to_grid(s, input_size) for s in images), strict=True)
    return GridTensors(
        images=torch.stack(tensors),
        labels=None,
        geometries=tuple(geometries),
        keys=tuple(s.name for s in images),
    )


def samples_to_grid(samples: Sequence[Sample], input_size: int) -> GridTensors:
    """Place labelled samples on the model grid (for training and validation).

    Example:
        >>> grid = samples_to_grid(samples, 128)
        >>> grid.images.shape, grid.labels.shape
        (torch.Size([N, 1, 128, 128]), torch.Size([N, 128, 128]))
    """
    if not samples:
        return GridTensors(
            images=torch.zeros(0, 1, input_size, input_size),
            labels=torch.zeros(0, input_size, input_size, dtype=torch.int64),
            geometries=(),
            keys=(),
        )
    images, labels, geometries = [], [], []
    for sample in samples:
        tensor, geometry = slice_to_grid(sample.image, input_size)
        label = torch.from_numpy(np.ascontiguousarray(sample.label).astype(np.int64))
        images.append(tensor)
        labels.append(label_to_grid(label, geometry).reshape(input_size, input_size))
        geometries.append(geometry)
    return GridTensors(
        images=torch.stack(images),
        labels=torch.stack(labels).to(torch.int64),
        geometries=tuple(geometries),
        keys=tuple(s.key for s in samples),
    )
