"""The time budget (``max_minutes``): the run's clock, and whether another epoch still fits."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sliceseg.training.progress import format_elapsed

# Estimates follow the last few timings: the first epochs run slower (warm-up, caches).
_RECENT = 3


class Clock:
    """Training time of the run, counting what the checkpoint had already spent.

    Args:
        before_s: seconds spent before this process (a resumed run's).
        now: the clock read, in seconds (``time.perf_counter``; tests pass a fake one).
    """

    def __init__(self, before_s: float = 0.0, *, now: Callable[[], float] = time.perf_counter):
        self.before_s, self.now = before_s, now
        self.started = now()

    def elapsed(self) -> float:
        """Seconds trained so far, including before a resume."""
        return self.before_s + self.now() - self.started


@dataclass
class Budget:
    """The seconds each step of an epoch took lately, and whether another epoch fits.

    Another epoch fits when, after what this epoch still does (its checkpoint), its training,
    validation and checkpoint end within the budget: the run may stop after it, and the last
    epoch always validates and saves. The learning rate decays over the same clock
    (`sliceseg.training.steps.learning_rate_at`), so the run ends where its decay is planned.

    Attributes:
        max_minutes: the budget, or None (every epoch fits).
        training_s: recent training passes' seconds, oldest first.
        validation_s: recent validations' seconds (with saving the best model).
        checkpoint_s: recent checkpoints' seconds.

    Example:
        >>> budget = Budget(5.0, training_s=[60.0], validation_s=[30.0], checkpoint_s=[5.0])
        >>> budget.next_epoch_fits(180.0, saves_now=False)  # 180 + 60 + 30 + 5 = 275 ≤ 300
        True
        >>> budget.next_epoch_fits(180.0, saves_now=True)  # + this epoch's checkpoint: 280
        True
        >>> budget.next_epoch_fits(210.0, saves_now=False)  # 305 > 300
        False
    """

    max_minutes: float | None
    training_s: list[float] = field(default_factory=list)
    validation_s: list[float] = field(default_factory=list)
    checkpoint_s: list[float] = field(default_factory=list)

    @classmethod
    def from_dict(cls, max_minutes: float | None, timings: Mapping[str, Sequence[float]]) -> Budget:
        """Rebuild the timings a checkpoint stored (`to_dict`); none in older checkpoints."""
        return cls(
            max_minutes,
            **{name: [float(s) for s in timings.get(name, ())] for name in _TIMINGS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The recent timings as plain data, for the checkpoint's training state."""
        return {name: [float(s) for s in getattr(self, name)[-_RECENT:]] for name in _TIMINGS}

    def next_epoch_fits(self, elapsed_s: float, *, saves_now: bool) -> bool:
        """Whether, ``elapsed_s`` into the run and this epoch's validation done when it was
        due, this epoch's checkpoint (``saves_now``) and a whole next epoch end in the budget."""
        if self.max_minutes is None:
            return True
        checkpoint_s = _recent(self.checkpoint_s)
        following = _recent(self.training_s) + _recent(self.validation_s) + checkpoint_s
        end_s = elapsed_s + (checkpoint_s if saves_now else 0.0) + following
        return end_s <= 60.0 * self.max_minutes

    def stop_line(self, epoch: int, elapsed_s: float) -> str:
        """The line a run says when it stops at the budget after ``epoch``."""
        return (
            f"Stopping after epoch {epoch}: the next epoch, with its validation and checkpoint, "
            f"would pass the {self.max_minutes:g}-minute budget "
            f"(elapsed {format_elapsed(elapsed_s)})."
        )


_TIMINGS = ("training_s", "validation_s", "checkpoint_s")


def _recent(seconds: list[float]) -> float:
    """The median of the last few timings; 0 before the first."""
    return float(np.median(seconds[-_RECENT:])) if seconds else 0.0
