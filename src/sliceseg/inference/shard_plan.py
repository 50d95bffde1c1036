"""Every shard of one run splits the same list of series, however the input folder changed since.

Each shard plans the cohort from the folder it sees. When files were added or removed between
the start of one shard and another's, they would split different lists, and a series would be
predicted twice or never. ``OUT/input_series.json`` names the run that planned it (a SLURM
array's job ID, an srun step's, torchrun's run ID: `sliceseg.launchers.launch_id`) and its shard
count; a later shard of the same run whose list differs is refused in one line naming the
series added and removed. Shards given by hand outside such a launch count as one run while
another shard of the same count still holds its lock (`sliceseg.inference.shard_lock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sliceseg.errors import ConfigError
from sliceseg.inference.records import read_json
from sliceseg.inference.shard_lock import live_shards
from sliceseg.inference.shards import Shard
from sliceseg.io.identity import series_name_key
from sliceseg.wording import few_of

__all__ = ["check_shard_plan"]

_INPUT_SERIES = "input_series.json"


def check_shard_plan(out: Path, names: Sequence[str], shard: Shard, *, root: Path) -> None:
    """Refuse a shard whose planned series differ from those an earlier shard of its run planned.

    Args:
        out: the output folder (its ``input_series.json``, not yet rewritten by this shard).
        names: the series this shard planned from ``root``, in order.
        shard: this shard (`Shard.run` names its launch).
        root: the input folder, for the message.

    Raises:
        ConfigError: another shard of this run planned other series.

    Example:
        >>> check_shard_plan(Path("out"), ["p01", "p02"], Shard(2, 4, run="SLURM array job 7"),
        ...                  root=Path("cohort"))
    """
    stored = read_json(out / _INPUT_SERIES) or {}
    planned = stored.get("series")
    if shard.is_whole or not isinstance(planned, list) or stored.get("count") != shard.count:
        return
    if stored.get("run", "") != shard.run or not _same_run(out, shard):
        return
    before, now = set(map(str, planned)), set(names)
    if before == now:
        return
    raise ConfigError(
        f"{out / _INPUT_SERIES}: the input folder {root} changed since another shard of this "
        f"run ({_described(shard)}) planned it: {_changes(before, now)}; the {shard.count} "
        "shards of a run must split the same series, or some would be predicted twice and "
        f"others never. Put {root} back as it was and run shard {shard.index}/{shard.count} "
        "again, or let the running shards end, then run all of them again as a new run "
        "(finished series are skipped)."
    )


def _same_run(out: Path, shard: Shard) -> bool:
    """Whether the stored plan is this run's: a launch's shards share its ID; shards given by
    hand (no ID) are one run while another shard of theirs still runs."""
    if shard.run:
        return True
    return any(other.index != shard.index for other in live_shards(out, shard.count))


def _described(shard: Shard) -> str:
    return shard.run or f"shards of {shard.count} running now"


def _changes(before: set[str], now: set[str]) -> str:
    """E.g. ``"2 series added (p9, p10), 1 series removed (p03)"``, in the plan's order."""
    parts = [
        f"{len(found)} series {how} ({few_of(sorted(found, key=series_name_key), shown=10)})"
        for found, how in ((now - before, "added"), (before - now, "removed"))
        if found
    ]
    return ", ".join(parts)
