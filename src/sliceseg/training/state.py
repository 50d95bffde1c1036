"""The resumable state of a training run: one frozen, versioned record stored in checkpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sliceseg.errors import BundleError, ConfigError
from sliceseg.training.config import TrainConfig
from sliceseg.training.progress import format_elapsed
from sliceseg.training.setting_kinds import named_setting
from sliceseg.training.steps import FROM_THE_START, ScheduleStart

TRAINING_STATE_VERSION = 1

# Settings that define the model, the data split or where the run writes: a resumed run keeps
# them, since changing one would make a different run, not a continued one.
FIXED_ON_RESUME: tuple[str, ...] = (
    "arch",
    "input_shape",
    "target_spacing_mm",
    "hyperparameters",
    "num_labels",
    "roi_names",
    "seed",
    "validation_fraction",
    "validation_split",
    "view",
    "normalisation",
    "init_from",
    "context_slices",
    "ema_decay",
    "model_filename",
    "out_dir",
)

HistoryRow = dict[str, float]


@dataclass(frozen=True)
class TrainingState:
    """Everything a checkpoint needs beyond the weights to continue the same run.

    Attributes:
        epoch: epochs completed.
        planned_epochs: epochs the run is meant to reach (its ``epochs`` setting); None: the
            run trains until its time budget.
        max_minutes: the run's wall-clock budget in minutes, or None; a resumed run gets what
            is left of it (``max_minutes - elapsed_seconds / 60``), not a fresh budget.
        elapsed_seconds: training time spent so far (time between a crash and the resume is
            not counted).
        best_val_dice: best mean validation Dice so far, or None before any validation.
        history: one row per completed epoch (the history CSV's columns), epoch 1 first.
        optimizer: ``optimizer.state_dict()``.
        scaler: ``GradScaler.state_dict()`` when training with mixed precision, else None.
        rng: random-generator states by name (``"torch"``, ``"shuffle"``, ``"augment"``, and
            ``"cuda"`` on a GPU), as uint8 tensors.
        averaging: with ``ema_decay``, the weights as trained (``"trained"``: the checkpoint's
            model holds their average) and the average's ``"updates"``; else None.
        budget_spent: the run stopped after this epoch because the next one would pass its
            time budget (False in checkpoints from before it was kept).
        timings: recent seconds of each step of an epoch (`Budget.to_dict`), so that a
            resumed run's budget still counts its validation; empty in older checkpoints.
        schedule: where the learning rate's decay starts (`rescheduled`); the run's start in
            older checkpoints.

    Example:
        >>> state = TrainingState(epoch=2, planned_epochs=40, max_minutes=None,
        ...     elapsed_seconds=3.5, best_val_dice=0.5, history=(), optimizer={})
        >>> TrainingState.from_dict(state.to_dict()) == state
        True
    """

    epoch: int
    planned_epochs: int | None
    max_minutes: float | None
    elapsed_seconds: float
    best_val_dice: float | None
    history: tuple[HistoryRow, ...]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None = None
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    averaging: dict[str, Any] | None = None
    budget_spent: bool = False
    schedule: ScheduleStart = FROM_THE_START
    timings: dict[str, list[float]] = field(default_factory=dict)

    @property
    def remaining_seconds(self) -> float | None:
        """Seconds left of the budget (never below 0), or None without a budget."""
        if self.max_minutes is None:
            return None
        return max(60.0 * self.max_minutes - self.elapsed_seconds, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return plain data (numbers, lists, dicts, tensors) that ``weights_only`` loads."""
        return {
            "format_version": TRAINING_STATE_VERSION,
            "epoch": int(self.epoch),
            "planned_epochs": None if self.planned_epochs is None else int(self.planned_epochs),
            "max_minutes": None if self.max_minutes is None else float(self.max_minutes),
            "elapsed_seconds": float(self.elapsed_seconds),
            "best_val_dice": None if self.best_val_dice is None else float(self.best_val_dice),
            "history": [dict(row) for row in self.history],
            "optimizer": self.optimizer,
            "scaler": self.scaler,
            "rng": dict(self.rng),
            "averaging": self.averaging,
            "budget_spent": bool(self.budget_spent),
            "timings": {
                name: [float(s) for s in seconds] for name, seconds in self.timings.items()
            },
            "schedule": dataclasses.asdict(self.schedule),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "checkpoint") -> TrainingState:
        """Rebuild the state from :meth:`to_dict` output.

        Args:
            data: the checkpoint's ``training_state`` entry.
            source: the file it came from, for messages.

        Raises:
            BundleError: the state was written by a newer sliceseg, or by one before resumable
                states were versioned, or an entry is missing.
        """
        version = data.get("format_version")
        if version is None:
            raise BundleError(
                f"{source}: its training state predates versioned checkpoints; it cannot be "
                "resumed, start a new run (its weights still load for prediction)."
            )
        if int(version) > TRAINING_STATE_VERSION:
            raise BundleError(
                f"{source}: training state format {version} is newer than this sliceseg reads "
                f"({TRAINING_STATE_VERSION}); upgrade sliceseg to resume it."
            )
        try:
            return cls._from_version_1(data)
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(
                f"{source}: training state is incomplete ({type(error).__name__}: {error}); "
                "resume from another checkpoint."
            ) from error

    @classmethod
    def _from_version_1(cls, data: Mapping[str, Any]) -> TrainingState:
        best = data["best_val_dice"]
        budget = data["max_minutes"]
        return cls(
            epoch=int(data["epoch"]),
            planned_epochs=None if data["planned_epochs"] is None else int(data["planned_epochs"]),
            max_minutes=None if budget is None else float(budget),
            elapsed_seconds=float(data["elapsed_seconds"]),
            best_val_dice=None if best is None else float(best),
            history=tuple(dict(row) for row in data["history"]),
            optimizer=dict(data["optimizer"]),
            scaler=None if data.get("scaler") is None else dict(data["scaler"]),
            rng=dict(data.get("rng", {})),
            averaging=None if data.get("averaging") is None else dict(data["averaging"]),
            budget_spent=bool(data.get("budget_spent", False)),
            timings={name: list(seconds) for name, seconds in data.get("timings", {}).items()},
            schedule=ScheduleStart(**data.get("schedule", {})),  # older files: from the start
        )


def resume_config(
    settings: Mapping[str, Any],
    state: TrainingState,
    overrides: Mapping[str, Any],
    *,
    source: str = "checkpoint",
    is_finished: bool = True,
) -> tuple[TrainConfig, tuple[str, ...]]:
    """Return the settings a resumed run continues with, and the lines to log about it.

    The checkpoint's settings are kept, with its planned epochs and budget; each override that
    differs from them is applied and named in one line. A run with no epoch left to train
    (`no_work_left`) is refused, unless it was stopped while writing its end (not
    ``is_finished``, `sliceseg.training.finish.is_finished`): the resume then only finishes it.

    Args:
        settings: the checkpoint's ``TrainConfig.to_dict()`` (its ``out_dir`` set to the
            checkpoint's folder).
        state: the checkpoint's training state.
        overrides: settings the user gave explicitly (command-line flags, a notebook's dict).
        source: the checkpoint's path, for messages.
        is_finished: the run wrote its end (settings file, the best model's profile).

    Returns:
        The configuration, and log lines ("Resuming from ...", then the overrides if any).

    Raises:
        ConfigError: an override of a setting in ``FIXED_ON_RESUME``, or nothing left to do
            (the planned epochs are done, or the budget is spent) in a finished run.

    Example:
        >>> settings = TrainConfig(data_dir="data/train", epochs=40).to_dict()
        >>> state = TrainingState(epoch=10, planned_epochs=40, max_minutes=None,
        ...     elapsed_seconds=60.0, best_val_dice=None, history=(), optimizer={})
        >>> config, notes = resume_config(settings, state, {"epochs": 60, "batch_size": 4})
        >>> notes[-1]
        "Overriding the checkpoint's settings as given: epochs 40 → 60."
    """
    saved = TrainConfig.from_dict(
        {
            "ema_decay": 0.0,  # a checkpoint from before the setting trained without an average
            **settings,
            "epochs": state.planned_epochs,
            "max_minutes": state.max_minutes,
        }
    )
    config = saved.with_settings(overrides)
    changed = [name for name in overrides if getattr(config, name) != getattr(saved, name)]
    _refuse_fixed_changes(changed, config, saved, source=source)
    refusal = no_work_left(config, state, source=source)
    # a plan changed with the resume is the user's to make fit, not a run to finish
    if refusal is not None and (is_finished or {"epochs", "max_minutes"} & set(changed)):
        raise ConfigError(refusal)
    notes = [
        _resume_line(config, state, source) if refusal is None else _finishing_line(state, source)
    ]
    if changed:
        parts = [f"{n} {_shown(getattr(saved, n))} → {_shown(getattr(config, n))}" for n in changed]
        notes.append(f"Overriding the checkpoint's settings as given: {', '.join(parts)}.")
    return config, tuple(notes)


def rescheduled(
    state: TrainingState, config: TrainConfig, *, learning_rate: float
) -> TrainingState:
    """The state a resume under ``config`` goes on from: when it changes the planned epochs or
    the budget, the learning rate's decay starts anew here, from the rate the last epoch
    trained with, and decays to 0 over what is left of the new plan; the same plan goes on
    with the same schedule. ``learning_rate``: the checkpoint's (the history's rates are
    shares of it; a --learning-rate given with the resume scales the rest).

    A larger budget made ``lr·(1 − elapsed/budget)^0.9`` jump back up at the resume.

    Example:
        >>> state = TrainingState(epoch=5, planned_epochs=None, max_minutes=5.0,
        ...     elapsed_seconds=300.0, best_val_dice=None, history=({"lr": 0.5},), optimizer={})
        >>> rescheduled(state, TrainConfig(max_minutes=10.0), learning_rate=1.0).schedule
        ScheduleStart(epoch=5, elapsed_seconds=300.0, scale=0.5)
    """
    plan = (config.planned_epochs, config.max_minutes)
    if plan == (state.planned_epochs, state.max_minutes) or not state.history:
        return state
    scale = float(state.history[-1]["lr"]) / learning_rate
    start = ScheduleStart(state.epoch, state.elapsed_seconds, scale)
    return dataclasses.replace(state, schedule=start)


_DATA_FLAGS = {"data_dir": "DATA", "images_dir": "--images DIR", "labels_dir": "--labels DIR"}


def check_data_found(config: TrainConfig, overrides: Mapping[str, Any], *, source: str) -> None:
    """Refuse a resumed run whose data folders, as the checkpoint gives them, are not found.

    The checkpoint keeps them as typed when the run started (``data/train``, relative to the
    folder it started in), so a resume from elsewhere read "data/train/dicoms: DICOM folder
    does not exist" without saying where the path came from or how to give it.

    Raises:
        ConfigError: a data folder of the checkpoint, not given again, does not exist.
    """
    for name, flag in _DATA_FLAGS.items():
        folder = getattr(config, name)
        if folder is None or name in overrides or Path(folder).exists():
            continue
        raise ConfigError(
            f"{source}: its run read {name} {folder!r} (as typed when it started), not found "
            f"from {Path.cwd()}; resume from the folder the run started in, or give it again: "
            f"sliceseg train {flag} --resume {source}."
        )


def _refuse_fixed_changes(
    changed: list[str], config: TrainConfig, saved: TrainConfig, *, source: str
) -> None:
    """Refuse a change, among the ``changed`` settings, of one in ``FIXED_ON_RESUME`` (a path
    written otherwise but naming the same folder is no change).

    Raises:
        ConfigError: names the setting, the checkpoint's value and the one given.
    """
    for name in changed:
        if name in FIXED_ON_RESUME and not _same_path(name, config, saved):
            raise ConfigError(
                f"{named_setting(name)} cannot change when resuming {source} (checkpoint: "
                f"{getattr(saved, name)!r}, given: {getattr(config, name)!r}); start a new run "
                "in another --out folder instead."
            )


def _same_path(name: str, a: TrainConfig, b: TrainConfig) -> bool:
    if name != "out_dir":
        return False
    return Path(a.out_dir).resolve() == Path(b.out_dir).resolve()


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def no_work_left(config: TrainConfig, state: TrainingState, *, source: str) -> str | None:
    """Why a resume of ``state`` under ``config`` has no epoch to train (a refusal's text), or
    None: the planned epochs are done, or the run stopped at (or spent) the same budget."""
    planned = config.planned_epochs
    if planned is not None and planned <= state.epoch:
        return (
            f"{source}: the run already completed {state.epoch} of {planned} planned "
            f"epochs; give --epochs above {state.epoch} to train longer."
        )
    budget = config.max_minutes
    is_same_budget = budget is not None and budget <= (state.max_minutes or 0.0)
    if state.budget_spent and is_same_budget:
        return (
            f"{source}: the run already stopped at its {budget:g}-minute budget after epoch "
            f"{state.epoch} ({format_elapsed(state.elapsed_seconds)}: the next epoch would have "
            "passed it), so it is finished; give a larger --max-minutes to train longer."
        )
    if budget is not None and state.elapsed_seconds >= 60.0 * budget:
        return (
            f"{source}: the run already spent its {budget:g}-minute budget "
            f"({format_elapsed(state.elapsed_seconds)}); give a larger --max-minutes."
        )
    return None


def _finishing_line(state: TrainingState, source: str) -> str:
    """What a resume of a run stopped while writing its end (after its last epoch) says."""
    return (
        f"Finishing the run of {source}: its {state.epoch} planned epochs are trained; "
        "writing what it did not (the settings file, the best model's profile)."
        if state.planned_epochs == state.epoch
        else f"Finishing the run of {source}: it stopped at its budget after epoch "
        f"{state.epoch}; writing what it did not (the settings file, the best model's profile)."
    )


def _resume_line(config: TrainConfig, state: TrainingState, source: str) -> str:
    planned = config.planned_epochs
    line = f"Resuming from {source} after epoch {state.epoch}" + (
        "" if planned is None else f" of {planned}"
    )
    if config.max_minutes is not None:
        left = 60.0 * config.max_minutes - state.elapsed_seconds
        line += f", {format_elapsed(left)} left of the {config.max_minutes:g}-minute budget"
    return line + "."
