"""The first augmented training batch, drawn as the model will see it."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from sliceseg.augment.transforms import augment_batch
from sliceseg.data.batches import samples_to_grid
from sliceseg.data.samples import load_samples
from sliceseg.report.visualize import plot_batch
from sliceseg.training.config import TrainConfig


def preview_batch(config: TrainConfig, *, path: Path | str | None = None) -> Figure:
    """Draw the first augmented batch: each image and its overlay, one colour per ROI, a legend.

    Args:
        config: the training settings (data folders, ``input_shape``, ``batch_size``,
            ``augment_params``, ``seed``) exactly as training would use them.
        path: where to save the picture (PNG), or None to only return it.

    Returns:
        The matplotlib figure (shown inline in a notebook).

    Raises:
        SlicesegError: the data is unfit for training.

    Example:
        >>> preview_batch(TrainConfig(data_dir="phantom/train"), path="preview.png")
    """
    samples, report = load_samples(config.data_source())
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.randperm(len(samples), generator=generator)[: config.batch_size].tolist()
    chosen = [samples[i] for i in order]
    grid = samples_to_grid(chosen, config.input_shape)
    images = grid.images
    labels = grid.labels if grid.labels is not None else torch.zeros_like(images[:, 0]).long()
    if config.augment:
        images, labels = augment_batch(images, labels, config.augment_params, generator=generator)
    return plot_batch(images, labels, list(report.roi_names), path=path)
