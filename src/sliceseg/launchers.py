"""What a launcher tells each process it starts: torchrun's ranks, a SLURM job array's task.

A launcher sets its variables together, so they are read all or none: a part of them is refused
(`LauncherError`, naming those set and those missing), since guessing the rest would run the
work twice or not at all. An empty variable counts as unset. Each command words the remedy for
itself (``train``, ``predict --shard auto``) from the error's ``found``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sliceseg.errors import LauncherError

__all__ = [
    "SLURM_ARRAY",
    "SPECIAL_STEPS",
    "TORCHRUN",
    "TorchrunRanks",
    "launch_id",
    "launcher_numbers",
    "listed",
    "local_world_size",
    "torchrun_ranks",
]

# What torchrun sets in every rank (LOCAL_RANK too), and sbatch --array in every task
TORCHRUN = ("RANK", "WORLD_SIZE")
SLURM_ARRAY = tuple(f"SLURM_ARRAY_TASK_{name}" for name in ("ID", "MIN", "MAX", "COUNT", "STEP"))
SPECIAL_STEPS = 0xFFFFFFF0  # SLURM step IDs from here on: batch, extern, interactive (not srun's)


@dataclass(frozen=True)
class TorchrunRanks:
    """Where torchrun put this process.

    Attributes:
        rank: global rank (RANK), 0 for the process that prints and writes.
        world_size: number of processes (WORLD_SIZE).
        local_rank: rank on this machine (LOCAL_RANK), which picks its GPU; 0 when unset, as
            when RANK and WORLD_SIZE are set by hand.
    """

    rank: int
    world_size: int
    local_rank: int = 0


def torchrun_ranks(environ: Mapping[str, str] | None = None) -> TorchrunRanks | None:
    """This process's ranks from torchrun's variables; None when not launched by torchrun.

    Args:
        environ: the environment to read (default ``os.environ``).

    Raises:
        LauncherError: only one of RANK and WORLD_SIZE is set, or a value is not a whole number.

    Example:
        >>> torchrun_ranks({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        TorchrunRanks(rank=1, world_size=2, local_rank=1)
    """
    env = os.environ if environ is None else environ
    found = launcher_numbers(TORCHRUN, env, launcher="torchrun")
    if found is None:
        return None
    rank, world_size = found
    local = launcher_numbers(("LOCAL_RANK",), env, launcher="torchrun")
    return TorchrunRanks(rank, world_size, local[0] if local else 0)


def launch_id(environ: Mapping[str, str] | None = None) -> str:
    """What the processes one launch started share, to tell its shards from another launch's:
    a SLURM job array's job ID (every task's, a requeued one's too), else an srun job step's,
    else torchrun's run ID (``--rdzv-id``; ``--standalone`` draws one); "" outside them.

    Example:
        >>> launch_id({"SLURM_ARRAY_JOB_ID": "812", "SLURM_JOB_ID": "815"}), launch_id({})
        ('SLURM array job 812', '')
    """
    env = os.environ if environ is None else environ
    step = env.get("SLURM_STEP_ID") or ""
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"SLURM array job {env['SLURM_ARRAY_JOB_ID']}"
    if step.isdigit() and int(step) < SPECIAL_STEPS and env.get("SLURM_JOB_ID"):
        return f"SLURM job step {env['SLURM_JOB_ID']}.{step}"
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchrun run {env['TORCHELASTIC_RUN_ID']}"
    return ""


def local_world_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The processes torchrun started on this machine (LOCAL_WORLD_SIZE); None when unset.

    Raises:
        LauncherError: the value is not a whole number ≥ 1.

    Example:
        >>> local_world_size({"LOCAL_WORLD_SIZE": "4"}), local_world_size({})
        (4, None)
    """
    env = os.environ if environ is None else environ
    found = launcher_numbers(("LOCAL_WORLD_SIZE",), env, launcher="torchrun")
    if found is None:
        return None
    if found[0] < 1:  # the machine's CPUs would be shared among no process
        raise LauncherError(
            f"LOCAL_WORLD_SIZE={env['LOCAL_WORLD_SIZE']!r} is not a whole number ≥ 1",
            "torchrun sets it to the processes it starts on this machine; launch with "
            "torchrun, or unset it.",
            names=("LOCAL_WORLD_SIZE",),
            given=("LOCAL_WORLD_SIZE",),
            missing=(),
        )
    return found[0]


def launcher_numbers(
    names: Sequence[str], environ: Mapping[str, str] | None = None, *, launcher: str
) -> tuple[int, ...] | None:
    """The variables ``names`` a launcher sets together, as whole numbers in their order.

    Args:
        names: the variables, e.g. `SLURM_ARRAY` or `TORCHRUN`.
        environ: the environment to read (default ``os.environ``).
        launcher: the launcher's name for the error's remedy ("torchrun", "sbatch --array").

    Returns:
        Their values, or None when none of them is set.

    Raises:
        LauncherError: some are set and others not, or one is not a whole number.

    Example:
        >>> launcher_numbers(TORCHRUN, {"RANK": "0", "WORLD_SIZE": "2"}, launcher="torchrun")
        (0, 2)
    """
    env = os.environ if environ is None else environ
    texts = {name: env.get(name) or None for name in names}
    given = tuple(name for name, text in texts.items() if text is not None)
    missing = tuple(name for name, text in texts.items() if text is None)
    numbers = []
    for name in given:
        try:
            numbers.append(int(texts[name] or ""))
        except ValueError:
            raise LauncherError(
                f"{name}={texts[name]!r} is not a whole number",
                f"{launcher} sets it to one; launch with {launcher}, or unset it.",
                names=tuple(names),
                given=given,
                missing=(),
            ) from None
    if given and missing:
        raise LauncherError(
            f"{listed(given)} set but {listed(missing)} not",
            f"{launcher} sets {listed(names, verb=False)} together; launch with {launcher}, or "
            f"unset {listed(given, verb=False)}.",
            names=tuple(names),
            given=given,
            missing=missing,
        )
    return tuple(numbers) if given else None


def listed(names: Sequence[str], *, verb: bool = True) -> str:
    """Names in a sentence: ``"RANK is"``, ``"A and B are"``, ``"A, B and C"`` (``verb`` False).

    Example:
        >>> listed(["A", "B", "C"], verb=False), listed(["RANK"])
        ('A, B and C', 'RANK is')
    """
    text = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{text} {'is' if len(names) == 1 else 'are'}" if verb else text
