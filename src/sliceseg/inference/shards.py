"""Which series a process takes: ``--shard K/N`` (1-based), or ``auto`` from SLURM or torchrun.

Series are taken in order of their unique names (`sliceseg.io.series_plan`): shard K of N takes
the series at positions K-1, K-1+N, K-1+2N, ... of that sorted list, so every series is in
exactly one shard, the shards differ by at most one series, and N may exceed the number of
series (the extra shards have nothing to do). ``auto`` reads a SLURM job array
(``SLURM_ARRAY_TASK_ID`` with ``SLURM_ARRAY_TASK_MIN``, ``_MAX``, ``_COUNT`` and ``_STEP``,
which Slurm sets in every array task; an array of one task, ``--array=3``, runs the whole
cohort and says so), and inside it (or alone) torchrun's ``RANK`` and ``WORLD_SIZE``
(``LOCAL_RANK`` picks the GPU), else the tasks of a job step that ``srun -n N`` started
(``SLURM_PROCID`` of ``SLURM_STEP_NUM_TASKS``, where ``SLURM_STEP_ID`` is srun's: never in the
batch script itself, where they are the job's); with none, it runs everything as one shard.
A launcher's variables are read all or none by `sliceseg.launchers`: a part of them is
refused, since guessing the rest would run series twice or not at all (every rank would take
every series). The processes
torchrun starts on one machine (``LOCAL_WORLD_SIZE``) share its CPUs evenly
(`sliceseg.system.rank_cpus`, `sliceseg.system.rank_threads`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from sliceseg.errors import ConfigError, LauncherError
from sliceseg.launchers import (
    SLURM_ARRAY,
    SPECIAL_STEPS,
    launch_id,
    launcher_numbers,
    listed,
    torchrun_ranks,
)

__all__ = ["Shard", "parse_shard", "shard_device"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``.

    Attributes:
        index: 1..count.
        count: number of shards, ≥ 1.
        source: where it came from ("--shard", "SLURM", "torchrun", "srun" or "single").
        note: a line for the user where ``auto`` did what they may not have meant, or "".
        run: what the shards of one launch share (`sliceseg.launchers.launch_id`: a SLURM
            array's job ID, ...), or "": all shards of one run must split the same series.
    """

    index: int = 1
    count: int = 1
    source: str = "single"
    note: str = field(default="", repr=False, compare=False)
    run: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(
                f"--shard {self.index}/{self.count}: expected K/N with 1 ≤ K ≤ N (K counts from "
                "1); e.g. --shard 1/4 ... --shard 4/4."
            )

    @property
    def is_whole(self) -> bool:
        """True when this one process runs every series."""
        return self.count == 1

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's share of ``items`` (already in their sorted order).

        Example:
            >>> Shard(2, 3).take(["a", "b", "c", "d", "e"])
            ['b', 'e']
        """
        return list(items[self.index - 1 :: self.count])

    def describe(self) -> str:
        """E.g. ``"shard 2/4 (SLURM)"``."""
        return f"shard {self.index}/{self.count} ({self.source})"


def parse_shard(text: str | None, environ: Mapping[str, str] | None = None) -> Shard:
    """Read ``--shard``: ``K/N`` (1-based), ``auto`` (SLURM array, torchrun) or None (one shard).

    Raises:
        ConfigError: a malformed value, or SLURM / torchrun variables that are not numbers
            or only a part of those the launcher sets.

    Example:
        >>> parse_shard("2/4"), parse_shard("auto", {"RANK": "1", "WORLD_SIZE": "2"}).index
        (Shard(index=2, count=4, source='--shard'), 2)
    """
    env = os.environ if environ is None else environ
    if text is None:
        return _alone(env)
    if text == "auto":  # torchrun's ranks span the nodes where srun started one torchrun each
        shard = _combined(_from_slurm(env), _from_torchrun(env) or _from_srun(env))
        return replace(shard, run=launch_id(env))
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if found is None:
        raise ConfigError(
            f"--shard {text!r}: expected K/N (e.g. 1/4, K counting from 1) or 'auto' "
            "(from SLURM_ARRAY_TASK_ID or torchrun's RANK)."
        )
    return Shard(int(found[1]), int(found[2]), "--shard", run=launch_id(env))


def _alone(env: Mapping[str, str]) -> Shard:
    """No ``--shard``: every series, with a line when a launcher started this process as one
    of several (``srun -n 4`` without ``--shard auto``): each would take every series, and
    while one runs the others into the same folder are refused (its lock). Not split by itself:
    the tasks may well be given folders of their own."""
    try:
        found = _combined(_from_slurm(env), _from_torchrun(env) or _from_srun(env))
    except ConfigError:  # launcher variables in part: only --shard auto needs them
        return Shard()
    if found.is_whole:
        return Shard()
    return Shard(
        note=f"no --shard: {found.source} started this process as one of {found.count} "
        f"(--shard auto would make it shard {found.index}/{found.count}); it takes every "
        "series, and the others into the same --out are refused while it runs; to split the "
        "series among them, give --shard auto (then `sliceseg merge OUT`)."
    )


def _from_slurm(env: Mapping[str, str]) -> Shard | None:
    try:
        found = launcher_numbers(SLURM_ARRAY, env, launcher="sbatch --array")
    except LauncherError as error:
        raise _refused(error, "run it as a task of an sbatch --array job") from None
    if found is None:
        return None
    task, low, high, count, step = found
    step = max(step, 1)  # --array=0-10:2 runs 0, 2, ..., 10
    index = (task - low) // step + 1
    is_list = (high - low) // step + 1 != count  # --array=3,7: MIN..MAX
    if is_list or not 1 <= index <= count or (task - low) % step:
        tasks = f"--array={low}-{low + (count - 1) * step}{f':{step}' if step > 1 else ''}"
        why = (
            f" is one of a list of {count} tasks from {low} to {high}, not a range"
            if is_list
            else f" is not one of the {count} tasks of {tasks}"
        )
        raise ConfigError(
            f"--shard auto: SLURM_ARRAY_TASK_ID={task}{why} (a list such as --array=3,7 "
            "cannot say which shards they were); to retry, run the whole array again (finished "
            "series are skipped), or give --shard K/N."
        )
    return Shard(index, count, "SLURM", _one_task_note(task) if count == 1 else "")


def _one_task_note(task: int) -> str:
    """What ``--shard auto`` did in an array of one task (``--array=3``, the natural way to
    retry a task of an earlier array, whose size no variable tells)."""
    size = max(task + 1, 2)
    return (
        f"--shard auto: a SLURM array of one task ({task}): running the whole cohort as one "
        f"shard (finished series are skipped); to rerun only task {task} of an earlier array, "
        f"give --shard K/N with K = {task} - its first task + 1 and N its task count (e.g. "
        f"--shard {task + 1}/{size} for --array=0-{size - 1})."
    )


def _refused(error: LauncherError, how: str) -> ConfigError:
    """``--shard auto``'s words for a launcher's variables in part, or not numbers."""
    if not error.missing:
        return ConfigError(
            f"--shard auto: {error.found}; run it inside a SLURM job array or torchrun, or give "
            "--shard K/N."
        )
    return ConfigError(
        f"--shard auto: {error.found}: {how}, which sets {listed(error.names, verb=False)}, or "
        "give --shard K/N."
    )


def _combined(slurm: Shard | None, ranks: Shard | None) -> Shard:
    """One shard per (array task, rank): an array of multi-GPU nodes runs torchrun in each task,
    and every rank of a task must take its own series, not the task's all over again."""
    if slurm is None or ranks is None or ranks.is_whole:
        return slurm or ranks or Shard()
    index = (slurm.index - 1) * ranks.count + ranks.index
    return Shard(index, slurm.count * ranks.count, f"SLURM × {ranks.source}")


def _from_torchrun(env: Mapping[str, str]) -> Shard | None:
    try:
        ranks = torchrun_ranks(env)
    except LauncherError as error:
        raise _refused(error, "run it under torchrun") from None
    return None if ranks is None else Shard(ranks.rank + 1, ranks.world_size, "torchrun")


_SRUN_STEP = ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS")  # what srun sets in each task of a step


def _from_srun(env: Mapping[str, str]) -> Shard | None:
    """The task of a job step that ``srun -n N`` started (N > 1), or None: in a batch script
    (its batch step), ``salloc``'s shell or outside Slurm, where ``SLURM_PROCID`` is 0 and
    ``SLURM_NTASKS`` the job's, every process is alone."""
    step = env.get("SLURM_STEP_ID") or ""
    if not step.isdigit() or int(step) >= SPECIAL_STEPS:
        return None
    try:
        found = launcher_numbers(_SRUN_STEP, env, launcher="srun")
    except LauncherError as error:
        raise _refused(error, "run it as a task of srun") from None
    if found is None or found[1] <= 1:
        return None
    rank, tasks = found
    if not 0 <= rank < tasks:
        raise ConfigError(
            f"--shard auto: SLURM_PROCID={rank} is not one of the {tasks} tasks of the job step "
            f"(SLURM_STEP_NUM_TASKS); run it under srun as set, or give --shard K/N."
        )
    return Shard(rank + 1, tasks, "srun")


def shard_device(device: str, environ: Mapping[str, str] | None = None) -> str:
    """Under torchrun with CUDA, ``"auto"`` becomes ``cuda:LOCAL_RANK``; otherwise unchanged.

    Raises:
        LauncherError: with ``"auto"``, only one of torchrun's RANK and WORLD_SIZE is set, or
            one of them or LOCAL_RANK is not a whole number.
    """
    ranks = torchrun_ranks(environ) if device == "auto" else None
    if ranks is None:
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    return f"cuda:{ranks.local_rank % max(torch.cuda.device_count(), 1)}"
