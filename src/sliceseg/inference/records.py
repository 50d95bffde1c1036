"""The records that make a cohort run resumable: what made an output folder, and each series.

``OUT/cohort.json`` names the model file (its SHA-256) and the settings that shape the
results; a later run into the same folder with another model or other settings is refused with
one line naming the difference, unless ``--overwrite``. Each finished series has
``OUT/series/<name>/record.json``: the same model and settings, its input files (relative
path, size, mtime) and a summary for ``series.csv``. The series folder is written under a
temporary name and renamed last, so a series folder with its record is complete; a series
whose record names other inputs, another model or other settings is redone. The series that
failed or had no readable file are recorded apart (`sliceseg.inference.attempts`).
``OUT/input_series.json`` names the series of the latest run's input (every shard plans the
same), so that the merge leaves out the series whose inputs were removed since, a checksum of
each one's files, so that the merge leaves out a finished series whose files changed since (its
areas are of the old files), and the files its plan left out, so that every merge's report
names them; it is kept
apart from ``cohort.json``, which is compared between runs: a changed input is no refusal.
Every record names an input file by its path under the input folder (`relative_to_input`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sliceseg._version import __version__
from sliceseg.errors import ConfigError
from sliceseg.inference.shards import Shard
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import atomic_write_text, finished_outputs
from sliceseg.io.identity import relative_to_input, series_name_key
from sliceseg.io.output_folders import create_output_dir
from sliceseg.io.roi_values import ROI_NAMES_FLAG
from sliceseg.io.series_plan import CohortPlan, PlannedSeries
from sliceseg.measure.spacing import SpacingFallback
from sliceseg.measure.summary_rows import area_column
from sliceseg.measure.tissue import FLAGS as TISSUE_FLAGS
from sliceseg.measure.tissue import TissueSettings
from sliceseg.report.cohort import SHOWN_LINES
from sliceseg.report.exports import DEFAULT_EXPORTS

__all__ = [
    "FORMAT_VERSION",
    "INPUT_SERIES_FILE",
    "RunRecord",
    "RunSettings",
    "check_not_inputs",
    "damaged_tables",
    "input_series_text",
    "inputs_digest",
    "is_done",
    "read_input_digests",
    "read_input_series",
    "read_input_skipped",
    "read_json",
    "read_series_record",
    "run_lock",
    "series_dir",
    "undo_run_record",
    "unreadable_files",
    "write_input_series",
]

FORMAT_VERSION = 1
RUN_RECORD = "cohort.json"
INPUT_SERIES_FILE = "input_series.json"
SERIES_RECORD = "record.json"
_SERIES_DIR = "series"

_SETTING_FLAGS: dict[str, str] = {
    "roi_names": ROI_NAMES_FLAG,
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


def check_not_inputs(out: Path, inputs: Path) -> None:
    """Refuse an output folder that is the input folder itself or holds it (a run replaces each
    ``OUT/series/<name>`` whole: ``--out study`` deleted ``study/series``), before a single
    header is read; one inside the input is fine (it is not read as input).

    Raises:
        ConfigError: ``out`` is ``inputs``, or ``inputs`` is inside ``out``.
    """
    found, holder = Path(inputs).resolve(), Path(out).resolve()
    if found == holder:
        raise ConfigError(
            f"{out}: --out is the DICOM folder itself, so the outputs would be read as inputs by "
            f"the next run; choose a folder of its own (e.g. {Path(out) / 'results'})."
        )
    if found.is_relative_to(holder):
        raise ConfigError(
            f"{inputs}: the DICOM folder is inside --out {out}, where a run replaces each "
            "series' folder whole (its DICOMs would be deleted); choose an --out outside it."
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
    if out.exists() and not out.is_dir():  # `cohort_record.check_out_dir` says why
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


def undo_run_record(out: Path, *, previous: str | None, previous_inputs: str | None = None) -> None:
    """Take back the folder records of a run that did nothing: its ``cohort.json``
    (``previous``, from `sliceseg.inference.cohort_record.check_out_dir`: the earlier one put
    back, or none) and its ``input_series.json`` (``previous_inputs``, from
    `write_input_series`, alike).

    So that a user error (exit 2) leaves an earlier run's outputs as they were (its series'
    records: `sliceseg.inference.attempts.RunAttempts.undo`).
    """
    _put_back(out / RUN_RECORD, previous)
    _put_back(out / INPUT_SERIES_FILE, previous_inputs)
    series = out / _SERIES_DIR
    if series.is_dir() and not any(series.iterdir()):
        series.rmdir()


def _put_back(path: Path, previous: str | None) -> None:
    """Restore a file's earlier text ("": there was none, so remove it; None: untouched)."""
    if previous:
        atomic_write_text(path, previous)
    elif previous is not None:
        path.unlink(missing_ok=True)


def write_input_series(out: Path, plan: CohortPlan, *, shard: Shard | None = None) -> str | None:
    """Keep what the run's input holds: ``OUT/input_series.json`` (`input_series_text`), as a
    run of every series writes it (shards: `sliceseg.inference.shard_plan.write_shard_plan`).

    Returns:
        None when the file already held this; else what it held before ("" when there was
        none), for `undo_run_record`.
    """
    text = input_series_text(plan, shard=shard)
    path = out / INPUT_SERIES_FILE
    try:
        previous = path.read_text(encoding="utf-8")
    except OSError:
        previous = ""
    if previous == text:
        return None
    atomic_write_text(path, text)
    return previous


def input_series_text(plan: CohortPlan, *, shard: Shard | None = None) -> str:
    """``OUT/input_series.json``'s text: the names of the input's series, the `inputs_digest`
    of each one's files, and the files its plan left out (path under the input, why; the first
    `SHOWN_LINES`, all counted, as the report shows them: compact however many), and the run
    and shard count that planned it (`sliceseg.inference.shard_plan`); one line of JSON.

    Every shard plans the whole input, so every shard of a run has the same. The merge leaves
    out the finished series not named (`read_input_series`) and names the files in the report
    (`read_input_skipped`), after shards as unsharded.
    """
    shown = [f.relative_to_input(plan.root) for f in plan.skipped[:SHOWN_LINES]]
    skipped = [
        {"path": f.path.as_posix(), "reason": f.reason.removeprefix(f"{f.path}: ")} for f in shown
    ]
    inputs = {s.name: inputs_digest(s.inputs(plan.root)) for s in plan.series}
    data = {
        "series": names_of(plan.series),
        "inputs": inputs,  # so that a merge knows a finished series whose files changed since
        "skipped": skipped,
        "skipped_count": len(plan.skipped),
        "run": shard.run if shard else "",  # so that a later shard of this run splits the same list
        "count": shard.count if shard else 1,
    }
    return json.dumps({"format_version": FORMAT_VERSION, **data}) + "\n"


def read_input_series(out: Path) -> frozenset[str] | None:
    """The names in ``OUT/input_series.json``; None when absent or unreadable (a folder written
    before sliceseg kept it: every finished series counts, as then)."""
    data = read_json(out / INPUT_SERIES_FILE)
    names = None if data is None else data.get("series")
    return frozenset(map(str, names)) if isinstance(names, list) else None


def inputs_digest(inputs: Sequence[Mapping[str, Any]]) -> str:
    """A short checksum of a series' input files as a record lists them (path, size, mtime:
    `PlannedSeries.inputs`), to tell in ``input_series.json`` whether a finished series'
    record is of the files the input holds now."""
    text = json.dumps(list(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_input_digests(out: Path) -> dict[str, str] | None:
    """Per series of the latest run's input, the `inputs_digest` of its files then; None in a
    folder written before sliceseg kept them (its finished series are not compared)."""
    data = read_json(out / INPUT_SERIES_FILE)
    found = None if data is None else data.get("inputs")
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def read_input_skipped(out: Path) -> tuple[list[SkippedFile], int]:
    """The files the latest run's plan left out, as kept in ``OUT/input_series.json`` (the
    first `SHOWN_LINES`), and how many there were; none in a folder written before."""
    data = read_json(out / INPUT_SERIES_FILE) or {}
    files = unreadable_files(data)
    count = data.get("skipped_count")
    return files, count if isinstance(count, int) and count >= len(files) else len(files)


def series_dir(out: Path, name: str) -> Path:
    """The finished folder of series ``name``: ``OUT/series/<name>``."""
    return out / _SERIES_DIR / name


def read_series_record(out: Path, name: str) -> dict[str, Any] | None:
    """The record of a finished series, or None (not finished, or unreadable)."""
    return read_json(series_dir(out, name) / SERIES_RECORD)


def is_done(out: Path, series: PlannedSeries, record: RunRecord, root: Path) -> bool:
    """True when the series' folder holds a record of this model, settings and input files,
    and tables the merge can read (`damaged_tables`: a damaged one is redone)."""
    stored = read_series_record(out, series.name)
    return (
        stored is not None
        and record.difference(stored) is None
        and stored.get("inputs") == series.inputs(root)
        and damaged_tables(series_dir(out, series.name), stored) is None
    )


def damaged_tables(folder: Path, record: Mapping[str, Any]) -> str | None:
    """Why a finished series' ``csa.csv`` or ``csa_long.csv`` cannot be merged (missing, empty,
    not CSV, lacking a column, cells not numbers, other slices than its ``record``'s), or None.

    Example:
        >>> damaged_tables(series_dir(out, "p03"), read_series_record(out, "p03"))
        'csa.csv is empty'
    """
    summary = record.get("summary") or {}
    unit = summary.get("unit", "mm2")
    rois = [area_column(str(roi), unit) for roi in summary.get("mean") or {}]
    for name, needed, numeric in (
        ("csa.csv", ["slice", "file", *rois], rois),
        ("csa_long.csv", ["slice"], ["slice"]),
    ):
        try:
            rows = list(csv.reader(io.StringIO((folder / name).read_text(encoding="utf-8"))))
        except FileNotFoundError:
            return f"{name} is missing"
        except (OSError, UnicodeDecodeError, csv.Error):
            return f"{name} is not a readable CSV table"
        if not rows:
            return f"{name} is empty"
        lacking = [column for column in needed if column not in rows[0]]
        if lacking or any(len(row) != len(rows[0]) for row in rows[1:]):
            return f"{name} " + (f"lacks the column {lacking[0]}" if lacking else "has ragged rows")
        if not _numbers(rows, [rows[0].index(column) for column in numeric]):
            return f"{name} holds cells that are not numbers"
        found = sum(row[0].isdigit() for row in rows[1:])
        slices = summary.get("slices")
        if name == "csa.csv" and isinstance(slices, int) and found != slices:
            return f"csa.csv holds {found} slice rows, its record {slices}"
    return None


def _numbers(rows: list[list[str]], columns: list[int]) -> bool:
    """True when every cell of ``columns`` below the header is a number or empty."""
    try:
        for row in rows[1:]:
            for k in columns:
                float(row[k] or 0)
    except ValueError:
        return False
    return True


def series_record(
    record: RunRecord, series: PlannedSeries, root: Path, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """A finished series' ``record.json`` content: the files it left out and those its export
    notes name under the input folder ``root``, as every file of the cohort's own
    (`relative_to_input`)."""
    skipped = [relative_to_input(text, root) for text in summary.get("skipped_files", ())]
    notes = [relative_to_input(text, root) for text in summary.get("export_notes", ())]
    return {
        **record.to_dict(),
        "series": {"name": series.name, "slices": series.num_slices},
        "inputs": series.inputs(root),
        "summary": {**summary, "skipped_files": skipped, "export_notes": notes},
    }


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


def read_run_record(out: Path) -> dict[str, Any] | None:
    """``OUT/cohort.json``: the model and settings of the folder's latest run (None: absent)."""
    return read_json(out / RUN_RECORD)


def same_run(record: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
    """True when a series' record names the model (SHA-256) and settings of ``run``."""
    model, current = record.get("model") or {}, run.get("model") or {}
    return model.get("sha256") == current.get("sha256") and record.get("settings") == run.get(
        "settings"
    )


def finished_series(out: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every finished series folder with its record, by name (`series_name_key`)."""
    return list(finished_records(out))


def finished_records(out: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every finished series folder with its record, by name (`series_name_key`: the plan's
    order, so a merge of shards lists the series as one run does), read one at a time."""
    for name in sorted((p.name for p in finished_outputs(out / _SERIES_DIR)), key=series_name_key):
        data = read_json(out / _SERIES_DIR / name / SERIES_RECORD)
        if data is not None:
            yield name, data


def read_json(path: Path) -> dict[str, Any] | None:
    """A record file's JSON object; None when absent, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def names_of(series: Sequence[PlannedSeries]) -> list[str]:
    """The names of planned series, in order."""
    return [s.name for s in series]
