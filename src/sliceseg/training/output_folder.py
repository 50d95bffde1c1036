"""A new run's output folder: an earlier run's checkpoints there are refused, naming the resume
that continues them, or (with ``overwrite``) removed with its best model, settings and history,
so that every file of the run's name is this run's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from sliceseg.errors import ConfigError
from sliceseg.io.files import TEMP_PREFIX
from sliceseg.training.config import TrainConfig

__all__ = [
    "note_abandoned_checkpoints",
    "refuse_an_earlier_run",
    "remove_earlier_checkpoints",
    "remove_killed_writes",
]

Log = Callable[[str], None]


def _epoch_checkpoints(out: Path, name: str) -> list[Path]:
    """The ``<name>_<epoch>.pt`` files in ``out``, the earliest epoch first."""
    epochs = [p for p in out.glob(f"{name}_*.pt") if p.stem.removeprefix(f"{name}_").isdigit()]
    return sorted(epochs, key=lambda p: int(p.stem.removeprefix(f"{name}_")))


def refuse_an_earlier_run(config: TrainConfig) -> None:
    """Refuse a new run into a folder holding an earlier run's checkpoints unless
    ``overwrite``, naming the resume: a run that was killed, typed again, got only "pass
    --overwrite", which removes the checkpoints it could have gone on from."""
    out = Path(config.out_dir)
    epochs = _epoch_checkpoints(out, config.model_filename) if out.is_dir() else []
    if epochs and not config.overwrite:
        raise ConfigError(
            f"{out}: holds the checkpoints of an earlier run (the latest: {epochs[-1].name}); "
            f"continue it with `sliceseg train --resume {epochs[-1]}`, or choose another "
            "--out, or pass --overwrite to start over there (its checkpoints are removed)."
        )


def remove_earlier_checkpoints(out: Path, config: TrainConfig, log: Log) -> None:
    """A new run into a used folder (``--overwrite``) removes the model files an earlier run
    left there (``<name>_<epoch>.pt`` and ``<name>_best.pt``; never its ``--init-from`` model)
    and its settings and history files, saying so: a ``sliceseg_94.pt`` of yesterday's run
    beside today's ``sliceseg_84.pt`` reads as today's latest epoch, yesterday's best would
    stand for today's run, and its settings file for today's run stopped early."""
    name = config.model_filename
    start = Path(config.init_from).resolve() if config.init_from else None
    records = [out / f"{name}_{suffix}" for suffix in _RECORDS]
    earlier = [
        p for p in (*_epoch_checkpoints(out, name), *records) if p.exists() and p.resolve() != start
    ]
    for path in earlier:
        path.unlink()
    if earlier:
        names = ", ".join(p.name for p in earlier)
        log(f"Removed {len(earlier)} file(s) an earlier run left in {out}: {names}.")


_RECORDS = ("best.pt", "settings.json", "history.csv", "history.png")
"""What a run writes beside its checkpoints (`finish`, `write_history`) under its name."""


def note_abandoned_checkpoints(out: Path, name: str, epoch: int, log: Log) -> None:
    """Name the checkpoints of epochs after ``epoch`` that a resume from it abandons: they are
    kept (a resume from the wrong file loses nothing), but ``sliceseg_8.pt`` beside this run's
    last, ``sliceseg_3.pt``, read as this run's latest."""
    later = [p for p in _epoch_checkpoints(out, name) if int(p.stem.rsplit("_", 1)[1]) > epoch]
    if later:
        log(
            f"{', '.join(p.name for p in later)} in {out}: of the epochs after {epoch} that "
            "this resume abandons; kept, but not this run's (it replaces each one it reaches)."
        )


def remove_killed_writes(out: Path, *, before: float, log: Log) -> None:
    """Remove the temporary files (``.sliceseg-tmp.*``, `sliceseg.io.files.atomic_path`'s) that
    a run killed while writing left in ``out``, saying how many: a checkpoint's is as large as
    the model, and nothing else ever removed them. Only those last written before ``before``
    (this run's start, `time.time`), never one being written now."""
    removed = 0
    for path in out.glob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: not ours to count
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    if removed:
        log(
            f"Removed {removed} temporary file(s) ({TEMP_PREFIX}*) that a run killed while "
            f"writing left in {out}."
        )
