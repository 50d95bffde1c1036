"""A run's end as its best model file and its settings file record it, checked where read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["checked_run_end"]


def checked_run_end(value: Any) -> dict[str, Any] | None:
    """Return a run's end (`ModelMetadata.run_end`, or its settings file's) as a table whose
    ``epochs_completed`` is a whole number, ``ended_by`` text or null and ``best_val_dice`` a
    number or null.

    Raises:
        ValueError: one of them is something else (a file damaged or edited by hand).

    Example:
        >>> checked_run_end({"epochs_completed": 20, "ended_by": None, "best_val_dice": 0.86})
        {'epochs_completed': 20, 'ended_by': None, 'best_val_dice': 0.86}
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"run_end is {type(value).__name__}, not a table")
    epochs, ended_by, dice = (
        value.get(k) for k in ("epochs_completed", "ended_by", "best_val_dice")
    )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"run_end's epochs_completed is {epochs!r}, not a whole number of epochs")
    if ended_by is not None and not isinstance(ended_by, str):
        raise ValueError(f"run_end's ended_by is {ended_by!r}, not text or null")
    if dice is not None and (isinstance(dice, bool) or not isinstance(dice, int | float)):
        raise ValueError(
            f"run_end's best_val_dice is {dice!r}, not a number or null (nothing validated)"
        )
    return dict(value)
