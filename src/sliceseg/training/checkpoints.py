"""A run's checkpoints: state captured and saved, restored on resume, and what a stopped run says.

`capture_state` / `save_checkpoint` write ``<name>_<epoch>.pt`` (the weights, the
`TrainingState`, the history beside them); `restore` puts one back into a `Session`, and
`drop_abandoned_best` keeps the best model a resume's epochs can stand behind. A run stopped
by Ctrl-C or a full disk names the checkpoint it goes on from (`interrupted_line`,
`unwritable_error`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path

import pandas as pd
import torch

from sliceseg.errors import BundleError, UnwritableError
from sliceseg.io.files import atomic_path, signals_held
from sliceseg.io.tables import write_csv
from sliceseg.models.bundle import Bundle, load_bundle, save_bundle
from sliceseg.postprocess.cleanup import PostProcessing
from sliceseg.report.plots import plot_history
from sliceseg.training.config import TrainConfig
from sliceseg.training.output_folder import note_abandoned_checkpoints
from sliceseg.training.session import Log, Session
from sliceseg.training.state import HistoryRow, TrainingState
from sliceseg.training.steps import FROM_THE_START, ScheduleStart


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
