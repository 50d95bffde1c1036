"""A training session: the objects one run trains with (model, optimiser, loader), built once.

Its state is captured into checkpoints and restored from them by `sliceseg.training.checkpoints`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from sliceseg._version import __version__
from sliceseg.augment.transforms import AugmentParams
from sliceseg.dataset.split import held_out_text
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.model_space.crops import CropDataset
from sliceseg.model_space.intensity import PER_SLICE, IntensityNormalisation
from sliceseg.models import build_model, context_channels, required_divisor
from sliceseg.models.bundle import Bundle, ModelMetadata
from sliceseg.postprocess.cleanup import PostProcessing
from sliceseg.training.averaging import WeightAverage
from sliceseg.training.config import TrainConfig
from sliceseg.training.distributed import DistributedContext
from sliceseg.training.init_from import started_from
from sliceseg.training.losses import MultiOutputLoss, build_loss

Log = Callable[[str], None]

_SHOWN_SERIES = 3  # training's first lines name this many held-out series


@dataclass(frozen=True)
class TrainingData:
    """The checked, split training data at the model's target spacing."""

    train: SpacedTensors
    validation: SpacedTensors
    roi_names: tuple[str, ...]
    label_values: tuple[int, ...]
    normalisation: IntensityNormalisation = PER_SLICE
    context_step_mm: float | None = None  # a 2.5D run's neighbour distance (neighbour_step_mm)
    view_note: str = ""  # what view "auto" chose, when it coarsened the grid
    check_lines: tuple[str, ...] = ()  # the check's warnings, as the log shows them
    num_check_warnings: int = 0  # all of them, shown or not (recorded in the settings file)
    modalities: tuple[str, ...] = ()  # the slices' Modality values (`modality_values`)
    validation_series: tuple[tuple[str, int], ...] = ()  # `held_out_series`: name, slices

    @property
    def num_classes(self) -> int:
        """ROIs plus background."""
        return len(self.roi_names) + 1


@dataclass(frozen=True)
class Session:
    """The objects one run trains with; built once by `set_up`, used by every step.

    Attributes:
        config: the run's settings.
        context: rank, world size and device.
        data: training and validation tensors and the ROI names.
        model: the plain network as trained (saved and validated unless ``averaged``).
        network: ``model`` or its DistributedDataParallel wrapper (what is trained).
        metadata: the model file's metadata (epoch 0; see `metadata_at`).
        optimizer: AdamW.
        scaler: the AMP gradient scaler on CUDA, else None.
        loader: the training batches.
        sampler: the distributed sampler, when distributed.
        generators: "shuffle" and "augment" random generators.
        augment_params: augmentation settings, or None when augmentation is off.
        loss_fn: the training loss.
        dice_loss_fn: the soft Dice loss the progress lines report.
        averaged: the weights' running average with ``ema_decay``, else None.
        saved: the checkpoints this process wrote, the latest last.
    """

    config: TrainConfig
    context: DistributedContext
    data: TrainingData
    model: nn.Module
    network: nn.Module
    metadata: ModelMetadata
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loader: DataLoader
    sampler: DistributedSampler | None
    generators: dict[str, torch.Generator]
    augment_params: AugmentParams | None
    loss_fn: MultiOutputLoss
    dice_loss_fn: MultiOutputLoss
    averaged: WeightAverage | None = None
    saved: list[Path] = dataclasses.field(default_factory=list)

    @property
    def evaluated(self) -> nn.Module:
        """The weights validation judges and the model files hold: the average, if any."""
        return self.model if self.averaged is None else self.averaged.model

    def after_step(self) -> None:
        """Fold the weights just trained into the average (nothing without one)."""
        if self.averaged is not None:
            self.averaged.update(self.model)

    @property
    def out_dir(self) -> Path:
        """Where the run writes."""
        return Path(self.config.out_dir)

    def path(self, suffix: str) -> Path:
        """Return ``<out_dir>/<model_filename>_<suffix>``."""
        return self.out_dir / f"{self.config.model_filename}_{suffix}"

    @property
    def divisor(self) -> int:
        """What the network needs the sides of its input to be divisible by."""
        return required_divisor(self.config.arch, self.metadata.hyperparameters)

    def metadata_at(
        self, epoch: int, postprocessing: PostProcessing | None = None
    ) -> ModelMetadata:
        """Return the model file's metadata after ``epoch`` epochs, with the post-processing
        (and area calibration) validation chose for these weights, if any."""
        post = {} if postprocessing is None else {"postprocessing": postprocessing.to_dict()}
        return ModelMetadata.from_dict({**self.metadata.to_dict(), "epoch": epoch, **post})


def set_up(
    config: TrainConfig,
    context: DistributedContext,
    data: TrainingData,
    log: Log,
    *,
    start: Bundle | None = None,
    resumed: bool = False,
) -> Session:
    """Build the model (fresh weights from the global seed), optimiser and loader of a run;
    its model file records the weights ``start`` gives it (`started_from`)."""
    _log_run(config, context, data, log)
    hyper = config.model_hyperparameters()
    model = build_model(
        config.arch,
        num_classes=data.num_classes,
        input_size=config.input_shape,
        in_channels=context_channels(config.context_slices),
        **hyper,
    ).to(context.device)
    if context.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator().manual_seed(config.seed * 1000 + context.rank + 1),
    }
    loader, sampler = _build_loader(config, context, data.train, generators)
    # copied before DistributedDataParallel hooks into the model's parameters
    averaged = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    return Session(
        config=config,
        context=context,
        data=data,
        model=model,
        network=_wrap(model, context),
        metadata=_metadata(config, data, hyper, started_from(start, resumed=resumed)),
        optimizer=torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4),
        scaler=torch.amp.GradScaler("cuda") if context.device.type == "cuda" else None,
        loader=loader,
        sampler=sampler,
        generators=generators,
        augment_params=config.augment_params if config.augment else None,
        loss_fn=MultiOutputLoss(build_loss(config.loss)),
        dice_loss_fn=MultiOutputLoss(build_loss("dice")),
        averaged=averaged,
    )


def _log_run(
    config: TrainConfig, context: DistributedContext, data: TrainingData, log: Log
) -> None:
    """Log what the run trains on, where and at what grid, then the data notes."""
    row_mm, col_mm = data.train.target_spacing_mm
    log(
        f"Training on {len(data.train)} slices, validating on {len(data.validation)} "
        f"({len(data.roi_names)} ROIs: {', '.join(data.roi_names)}) | arch {config.arch} | "
        f"input {config.input_shape}×{config.input_shape} at {row_mm:.3g}×{col_mm:.3g} mm | "
        f"device {context.device}"
        + (f" × {context.world_size} processes" if context.is_distributed else "")
        + (_threads_text(context) if context.device.type == "cpu" else "")
    )
    if data.validation_series:  # which series judged the model (`sliceseg info` lists all)
        held_out = held_out_text(data.validation_series, shown=_SHOWN_SERIES)
        log(f"Held out for validation: {held_out}.")
    log_data_notes(data, log)


def log_data_notes(data: TrainingData, log: Log) -> None:
    """Log what the data check warned about (training goes on regardless), the grid the view
    chose and the intensity normalisation: before training's first epoch and a preview."""
    for line in (*data.check_lines, data.view_note):
        if line:
            log(line)
    if data.normalisation.name != PER_SLICE.name:
        log(f"Intensity normalisation: {data.normalisation.describe()}.")


def _metadata(
    config: TrainConfig,
    data: TrainingData,
    hyper: dict[str, Any],
    start: dict[str, Any] | None,
) -> ModelMetadata:
    return ModelMetadata(
        arch=config.arch,
        hyperparameters=hyper,
        num_classes=data.num_classes,
        input_size=config.input_shape,
        roi_names=data.roi_names,
        label_values=data.label_values,
        settings=config.to_dict(),
        sliceseg_version=__version__,
        target_spacing_mm=data.train.target_spacing_mm,
        normalisation=data.normalisation.name,
        intensity=data.normalisation.to_dict(),
        context_slices=config.context_slices,
        context_step_mm=data.context_step_mm,
        modalities=data.modalities,
        started_from=start,
        validation_series=data.validation_series,
    )


def _wrap(model: nn.Module, context: DistributedContext) -> nn.Module:
    if not context.is_distributed:
        return model
    device = context.device
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def _build_loader(
    config: TrainConfig,
    context: DistributedContext,
    data: SpacedTensors,
    generators: dict[str, torch.Generator],
) -> tuple[DataLoader, DistributedSampler | None]:
    dataset = CropDataset(  # crops drawn with the augmentation's generator (saved on resume)
        data,
        size=config.input_shape,
        foreground_fraction=config.foreground_fraction,
        foreground_balance=config.foreground_balance,
        generator=generators["augment"],
    )
    sampler: DistributedSampler | None = None
    if context.is_distributed:
        sampler = DistributedSampler(
            dataset,
            num_replicas=context.world_size,
            rank=context.rank,
            shuffle=True,
            seed=config.seed,
        )
    share = len(sampler) if sampler is not None else len(dataset)  # this rank's slices
    # workers seed their crops from a draw of this generator: under torchrun the rank's own
    seeds = generators["augment"] if config.num_workers else None
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generators["shuffle"] if sampler is None else seeds,
        num_workers=config.num_workers,
        drop_last=share > config.batch_size,
        pin_memory=context.device.type == "cuda",
    )
    return loader, sampler


def _threads_text(context: DistributedContext) -> str:
    """How many torch threads train on the CPU (each process's, under torchrun)."""
    threads = torch.get_num_threads()
    each = " each" if context.is_distributed else ""
    return f", {threads} thread{'' if threads == 1 else 's'}{each}"
