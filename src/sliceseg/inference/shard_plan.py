"""Every shard of one run splits the same list of series, however the input folder changed since.

Each shard plans the cohort from the folder it sees. When files were added or removed between
the start of one shard and another's, they would split different lists, and a series would be
predicted twice or never. ``OUT/input_series.json`` names the run that planned it (a SLURM
array's job ID, an srun step's, torchrun's run ID: `sliceseg.launchers.launch_id`) and its shard
count; a later shard of the same run whose list differs is refused in one line naming the
series added and removed. Shards given by hand outside such a launch count as one run while
another shard of the same count still holds its lock (`sliceseg.inference.shard_lock`).
The first shard of a run creates the plan (a hard link of a finished file: of shards starting
at once, one creates it and the others read and compare it), and while shards of one count
run, a shard of another count is refused (two counts split the series differently).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sliceseg.errors import ConfigError
from sliceseg.inference.records import (
    INPUT_SERIES_FILE,
    input_series_text,
    names_of,
    write_input_series,
)
from sliceseg.inference.shard_lock import create_whole, live_shards, lock_path, move_aside
from sliceseg.inference.shards import Shard
from sliceseg.io.files import atomic_write_text
from sliceseg.io.identity import series_name_key
from sliceseg.io.series_plan import CohortPlan
from sliceseg.wording import few_of

__all__ = ["check_shard_count", "write_shard_plan"]


def write_shard_plan(out: Path, plan: CohortPlan, shard: Shard, *, root: Path) -> str | None:
    """Write ``OUT/input_series.json`` (`input_series_text`) for ``shard``, or refuse it when
    an earlier shard of its run planned other series.

    A shard whose run has no plan yet creates it, atomically: of shards starting in the same
    moment, exactly one creates it, and the others compare theirs with it (another run's plan is
    moved aside first, by one of them). A run of every series writes it as always.

    Args:
        out: the output folder.
        plan: the series this shard planned from ``root``, in order.
        shard: this shard (`Shard.run` names its launch).
        root: the input folder, for the message.

    Returns:
        What the file held before ("" when there was none), or None when it was left as it was
        (for `sliceseg.inference.records.undo_run_record`).

    Raises:
        ConfigError: another shard of this run planned other series.

    Example:
        >>> write_shard_plan(Path("out"), plan_cohort(Path("cohort")), Shard(2, 4), root=Path("cohort"))
        ''
    """  # noqa: E501
    if shard.is_whole:
        return write_input_series(out, plan, shard=shard)
    text = input_series_text(plan, shard=shard)
    return _settled(out / INPUT_SERIES_FILE, text, names_of(plan.series), shard, root=root)


def _settled(
    path: Path, text: str, names: Sequence[str], shard: Shard, *, root: Path
) -> str | None:
    """Create ``path`` holding ``text`` (this shard's plan) unless a plan of this run is there,
    which it is compared with (`write_shard_plan`)."""
    previous = ""
    for _ in range(5):  # the plan was replaced meanwhile: look at the new one
        if create_whole(path, text):
            return previous
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            stored = _read(fd)
            if _is_this_runs(path.parent, stored, shard):
                _check(path, stored, names, shard, root=root)
                return _refreshed(path, text, stored)
            if move_aside(fd, path):  # an earlier run's: its place is this run's
                previous = stored
        finally:
            os.close(fd)
    raise ConfigError(f"{path}: the plan of this run keeps being replaced; run again.")


def _read(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _refreshed(path: Path, text: str, stored: str) -> str | None:
    """The same series as this run's plan: keep each one's `inputs_digest` as this shard found
    them (a requeued task after a series' files changed), as a run of every series does."""
    if text == stored:
        return None
    atomic_write_text(path, text)
    return stored


def _is_this_runs(out: Path, stored: str, shard: Shard) -> bool:
    """Whether the plan text ``stored`` is that of ``shard``'s run (same launch and count)."""
    data = _data(stored)
    return (
        isinstance(data.get("series"), list)
        and data.get("count") == shard.count
        and data.get("run", "") == shard.run
        and _same_run(out, shard)
    )


def _data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _check(path: Path, stored: str, names: Sequence[str], shard: Shard, *, root: Path) -> None:
    """Refuse ``shard`` when its run's plan ``stored`` names other series than ``names``."""
    before, now = set(map(str, _data(stored)["series"])), set(names)
    if before == now:
        return
    raise ConfigError(
        f"{path}: the input folder {root} changed since another shard of this "
        f"run ({_described(shard)}) planned it: {_changes(before, now)}; the {shard.count} "
        "shards of a run must split the same series, or some would be predicted twice and "
        f"others never. Put {root} back as it was and run shard {shard.index}/{shard.count} "
        "again, or let the running shards end, then run all of them again as a new run "
        "(finished series are skipped)."
    )


def check_shard_count(out: Path, shard: Shard) -> None:
    """Refuse ``shard`` while shards of another count run into ``out`` (their locks).

    Raises:
        ConfigError: naming both counts, a lock file of the others and what to do.
    """
    if shard.is_whole:
        return
    others = [s for s in live_shards(out) if s.count not in (1, shard.count)]
    if not others:
        return
    count = others[0].count
    running = [f"{s.index}/{s.count}" for s in others if s.count == count]
    raise ConfigError(
        f"{out}: shards of {count} are running into it (shard{'s' if running[1:] else ''} "
        f"{few_of(running, shown=5)}; lock file "
        f"{lock_path(out, others[0])}), and this is shard {shard.index}/{shard.count}: shards "
        f"of {count} and of {shard.count} split the series differently, so a series could be "
        f"taken twice at once. Give --shard K/{count} as they do, or let them end, then run "
        f"--shard K/{shard.count} for every K (finished series are skipped)."
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
