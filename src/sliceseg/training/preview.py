"""The first augmented training batch, drawn as the model will see it: crops at its spacing.

`sliceseg preview` and training's ``<name>_first_batch.png`` are one picture: both take the
run's data from `sliceseg.training.run_data.load_training_data` (patient split, target
spacing, the ``--init-from`` model's spacing and normalisation) and draw it with
`draw_first_batch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from sliceseg.augment.transforms import augment_batch
from sliceseg.io.output_folders import refuse_existing_file
from sliceseg.model_space.crops import first_crops
from sliceseg.models.bundle import Bundle
from sliceseg.progress_bars import shows_progress
from sliceseg.report.figures import figure_path
from sliceseg.report.visualize import plot_batch
from sliceseg.training.config import TrainConfig
from sliceseg.training.init_from import plan_new_run
from sliceseg.training.progress import print_flush
from sliceseg.training.run_data import load_training_data
from sliceseg.training.session import Log, TrainingData, log_data_notes

__all__ = ["draw_first_batch", "first_batch", "preview_batch"]


def preview_batch(
    config: TrainConfig | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    path: Path | str | None = None,
    start: Bundle | None = None,
    overwrite: bool = False,
    log: Log = print_flush,
) -> Figure:
    """Draw the first augmented batch: each image and its overlay, one colour per ROI, a legend.

    Args:
        config: the training settings (data folders, split, spacing, ``input_shape``,
            ``batch_size``, ``augment_params``, ``seed``) exactly as training would use them:
            with ``init_from``, the model file's network and settings where not given
            (`sliceseg.training.init_from.plan_new_run`).
        overrides: settings given explicitly, applied over ``config`` (as `train` takes them).
        path: where to save the picture (PNG), or None to only return it.
        start: the ``config.init_from`` model when the caller has opened it already; None
            opens it here.
        overwrite: replace ``path`` when it exists (an earlier preview); False refuses, so a
            mistyped ``--out`` cannot destroy a label map or another file.
        log: where the data notes go, as training logs them (`log_data_notes`: the check's
            warnings, such as files left out, the grid the view chose, the normalisation).

    Returns:
        The matplotlib figure (shown inline in a notebook).

    Raises:
        SlicesegError: the data is unfit for training.
        ConfigError: ``path`` is a folder, has no picture suffix (.png, .jpg, ...), lies in
            the DICOM or the label folder, or exists and ``overwrite`` is False.

    Example:
        >>> preview_batch(TrainConfig(data_dir="phantom/train"), path="preview.png")
    """
    if path is not None:  # a bad --out is said before the data is read
        refuse_existing_file(figure_path(path), overwrite=overwrite)
    planned, start = plan_new_run(config, overrides, start=start)
    if path is not None:  # as train's --out: not read back as a label map by the next run
        planned.data_source().refuse_output_inside(path)
    data = load_training_data(planned, start, progress=shows_progress())
    log_data_notes(data, log)
    return draw_first_batch(data, planned, path=path)


def draw_first_batch(
    data: TrainingData, config: TrainConfig, *, path: Path | str | None = None
) -> Figure:
    """Draw `first_batch` with the run's ROI names (and save it at ``path`` when given)."""
    images, labels = first_batch(data, config)
    return plot_batch(images.numpy(), labels.numpy(), list(data.roi_names), path=path)


def first_batch(data: TrainingData, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the first batch of training crops, augmented when ``config.augment``.

    Generators of its own, seeded by ``config.seed``: drawing it leaves training's draws as
    they were.

    Returns:
        images (B, I, S, S) float32 and labels (B, S, S) int64, ``S = config.input_shape``.
    """
    images, labels = first_crops(
        data.train,
        size=config.input_shape,
        count=config.batch_size,
        foreground_fraction=config.foreground_fraction,
        foreground_balance=config.foreground_balance,
        seed=config.seed,
    )
    if config.augment:
        generator = torch.Generator().manual_seed(config.seed)
        images, labels = augment_batch(images, labels, config.augment_params, generator=generator)
    return images, labels
