"""The end of a training run: the best model's profile, the settings file, the result; and
whether a run's folder shows that end (a run stopped while finishing is finished by a resume)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sliceseg._version import __version__
from sliceseg.io.files import atomic_write_text
from sliceseg.measure.familiarity import TrainingProfile
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle, save_bundle, saved_bundle
from sliceseg.training.distributed import parameter_checksum
from sliceseg.training.profile import bundle_profile
from sliceseg.training.session import Session
from sliceseg.training.state import TrainingState
from sliceseg.training.validation import no_roi_line

__all__ = ["TrainResult", "finish", "is_finished"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """Files and numbers of a finished training run (``best_epoch``: the epoch whose weights
    ``best_model`` holds)."""

    out_dir: Path
    final_model: Path
    best_model: Path
    history_csv: Path
    history_png: Path
    settings_json: Path
    epochs_completed: int
    best_val_dice: float
    history: pd.DataFrame = field(repr=False)
    best_epoch: int | None = None


def is_finished(checkpoint: Path, model_filename: str, epoch: int) -> bool:
    """Whether the run of ``checkpoint`` (after ``epoch``) was finished: the settings file
    beside it, written at a run's end, is of that epoch and not older than the checkpoint.

    A run stopped after its last checkpoint, while `finish` wrote (Ctrl-C, a full disk), has
    none, or an earlier run's: its resume then writes what is missing instead of being refused.
    """
    path = checkpoint.parent / f"{model_filename}_settings.json"
    try:
        written = json.loads(path.read_text())
        is_newer = path.stat().st_mtime >= checkpoint.stat().st_mtime
    except (OSError, ValueError):
        return False
    return is_newer and isinstance(written, dict) and written.get("epochs_completed") == epoch


def _profile(session: Session, best: Bundle, log: Log) -> TrainingProfile | None:
    """The training data's profile for the best model; None for a run of one training slice
    (two patients of one slice each), which has none to learn, and says so."""
    train = session.data.train
    if len(train) < 2:
        log(
            f"No training data profile in {session.path('best.pt').name}: it needs at least 2 "
            f"training slices, this run has {len(train)}; predict will not say which series "
            "are unlike the training data."
        )
        return None
    return bundle_profile(best, train, session.data.validation, divisor=session.divisor)


def _best_epoch(session: Session, state: TrainingState) -> float:
    """The epoch ``<name>_best.pt`` holds (rank 0 writes it); nan on the other ranks."""
    best_path = session.path("best.pt")
    if not session.context.is_main:
        return math.nan
    if state.best_val_dice is None or not best_path.exists():
        return float(state.epoch)  # `finish` saves the last epoch's model
    return float(load_bundle(best_path).metadata.epoch)


def _ended_by(state: TrainingState) -> str:
    """Why the run ended, in the settings file's words."""
    if state.budget_spent:
        return f"time budget: the next epoch would have passed {state.max_minutes:g} minutes"
    return f"planned epochs: {state.epoch} of {state.planned_epochs}"


def finish(session: Session, state: TrainingState, log: Log) -> TrainResult:
    """Write the settings (and a best model when nothing was validated); return the result."""
    context, epoch = session.context, state.epoch
    checksums = context.gather_floats(parameter_checksum(session.model))
    # only rank 0 validates and keeps the best; every rank returns (and the CLI prints) its Dice
    best = math.nan if state.best_val_dice is None else state.best_val_dice
    best = context.gather_floats(best)[0]
    best_epoch = int(context.gather_floats(_best_epoch(session, state))[0])
    context.barrier()
    best_path, settings_path = session.path("best.pt"), session.path("settings.json")
    if context.is_main:
        _write_best(session, state, log)
        settings = {
            "settings": session.config.to_dict(),
            "model": {
                "arch": session.metadata.arch,
                "hyperparameters": session.metadata.hyperparameters,
            },
            "roi_names": list(session.data.roi_names),
            "validation_series": session.metadata.to_dict()["validation_series"],
            "data_check_warnings": session.data.num_check_warnings,
            **_run_end(state),
            "elapsed_seconds": state.elapsed_seconds,
            "best_epoch": best_epoch,
            "world_size": context.world_size,
            "parameter_checksums": checksums,
            "sliceseg_version": __version__,
        }
        atomic_write_text(settings_path, json.dumps(settings, indent=2))
        log(f"Saved models, history and settings in {session.out_dir}/ (best: {best_path.name}).")
    return TrainResult(
        out_dir=session.out_dir,
        final_model=session.path(f"{epoch}.pt"),
        best_model=best_path,
        history_csv=session.path("history.csv"),
        history_png=session.path("history.png"),
        settings_json=settings_path,
        epochs_completed=epoch,
        best_val_dice=best,
        history=pd.DataFrame(list(state.history)),
        best_epoch=best_epoch,
    )


def _run_end(state: TrainingState) -> dict[str, Any]:
    """How the run ended, as its settings file and its best model (`ModelMetadata.run_end`)
    record it."""
    return {
        "epochs_completed": state.epoch,
        "ended_by": _ended_by(state),
        "best_val_dice": state.best_val_dice,
    }


def _write_best(session: Session, state: TrainingState, log: Log) -> None:
    """Write the best model with the run's end (the epochs it chose from) and the training
    data's profile, in one write; when nothing was validated, or a resumed folder lacks it,
    the last epoch's model is the best we know (an earlier run's best was removed when this
    run began)."""
    best_path, epoch = session.path("best.pt"), state.epoch
    if state.best_val_dice is None or not best_path.exists():
        best = saved_bundle(best_path, session.evaluated, session.metadata_at(epoch))
    else:
        best = load_bundle(best_path)
    if state.best_val_dice is None and len(session.data.validation):
        log(no_roi_line(best_path.name, epoch))
    ended = {**best.metadata.to_dict(), "run_end": _run_end(state)}
    profile = _profile(session, best, log)
    if profile is not None:
        ended["familiarity"] = profile.to_dict()
    save_bundle(best_path, best.model, ModelMetadata.from_dict(ended))
    if profile is not None:
        log(
            f"Stored the training data's profile in {best_path.name} ({profile.num_slices} "
            "slices): predict warns when a series is unlike it."
        )
