"""The training loop: named steps (set up, restore, train an epoch, validate, checkpoint) and
the recipe that runs them.

The recipe (`train`): plan the run (a fresh config, or a checkpoint's settings plus explicit
overrides) → set up (data, model, optimiser, loader) → restore (when resuming) → for each epoch:
train, validate when due, checkpoint when due, log → finish (best model, settings, history).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sliceseg.augment.transforms import augment_batch
from sliceseg.errors import ConfigError, UnwritableError
from sliceseg.io.output_folders import create_output_dir, refuse_used_output_dir
from sliceseg.models.bundle import Bundle, load_bundle
from sliceseg.postprocess.cleanup import PostProcessing
from sliceseg.progress_bars import shows_progress
from sliceseg.system import select_device
from sliceseg.training.budget import Budget, Clock
from sliceseg.training.checkpoints import (
    capture_state,
    drop_abandoned_best,
    fresh_state,
    interrupted_line,
    restore,
    save_checkpoint,
    unwritable_error,
    write_history,
)
from sliceseg.training.config import TrainConfig
from sliceseg.training.distributed import (
    DistributedContext,
    close_distributed,
    init_distributed,
)
from sliceseg.training.finish import TrainResult, finish, is_finished
from sliceseg.training.init_from import (
    check_dropout_fits,
    initial_state,
    plan_new_run,
    with_model_dropout,
)
from sliceseg.training.output_folder import (
    refuse_an_earlier_run,
    remove_earlier_checkpoints,
    remove_killed_writes,
)
from sliceseg.training.preview import draw_first_batch
from sliceseg.training.progress import (
    OnCheckpoint,
    ProgressEvent,
    print_flush,
    progress_line,
)
from sliceseg.training.run_data import load_training_data
from sliceseg.training.session import Session, set_up
from sliceseg.training.state import (
    HistoryRow,
    TrainingState,
    check_data_found,
    no_work_left,
    rescheduled,
    resume_config,
)
from sliceseg.training.steps import (
    FROM_THE_START,
    Augment,
    DiceCounter,
    EpochStats,
    ScheduleStart,
    learning_rate_at,
    optimizer_step,
    pooled_dice,
    pooled_losses,
    train_one_epoch,
)
from sliceseg.training.validation import validate_timed
from sliceseg.user_paths import user_path

__all__ = ["DiceCounter", "EpochStats", "TrainResult", "finish", "optimizer_step", "train"]

Log = Callable[[str], None]


def train(
    config: TrainConfig | None = None,
    *,
    resume: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    start: Bundle | None = None,
    log: Log = print_flush,
    on_checkpoint: OnCheckpoint | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    """Train a model on a labelled DICOM dataset and write models, history and settings.

    Args:
        config: every setting of a new run (None: the defaults, changed by ``overrides``);
            one from a model file (``init_from``) takes the file's network and settings
            where neither sets them (`sliceseg.training.init_from.plan_new_run`).
        resume: a checkpoint ``<name>_<epoch>.pt`` to continue: the same run, with its
            settings, planned epochs, learning-rate schedule and what is left of its time
            budget, writing beside the checkpoint. Do not pass ``config`` with it.
        overrides: settings given explicitly (e.g. ``{"epochs": 60}``); on a resume each one
            that differs from the checkpoint is applied and named in one log line. Settings
            that define the model or the split (arch, input_shape, seed, ...) cannot change.
        start: the ``config.init_from`` model when the caller has opened it already (with
            `sliceseg.training.init_from.starting_model`), so that it is read once; None opens
            it here.
        log: where progress lines go (printed and flushed by default).
        on_checkpoint: called at every print checkpoint (every ``print_checkpoint`` epochs,
            the first and the last) with a `ProgressEvent`, e.g. to draw live curves.
        clock: the clock (seconds) of the time budget and the learning rate's decay.

    Returns:
        Paths of the files written and the best validation Dice.

    Raises:
        SlicesegError: the data is unfit, a setting is invalid, the checkpoint cannot be
            resumed, or the output folder is in use.

    Example:
        >>> config = TrainConfig(data_dir="phantom/train", epochs=20, out_dir="model")
        >>> result = train(config)  # doctest: +SKIP
        >>> more = train(resume="model/sliceseg_20.pt", overrides={"epochs": 30})  # doctest: +SKIP
    """
    config, resumption, opened = plan_run(
        config, resume=resume, overrides=overrides or {}, start=start
    )
    if start is not None and config.init_from is None:
        raise ConfigError(
            "train(start=...) without config.init_from: set init_from to the file the model "
            "was opened from, or leave start out."
        )
    context = init_distributed(select_device(config.device))
    try:
        if not context.is_main:
            log, on_checkpoint = (lambda _line: None), None
        return _run(config, resumption, context, log, on_checkpoint, clock, start=opened)
    finally:
        close_distributed(context)


def plan_run(
    config: TrainConfig | None,
    *,
    resume: Path | str | None,
    overrides: Mapping[str, Any],
    start: Bundle | None = None,
) -> tuple[TrainConfig, Resumption | None, Bundle | None]:
    """Return the settings of the run, when resuming what to continue from, and the model file
    it goes on from (``init_from``, opened once, or the checkpoint; None for a fresh run).

    A run from a model file takes the file's network and settings unless given
    (`plan_new_run`; a resumed one its dropout rate, `with_model_dropout`).

    Raises:
        ConfigError: both ``config`` and ``resume`` given, a weights-only file, or an override
            that cannot apply to a resumed run.
        BundleError: the checkpoint or the ``init_from`` model cannot be read.
    """
    if resume is None:
        planned, start = plan_new_run(config, overrides, start=start)
        return planned, None, start
    if config is not None:
        raise ConfigError(
            "train(): give either config or resume=, not both; a resumed run keeps its "
            "checkpoint's settings, so pass the ones to change as overrides={...}."
        )
    resume = user_path(resume)
    checkpoint = load_bundle(resume)
    if checkpoint.training_state is None:
        raise ConfigError(
            f"{resume}: holds weights only (e.g. a *_best.pt); resume from a "
            "<name>_<epoch>.pt checkpoint."
        )
    state = TrainingState.from_dict(checkpoint.training_state, source=str(resume))
    settings = {**checkpoint.metadata.settings, "out_dir": str(resume.parent)}
    name = str(settings.get("model_filename", TrainConfig.model_filename))
    resumed, notes = resume_config(
        settings,
        state,
        overrides,
        source=str(resume),
        is_finished=is_finished(resume, name, state.epoch),
    )
    saved_rate = float(settings.get("learning_rate", resumed.learning_rate))
    state = rescheduled(state, resumed, learning_rate=saved_rate)
    check_data_found(resumed, overrides, source=str(resume))
    # a pyramid older than its dropout goes on without it
    resumed = with_model_dropout(resumed, checkpoint)
    trains = no_work_left(resumed, state, source=str(resume)) is None
    return resumed, Resumption(checkpoint, state, notes, trains=trains), checkpoint


@dataclass(frozen=True)
class Resumption:
    """A checkpoint to continue from: its weights, its state, and the settings changed;
    ``trains`` False: its epochs are done, the resume only finishes the run."""

    checkpoint: Bundle
    state: TrainingState
    notes: tuple[str, ...]
    trains: bool = True


def _run(
    config: TrainConfig,
    resumption: Resumption | None,
    context: DistributedContext,
    log: Log,
    on_checkpoint: OnCheckpoint | None,
    clock: Callable[[], float] = time.perf_counter,
    *,
    start: Bundle | None = None,
) -> TrainResult:
    started = time.time()
    if resumption is None and context.is_main:
        refuse_an_earlier_run(config)
        # a missing data folder and a used --out are said before the data is read, --out is
        # kept out of the data, and made only once the data is accepted (see below)
        config.data_source().refuse_output_inside(config.out_dir)
        refuse_used_output_dir(config.out_dir, overwrite=config.overwrite)
    context.barrier()
    torch.manual_seed(config.seed)
    # start: the checkpoint (the run's own spacing and normalisation, not re-derived) or the
    # init_from model, opened once by plan_run
    data = load_training_data(config, start, progress=context.is_main and shows_progress())
    session = set_up(config, context, data, log, start=start, resumed=resumption is not None)
    if resumption is None and start is not None and config.init_from is not None:  # fine-tuning
        session.model.load_state_dict(
            initial_state(start, session.metadata, source=config.init_from, network=session.model)
        )
        if session.averaged is not None:  # the average starts from the loaded weights
            session.averaged.restart(session.model)
        log(f"Starting from the weights of {config.init_from}.")
    if context.is_main:  # only once the data and start are accepted: a refusal leaves no folder
        if resumption is None:
            create_output_dir(Path(config.out_dir))
            remove_earlier_checkpoints(Path(config.out_dir), config, log)
        remove_killed_writes(Path(config.out_dir), before=started, log=log)
    if resumption is not None:
        state = _resumed_state(session, resumption, log)
    else:
        state = fresh_state(config)
        if context.is_main:  # the picture `sliceseg preview` draws
            draw_first_batch(session.data, config, path=session.path("first_batch.png"))
    return _train_and_finish(session, state, resumption, log, on_checkpoint, clock)


def _train_and_finish(
    session: Session,
    state: TrainingState,
    resumption: Resumption | None,
    log: Log,
    on_checkpoint: OnCheckpoint | None,
    clock: Callable[[], float],
) -> TrainResult:
    """Train the epochs left (none when a resume only finishes the run), then `finish`; a stop
    on the way (Ctrl-C, SIGTERM, a full disk) names the checkpoint to resume from."""
    resumed = None if resumption is None else resumption.checkpoint
    finishing = False  # the epochs are done and saved: `finish` writes the run's end
    try:
        if resumption is not None and session.context.is_main:
            # the checkpoint's epochs only: rows of epochs this resume abandons (or that a
            # run stopped while finishing had not written yet) would stand in the folder
            write_history(session.out_dir, session.config.model_filename, state.history)
        if resumption is None or resumption.trains:
            state = _run_epochs(session, state, log=log, on_checkpoint=on_checkpoint, now=clock)
        finishing = True
        return finish(session, state, log)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: say what is lost and where the run goes on from
        log(interrupted_line(session, resumed, finishing_after=state.epoch if finishing else None))
        raise
    except UnwritableError as error:  # a full disk: the remedy is a resume, not the same command
        raise unwritable_error(session, error, resumed) from error


def _resumed_state(session: Session, resumption: Resumption, log: Log) -> TrainingState:
    """Put a resumed run's weights, optimiser and random state back; return its state."""
    checkpoint = resumption.checkpoint
    check_dropout_fits(session.model, checkpoint, session.metadata, source=str(checkpoint.source))
    restore(session, checkpoint, resumption.state)
    for note in resumption.notes:
        log(note)
    return drop_abandoned_best(session, resumption.state, checkpoint, log)


def _run_epochs(
    session: Session,
    start: TrainingState,
    *,
    log: Log,
    on_checkpoint: OnCheckpoint | None,
    now: Callable[[], float] = time.perf_counter,
) -> TrainingState:
    """Train from ``start`` to the planned epoch or until the budget: each epoch train,
    validate when due, checkpoint when due, log. ``now`` is the clock (seconds) the budget and
    the learning rate's decay are measured with; the budget counts validation and checkpoints."""
    config, state, best = session.config, start, start.best_val_dice
    clock = Clock(start.elapsed_seconds, now=now)
    budget = Budget.from_dict(config.max_minutes, start.timings)
    planned = config.planned_epochs
    epochs = (
        itertools.count(start.epoch + 1) if planned is None else range(start.epoch + 1, planned + 1)
    )
    for epoch in epochs:
        began = clock.elapsed()
        row, _stats = train_epoch(session, epoch, clock, schedule=start.schedule)
        budget.training_s.append(row["elapsed_seconds"] - began)
        is_print, is_save = _due(session, epoch, is_last=epoch == planned)
        post: PostProcessing | None = None
        # validated before the stop decision, which then knows the validation's time
        if is_validated := is_print or is_save:  # a checkpoint carries what validation chose
            row, post, best = validate_timed(session, row, best, budget, clock)
        fits = budget.next_epoch_fits(clock.elapsed(), saves_now=is_save)
        stop = session.context.broadcast_flag(not fits)  # rank 0 decides for every rank
        is_print, is_save = _due(session, epoch, is_last=stop or epoch == planned)
        if is_save and not is_validated:  # the last epoch is always validated
            row, post, best = validate_timed(session, row, best, budget, clock)
        if is_print:
            report_progress(session, row, post, log=log, on_checkpoint=on_checkpoint)
        state = capture_state(
            session,
            epoch=epoch,
            history=(*state.history, row),
            best_val_dice=best,
            elapsed_seconds=clock.elapsed(),  # with this epoch's validation: a resume goes on
            budget_spent=stop,
            timings=budget.to_dict(),
            schedule=start.schedule,
        )
        if is_save:
            saving = clock.elapsed()
            save_checkpoint(session, state, post)
            budget.checkpoint_s.append(clock.elapsed() - saving)
        if stop:
            if epoch != planned:  # the plan's last epoch ends the run anyway: no stop to say
                log(budget.stop_line(epoch, clock.elapsed()))
            break
    return state


def _due(session: Session, epoch: int, *, is_last: bool) -> tuple[bool, bool]:
    """Whether this epoch prints progress, and whether it saves a checkpoint (rank 0 only)."""
    config, is_main = session.config, session.context.is_main
    is_print = is_main and _is_due(epoch, config.print_checkpoint, is_last=is_last, first=True)
    return is_print, is_main and _is_due(epoch, config.save_checkpoint, is_last=is_last)


def train_epoch(
    session: Session, epoch: int, clock: Clock, *, schedule: ScheduleStart = FROM_THE_START
) -> tuple[HistoryRow, EpochStats]:
    """Set the learning rate (its decay from ``schedule``), train one epoch, and return its
    history row (not yet validated)."""
    config, context = session.config, session.context
    lr = learning_rate_at(config, epoch, clock.elapsed(), start=schedule)
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    if session.sampler is not None:
        session.sampler.set_epoch(epoch)
    stats = train_one_epoch(
        session.network,
        session.loader,
        session.loss_fn,
        session.dice_loss_fn,
        session.optimizer,
        device=context.device,
        num_classes=session.data.num_classes,
        augment=_augmenter(session),
        scaler=session.scaler,
        show_progress=context.is_main and shows_progress(),
        description=f"epoch {epoch}/{config.planned_epochs or '…'}",
        after_step=session.after_step,
    )
    loss, dice_loss = pooled_losses(context.summed(stats.loss_sums()))  # every rank's slices
    row: HistoryRow = {
        "epoch": epoch,
        "loss": loss,
        "dice_loss": dice_loss,
        "train_dice": pooled_dice(context.summed(stats.counts)),  # every rank's pixels
        "val_dice": float("nan"),
        **{f"val_dice_{n}": float("nan") for n in session.data.roi_names},
        "lr": lr,
        "elapsed_seconds": clock.elapsed(),
    }
    return row, stats


def _augmenter(session: Session) -> Augment | None:
    params, generator = session.augment_params, session.generators["augment"]
    if params is None:
        return None
    return lambda images, labels: augment_batch(images, labels, params, generator=generator)


def report_progress(
    session: Session,
    row: HistoryRow,
    post: PostProcessing | None = None,
    *,
    log: Log,
    on_checkpoint: OnCheckpoint | None,
) -> None:
    """Log the manual's progress and validation lines (with ``post``, what validation chose)
    and tell ``on_checkpoint``."""
    epochs, names = session.config.planned_epochs, session.data.roi_names
    epoch, elapsed = int(row["epoch"]), row["elapsed_seconds"]
    log(progress_line(epoch, epochs, row["dice_loss"], row["train_dice"], elapsed))
    per_roi = {n: row[f"val_dice_{n}"] for n in names}
    if len(session.data.validation) and np.isfinite(row["val_dice"]):
        parts = [f"{n} {d:.3f}" for n, d in per_roi.items() if np.isfinite(d)]
        # else an ROI absent from validation vanishes from the line, the mean and the best
        # model's choice without a word
        unscored = [n for n, d in per_roi.items() if not np.isfinite(d)]
        if unscored:
            parts.append(f"not in the validation labels, not scored: {', '.join(unscored)}")
        log(f"Validation dice: mean {row['val_dice']:.3f} | " + " | ".join(parts))
    elif len(session.data.validation):
        log("Validation dice: none, the validation slices hold no ROI.")
    if post is not None:
        log(
            f"Post-processing chosen on validation: {post.describe(names)} | "
            f"area calibration: {post.calibration.describe(names)}"
        )
    if on_checkpoint is not None:
        on_checkpoint(
            ProgressEvent(
                epoch=epoch,
                epochs=epochs,
                dice_loss=row["dice_loss"],
                train_dice=row["train_dice"],
                val_dice=row["val_dice"],
                val_dice_per_roi=per_roi,
                learning_rate=row["lr"],
                elapsed_seconds=elapsed,
            )
        )


def _is_due(epoch: int, every: int, *, is_last: bool, first: bool = False) -> bool:
    return is_last or epoch % every == 0 or (first and epoch == 1)
