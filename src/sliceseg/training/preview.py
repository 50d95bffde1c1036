"""The first augmented training batch, drawn as the model will see it: crops at its spacing."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from sliceseg.augment.transforms import augment_batch
from sliceseg.data.batches import median_target_spacing, samples_to_spacing
from sliceseg.data.crops import first_crops
from sliceseg.data.orientation import reorientations_for
from sliceseg.data.samples import load_samples
from sliceseg.models.bundle import Bundle
from sliceseg.report.visualize import plot_batch
from sliceseg.training.config import TrainConfig
from sliceseg.training.init_from import starting_model
from sliceseg.training.loop import run_normalisation


def preview_batch(
    config: TrainConfig, *, path: Path | str | None = None, start: Bundle | None = None
) -> Figure:
    """Draw the first augmented batch: each image and its overlay, one colour per ROI, a legend.

    Args:
        config: the training settings (data folders, ``input_shape``, ``batch_size``,
            ``augment_params``, ``seed``) exactly as training would use them.
        path: where to save the picture (PNG), or None to only return it.
        start: the ``config.init_from`` model when the caller has opened it already; None
            opens it here.

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
    changes = reorientations_for([s.image for s in samples])
    target = config.target_spacing_pair()
    if target is None:
        target = config.view_spacing(samples)
    chosen = samples_to_spacing(
        [samples[i] for i in order],
        target or median_target_spacing(samples, reorientations=changes),
        reorientations=[changes[i] for i in order],
        normalisation=run_normalisation(
            config, samples, start if start is not None else starting_model(config.init_from)
        ),
    )
    images, labels = first_crops(
        chosen,
        size=config.input_shape,
        count=config.batch_size,
        foreground_fraction=config.foreground_fraction,
        foreground_balance=config.foreground_balance,
        seed=config.seed,
    )
    if config.augment:
        images, labels = augment_batch(images, labels, config.augment_params, generator=generator)
    return plot_batch(images, labels, list(report.roi_names), path=path)
