"""The cohort's tables and report, built from its finished series (``sliceseg merge OUT``).

Reads every ``OUT/series/<name>/`` that holds a ``record.json`` (see
`sliceseg.inference.records`), in name order, and writes ``csa.csv`` and ``csa_long.csv``
(the columns of a single run: slices numbered 1..N over the cohort, series 1..S),
``series.csv`` (one row per series), ``failed.csv`` (the series whose last attempt failed;
only a header when none did) and a small ``report.html`` (`sliceseg.report.cohort`).
Any number of shards may have written the series; merging twice gives the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        report: ``report.html``.
    """

    out_dir: Path
    areas: AreaTable
    series: pd.DataFrame
    failed: pd.DataFrame
    report: Path


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
    report = write_cohort_report(
        out / "report.html",
        CohortSummary(
            series=table,
            failed=failed,
            unit=areas.unit,
            roi_names=list(finished[0][1]["settings"]["roi_names"]),
            notes=[f"Skipped {s.path.name}: {s.reason}" for s in skipped],
            unlike_training=unlike,
        ),
    )
    return MergeResult(out, areas, table, failed, report)


def _save(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _areas(out: Path, names: Sequence[str], first: dict[str, Any]) -> AreaTable:
    """The cohort's wide and tidy tables: series after series, numbered over the cohort.

    Each series' ``mean/std/n series k`` rows are its own table's summary rows (the same
    numbers `measure_areas` gives a series among others), so merging stays linear in the
    number of slices; the overall rows are computed over every slice.
    """
    wide_parts, long_parts, series_rows, numbers = [], [], [], []
    offset = 0
    for number, name in enumerate(names, 1):
        folder = series_dir(out, name)
        wide = pd.read_csv(folder / "csa.csv", index_col="slice", dtype={"slice": str})
        rows = wide.loc[[label for label in wide.index if not is_summary_row(label)]]
        series_rows.append(_series_rows(wide, rows, number))
        long = pd.read_csv(folder / "csa_long.csv")
        long["slice"] = long["slice"] + offset
        long["series"] = number
        wide_parts.append(rows)
        long_parts.append(long)
        numbers += [number] * len(rows)
        offset += len(rows)
    slices = pd.concat(wide_parts)
    slices = slices.drop(columns=[FAMILIARITY_COLUMN], errors="ignore")  # set by _left_out
    confidence = slices.pop(CONFIDENCE_COLUMN) if CONFIDENCE_COLUMN in slices else None
    whole = summarised(slices, [1] * len(slices))  # slice rows, then the overall rows
    parts = [whole.iloc[:offset], *(series_rows if len(names) > 1 else []), whole.iloc[offset:]]
    wide = pd.concat(parts)[list(slices.columns)]
    if confidence is not None:
        wide[CONFIDENCE_COLUMN] = float("nan")
        wide.loc[[str(i) for i in range(1, offset + 1)], CONFIDENCE_COLUMN] = confidence.to_numpy()
    unit = first.get("summary", {}).get("unit", "mm2")
    return AreaTable(wide=wide, long=pd.concat(long_parts), unit=unit, series=tuple(numbers))


def _series_rows(wide: pd.DataFrame, rows: pd.DataFrame, number: int) -> pd.DataFrame:
    """A series' own summary rows, named ``mean series k`` ... and labelled with its span."""
    summary = wide.loc[[label for label in wide.index if is_summary_row(label)]].copy()
    summary["file"] = series_label(rows["file"].astype(str).tolist())
    summary.index = [f"{label} series {number}" for label in summary.index]
    return summary


def _left_out(
    areas: AreaTable, finished: Sequence[tuple[str, dict[str, Any]]]
) -> tuple[AreaTable, list[str]]:
    """Series unlike the training data: marked, and left out of the overall rows; one line each.

    Tables of a model file without a training profile stay as they are."""
    reasons = [record.get("summary", {}).get("unlike_training") for _, record in finished]
    if all(reason is None for reason in reasons):
        return areas, []
    verdicts, lines = [], []
    for number, ((name, _), reason) in enumerate(zip(finished, reasons, strict=True), 1):
        members = [i for i, k in enumerate(areas.series) if k == number]
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
