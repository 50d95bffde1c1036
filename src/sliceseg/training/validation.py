"""Validation during training: an epoch's validation Dice, and the best model it chooses."""

from __future__ import annotations

import numpy as np

from sliceseg.models.bundle import save_bundle
from sliceseg.postprocess.cleanup import PostProcessing
from sliceseg.training.budget import Budget, Clock
from sliceseg.training.session import Session
from sliceseg.training.state import HistoryRow
from sliceseg.training.steps import evaluate_spaced, mean_dice

__all__ = ["keep_best", "no_roi_line", "validate", "validate_timed"]


def validate(session: Session, row: HistoryRow) -> tuple[HistoryRow, PostProcessing | None]:
    """Return ``row`` with the validation Dice (mean and per ROI) and the post-processing and
    area calibration chosen for the model's current weights; ``(row, None)`` without
    validation slices.

    The mean is over the ROIs the validation labels hold, the same ones every epoch; it is
    nan when they hold none (see `no_roi_line`).
    """
    if not len(session.data.validation):
        return row, None
    per_roi, post = evaluate_spaced(
        session.evaluated,
        session.data.validation,
        device=session.context.device,
        num_classes=session.data.num_classes,
        input_size=session.config.input_shape,
        divisor=session.divisor,
        calibrate=session.config.area_calibration,
    )
    names = session.data.roi_names
    return {
        **row,
        "val_dice": mean_dice(per_roi),
        **{f"val_dice_{n}": float(d) for n, d in zip(names, per_roi, strict=True)},
    }, post


def keep_best(
    session: Session, row: HistoryRow, best: float | None, post: PostProcessing | None = None
) -> float | None:
    """Save ``<name>_best.pt`` (with ``post``, chosen for these weights) when the row's
    validation Dice beats ``best``; return the best. A nan Dice (no validation, or no ROI in
    its labels) is never the best: the run's last model stands in (`no_roi_line`)."""
    dice = row["val_dice"]
    if not np.isfinite(dice) or (best is not None and dice <= best):
        return best
    epoch = int(row["epoch"])
    save_bundle(session.path("best.pt"), session.evaluated, session.metadata_at(epoch, post))
    return dice


def validate_timed(
    session: Session, row: HistoryRow, best: float | None, budget: Budget, clock: Clock
) -> tuple[HistoryRow, PostProcessing | None, float | None]:
    """`validate` and `keep_best`, adding the seconds they took to the budget's."""
    began = clock.elapsed()
    row, post = validate(session, row)
    best = keep_best(session, row, best, post)
    budget.validation_s.append(clock.elapsed() - began)
    return row, post, best


def no_roi_line(best_name: str, epoch: int) -> str:
    """The line a run says when its validation slices hold no ROI, so no epoch has a Dice."""
    return (
        f"No validation Dice: the validation slices hold no ROI, so {best_name} is the last "
        f"epoch's model (epoch {epoch}); give validation patients with labelled ROIs to "
        "choose the best epoch by Dice."
    )
