"""Which series of a cohort folder a merge takes (`sliceseg.inference.merge`): the finished
series of the latest run's input, of its model and settings, from the input files it holds now;
the others by why they are left out (`LeftOut`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sliceseg.inference.attempts import failed_since_finished, read_unreadable
from sliceseg.inference.records import (
    finished_records,
    inputs_digest,
    same_run,
    unreadable_files,
)
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.identity import series_name_key

__all__ = ["LeftOut", "current_records", "unreadable_series"]


@dataclass
class LeftOut:
    """The series a merge leaves out, by why: not in the input, or another run's."""

    inputs: frozenset[str] | None  # `read_input_series`; None: an older folder, all count
    digests: dict[str, str] | None = None  # `read_input_digests`; None: not compared
    gone: set[str] = field(default_factory=set)  # their inputs were removed since
    outdated: list[str] = field(default_factory=list)  # another model's or settings'
    changed: list[str] = field(default_factory=list)  # of other files than the input's now

    def is_changed(self, name: str, record: dict[str, Any]) -> bool:
        """True (and kept) when the series' record is of other input files than the latest
        run's input holds (a file added, removed or rewritten since it was predicted)."""
        digest = None if self.digests is None else self.digests.get(name)
        if digest is None or digest == inputs_digest(record.get("inputs") or []):
            return False
        self.changed.append(name)
        return True

    def is_gone(self, name: str) -> bool:
        """True (and kept) when ``name`` is not in the input of the latest run."""
        if self.inputs is None or name in self.inputs:
            return False
        self.gone.add(name)
        return True

    def unfinished(self, done: set[str], unread: set[str]) -> tuple[str, ...]:
        """The series of the input neither ``done`` (finished, damaged or failed), unreadable
        (``unread``), another run's nor from input files changed since: not finished."""
        left_alone = {*self.outdated, *unread, *self.changed}
        return tuple(sorted((self.inputs or frozenset()) - done - left_alone, key=series_name_key))

    @property
    def gone_names(self) -> tuple[str, ...]:
        """The series not in the input, by name (a finished one may have failed since too)."""
        return tuple(sorted(self.gone, key=series_name_key))


def current_records(
    out: Path, run: dict[str, Any], left: LeftOut
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The finished series of the latest run's input, of the run ``cohort.json`` names (its
    model and settings: ``run``), that did not fail since (`failed_since_finished`: failed.csv
    lists them) and whose input files did not change since; the others' names go to ``left``."""
    stale = failed_since_finished(out)
    for name, record in finished_records(out):
        if left.is_gone(name) or name in stale or left.is_changed(name, record):
            continue
        if same_run(record, run):
            yield name, record
        else:
            left.outdated.append(name)


def unreadable_series(out: Path, done: set[str], left: LeftOut) -> dict[str, list[SkippedFile]]:
    """The series of the input (`write_unreadable`'s records) of which no file could be read,
    by name, with their files; not those finished or failed since, nor those not in the input
    (their record says nothing of this input)."""
    found = {}
    for record in read_unreadable(out):
        name = str(record.get("series"))
        if name not in done and (left.inputs is None or name in left.inputs):
            found[name] = unreadable_files(record)
    return found
