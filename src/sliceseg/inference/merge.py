"""The cohort's tables and report, built from its finished series (``sliceseg merge OUT``).

Reads every ``OUT/series/<name>/`` that holds a ``record.json`` (see
`sliceseg.inference.records`), in name order, and writes ``csa.csv`` and ``csa_long.csv``
(the columns of a single run: slices numbered 1..N over the cohort, series 1..S),
``series.csv`` (one row per series), ``failed.csv`` (the series whose last attempt failed;
only a header when none did) and a small ``report.html`` (`sliceseg.report.cohort`).
Any number of shards may have written the series; merging twice gives the same files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.inference.familiarity import SeriesVerdict, unlike_line, with_familiarity
from sliceseg.inference.records import (
    RUN_RECORD,
    finished_series,
    read_failures,
    series_dir,
)
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import atomic_path
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    FAMILIARITY_COLUMN,
    AreaTable,
    is_summary_row,
    series_label,
    summarised,
)
from sliceseg.measure.familiarity import Verdict
from sliceseg.report.cohort import CohortSummary, write_cohort_report

__all__ = ["FAILED_COLUMNS", "MergeResult", "merge_cohort"]

FAILED_COLUMNS = ("series", "slices", "reason")


@dataclass(frozen=True)
class MergeResult:
    """The cohort outputs.

    Attributes:
        out_dir: the output folder.
        areas: the cohort's area table (``csa.csv``, ``csa_long.csv``).
        series: one row per finished series (``series.csv``).
        failed: one row per failed series (``failed.csv``).
        report: ``report.html`` (None after ``predict --no-report``).
    """

    out_dir: Path
    areas: AreaTable
    series: pd.DataFrame
    failed: pd.DataFrame
    report: Path | None


def merge_cohort(out_dir: Path | str, *, skipped: Sequence[SkippedFile] = ()) -> MergeResult:
    """Build the cohort tables and report from the finished series under ``out_dir``.

    Args:
        out_dir: a ``predict`` output folder (any shards).
        skipped: input files the run left out, named in the report.

    Returns:
        The tables written.

    Raises:
        ConfigError: ``out_dir`` is not a cohort output folder, or holds no finished series.

    Example:
        >>> merged = merge_cohort("results/")
        >>> merged.series[["series", "slices", "lowest_confidence"]].head()
    """
    out = Path(out_dir)
    if not (out / RUN_RECORD).is_file():
        raise ConfigError(
            f"{out}: no {RUN_RECORD}, so not a `sliceseg predict` output folder; give the --out "
            "of a predict run."
        )
    finished = finished_series(out)
    done = {name for name, _ in finished}
    failures = [f for f in read_failures(out) if f.get("series") not in done]
    failed = pd.DataFrame(
        [[f.get(c) for c in FAILED_COLUMNS] for f in failures], columns=list(FAILED_COLUMNS)
    )
    _save(failed, out / "failed.csv")
    if not finished:
        raise ConfigError(
            f"{out}: no finished series to merge ({len(failures)} failed; see failed.csv); run "
            "`sliceseg predict` into this folder first."
        )
    areas = _areas(out, [name for name, _ in finished], finished[0][1])
    areas, unlike = _left_out(areas, finished)
    areas.save(out)
    table = _series_table(out, finished)
    _save(table, out / "series.csv")
    settings = finished[0][1]["settings"]
    summary = CohortSummary(
        series=table,
        failed=failed,
        unit=areas.unit,
        roi_names=list(settings["roi_names"]),
        notes=[f"Skipped {s.path.name}: {s.reason}" for s in skipped],
        unlike_training=unlike,
    )
    # `predict --no-report` asked for no report.html, the cohort's included
    wants_report = settings.get("report", True)
    report = write_cohort_report(out / "report.html", summary) if wants_report else None
    return MergeResult(out, areas, table, failed, report)


def _save(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _areas(out: Path, names: Sequence[str], first: dict[str, Any]) -> AreaTable:
    """The cohort's wide and tidy tables: series after series, numbered over the cohort.

    Each series' ``mean/std/n series k`` rows are its own table's summary rows (the same
    numbers `measure_areas` gives a series among others), so merging stays linear in the
    number of slices; the overall rows are computed over every slice. The series' CSV lines
    are joined and parsed once (a cohort has 100,000 small files).
    """
    slice_lines, summary_lines, long_lines = _SeriesLines(), _SeriesLines(), _SeriesLines()
    for name in names:
        folder = series_dir(out, name)
        header, *lines = (folder / "csa.csv").read_text(encoding="utf-8").splitlines()
        is_summary = [is_summary_row(line.split(",", 1)[0]) for line in lines]
        slice_lines.add(
            header, [ln for ln, flag in zip(lines, is_summary, strict=True) if not flag]
        )
        summary_lines.add(header, [ln for ln, flag in zip(lines, is_summary, strict=True) if flag])
        long_header, *rows = (folder / "csa_long.csv").read_text(encoding="utf-8").splitlines()
        long_lines.add(long_header, rows)
    slices = slice_lines.table(index_col="slice", dtype={"slice": str})
    counts = slice_lines.counts
    numbers = [k for k, count in enumerate(counts, 1) for _ in range(count)]
    long = long_lines.table()
    long["slice"] = _renumbered(long_lines.counts, counts, long)
    long["series"] = [k for k, count in enumerate(long_lines.counts, 1) for _ in range(count)]
    slices = slices.drop(columns=[FAMILIARITY_COLUMN], errors="ignore")  # set by _left_out
    confidence = slices.pop(CONFIDENCE_COLUMN) if CONFIDENCE_COLUMN in slices else None
    whole = summarised(slices, [1] * len(slices))  # slice rows, then the overall rows
    series_rows = _series_rows(summary_lines, slices["file"].astype(str).tolist(), counts)
    parts = [whole.iloc[: len(slices)], *([series_rows] if len(names) > 1 else [])]
    wide = pd.concat([*parts, whole.iloc[len(slices) :]])[list(slices.columns)]
    if confidence is not None:
        wide[CONFIDENCE_COLUMN] = float("nan")
        wide.iloc[: len(slices), wide.columns.get_loc(CONFIDENCE_COLUMN)] = confidence.to_numpy()
    unit = first.get("summary", {}).get("unit", "mm2")
    return AreaTable(wide=wide, long=long, unit=unit, series=tuple(numbers))


class _SeriesLines:
    """CSV lines of many series' tables with one header, parsed together once."""

    def __init__(self) -> None:
        self.header: str | None = None
        self.lines: list[str] = []
        self.counts: list[int] = []

    def add(self, header: str, lines: list[str]) -> None:
        if self.header is not None and header != self.header:
            raise ConfigError(
                f"series tables with different columns ({header[:80]} … vs {self.header[:80]} …); "
                "merge only the series of one predict run (one model and settings)."
            )
        self.header = header
        self.lines += lines
        self.counts.append(len(lines))

    def table(self, **options: Any) -> pd.DataFrame:
        text = "\n".join([self.header or "", *self.lines]) + "\n"
        return pd.read_csv(io.StringIO(text), **options)


def _renumbered(long_counts: list[int], slice_counts: list[int], long: pd.DataFrame) -> np.ndarray:
    """The tidy table's slice numbers over the cohort: each series' own, shifted by its offset."""
    offsets = np.cumsum([0, *slice_counts[:-1]])
    return long["slice"].to_numpy() + np.repeat(offsets, long_counts)


def _series_rows(lines: _SeriesLines, files: list[str], counts: list[int]) -> pd.DataFrame:
    """Each series' own summary rows, named ``mean series k`` ... and labelled with its span."""
    table = lines.table(index_col="slice", dtype={"slice": str})
    table = table.drop(columns=[FAMILIARITY_COLUMN, CONFIDENCE_COLUMN], errors="ignore")
    starts = np.cumsum([0, *counts[:-1]])
    labels = [
        series_label(files[start : start + n]) for start, n in zip(starts, counts, strict=True)
    ]
    numbers = [k for k, n in enumerate(lines.counts, 1) for _ in range(n)]
    table["file"] = [labels[k - 1] for k in numbers]
    table.index = [f"{label} series {k}" for label, k in zip(table.index, numbers, strict=True)]
    return table


def _left_out(
    areas: AreaTable, finished: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[AreaTable, list[str]]:
    """Series unlike the training data: marked, and left out of the overall rows; one line each.

    Tables of a model file without a training profile stay as they are."""
    reasons = [record.get("summary", {}).get("unlike_training") for _, record in finished]
    if all(reason is None for reason in reasons):
        return areas, []
    verdicts, lines = [], []
    rows_of: dict[int, list[int]] = {}  # one pass over the slices, not one per series
    for i, k in enumerate(areas.series):
        rows_of.setdefault(k, []).append(i)
    for number, ((name, _), reason) in enumerate(zip(finished, reasons, strict=True), 1):
        members = rows_of.get(number, [])
        files = areas.wide["file"].iloc[members].astype(str).tolist()
        verdict = Verdict(bool(reason), (reason,) if reason else ())
        verdicts.append(SeriesVerdict(number, files[0], files[-1], len(files), verdict))
        if verdict.is_flagged:
            lines.append(unlike_line(name, verdict))
    return with_familiarity(areas, verdicts), lines


def _series_table(out: Path, finished: Sequence[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """One row per series: slices, mean and std per ROI, lowest confidence, warnings, report."""
    rows = []
    for name, record in finished:
        summary = record.get("summary", {})
        row: dict[str, object] = {"series": name, "slices": summary.get("slices")}
        for roi, value in summary.get("mean", {}).items():
            row[f"mean {roi}"] = value
        for roi, value in summary.get("std", {}).items():
            row[f"std {roi}"] = value
        warnings = summary.get("warnings", [])
        row["lowest_confidence"] = summary.get("lowest_confidence")
        row["unlike_training"] = summary.get("unlike_training") or ""
        row["warnings"] = len(warnings)
        row["warning_text"] = " | ".join(warnings)
        report = series_dir(out, name) / "report.html"
        row["report"] = report.relative_to(out).as_posix() if report.is_file() else ""
        rows.append(row)
    return pd.DataFrame(rows)
