"""The records of a cohort's series that did not finish: failed, or no file of them readable.

A series that failed has ``OUT/failed/<name>.json`` with the reason, and one of which no file
could be read (every file damaged: skipped, not failed) has ``OUT/unreadable/<name>.json``
with its files and why, until a later run finishes it (or records the other); so a merge tells
both from a series not finished. A run writes them through `RunAttempts`, which keeps what
each file held before, so that a run ending on a user error (exit 2) puts them back. A
series whose latest attempt failed is to do again (`series_to_do`), even where an older
finished folder matches the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sliceseg.inference.records import SERIES_RECORD, RunRecord, is_done, read_json, series_dir
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import (
    atomic_write_bytes,
    atomic_write_text,
    clear_killed_writes,
    finished_outputs,
)
from sliceseg.io.identity import relative_to_input, series_name_key
from sliceseg.io.series_plan import PlannedSeries

__all__ = [
    "RunAttempts",
    "clear_killed_attempts",
    "failed_since_finished",
    "failure_path",
    "forget_attempts",
    "read_failures",
    "read_unreadable",
    "series_to_do",
    "unreadable_path",
    "write_failure",
    "write_unreadable",
]

_FAILED_DIR = "failed"
_UNREADABLE_DIR = "unreadable"


def failure_path(out: Path, name: str) -> Path:
    """Where a failed series' reason is kept: ``OUT/failed/<name>.json``."""
    return out / _FAILED_DIR / f"{name}.json"


def unreadable_path(out: Path, name: str) -> Path:
    """``OUT/unreadable/<name>.json``: the files of a series none of which could be read."""
    return out / _UNREADABLE_DIR / f"{name}.json"


def write_failure(out: Path, series: PlannedSeries, reason: str, *, root: Path) -> Path:
    """Keep why a series failed (one line, files named under the input folder ``root``), for
    ``failed.csv``; a later success removes it."""
    why = relative_to_input(reason, root)
    data = {"series": series.name, "slices": series.num_slices, "reason": why}
    unreadable_path(out, series.name).unlink(missing_ok=True)  # the latest attempt's record
    return atomic_write_text(failure_path(out, series.name), json.dumps(data) + "\n")


def write_unreadable(
    out: Path, series: PlannedSeries, skipped: Sequence[SkippedFile], *, root: Path
) -> Path:
    """Keep that no file of a series could be read, each file with why (one line of JSON),
    named under the input folder ``root``.

    Damaged files are skipped, not a failure; the record lets a later ``sliceseg merge`` name
    them and tell the series from one not finished. A later success (or failure) removes it.
    """
    shown = [f.relative_to_input(root) for f in skipped]
    files = [{"path": f.path.as_posix(), "reason": f.reason} for f in shown]
    data = {"series": series.name, "slices": series.num_slices, "skipped": files}
    failure_path(out, series.name).unlink(missing_ok=True)  # the latest attempt's record
    return atomic_write_text(unreadable_path(out, series.name), json.dumps(data) + "\n")


class RunAttempts:
    """The failure and unreadable records one run writes into ``out``, each file's earlier
    state (bytes and mtime, or absent) kept the first time the run touches it, for `undo`;
    made at the run's start, it removes what killed record writes left (`clear_killed_attempts`).

    Memory holds the earlier records of the series this run failed or found unreadable (as
    many as its own lists name), never the cohort's. One thread writes them (the run's main).

    Example:
        >>> attempts = RunAttempts(out, plan.root)
        >>> attempts.write_failure(series, "no PixelSpacing")
        >>> attempts.undo()  # OUT/failed/<name>.json as it was before the run
    """

    def __init__(self, out: Path, root: Path) -> None:
        self.out, self.root = out, root  # the output folder; the input folder, for names
        self._before: dict[Path, tuple[bytes, int] | None] = {}
        clear_killed_attempts(out)  # what an earlier run's record writes killed left

    def write_failure(self, series: PlannedSeries, reason: str) -> Path:
        """`write_failure`, the series' records kept first."""
        self._keep(series.name)
        return write_failure(self.out, series, reason, root=self.root)

    def write_unreadable(self, series: PlannedSeries, skipped: Sequence[SkippedFile]) -> Path:
        """`write_unreadable`, the series' records kept first."""
        self._keep(series.name)
        return write_unreadable(self.out, series, skipped, root=self.root)

    def _keep(self, name: str) -> None:
        for path in (failure_path(self.out, name), unreadable_path(self.out, name)):
            if path not in self._before:
                try:
                    self._before[path] = (path.read_bytes(), path.stat().st_mtime_ns)
                except FileNotFoundError:
                    self._before[path] = None

    def undo(self) -> None:
        """Put every record this run wrote or removed back as it was (an earlier run's, with
        its mtime: a merge compares it with the series' record), or remove it (none was)."""
        for path, before in self._before.items():
            if before is None:
                path.unlink(missing_ok=True)
                continue
            data, mtime_ns = before
            atomic_write_bytes(path, data)
            os.utime(path, ns=(mtime_ns, mtime_ns))
        for folder in (self.out / _FAILED_DIR, self.out / _UNREADABLE_DIR):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def forget_attempts(out: Path, name: str) -> None:
    """Remove a series' failure and unreadable records: it finished."""
    failure_path(out, name).unlink(missing_ok=True)
    unreadable_path(out, name).unlink(missing_ok=True)


def read_failures(out: Path) -> list[dict[str, Any]]:
    """Every failed series' record, by name (`series_name_key`)."""
    return _read_records(out / _FAILED_DIR)


def read_unreadable(out: Path) -> list[dict[str, Any]]:
    """Every record of a series of which no file could be read (`write_unreadable`), by name
    (`series_name_key`)."""
    return _read_records(out / _UNREADABLE_DIR)


def _read_records(folder: Path) -> list[dict[str, Any]]:
    paths = finished_outputs(folder, "*.json")
    found = [read_json(p) for p in sorted(paths, key=lambda p: series_name_key(p.stem))]
    return [f for f in found if f is not None]


def clear_killed_attempts(out: Path) -> None:
    """Remove the temporary files of record writes that a killed run left in ``OUT/failed/``
    and ``OUT/unreadable/`` (`clear_killed_writes`: never a live shard's); the readers skip
    them (`finished_outputs`), so they only took space."""
    for folder in (out / _FAILED_DIR, out / _UNREADABLE_DIR):
        clear_killed_writes(folder)


def failed_since_finished(out: Path) -> set[str]:
    """The series whose failure (or unreadable) record is newer than their finished folder's
    record: an older result (other inputs, another model or settings) whose redo failed or
    found no readable file; it is not merged."""
    found = set()
    folders = (out / _FAILED_DIR, out / _UNREADABLE_DIR)
    records = [p for folder in folders for p in finished_outputs(folder, "*.json")]
    for attempt in records:
        name = attempt.name.removesuffix(".json")
        try:
            attempt_ns = attempt.stat().st_mtime_ns
            finished_ns = (series_dir(out, name) / SERIES_RECORD).stat().st_mtime_ns
        except OSError:  # no finished folder (or no such record any more): nothing to hide
            continue
        if attempt_ns >= finished_ns:
            found.add(name)
    return found


def series_to_do(
    out: Path, mine: Sequence[PlannedSeries], record: RunRecord, root: Path
) -> list[PlannedSeries]:
    """The series of ``mine`` not done (`is_done`), and those whose redo failed since their
    folder was finished (`failed_since_finished`): that folder may match this run's settings
    again, but the merge lists the failure, not the folder, until a redo finishes."""
    stale = failed_since_finished(out)
    return [s for s in mine if s.name in stale or not is_done(out, s, record, root)]
