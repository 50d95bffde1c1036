"""Progress reporting: the user manual's exact lines and the event a live plot receives."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """What a training run reports at each print checkpoint (``print_checkpoint`` epochs).

    Attributes:
        epoch: epochs completed.
        epochs: epochs planned; None when the run trains until its time budget.
        dice_loss: the epoch's mean soft-Dice loss on the training batches (the progress line's).
        train_dice: the epoch's mean hard Dice on the training batches.
        val_dice: mean validation Dice over the ROIs, nan without a validation set.
        val_dice_per_roi: validation Dice by ROI name (nan for an ROI absent from validation).
        learning_rate: the learning rate of the epoch.
        elapsed_seconds: training time so far, including before a resume.
    """

    epoch: int
    epochs: int | None
    dice_loss: float
    train_dice: float
    val_dice: float
    val_dice_per_roi: dict[str, float]
    learning_rate: float
    elapsed_seconds: float

    @property
    def has_validation(self) -> bool:
        """True when the run has a validation set."""
        return not math.isnan(self.val_dice)


OnCheckpoint = Callable[[ProgressEvent], None]


def format_elapsed(seconds: float) -> str:
    """Return ``"0 hrs 0 mins 35 secs"`` for 35.2 seconds.

    Example:
        >>> format_elapsed(3725)
        '1 hrs 2 mins 5 secs'
    """
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} hrs {minutes} mins {secs} secs"


def progress_line(
    epoch: int, epochs: int | None, dice_loss: float, dice: float, elapsed_s: float
) -> str:
    """Return the manual's progress line (``Completed epochs: 10`` when ``epochs`` is None: the
    run trains until its time budget).

    Example:
        >>> progress_line(10, 500, 1.2623, 0.3691, 35)  # doctest: +NORMALIZE_WHITESPACE
        'Completed epochs: 10/500 | Dice loss: 1.262 | Mean dice score: 0.369 |
        Time elapsed: 0 hrs 0 mins 35 secs'
    """
    done = f"{epoch}" if epochs is None else f"{epoch}/{epochs}"
    return (
        f"Completed epochs: {done} | Dice loss: {dice_loss:.3f} | "
        f"Mean dice score: {dice:.3f} | Time elapsed: {format_elapsed(elapsed_s)}"
    )


def print_flush(line: str) -> None:
    """Print a line and flush at once, so progress shows up in piped logs (nohup, CI) live."""
    print(line, flush=True)
