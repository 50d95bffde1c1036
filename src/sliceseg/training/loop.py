"""The training loop: a few named steps (train an epoch, evaluate, checkpoint) and their recipe."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
from tqdm.auto import tqdm

from sliceseg._version import __version__
from sliceseg.augment.transforms import AugmentParams, augment_batch
from sliceseg.data.batches import GridTensors, samples_to_grid
from sliceseg.data.samples import load_samples
from sliceseg.data.split import split_by_patient
from sliceseg.errors import ConfigError
from sliceseg.io.files import atomic_path, atomic_write_text, prepare_output_dir
from sliceseg.models import build_model, default_hyperparameters, required_divisor
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle, unwrap_model
from sliceseg.report.plots import plot_history
from sliceseg.report.visualize import plot_batch
from sliceseg.system import select_device
from sliceseg.training.config import TrainConfig
from sliceseg.training.distributed import (
    DistributedContext,
    close_distributed,
    init_distributed,
    parameter_checksum,
)
from sliceseg.training.losses import MultiOutputLoss, build_loss
from sliceseg.training.progress import format_elapsed, print_flush, progress_line

Log = Callable[[str], None]


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch measured (means over its batches)."""

    loss: float
    dice_loss: float
    dice: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """Files and numbers of a finished training run."""

    out_dir: Path
    final_model: Path
    best_model: Path
    history_csv: Path
    history_png: Path
    settings_json: Path
    epochs_completed: int
    best_val_dice: float
    history: pd.DataFrame = field(repr=False)


class DiceCounter:
    """Accumulate per-ROI Dice over batches from hard predictions (overlap counts, not means)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.intersection = torch.zeros(num_classes - 1, dtype=torch.float64)
        self.total = torch.zeros(num_classes - 1, dtype=torch.float64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits (B, C, H, W), labels (B, H, W)."""
        pred = logits.argmax(dim=1)
        for roi in range(1, self.num_classes):
            p, t = pred == roi, labels == roi
            self.intersection[roi - 1] += (p & t).sum().item()
            self.total[roi - 1] += (p.sum() + t.sum()).item()

    def per_roi(self) -> np.ndarray:
        """Dice per ROI 1..K; nan for an ROI absent from predictions and labels alike."""
        total = self.total.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, 2 * self.intersection.numpy() / total, np.nan)

    def mean(self) -> float:
        """Mean Dice over the ROIs seen."""
        values = self.per_roi()
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """Back-propagate ``loss`` and step, through the AMP gradient scaler when there is one."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def learning_rate_at(config: TrainConfig, epoch: int, elapsed_s: float) -> float:
    """Polynomial decay (power 0.9) over whichever ends first: the epochs or the time budget."""
    progress = (epoch - 1) / config.epochs
    if config.max_minutes is not None:
        progress = max(progress, elapsed_s / (60.0 * config.max_minutes))
    return config.learning_rate * max(1.0 - min(progress, 1.0), 0.0) ** 0.9


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: MultiOutputLoss,
    dice_loss_fn: MultiOutputLoss,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    num_classes: int,
    augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
    scaler: torch.amp.GradScaler | None = None,
    show_progress: bool = False,
    description: str = "",
) -> EpochStats:
    """Run one pass over the training batches and return the epoch's mean loss and Dice."""
    model.train()
    start = time.perf_counter()
    losses, dice_losses, counter = [], [], DiceCounter(num_classes)
    batches = tqdm(loader, desc=description, leave=False, disable=not show_progress)
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if augment is not None:
            images, labels = augment(images, labels)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, enabled=scaler is not None):
            outputs = model(images)
            loss = loss_fn(outputs, labels)
        optimizer_step(loss, optimizer, scaler)
        with torch.no_grad():
            final = outputs[0].float()
            dice_losses.append(float(dice_loss_fn([o.float() for o in outputs], labels)))
            counter.update(final.cpu(), labels.cpu())
        losses.append(float(loss.detach()))
    return EpochStats(
        loss=float(np.mean(losses)),
        dice_loss=float(np.mean(dice_losses)),
        dice=counter.mean(),
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: GridTensors,
    *,
    device: torch.device,
    num_classes: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Return the per-ROI Dice of ``model`` on labelled grid tensors; the mode is restored."""
    was_training = model.training
    model.eval()
    counter = DiceCounter(num_classes)
    try:
        for start in range(0, len(data), batch_size):
            images = data.images[start : start + batch_size].to(device)
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
                logits = model(images)[0].float()
            counter.update(logits.cpu(), data.labels[start : start + batch_size])
    finally:
        model.train(was_training)
    return counter.per_roi()


def save_checkpoint(
    path: Path,
    model: nn.Module,
    metadata: ModelMetadata,
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    history: list[dict[str, float]],
    generators: dict[str, torch.Generator],
    extra: dict[str, Any],
) -> Path:
    """Write a resumable checkpoint: the model file plus optimiser, history and random state."""
    training_state = {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": [dict(row) for row in history],
        "rng": {
            "torch": torch.get_rng_state(),
            **{name: g.get_state() for name, g in generators.items()},
        },
        **extra,
    }
    return save_bundle(path, model, metadata, training_state=training_state)


def write_history(out_dir: Path, name: str, history: list[dict[str, float]]) -> tuple[Path, Path]:
    """Write ``<name>_history.csv`` and its plot ``<name>_history.png``; return both paths."""
    frame = pd.DataFrame(history)
    csv_path, png_path = out_dir / f"{name}_history.csv", out_dir / f"{name}_history.png"
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    plot_history(frame, path=png_path)
    return csv_path, png_path


def save_first_batch(
    path: Path,
    data: GridTensors,
    params: AugmentParams | None,
    *,
    roi_names: tuple[str, ...],
    batch_size: int,
    seed: int,
) -> Path:
    """Draw the first augmented batch (a generator of its own, so training draws are unchanged)."""
    images, labels = data.images[:batch_size], data.labels[:batch_size]
    if params is not None:
        generator = torch.Generator().manual_seed(seed)
        images, labels = augment_batch(images, labels, params, generator=generator)
    plot_batch(images, labels, list(roi_names), path=path)
    return path


def _validation_line(per_roi: np.ndarray, roi_names: tuple[str, ...]) -> str:
    parts = [f"{n} {d:.3f}" for n, d in zip(roi_names, per_roi, strict=True) if np.isfinite(d)]
    return f"Validation dice: mean {np.nanmean(per_roi):.3f} | " + " | ".join(parts)


def _build_model_for(config: TrainConfig, num_classes: int) -> tuple[nn.Module, dict[str, Any]]:
    hyper = {**default_hyperparameters(config.arch, input_size=config.input_shape)}
    hyper.update(config.hyperparameters)
    if "dropout_rate" in hyper:
        hyper["dropout_rate"] = config.dropout_rate
    divisor = required_divisor(config.arch, hyper)
    if config.input_shape % divisor:
        below = (config.input_shape // divisor) * divisor
        raise ConfigError(
            f"input_shape {config.input_shape} is not divisible by {divisor}, which the "
            f"'{config.arch}' network needs; use {below or divisor} or {below + divisor}."
        )
    model = build_model(
        config.arch, num_classes=num_classes, input_size=config.input_shape, **hyper
    )
    return model, hyper


def train(
    config: TrainConfig,
    *,
    resume: Path | str | None = None,
    log: Log = print_flush,
) -> TrainResult:
    """Train a model on a labelled DICOM dataset and write models, history and settings.

    Args:
        config: every setting of the run.
        resume: a checkpoint ``<name>_<epoch>.pt`` to continue from (its folder receives the
            new files; its settings are used, with ``epochs`` / ``max_minutes`` from ``config``).
        log: where progress lines go (printed and flushed by default).

    Returns:
        Paths of the files written and the best validation Dice.

    Raises:
        SlicesegError: the data is unfit, a setting is invalid, or the output folder is in use.

    Example:
        >>> result = train(TrainConfig(data_dir="phantom/train", epochs=20, out_dir="model"))
        >>> result.best_model
    """
    checkpoint = load_bundle(resume) if resume is not None else None
    if checkpoint is not None:
        if checkpoint.training_state is None:
            raise ConfigError(
                f"{resume}: holds weights only (e.g. a *_best.pt); resume from a "
                "<name>_<epoch>.pt checkpoint."
            )
        config = TrainConfig.from_dict(checkpoint.metadata.settings).replace(
            epochs=config.epochs, max_minutes=config.max_minutes, device=config.device
        )
        config = config.replace(out_dir=str(Path(resume).parent))
    context = init_distributed(select_device(config.device))
    try:
        return _run(config, checkpoint, context, log if context.is_main else (lambda _m: None))
    finally:
        close_distributed(context)


def _run(config: TrainConfig, checkpoint, context: DistributedContext, log: Log) -> TrainResult:
    device = context.device
    out_dir = Path(config.out_dir)
    if checkpoint is None and context.is_main:
        prepare_output_dir(out_dir, overwrite=config.overwrite)
    context.barrier()
    torch.manual_seed(config.seed)

    samples, report = load_samples(
        config.data_source(), progress=context.is_main and sys.stderr.isatty()
    )
    roi_names = tuple(report.roi_names)
    num_classes = len(roi_names) + 1
    train_samples, val_samples = split_by_patient(
        samples, validation_fraction=config.validation_fraction, seed=config.seed
    )
    train_data = samples_to_grid(train_samples, config.input_shape)
    val_data = samples_to_grid(val_samples, config.input_shape)
    log(
        f"Training on {len(train_data)} slices, validating on {len(val_data)} "
        f"({num_classes - 1} ROIs: {', '.join(roi_names)}) | arch {config.arch} | "
        f"input {config.input_shape}×{config.input_shape} | device {device}"
        + (f" × {context.world_size} processes" if context.is_distributed else "")
    )

    model, hyper = _build_model_for(config, num_classes)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    metadata = ModelMetadata(
        arch=config.arch,
        hyperparameters=hyper,
        num_classes=num_classes,
        input_size=config.input_shape,
        roi_names=roi_names,
        label_values=tuple(report.scheme.stored_values),
        settings=config.to_dict(),
        sliceseg_version=__version__,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    generators = {
        "shuffle": torch.Generator().manual_seed(config.seed),
        "augment": torch.Generator().manual_seed(config.seed * 1000 + context.rank + 1),
    }
    history: list[dict[str, float]] = []
    elapsed_before, best_val = 0.0, -1.0
    if checkpoint is not None:
        model.load_state_dict(unwrap_model(checkpoint.model).state_dict())
        state = checkpoint.training_state
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = [dict(row) for row in state["history"]]
        elapsed_before = float(state.get("elapsed_seconds", 0.0))
        best_val = float(state.get("best_val_dice", -1.0))
        torch.set_rng_state(state["rng"]["torch"])
        for name, generator in generators.items():
            generator.set_state(state["rng"][name])
        log(f"Resuming from {checkpoint.source} after epoch {checkpoint.metadata.epoch}.")
    start_epoch = checkpoint.metadata.epoch + 1 if checkpoint is not None else 1

    wrapped: nn.Module = model
    if context.is_distributed:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    dataset = TensorDataset(train_data.images, train_data.labels)
    sampler = (
        DistributedSampler(dataset, shuffle=True, seed=config.seed)
        if context.is_distributed
        else None
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generators["shuffle"] if sampler is None else None,
        num_workers=config.num_workers,
        drop_last=len(dataset) > config.batch_size,
        pin_memory=device.type == "cuda",
    )
    params = AugmentParams.from_dict(config.augment_params) if config.augment else None

    def augment(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return augment_batch(images, labels, params, generator=generators["augment"])

    if context.is_main and checkpoint is None:
        save_first_batch(
            out_dir / f"{config.model_filename}_first_batch.png",
            train_data,
            params,
            roi_names=roi_names,
            batch_size=config.batch_size,
            seed=config.seed,
        )
    loss_fn = MultiOutputLoss(build_loss(config.loss))
    dice_loss_fn = MultiOutputLoss(build_loss("dice"))
    name = config.model_filename
    started = time.perf_counter()
    epoch = start_epoch - 1
    epoch_seconds: list[float] = []
    show_bar = context.is_main and sys.stderr.isatty()
    stop = False
    for epoch in range(start_epoch, config.epochs + 1):
        elapsed = elapsed_before + time.perf_counter() - started
        lr = learning_rate_at(config, epoch, elapsed)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if sampler is not None:
            sampler.set_epoch(epoch)
        stats = train_one_epoch(
            wrapped,
            loader,
            loss_fn,
            dice_loss_fn,
            optimizer,
            device=device,
            num_classes=num_classes,
            augment=augment if params is not None else None,
            scaler=scaler,
            show_progress=show_bar,
            description=f"epoch {epoch}/{config.epochs}",
        )
        epoch_seconds.append(stats.seconds)
        elapsed = elapsed_before + time.perf_counter() - started
        row: dict[str, float] = {
            "epoch": epoch,
            "loss": context.mean(stats.loss),
            "dice_loss": context.mean(stats.dice_loss),
            "train_dice": context.mean(stats.dice),
            "val_dice": float("nan"),
            **{f"val_dice_{n}": float("nan") for n in roi_names},
            "lr": lr,
            "elapsed_seconds": elapsed,
        }
        if config.max_minutes is not None:
            budget_s = 60.0 * config.max_minutes
            stop = context.broadcast_flag(elapsed + float(np.median(epoch_seconds[-3:])) > budget_s)
        is_last = stop or epoch == config.epochs
        if context.is_main and (epoch == 1 or epoch % config.print_checkpoint == 0 or is_last):
            log(progress_line(epoch, config.epochs, row["dice_loss"], row["train_dice"], elapsed))
            if len(val_data):
                per_roi = evaluate(model, val_data, device=device, num_classes=num_classes)
                row["val_dice"] = float(np.nanmean(per_roi))
                row.update(
                    {f"val_dice_{n}": float(d) for n, d in zip(roi_names, per_roi, strict=True)}
                )
                log(_validation_line(per_roi, roi_names))
                if row["val_dice"] > best_val:
                    best_val = row["val_dice"]
                    save_bundle(out_dir / f"{name}_best.pt", model, _at_epoch(metadata, epoch))
        history.append(row)
        if context.is_main and (epoch % config.save_checkpoint == 0 or is_last):
            save_checkpoint(
                out_dir / f"{name}_{epoch}.pt",
                model,
                _at_epoch(metadata, epoch),
                optimizer=optimizer,
                scaler=scaler,
                history=history,
                generators=generators,
                extra={"elapsed_seconds": elapsed, "best_val_dice": best_val},
            )
            write_history(out_dir, name, history)
        if stop:
            log(
                f"Stopping after epoch {epoch}: the next epoch would pass the "
                f"{config.max_minutes:g}-minute budget (elapsed {format_elapsed(elapsed)})."
            )
            break
    checksums = context.gather_floats(parameter_checksum(model))
    context.barrier()
    return _finish(config, model, metadata, history, epoch, best_val, checksums, context, log)


def _at_epoch(metadata: ModelMetadata, epoch: int) -> ModelMetadata:
    return ModelMetadata.from_dict({**metadata.to_dict(), "epoch": epoch})


def _finish(
    config, model, metadata, history, epoch, best_val, checksums, context, log
) -> TrainResult:
    out_dir, name = Path(config.out_dir), config.model_filename
    final_path = out_dir / f"{name}_{epoch}.pt"
    best_path = out_dir / f"{name}_best.pt"
    csv_path, png_path = out_dir / f"{name}_history.csv", out_dir / f"{name}_history.png"
    settings_path = out_dir / f"{name}_settings.json"
    if context.is_main:
        if not best_path.exists():  # no validation set: the last model is the best we know
            save_bundle(best_path, model, _at_epoch(metadata, epoch))
        settings = {
            "settings": config.to_dict(),
            "model": {"arch": metadata.arch, "hyperparameters": metadata.hyperparameters},
            "roi_names": list(metadata.roi_names),
            "epochs_completed": epoch,
            "best_val_dice": None if best_val < 0 else best_val,
            "world_size": context.world_size,
            "parameter_checksums": checksums,
            "sliceseg_version": __version__,
        }
        atomic_write_text(settings_path, json.dumps(settings, indent=2))
        log(f"Saved models, history and settings in {out_dir}/ (best: {best_path.name}).")
    frame = pd.DataFrame(history)
    return TrainResult(
        out_dir=out_dir,
        final_model=final_path,
        best_model=best_path,
        history_csv=csv_path,
        history_png=png_path,
        settings_json=settings_path,
        epochs_completed=epoch,
        best_val_dice=best_val if best_val >= 0 else math.nan,
        history=frame,
    )
