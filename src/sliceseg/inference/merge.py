"""The cohort's tables and report, built from its finished series (``sliceseg merge OUT``).

Reads every ``OUT/series/<name>/`` that holds a ``record.json`` (see
`sliceseg.inference.records`), in name order, but those not in the latest run's input
(``input_series.json``: their inputs were removed since; named in one line, as are another
model's, those whose input files changed since they finished (the checksums there), those
whose own table is damaged (`damaged_tables`), the series of which no file could be read
(``OUT/unreadable/``) and those neither finished, failed nor unreadable: not finished), and
writes ``csa.csv`` and ``csa_long.csv`` (the columns of a single run: slices numbered 1..N over
the cohort, series 1..S; `sliceseg.inference.merge_tables`),
``series.csv`` (one row per series), ``failed.csv`` (the series of the input whose last
attempt failed; only a header when none did) and a small ``report.html``
(`sliceseg.report.cohort`), all in a hidden folder first, moved into place together
(`files_together`: a failed merge leaves an earlier one's as they were); when every series
failed there are no areas: ``series.csv`` is a header, the area tables are not written (nor
left from an earlier merge) and the report says so. Everything streams: series after series,
the rows are written as they are read, and what the report needs is kept in bounded form (the
series to review first, the first lines unlike the training data, the first files left out,
also those a finished series' record names (`sliceseg.inference.merge_notes`), each series'
mean areas as numbers), so memory does not grow with the cohort but for a few numbers per
series. Any number of shards may have written the series; merging twice gives the same files.
The merge says once for the cohort which of its series lack tissue columns (`TissueLines`),
where each shard said it of its own share.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.inference.attempts import read_failures
from sliceseg.inference.familiarity import unlike_line
from sliceseg.inference.merge_notes import (
    SkippedLines,
    TissueLines,
    changed_notes,
    damaged_run_record_message,
    left_out_notes,
    mixed_units_message,
    not_a_cohort_message,
    nothing_current_message,
    nothing_readable_message,
    removed_outputs_note,
)
from sliceseg.inference.merge_selection import LeftOut, current_records, unreadable_series
from sliceseg.inference.merge_tables import (
    CHUNK_SERIES,
    TIDY_TEXT,
    WIDE_TEXT,
    write_area_tables,
)
from sliceseg.inference.records import (
    RUN_RECORD,
    damaged_tables,
    read_input_digests,
    read_input_series,
    read_input_skipped,
    read_run_record,
    series_dir,
)
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import atomic_path, files_together
from sliceseg.io.identity import series_name_key
from sliceseg.io.tables import FAILED_CSV, failed_table, write_csv, write_failed
from sliceseg.measure.areas import AreaTable
from sliceseg.measure.review_order import review_key
from sliceseg.measure.series_verdict import Verdict
from sliceseg.measure.summary_rows import SUMMARY_ROWS, area_column, series_note
from sliceseg.report.cohort import (
    REVIEW_FIRST,
    SHOWN_LINES,
    CohortSummary,
    first_warnings,
    review_order,
    write_cohort_report,
)
from sliceseg.user_paths import user_path

__all__ = ["MergeResult", "merge_cohort"]

_AREA_TABLES = ("csa.csv", "csa_long.csv")
OUTPUTS = (*_AREA_TABLES, "series.csv", FAILED_CSV, "report.html")
"""The cohort's outputs, written together (`files_together`): never one beside an earlier
merge's other."""


@dataclass(frozen=True)
class MergeResult:
    """The cohort outputs (the tables are on disk; ``areas`` and ``series`` read them back).

    Attributes:
        out_dir: the output folder.
        failed: one row per failed series (``failed.csv``).
        report: ``report.html`` (None after ``predict --no-report``).
        counts: the number of slices of each finished series, in order.
        unit: "mm2" or "pixels".
        outdated: finished series of another model or settings than ``cohort.json``'s (an
            ``--overwrite`` run not done yet), left out of the tables.
        gone: finished or failed series not in the latest run's input (``input_series.json``),
            left out of every table; their folders stay.
        unfinished: series of the latest run's input neither finished nor failed nor
            unreadable (a shard still running, stopped or not run, or a damaged
            ``record.json``): the cohort is not complete (`is_complete`).
        unreadable: series of the input of which no file could be read (every file damaged;
            ``OUT/unreadable/<name>.json``): skipped, not failed.
        changed: finished series whose input files changed (added, removed, rewritten) since
            they were predicted: their areas are of the old files; left out, not complete.
        damaged: finished series whose ``csa.csv`` or ``csa_long.csv`` cannot be merged,
            with why (`damaged_tables`), left out of every table: the next predict run redoes
            them.
        overall_note: the series unlike the training data that ``csa.csv``'s overall mean,
            std and n leave out, as its ``file`` cells say it (`overall_note`; "" when none).
        tissue_notes: one line each on the series of the tables that lack tissue columns (no
            Modality, not in HU, not CT given CT options: `TissueLines`), for the cohort.
    """

    out_dir: Path
    failed: pd.DataFrame
    report: Path | None
    counts: tuple[int, ...] = ()
    unit: str = "mm2"
    outdated: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    unfinished: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    damaged: tuple[tuple[str, str], ...] = ()
    overall_note: str = ""
    tissue_notes: tuple[str, ...] = ()

    @property
    def notes(self) -> list[str]:
        """One line per kind of series left out (`left_out_notes`)."""
        return left_out_notes(
            self.out_dir,
            self.outdated,
            self.gone,
            self.unfinished,
            self.unreadable,
            self.changed,
            self.damaged,
        )

    @property
    def is_complete(self) -> bool:
        """True when every series of the input finished or was unreadable: none failed, none
        is still to do or has a damaged table, none is another model's or settings' or from input
        files changed since (else ``predict`` and ``merge`` exit 3: the tables lack them)."""
        left_out = self.unfinished or self.outdated or self.changed or self.damaged
        return not len(self.failed) and not left_out

    @property
    def slices(self) -> int:
        """Slices over every finished series."""
        return sum(self.counts)

    @cached_property
    def areas(self) -> AreaTable:
        """The cohort's area table, read from ``csa.csv`` and ``csa_long.csv``.

        Raises:
            ConfigError: no series finished (every one failed), so there is no area table.
        """
        if not self.counts:
            raise ConfigError(
                f"{self.out_dir}: no series finished ({len(self.failed)} failed, see failed.csv), "
                "so there is no area table."
            )
        wide = pd.read_csv(self.out_dir / "csa.csv", index_col="slice", dtype=WIDE_TEXT)
        long = pd.read_csv(self.out_dir / "csa_long.csv", dtype=TIDY_TEXT)
        numbers = tuple(k for k, count in enumerate(self.counts, 1) for _ in range(count))
        return AreaTable(wide=wide, long=long, unit=self.unit, series=numbers)

    @cached_property
    def series(self) -> pd.DataFrame:
        """One row per finished series, read from ``series.csv``."""
        return pd.read_csv(self.out_dir / "series.csv", dtype={"series": str})


def merge_cohort(out_dir: Path | str) -> MergeResult:
    """Build the cohort tables and report from the finished series under ``out_dir``.

    Args:
        out_dir: a ``predict`` output folder (any shards). The report names the files left
            out: those the plan left out (``input_series.json``), those of a series of which
            none could be read (``OUT/unreadable/``), those a finished series left out while
            decoding (its record).

    Returns:
        The tables written (when every series failed: ``failed`` and the report, no areas).

    Raises:
        ConfigError: ``out_dir`` is not a cohort output folder, its ``cohort.json`` is
            damaged, or it holds neither a finished nor a failed series of the latest run (the
            message names those of another model or settings, those not finished, or says
            when every series' files are unreadable).

    Example:
        >>> merged = merge_cohort("results/")
        >>> merged.series[["series", "slices", "lowest_confidence"]].head()
    """
    out = user_path(out_dir)
    if not (out / RUN_RECORD).is_file():
        raise ConfigError(not_a_cohort_message(out, RUN_RECORD))
    run = read_run_record(out)
    if run is None or not isinstance(run.get("settings"), dict):
        raise ConfigError(damaged_run_record_message(out))
    seen = _SeriesPass()
    left = LeftOut(read_input_series(out), read_input_digests(out))
    with files_together(out, OUTPUTS) as stage:  # renamed into place only once all are written
        with (
            atomic_path(stage / "series.csv") as path,
            path.open("w", encoding="utf-8", newline="") as f,
        ):
            seen.write(out, current_records(out, run, left), f)
            if len(seen.units) > 1:  # one table, mean and report would mix them silently
                raise ConfigError(mixed_units_message(out, seen.units))
            failed = _failed_table(out, stage, {*seen.names, *seen.damaged_names}, left)
            if not seen.names and not len(failed) and not seen.damaged:
                raise _nothing_to_merge(out, left)
            settings = (seen.first or run).get("settings", {})
            if not seen.names:  # every series failed or is damaged: a header and no row
                pixels = (settings.get("fallback") or {}).get("pixels_only")
                names = settings.get("roi_names") or ()
                f.write(",".join(series_columns(names, "pixels" if pixels else "mm2")) + "\n")
        counts, overall = _area_tables(out, stage, seen)
        done = {*seen.names, *seen.damaged_names, *failed["series"].astype(str)}
        unread = unreadable_series(out, done, left)
        unfinished = left.unfinished(done, set(unread))
        changed = tuple(left.changed)
        left_out = (tuple(left.outdated), left.gone_names, unfinished, tuple(unread), changed)
        notes = left_out_notes(out, *left_out, seen.damaged)
        tissue = seen.tissue.lines(settings)  # said once: printed and in the report
        summary = _summary(out, seen, failed, settings, notes, unread, tissue=tissue)
        report = _report(out, stage, settings, summary)
    damaged = tuple(seen.damaged)
    return MergeResult(
        out, failed, report, counts, seen.unit, *left_out, damaged, overall, tuple(tissue)
    )


def _summary(
    out: Path,
    seen: _SeriesPass,
    failed: pd.DataFrame,
    settings: dict[str, Any],
    left_out: list[str],
    unread: dict[str, list[SkippedFile]],
    *,
    tissue: list[str],
) -> CohortSummary:
    """What the cohort's report shows: the series kept in bounded form, the series and the
    files left out (those the plan left out, the unreadable series', the decoders'), and the
    run's tissue lines (`TissueLines.lines`)."""
    files = SkippedLines()
    planned, planned_count = read_input_skipped(out)
    files.add_files(planned, count=planned_count)
    files.add_files(chain(*unread.values()))
    files.extend(seen.skipped)  # those the finished series left out while decoding
    return CohortSummary(
        series=seen.review_table(),
        failed=failed,
        unit=seen.unit,
        roi_names=list(settings["roi_names"]),
        notes=files.lines,
        notes_count=files.count,
        left_out=left_out,
        tissue_notes=tissue,
        unlike_training=seen.unlike,
        series_count=len(seen.names),
        slices=seen.slices,
        unlike_count=seen.unlike_count,
        means={roi: np.asarray(values) for roi, values in seen.means.items()},
        means_unlike={roi: np.asarray(marks, bool) for roi, marks in seen.means_unlike.items()},
    )


def _report(
    out: Path, stage: Path, settings: dict[str, Any], summary: CohortSummary
) -> Path | None:
    """``report.html`` (written in ``stage``, renamed with the tables), or none after
    `predict --no-report`, which asked for no report (the cohort's included): an earlier
    run's is removed (`files_together`), since it shows that run's series."""
    if not settings.get("report", True):
        return None
    write_cohort_report(stage / "report.html", summary)
    return out / "report.html"


def _area_tables(out: Path, stage: Path, seen: _SeriesPass) -> tuple[tuple[int, ...], str]:
    """``csa.csv`` and ``csa_long.csv`` of the finished series (`write_area_tables`), written in
    ``stage``; when none finished, none (an earlier merge's are removed: not this run's)."""
    if not seen.names:
        return (), ""
    flagged = None if all(r is None for r in seen.reasons) else [bool(r) for r in seen.reasons]
    return write_area_tables(out, seen.names, flagged, into=stage)


def _nothing_to_merge(out: Path, left: LeftOut) -> ConfigError:
    """Why there is nothing to merge: every series of the input unreadable, the series there
    are another model's or settings' or not finished yet, or none run. An earlier merge's
    outputs are removed (and named): they show series this run does not hold, which a user
    would read as this run's."""
    removed = [name for name in OUTPUTS if (out / name).is_file()]
    for name in removed:
        (out / name).unlink()
    unread = sorted(unreadable_series(out, set(), left), key=series_name_key)
    unfinished = left.unfinished(set(), set(unread))
    if left.outdated or unfinished:
        message = nothing_current_message(out, left.outdated, unfinished)
    elif unread:
        message = nothing_readable_message(out, unread)
    elif left.changed:
        message = f"{out}: no series to merge: {changed_notes(left.changed)[0]}"
    else:
        message = (
            f"{out}: no finished or failed series to merge; run `sliceseg predict` into this "
            "folder first."
        )
    return ConfigError(message + removed_outputs_note(removed))


def _failed_table(out: Path, stage: Path, done: set[str], left: LeftOut) -> pd.DataFrame:
    """``failed.csv`` (written in ``stage``): the series of the input whose last attempt failed
    (not those finished since; one no longer in the input goes to ``left``, as a finished one
    does)."""
    failures = [
        f
        for f in read_failures(out)
        if f.get("series") not in done and not left.is_gone(str(f.get("series")))
    ]
    failed = failed_table(failures)
    write_failed(failed, stage)
    return failed


@dataclass
class _SeriesPass:
    """One pass over the series' records: ``series.csv`` written, the rest kept bounded."""

    names: list[str] = field(default_factory=list)
    reasons: list[bool | None] = field(default_factory=list)  # flagged (None: no profile)
    first: dict[str, Any] = field(default_factory=dict)  # the first record (settings)
    units: dict[str, str] = field(default_factory=dict)  # "mm2" / "pixels" → its first series
    slices: int = 0
    means: dict[str, array[float]] = field(default_factory=dict)  # per ROI, per series
    means_unlike: dict[str, array[int]] = field(default_factory=dict)  # ... and its mark
    review: list[tuple[tuple[bool, float, int], dict[str, object]]] = field(default_factory=list)
    unlike: list[str] = field(default_factory=list)  # the first SHOWN_LINES
    unlike_count: int = 0
    skipped: SkippedLines = field(default_factory=SkippedLines)  # files left out in decoding
    columns: list[str] = field(default_factory=list)
    damaged: list[tuple[str, str]] = field(default_factory=list)  # (series, why) left out
    tissue: TissueLines = field(default_factory=TissueLines)

    @property
    def unit(self) -> str:
        """The series' unit (one: `mixed_units_message`), "mm2" when none finished."""
        return next(iter(self.units), "mm2")

    @property
    def damaged_names(self) -> list[str]:
        """The series left out for a damaged table (`damaged_tables`)."""
        return [name for name, _ in self.damaged]

    def write(self, out: Path, records: Iterator[tuple[str, dict[str, Any]]], f: IO[str]) -> None:
        """Read every record once; write ``series.csv`` chunk by chunk (not the series whose
        tables are damaged: ``damaged`` names them, and predict redoes them)."""
        rows: list[dict[str, object]] = []
        for name, record in records:
            why = damaged_tables(series_dir(out, name), record)
            if why is not None:
                self.damaged.append((name, why))
                continue
            self.first = self.first or record
            rows.append(self._keep(out, name, record))
            if len(rows) == CHUNK_SERIES:
                self._flush(rows, f)
        if rows:
            self._flush(rows, f)

    def _flush(self, rows: list[dict[str, object]], f: IO[str]) -> None:
        table = pd.DataFrame(rows)
        if not self.columns:  # from the run's ROIs: an older first record drops no column
            names = self.first.get("settings", {}).get("roi_names") or ()
            self.columns = series_columns(names, self.unit) if names else list(table.columns)
        table = table.reindex(columns=self.columns)
        counts = [c for c in self.columns if c in ("slices", "warnings") or c.startswith("n ")]
        table[counts] = table[counts].astype("Int64")  # whole numbers; an older record's gap
        write_csv(table, f, header=f.tell() == 0, index=False)
        rows.clear()

    def _keep(self, out: Path, name: str, record: dict[str, Any]) -> dict[str, object]:
        """The series' row of ``series.csv``; what the report and the area tables need."""
        summary = record.get("summary", {})
        row = _series_row(out, name, summary)
        reason = summary.get("unlike_training")
        self.units.setdefault(summary.get("unit", "mm2"), name)
        self.names.append(name)
        self.reasons.append(None if reason is None else bool(reason))
        self.slices += int(_number(row["slices"], 0.0))
        self.skipped.add(summary.get("skipped_files", []))
        self.tissue.add(name, summary)
        for roi, value in (summary.get("mean") or {}).items():  # by ROI name, unit aside
            self.means.setdefault(str(roi), array("d")).append(_number(value, np.nan))
            self.means_unlike.setdefault(str(roi), array("b")).append(bool(reason))
        if reason:
            self.unlike_count += 1
            if len(self.unlike) < SHOWN_LINES:
                self.unlike.append(unlike_line(name, Verdict(True, (reason,))))
        self._consider(row)
        return row

    def _consider(self, row: dict[str, object]) -> None:
        """Keep the row if it is among the `REVIEW_FIRST` to review first so far."""
        key = review_key(  # as `review_order` sorts: ties in series order
            is_unlike=row["unlike_training"] != "",
            confidence=_number(row["lowest_confidence"], np.nan),
            position=len(self.names),
        )
        shown = {k: row[k] for k in ("series", "slices", "lowest_confidence", "unlike_training")}
        text = first_warnings(str(row["warning_text"]))
        shown |= {"warnings": row["warnings"], "warning_text": text}
        shown["report"] = row["report"]
        self.review.append((key, shown))
        if len(self.review) > 4 * REVIEW_FIRST:
            self.review = sorted(self.review, key=lambda item: item[0])[:REVIEW_FIRST]

    def review_table(self) -> pd.DataFrame:
        """The series to review first, in series order (`review_order` sorts them)."""
        chosen = sorted(self.review, key=lambda item: item[0])[:REVIEW_FIRST]
        table = pd.DataFrame([shown for _, shown in sorted(chosen, key=lambda item: item[0][-1])])
        return review_order(table).reset_index(drop=True) if len(table) else table


def series_columns(roi_names: Sequence[str], unit: str = "mm2") -> list[str]:
    """The columns of ``series.csv``, in order (`_series_row` fills them)."""
    per_roi = [_roi_column(statistic, roi, unit) for statistic in SUMMARY_ROWS for roi in roi_names]
    tail = ["lowest_confidence", "unlike_training", "warnings", "warning_text", "report", "notes"]
    return ["series", "slices", *per_roi, *tail]


def _series_row(out: Path, name: str, summary: dict[str, Any]) -> dict[str, object]:
    """One row of ``series.csv``: slices, mean, std and n per ROI, lowest confidence, warnings,
    and the notes saying what they are over (n: the slices of the series that show the ROI,
    which its mean and std are over)."""
    row: dict[str, object] = {"series": name, "slices": summary.get("slices")}
    for statistic in SUMMARY_ROWS:
        for roi, value in summary.get(statistic, {}).items():
            row[_roi_column(statistic, roi, summary.get("unit", "mm2"))] = value
    warnings = summary.get("warnings", [])
    row["lowest_confidence"] = summary.get("lowest_confidence")
    row["unlike_training"] = summary.get("unlike_training") or ""
    row["warnings"] = len(warnings)
    row["warning_text"] = " | ".join(warnings)
    report = series_dir(out, name) / "report.html"
    row["report"] = report.relative_to(out).as_posix() if report.is_file() else ""
    row["notes"] = series_note()  # what the numbers are over, in the file itself
    return row


def _roi_column(statistic: str, roi: str, unit: str) -> str:
    """``series.csv``'s column of an ROI's mean, std or n: an area's names the unit in pixels
    as ``csa.csv`` does (`area_column`); n counts slices, in no unit."""
    return f"{statistic} {roi if statistic == 'n' else area_column(roi, unit)}"


def _number(value: object, missing: float) -> float:
    """A table cell as a number (``missing`` when empty or not a number, as pandas coerces)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return missing
    return missing if np.isnan(number) else number
