"""The records that make a cohort run resumable: what made an output folder, and each series.

``OUT/cohort.json`` names the model file (its SHA-256) and the settings that shape the
results; a later run into the same folder with another model or other settings is refused with
one line naming the difference, unless ``--overwrite``. Each finished series has
``OUT/series/<name>/record.json``: the same model and settings, its input files (relative
path, size, mtime) and a summary for ``series.csv``. The series folder is written under a
temporary name and renamed last, so a series folder with its record is complete; a series
whose record names other inputs, another model or other settings is redone. A series that
failed has ``OUT/failed/<name>.json`` with the reason, and one of which no file could be read
(every file damaged: skipped, not failed) has ``OUT/unreadable/<name>.json`` with its files and
why, until a later run finishes it (or records the other); so a merge tells both from a series
not finished.
``OUT/input_series.json`` names the series of the latest run's input (every shard plans the
same), so that the merge leaves out the series whose inputs were removed since, and the files
its plan left out, so that every merge's report names them; it is kept
apart from ``cohort.json``, which is compared between runs: a changed input is no refusal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sliceseg._version import __version__
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import OVERWRITE, atomic_write_text, create_output_dir
from sliceseg.io.series_plan import CohortPlan, PlannedSeries
from sliceseg.measure.areas import SpacingFallback
from sliceseg.measure.tissue import FLAGS as TISSUE_FLAGS
from sliceseg.measure.tissue import TissueSettings
from sliceseg.report.cohort import SHOWN_LINES
from sliceseg.report.exports import DEFAULT_EXPORTS

__all__ = [
    "FORMAT_VERSION",
    "RunRecord",
    "RunSettings",
    "check_not_inputs",
    "check_out_dir",
    "file_sha256",
    "forget_attempts",
    "is_done",
    "read_input_series",
    "read_input_skipped",
    "read_series_record",
    "read_unreadable",
    "run_lock",
    "series_dir",
    "unreadable_files",
    "write_failure",
    "write_input_series",
    "write_unreadable",
]

FORMAT_VERSION = 1
RUN_RECORD = "cohort.json"
INPUT_SERIES = "input_series.json"
SERIES_RECORD = "record.json"
SERIES_DIR = "series"
FAILED_DIR = "failed"
UNREADABLE_DIR = "unreadable"

_SETTING_FLAGS: dict[str, str] = {
    "roi_names": "--labels",
    "tta": "--tta",
    "fallback.fov_mm": "--fov",
    "fallback.matrix": "--matrix",
    "fallback.pixels_only": "--pixels",
    **{f"tissue.{name}": flag for name, flag in TISSUE_FLAGS.items()},
    "keep_patient_info": "--keep-patient-info",
    "exports": "--export",
    "visuals": "--visuals",
    "report": "--no-report",
}
"""The `sliceseg predict` flag of each `RunSettings` field (dotted inside ``fallback`` and
``tissue``), so that a refusal names what a CLI user typed beside the Python name."""


@dataclass(frozen=True)
class RunSettings:
    """The settings that shape a cohort's results (not where or how fast it runs).

    Attributes:
        roi_names: the ROI names written into the tables.
        tta: test-time augmentation.
        fallback: spacing for files without PixelSpacing.
        tissue: CT thresholds of the muscle composition.
        keep_patient_info: patient columns in the tables.
        exports: formats written per series under ``exports/`` (default nifti and nrrd).
        visuals: "auto", "all" or "none" (see `sliceseg.inference.cohort.VISUALS`).
        report: write each series' ``report.html``.
    """

    roi_names: tuple[str, ...]
    tta: bool = False
    fallback: SpacingFallback = SpacingFallback()
    tissue: TissueSettings = TissueSettings()
    keep_patient_info: bool = False
    exports: tuple[str, ...] = tuple(DEFAULT_EXPORTS)
    visuals: str = "auto"
    report: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (tuples as lists), compared field by field between runs."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass(frozen=True)
class RunRecord:
    """What made an output folder: the model file (name, SHA-256) and the settings."""

    model_name: str
    model_sha256: str
    settings: RunSettings

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``cohort.json`` and each series' ``record.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "sliceseg": __version__,
            "model": {"file": self.model_name, "sha256": self.model_sha256},
            "settings": self.settings.to_dict(),
        }

    def difference(self, data: Mapping[str, Any]) -> str | None:
        """Say in words how a stored record differs from this one (None: they agree)."""
        model = data.get("model") or {}
        if model.get("sha256") != self.model_sha256:
            return (
                f"it was made with model {model.get('file')} (sha256 "
                f"{str(model.get('sha256'))[:12]}…), this run uses {self.model_name} (sha256 "
                f"{self.model_sha256[:12]}…)"
            )
        found = _first_difference(data.get("settings") or {}, self.settings.to_dict())
        if found is None:
            return None
        name, before, now = found
        flag = f"its settings differ in {_SETTING_FLAGS[name]}: " if name in _SETTING_FLAGS else ""
        return (
            f"{flag}it was made with {name}={json.dumps(before)}, this run asks "
            f"{name}={json.dumps(now)}"
        )


def _first_difference(
    stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str = ""
) -> tuple[str, Any, Any] | None:
    """The first setting (dotted name, stored value, current value) that differs, or None."""
    for name in sorted(set(stored) | set(current)):
        before, now = stored.get(name), current.get(name)
        if before == now:
            continue
        if isinstance(before, Mapping) and isinstance(now, Mapping):
            return _first_difference(before, now, f"{prefix}{name}.")
        return f"{prefix}{name}", before, now
    return None


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_not_inputs(out: Path, inputs: Path) -> None:
    """Refuse an output folder that is the input folder itself (one inside it is fine: it is
    not read as input), before a single header is read.

    Raises:
        ConfigError: ``out`` is ``inputs``.
    """
    if Path(out).resolve() == Path(inputs).resolve():
        raise ConfigError(
            f"{out}: --out is the DICOM folder itself, so the outputs would be read as inputs by "
            f"the next run; choose a folder of its own (e.g. {Path(out) / 'results'})."
        )


@contextlib.contextmanager
def run_lock(out: Path, *, whole: bool) -> Iterator[None]:
    """Hold a lock on the folder ``out`` while a run writes into it: a run of every series
    (``whole``) alone, the shards of a run together. No file is written for it, and the system
    releases it when the process ends (``kill -9`` too); where the file system has no such
    locks (some network file systems), runs are not guarded.

    Raises:
        ConfigError: another run holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    if out.exists() and not out.is_dir():  # `check_out_dir` says why
        yield
        return
    folder = os.open(create_output_dir(out), os.O_RDONLY)
    try:
        fcntl.flock(folder, (fcntl.LOCK_EX if whole else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(folder)
        raise ConfigError(
            f"{out}: another `sliceseg predict` is writing into this folder now (two runs would "
            "do the same series and undo each other's); wait for it to end and run again "
            "(finished series are skipped), or split the work with --shard K/N."
        ) from None
    except OSError:  # the file system has no such locks
        pass
    try:
        yield
    finally:
        os.close(folder)


def check_out_dir(out: Path, record: RunRecord, *, overwrite: bool) -> str | None:
    """Refuse an output folder made by another model or settings, or not by a cohort run.

    Then write ``cohort.json`` (same content from every shard).

    Returns:
        None when this call left ``cohort.json`` as it was; else what it held before ("" when
        there was none), for `undo_run_record`.

    Raises:
        ConfigError: the folder holds other files, or another model / other settings made it,
            and ``overwrite`` is False.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out.")
    stored = _read_json(out / RUN_RECORD)
    if not overwrite and stored is None and out.is_dir() and _has_visible_files(out):
        raise ConfigError(
            f"{out}: folder exists and is not empty; choose another --out or pass {OVERWRITE}."
        )
    why = None if stored is None else record.difference(stored)
    if why is not None and not overwrite:
        raise ConfigError(
            f"{out}: {why}; use another --out, or pass {OVERWRITE} to redo every series."
        )
    create_output_dir(out)
    if stored is None or why is not None:
        previous = "" if stored is None else (out / RUN_RECORD).read_text(encoding="utf-8")
        atomic_write_text(out / RUN_RECORD, json.dumps(record.to_dict(), indent=2) + "\n")
        return previous
    return None


def undo_run_record(
    out: Path, failed: Sequence[str], *, previous: str | None, previous_inputs: str | None = None
) -> None:
    """Take back what a run that did nothing wrote: its failure records, its ``cohort.json``
    (``previous``, from `check_out_dir`: the earlier one put back, or none) and its
    ``input_series.json`` (``previous_inputs``, from `write_input_series`, alike).

    So that a user error (exit 2) leaves an earlier run's outputs as they were.
    """
    for name in failed:
        failure_path(out, name).unlink(missing_ok=True)
    _put_back(out / RUN_RECORD, previous)
    _put_back(out / INPUT_SERIES, previous_inputs)
    for folder in (out / FAILED_DIR, out / UNREADABLE_DIR, out / SERIES_DIR):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _put_back(path: Path, previous: str | None) -> None:
    """Restore a file's earlier text ("": there was none, so remove it; None: untouched)."""
    if previous:
        atomic_write_text(path, previous)
    elif previous is not None:
        path.unlink(missing_ok=True)


def write_input_series(out: Path, plan: CohortPlan) -> str | None:
    """Keep what the run's input holds: ``OUT/input_series.json``, the names of its series and
    the files its plan left out (path under the input, why; the first `SHOWN_LINES`, all
    counted, as the report shows them: compact however many).

    Every shard plans the whole input, so every shard writes the same text (atomically; one
    line of JSON). The merge leaves out the finished series not named (`read_input_series`)
    and names the files in the report (`read_input_skipped`), after shards as unsharded.

    Returns:
        None when the file already held this; else what it held before ("" when there was
        none), for `undo_run_record`.
    """
    skipped = [
        {"path": _under(f.path, plan.root), "reason": f.reason.removeprefix(f"{f.path}: ")}
        for f in plan.skipped[:SHOWN_LINES]
    ]
    data = {"series": names_of(plan.series), "skipped": skipped, "skipped_count": len(plan.skipped)}
    text = json.dumps({"format_version": FORMAT_VERSION, **data}) + "\n"
    path = out / INPUT_SERIES
    try:
        previous = path.read_text(encoding="utf-8")
    except OSError:
        previous = ""
    if previous == text:
        return None
    atomic_write_text(path, text)
    return previous


def _under(path: Path, root: Path) -> str:
    """``path`` relative to the input folder ``root`` (as given when it is not under it)."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def read_input_series(out: Path) -> frozenset[str] | None:
    """The names in ``OUT/input_series.json``; None when absent or unreadable (a folder written
    before sliceseg kept it: every finished series counts, as then)."""
    data = _read_json(out / INPUT_SERIES)
    names = None if data is None else data.get("series")
    return frozenset(map(str, names)) if isinstance(names, list) else None


def read_input_skipped(out: Path) -> tuple[list[SkippedFile], int]:
    """The files the latest run's plan left out, as kept in ``OUT/input_series.json`` (the
    first `SHOWN_LINES`), and how many there were; none in a folder written before."""
    data = _read_json(out / INPUT_SERIES) or {}
    files = unreadable_files(data)
    count = data.get("skipped_count")
    return files, count if isinstance(count, int) and count >= len(files) else len(files)


def _has_visible_files(folder: Path) -> bool:
    return any(not p.name.startswith(".") for p in folder.iterdir())


def series_dir(out: Path, name: str) -> Path:
    """The finished folder of series ``name``: ``OUT/series/<name>``."""
    return out / SERIES_DIR / name


def failure_path(out: Path, name: str) -> Path:
    """Where a failed series' reason is kept: ``OUT/failed/<name>.json``."""
    return out / FAILED_DIR / f"{name}.json"


def read_series_record(out: Path, name: str) -> dict[str, Any] | None:
    """The record of a finished series, or None (not finished, or unreadable)."""
    return _read_json(series_dir(out, name) / SERIES_RECORD)


def is_done(out: Path, series: PlannedSeries, record: RunRecord, root: Path) -> bool:
    """True when the series' folder holds a record of this model, settings and input files."""
    stored = read_series_record(out, series.name)
    return (
        stored is not None
        and record.difference(stored) is None
        and stored.get("inputs") == series.inputs(root)
    )


def series_record(
    record: RunRecord, series: PlannedSeries, root: Path, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """A finished series' ``record.json`` content."""
    return {
        **record.to_dict(),
        "series": {"name": series.name, "slices": series.num_slices},
        "inputs": series.inputs(root),
        "summary": dict(summary),
    }


def write_failure(out: Path, series: PlannedSeries, reason: str) -> Path:
    """Keep why a series failed (one line), for ``failed.csv``; a later success removes it."""
    data = {"series": series.name, "slices": series.num_slices, "reason": reason}
    unreadable_path(out, series.name).unlink(missing_ok=True)  # the latest attempt's record
    return atomic_write_text(failure_path(out, series.name), json.dumps(data) + "\n")


def unreadable_path(out: Path, name: str) -> Path:
    """``OUT/unreadable/<name>.json``: the files of a series none of which could be read."""
    return out / UNREADABLE_DIR / f"{name}.json"


def write_unreadable(out: Path, series: PlannedSeries, skipped: Sequence[SkippedFile]) -> Path:
    """Keep that no file of a series could be read, each file with why (one line of JSON).

    Damaged files are skipped, not a failure; the record lets a later ``sliceseg merge`` name
    them and tell the series from one not finished. A later success (or failure) removes it.
    """
    files = [{"path": str(f.path), "reason": f.reason} for f in skipped]
    data = {"series": series.name, "slices": series.num_slices, "skipped": files}
    failure_path(out, series.name).unlink(missing_ok=True)  # the latest attempt's record
    return atomic_write_text(unreadable_path(out, series.name), json.dumps(data) + "\n")


def forget_attempts(out: Path, name: str) -> None:
    """Remove a series' failure and unreadable records: it finished."""
    failure_path(out, name).unlink(missing_ok=True)
    unreadable_path(out, name).unlink(missing_ok=True)


def read_failures(out: Path) -> list[dict[str, Any]]:
    """Every failed series' record, by name."""
    return _read_records(out / FAILED_DIR)


def read_unreadable(out: Path) -> list[dict[str, Any]]:
    """Every record of a series of which no file could be read (`write_unreadable`), by name."""
    return _read_records(out / UNREADABLE_DIR)


def _read_records(folder: Path) -> list[dict[str, Any]]:
    found = [_read_json(p) for p in sorted(folder.glob("*.json"))]
    return [f for f in found if f is not None]


def unreadable_files(record: Mapping[str, Any]) -> list[SkippedFile]:
    """The files of a record's ``skipped`` list (an unreadable series', or
    ``input_series.json``'s), each with why it was left out."""
    files = record.get("skipped")
    if not isinstance(files, list):
        return []
    return [
        SkippedFile(Path(str(f.get("path"))), str(f.get("reason")))
        for f in files
        if isinstance(f, dict)
    ]


def failed_since_finished(out: Path) -> set[str]:
    """The series whose failure (or unreadable) record is newer than their finished folder's
    record: an older result (other inputs, another model or settings) whose redo failed or
    found no readable file; it is not merged."""
    found = set()
    records = [*(out / FAILED_DIR).glob("*.json"), *(out / UNREADABLE_DIR).glob("*.json")]
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


def read_run_record(out: Path) -> dict[str, Any] | None:
    """``OUT/cohort.json``: the model and settings of the folder's latest run (None: absent)."""
    return _read_json(out / RUN_RECORD)


def same_run(record: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
    """True when a series' record names the model (SHA-256) and settings of ``run``."""
    model, current = record.get("model") or {}, run.get("model") or {}
    return model.get("sha256") == current.get("sha256") and record.get("settings") == run.get(
        "settings"
    )


def finished_series(out: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every finished series folder with its record, by name."""
    return list(finished_records(out))


def finished_records(out: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every finished series folder with its record, by name, read one at a time."""
    folders = sorted(p.name for p in (out / SERIES_DIR).glob("*") if not p.name.startswith("."))
    for name in folders:
        data = _read_json(out / SERIES_DIR / name / SERIES_RECORD)
        if data is not None:
            yield name, data


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def names_of(series: Sequence[PlannedSeries]) -> list[str]:
    """The names of planned series, in order."""
    return [s.name for s in series]
