"""A training session: the objects one run trains with, and its state captured or restored."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from sliceseg._version import __version__
from sliceseg.augment.transforms import AugmentParams
from sliceseg.errors import BundleError, UnwritableError
from sliceseg.io.files import atomic_path, signals_held
from sliceseg.io.tables import write_csv
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.model_space.crops import CropDataset
from sliceseg.model_space.intensity import PER_SLICE, IntensityNormalisation
from sliceseg.models import build_model, context_channels, required_divisor
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle, save_bundle
from sliceseg.postprocess.cleanup import PostProcessing
from sliceseg.report.plots import plot_history
from sliceseg.training.averaging import WeightAverage
from sliceseg.training.config import TrainConfig
from sliceseg.training.distributed import DistributedContext
from sliceseg.training.init_from import started_from
from sliceseg.training.losses import MultiOutputLoss, build_loss
from sliceseg.training.output_folder import note_abandoned_checkpoints
from sliceseg.training.state import HistoryRow, TrainingState
from sliceseg.training.steps import FROM_THE_START, ScheduleStart

Log = Callable[[str], None]


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
        metadata: the model file's metadata (epoch 0; see `_at_epoch`).
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
    _log_data_notes(data, log)


def _log_data_notes(data: TrainingData, log: Log) -> None:
    """Log what the data check warned about (training goes on regardless), the grid the view
    chose and the intensity normalisation."""
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


def fresh_state(config: TrainConfig) -> TrainingState:
    """Return the state of a run before its first epoch."""
    return TrainingState(
        epoch=0,
        planned_epochs=config.planned_epochs,
        max_minutes=config.max_minutes,
        elapsed_seconds=0.0,
        best_val_dice=None,
        history=(),
        optimizer={},
    )


def restore(session: Session, checkpoint: Bundle, state: TrainingState) -> None:
    """Put a checkpoint's weights, optimiser, scaler and random states into ``session``;
    only rank 0's are saved, so another rank reseeds its crop and augmentation generator."""
    if session.averaged is not None and state.averaging is not None:
        # the checkpoint's model is the average; its state carries the weights as trained
        session.averaged.load_state_dict(
            {"weights": checkpoint.model.state_dict(), "updates": state.averaging["updates"]}
        )
        session.model.load_state_dict(state.averaging["trained"])
    else:
        session.model.load_state_dict(checkpoint.model.state_dict())
        if session.averaged is not None:
            session.averaged.restart(session.model)
    session.optimizer.load_state_dict(state.optimizer)
    if session.scaler is not None and state.scaler:
        session.scaler.load_state_dict(state.scaler)
    torch.set_rng_state(state.rng["torch"])
    if "cuda" in state.rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.rng["cuda"], session.context.device)
    for name, generator in session.generators.items():
        generator.set_state(state.rng[name])
    rank = session.context.rank
    if rank:  # the checkpoint holds rank 0's crop and augmentation draws: others need their own
        augment = session.generators["augment"]
        augment.manual_seed(int(torch.randint(0, 2**62, (1,), generator=augment)) + rank)


def drop_abandoned_best(
    session: Session, state: TrainingState, checkpoint: Bundle, log: Log
) -> TrainingState:
    """Put the resumed checkpoint's best model back as ``<name>_best.pt`` when the file is of a
    later epoch (a resume from an earlier checkpoint than the last abandons those epochs, and
    their best model was never this run's) or missing (removed, or only the checkpoints were
    copied: the run's last epoch would have stood in, under the best epoch's Dice); return
    ``state`` with the best it then holds.

    The best is the file of the checkpoint's best epoch (``<name>_<epoch>.pt``) when it is
    still there, else the checkpoint itself, with its own validation Dice. One line says so.
    Only the main process writes the best model (`keep_best`), so only it looks; it also
    names the later epochs' checkpoints, which stay (`note_abandoned_checkpoints`).
    """
    best_path = session.path("best.pt")
    if session.context.is_main:
        note_abandoned_checkpoints(session.out_dir, session.config.model_filename, state.epoch, log)
    if not session.context.is_main or state.best_val_dice is None:
        return state
    is_missing = not best_path.exists()
    written: int | None = None
    if not is_missing:
        with contextlib.suppress(BundleError):  # unreadable: not a best model to keep
            written = load_bundle(best_path).metadata.epoch
        if written is not None and written <= state.epoch:
            return state
    source, epoch, dice = _best_still_there(session, state, checkpoint)
    save_bundle(best_path, source.model, source.metadata)
    was = (
        f"missing from {session.out_dir}"
        if is_missing
        else f"epoch {written if written is not None else '?'}, after the resumed epoch "
        f"{state.epoch}: a best model of the epochs this resume abandons"
    )
    log(
        f"{'Restored' if is_missing else 'Replaced'} {best_path.name} ({was}) with epoch "
        f"{epoch}'s model, the best up to epoch {state.epoch} that is still there "
        f"(validation Dice {dice:.3f})."
    )
    return dataclasses.replace(state, best_val_dice=dice)


def _best_still_there(
    session: Session, state: TrainingState, checkpoint: Bundle
) -> tuple[Bundle, int, float]:
    """The model file of the best epoch up to the checkpoint's that is still in the folder (the
    checkpoint itself when that epoch's is gone), its epoch and its validation Dice."""
    rows = [r for r in state.history if math.isfinite(r.get("val_dice", math.nan))]
    top = max(rows, key=lambda r: r["val_dice"])  # the first of equals, as `keep_best`
    source, epoch = checkpoint, state.epoch
    candidate = session.path(f"{int(top['epoch'])}.pt")
    if int(top["epoch"]) != state.epoch and candidate.exists():
        with contextlib.suppress(BundleError):  # unreadable: the checkpoint stands in for it
            source, epoch = load_bundle(candidate), int(top["epoch"])
    return source, epoch, next(r["val_dice"] for r in rows if int(r["epoch"]) == epoch)


def capture_state(
    session: Session,
    *,
    epoch: int,
    history: tuple[HistoryRow, ...],
    best_val_dice: float | None,
    elapsed_seconds: float,
    budget_spent: bool = False,
    timings: dict[str, list[float]] | None = None,
    schedule: ScheduleStart = FROM_THE_START,
) -> TrainingState:
    """Return the run's state now (the optimiser's tensors are shared until saved);
    ``budget_spent``: the run stops here, its next epoch would pass the time budget;
    ``timings``: the budget's recent step timings (`Budget.to_dict`); ``schedule``: where the
    learning rate's decay starts (`TrainingState.schedule`)."""
    rng = {"torch": torch.get_rng_state()}
    if session.context.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(session.context.device)
    rng.update({name: g.get_state() for name, g in session.generators.items()})
    return TrainingState(
        epoch=epoch,
        planned_epochs=session.config.planned_epochs,
        max_minutes=session.config.max_minutes,
        elapsed_seconds=elapsed_seconds,
        best_val_dice=best_val_dice,
        history=history,
        optimizer=session.optimizer.state_dict(),
        scaler=session.scaler.state_dict() if session.scaler is not None else None,
        rng=rng,
        averaging=None
        if session.averaged is None
        else {"trained": session.model.state_dict(), "updates": session.averaged.updates},
        budget_spent=budget_spent,
        timings=dict(timings or {}),
        schedule=schedule,
    )


def save_checkpoint(
    session: Session, state: TrainingState, postprocessing: PostProcessing | None = None
) -> Path:
    """Write ``<name>_<epoch>.pt`` (weights + `TrainingState` + the post-processing chosen on
    validation for these weights) and the history so far."""
    path = session.path(f"{state.epoch}.pt")
    metadata = session.metadata_at(state.epoch, postprocessing)
    with signals_held():  # a SIGTERM between the two named the checkpoint before as the last
        save_bundle(path, session.evaluated, metadata, training_state=state.to_dict())
        # in place: a run stopped while the history is written still names it to resume from
        session.saved.append(path)
    write_history(session.out_dir, session.config.model_filename, state.history)
    return path


def last_checkpoint(session: Session, resumed: Bundle | None = None) -> Path | None:
    """The checkpoint a stopped run goes on from: the last it saved, else the one it resumed."""
    if session.saved:
        return session.saved[-1]
    return None if resumed is None else resumed.source


def interrupted_line(
    session: Session, resumed: Bundle | None = None, *, finishing_after: int | None = None
) -> str:
    """The line an interrupted run (Ctrl-C, SIGTERM) says: the checkpoint it goes on from
    (`last_checkpoint`) and that later epochs are lost, or that there is none;
    ``finishing_after``: the run was writing its end after that last epoch, and lost none."""
    latest = last_checkpoint(session, resumed)
    if latest is not None and finishing_after is not None:
        return (
            f"Interrupted while finishing the run (epoch {finishing_after}, the last, is "
            f"trained and saved): `sliceseg train --resume {latest}` writes what is missing."
        )
    if latest is None:
        return (
            "Interrupted before the first checkpoint (one every "
            f"{session.config.save_checkpoint} epochs, --save-checkpoint): there is nothing to "
            "resume from; a smaller --save-checkpoint loses less."
        )
    return (
        f"Interrupted: the epochs after {latest.name} are lost; "
        f"`sliceseg train --resume {latest}` goes on from it."
    )


def unwritable_error(
    session: Session, error: UnwritableError, resumed: Bundle | None = None
) -> UnwritableError:
    """The error of a run whose checkpoint or history could not be written (a full disk), with
    its remedy: "run the command again" restarted the run, or was refused (--overwrite)."""
    latest = last_checkpoint(session, resumed)
    then = (
        f"`sliceseg train --resume {latest}` goes on from its last checkpoint"
        if latest is not None
        else "run it again (with --overwrite: no checkpoint was saved)"
    )
    return UnwritableError(
        f"{error.path}: cannot write it ({error.reason}); free space on its disk, then {then}.",
        path=error.path,
        reason=error.reason,
    )


def write_history(
    out_dir: Path, name: str, history: tuple[HistoryRow, ...] | list[HistoryRow]
) -> tuple[Path, Path]:
    """Write ``<name>_history.csv`` and its plot ``<name>_history.png``; return both paths."""
    frame = pd.DataFrame(list(history))
    csv_path, png_path = out_dir / f"{name}_history.csv", out_dir / f"{name}_history.png"
    with atomic_path(csv_path) as tmp:
        write_csv(frame, tmp, index=False)
    plot_history(frame, path=png_path)
    return csv_path, png_path


def _threads_text(context: DistributedContext) -> str:
    """How many torch threads train on the CPU (each process's, under torchrun)."""
    threads = torch.get_num_threads()
    each = " each" if context.is_distributed else ""
    return f", {threads} thread{'' if threads == 1 else 's'}{each}"
