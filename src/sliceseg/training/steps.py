"""The steps of one epoch: a training pass, Dice on hard predictions, the learning rate."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sliceseg.engine.probabilities import spaced_window_probabilities
from sliceseg.measure.metrics import confusion_counts, dice_from_counts
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.models.folding import inference_network
from sliceseg.postprocess.calibration import (
    AreaCalibration,
    choose_area_calibration,
    foreground_margin,
)
from sliceseg.postprocess.cleanup import PostProcessing, choose_postprocessing
from sliceseg.training.config import TrainConfig
from sliceseg.training.losses import MultiOutputLoss

Augment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch measured on this process.

    Attributes:
        loss: mean training loss over its slices (each batch's mean weighted by its slices).
        dice_loss: mean Dice loss over its slices, likewise.
        counts: (3, K) int64 tp, fp and fn pixels of ROIs 1..K, pooled over its batches (the
            processes of a torchrun run sum them for the epoch's Dice: `pooled_dice`).
        seconds: how long it took.
        samples: the slices it trained on (the processes of a torchrun run pool their losses
            by them: `loss_sums`).
    """

    loss: float
    dice_loss: float
    counts: np.ndarray
    seconds: float
    samples: int

    def loss_sums(self) -> np.ndarray:
        """Return (loss × slices, Dice loss × slices, slices), float64: summed over the
        processes of a torchrun run, their ratios are the epoch's losses over every slice
        (`pooled_losses`), not a mean of the processes' means."""
        weighted = (self.loss * self.samples, self.dice_loss * self.samples, self.samples)
        return np.array(weighted, dtype=np.float64)

    @property
    def dice(self) -> float:
        """Mean Dice over the ROIs seen, from this process's counts."""
        return pooled_dice(self.counts)


class DiceCounter:
    """Accumulate per-ROI Dice over batches from hard predictions (pooled counts, not means).

    The counts and the formula are `sliceseg.measure.metrics`' (`confusion_counts`,
    `dice_from_counts`), so training, validation and evaluation report the same Dice.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.counts = np.zeros((3, num_classes - 1), dtype=np.int64)  # tp, fp, fn

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: logits (B, C, H, W), labels (B, H, W)."""
        pred = logits.argmax(dim=1)
        self.counts += np.stack(confusion_counts(pred, labels, self.num_classes))

    def per_roi(self) -> np.ndarray:
        """Dice per ROI 1..K; nan for an ROI absent from predictions and labels alike."""
        return dice_from_counts(*self.counts)

    def mean(self) -> float:
        """Mean Dice over the ROIs seen."""
        return pooled_dice(self.counts)


def pooled_dice(counts: np.ndarray) -> float:
    """Mean Dice over the ROIs seen from pooled (3, K) tp, fp, fn counts (`DiceCounter.counts`,
    summed over batches or processes): the Dice of all their pixels, not a mean of means.

    Example:
        >>> pooled_dice(np.array([[100], [0], [10]]))  # 200 / (200 + 0 + 10)
        0.9523809523809523
    """
    return mean_dice(dice_from_counts(*counts))


def pooled_losses(sums: np.ndarray) -> tuple[float, float]:
    """Return the mean loss and Dice loss per slice from `EpochStats.loss_sums`, summed over
    processes.

    Example:
        >>> pooled_losses(np.array([3.0, 1.5, 6.0]) + np.array([3.0, 2.5, 2.0]))  # 6 + 2 slices
        (0.75, 0.5)
    """
    loss_sum, dice_loss_sum, samples = (float(v) for v in sums)
    return loss_sum / samples, dice_loss_sum / samples


def mean_dice(per_roi: np.ndarray) -> float:
    """Mean of the finite Dice values (ROIs without one left out); nan when none is finite.

    Example:
        >>> mean_dice(np.array([0.8, np.nan, 0.6]))
        0.7
    """
    finite = per_roi[np.isfinite(per_roi)]
    return float(finite.mean()) if finite.size else float("nan")


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


@dataclass(frozen=True)
class ScheduleStart:
    """Where a run's decay starts: after ``epoch``, ``elapsed_seconds`` into the run, from
    ``scale`` × the learning rate. A fresh run starts at 0, 0 s, 1; a resume that changes the
    planned epochs or the budget starts anew at its checkpoint, from the rate its last epoch
    trained with (`sliceseg.training.state.rescheduled`): the rate of the new plan at that
    point was higher (a larger budget's ``1 − elapsed/budget``), and it jumped back up."""

    epoch: int = 0
    elapsed_seconds: float = 0.0
    scale: float = 1.0


FROM_THE_START = ScheduleStart()
"""A fresh run's schedule: it decays from the full learning rate over the whole plan."""


def learning_rate_at(
    config: TrainConfig, epoch: int, elapsed_s: float, *, start: ScheduleStart = FROM_THE_START
) -> float:
    """Polynomial decay (power 0.9) over whichever ends first: the epochs or the time budget,
    counted from ``start`` (the run's start, or a resume's that changed them).

    Without ``epochs`` and with ``max_minutes`` (`TrainConfig.planned_epochs` None) the decay
    follows the elapsed share of the budget alone ("poly on time").

    Example:
        >>> config = TrainConfig(learning_rate=1.0, max_minutes=10)
        >>> round(learning_rate_at(config, epoch=7, elapsed_s=300.0), 4)  # 0.5 ** 0.9
        0.5359
        >>> resumed = ScheduleStart(epoch=6, elapsed_seconds=300.0, scale=0.5)
        >>> round(learning_rate_at(config, epoch=8, elapsed_s=450.0, start=resumed), 4)
        0.2679
    """
    planned = config.planned_epochs
    done = epoch - 1 - start.epoch  # epochs trained since the start
    progress = done / max(planned - start.epoch, 1) if planned is not None else 0.0
    if config.max_minutes is not None:
        left_s = 60.0 * config.max_minutes - start.elapsed_seconds
        progress = max(progress, (elapsed_s - start.elapsed_seconds) / max(left_s, 1e-9))
    return config.learning_rate * start.scale * max(1.0 - min(progress, 1.0), 0.0) ** 0.9


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: MultiOutputLoss,
    dice_loss_fn: MultiOutputLoss,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    num_classes: int,
    augment: Augment | None,
    scaler: torch.amp.GradScaler | None = None,
    show_progress: bool = False,
    description: str = "",
    after_step: Callable[[], None] | None = None,
) -> EpochStats:
    """Run one pass over the training batches and return the epoch's mean loss and Dice;
    ``after_step`` is called after each optimiser step (the weight average's update)."""
    model.train()
    start = time.perf_counter()
    losses, dice_losses, sizes, counter = [], [], [], DiceCounter(num_classes)
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
        if after_step is not None:
            after_step()
        with torch.no_grad():
            dice_losses.append(float(dice_loss_fn([o.float() for o in outputs], labels)))
            counter.update(outputs[0].float().cpu(), labels.cpu())
        losses.append(float(loss.detach()))
        sizes.append(len(labels))
    return EpochStats(
        loss=float(np.average(losses, weights=sizes)),
        dice_loss=float(np.average(dice_losses, weights=sizes)),
        counts=counter.counts,
        seconds=time.perf_counter() - start,
        samples=int(sum(sizes)),
    )


@torch.no_grad()
def evaluate_spaced(
    model: nn.Module,
    data: SpacedTensors,
    *,
    device: torch.device,
    num_classes: int,
    input_size: int,
    divisor: int,
    calibrate: bool = True,
) -> tuple[np.ndarray, PostProcessing]:
    """Per-ROI Dice on slices at the target spacing, predicted as ``predict`` does (its network
    form and windows), after the area calibration (unless ``calibrate`` is False) and the
    post-processing chosen on them; ``model`` is left as it is.

    Returns:
        The pooled Dice per ROI 1..K after post-processing (nan for an ROI the labels of
        ``data`` do not hold, as MONAI's ``DiceMetric(ignore_empty=True)``: a false positive
        there would score 0 and make epochs' means average different ROIs), and the
        post-processing.
    """
    probabilities = spaced_window_probabilities(
        inference_network(model),
        data.images,
        input_size=input_size,
        divisor=divisor,
        device=device,
    )
    margins = [foreground_margin(p.numpy()) for p in probabilities]
    truth = [t.numpy() for t in data.labels or ()]
    calibration = (
        choose_area_calibration(
            margins,
            truth,
            num_classes=num_classes,
            pixel_area_mm2=float(np.prod(data.target_spacing_mm)),
            # the split's patients: two series of one patient are not independent halves
            groups=data.patients or data.series,
        )
        if calibrate
        else AreaCalibration()
    )
    labels = [calibration.labels(*margin) for margin in margins]
    steps = choose_postprocessing(labels, truth, num_classes=num_classes)
    post = dataclasses.replace(steps, calibration=calibration)
    counts = np.zeros((3, num_classes - 1), dtype=np.int64)
    for label, true in zip(labels, truth, strict=True):
        counts += np.stack(confusion_counts(post.apply(label), true, num_classes))
    dice = dice_from_counts(*counts)
    dice[counts[0] + counts[2] == 0] = np.nan  # tp + fn: the ROI's pixels in the labels
    return dice, post
