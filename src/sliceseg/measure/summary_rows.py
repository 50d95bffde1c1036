"""The summary rows of an area table: per series (two or more) and overall mean, std and n.

One definition of the numbers (`summary_stats`) for a series' own table (`with_summary_rows`,
called by `sliceseg.measure.areas.measure_areas`), for tables put together from parts
(`summarised`) and for the cohort's merge (`sliceseg.inference.merge_tables`); one of the
overall rows without the series unlike the training data (`leave_out_flagged`), for both, and
one wording of that rule (`overall_mean_clause`) for every line and report that says it; and of
the written table's ROI columns (`area_column`), which its readers look for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "PRESENT",
    "SAMPLE_STD",
    "SUMMARY_ROWS",
    "area_column",
    "leave_out_flagged",
    "overall_line",
    "overall_mean_clause",
    "overall_note",
    "series_label",
    "series_note",
    "series_row",
    "shown_number",
    "summarised",
    "summary_cell",
    "summary_stats",
    "unit_name",
    "with_summary_rows",
]

PRESENT = "slices with the ROI (area > 0)"  # the file cell of the overall summary rows
SUMMARY_ROWS = ("mean", "std", "n")  # the summary rows of each series and overall, in order
SAMPLE_STD = "sample std (n − 1)"  # which std the std rows hold (`summary_cell`)


def summary_cell(row: str, cell: str) -> str:
    """The ``file`` cell of a summary row (``row``: mean, std or n): ``cell``, and on the std
    rows which std they are (`summary_stats`: the sample one), so the file says it.

    Example:
        >>> summary_cell("std", PRESENT), summary_cell("mean", PRESENT)
        ('slices with the ROI (area > 0); sample std (n − 1)', 'slices with the ROI (area > 0)')
    """
    return f"{cell}; {SAMPLE_STD}" if row == "std" else cell


def overall_note(cell: object) -> str:
    """What an overall row's ``file`` cell says beyond :data:`PRESENT`: the series unlike the
    training data it leaves out (`sliceseg.inference.familiarity.with_familiarity`), or "".

    Example:
        >>> overall_note(f"{PRESENT}; without 1 series unlike the training data (3 slices)")
        'without 1 series unlike the training data (3 slices)'
    """
    return str(cell).removeprefix(PRESENT).lstrip("; ")


def unit_name(unit: str) -> str:
    """An area table's unit (`AreaTable.unit`: "mm2" or "pixels") as people read it.

    Example:
        >>> unit_name("mm2"), unit_name("pixels")
        ('mm²', 'pixels')
    """
    return "mm²" if unit == "mm2" else "pixels"


def shown_number(value: object, *, is_count: bool = False) -> str:
    """A table's number as the printed table, the reports and the area plots show it: an area
    (or its mean, std) to 0.1 (0.5 % of a 20 mm² structure), a count whole ("3", not "3.0"), an
    empty cell "–" (NaN, pandas' NA, None or text: a count not recorded).

    Example:
        >>> shown_number(20.44), shown_number(3.0, is_count=True), shown_number(float("nan"))
        ('20.4', '3', '–')
    """
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if number != number:
        return "–"
    return f"{number:.0f}" if is_count else f"{number:.1f}"


def area_column(roi: str, unit: str) -> str:
    """The written wide table's column of an ROI's areas: its name, and in pixels (``unit``
    "pixels") the unit too (`unit_name`), since nothing else in ``csa.csv`` tells pixel counts
    from mm².

    Example:
        >>> area_column("psoas", "pixels"), area_column("psoas", "mm2")
        ('psoas (pixels)', 'psoas')
    """
    return f"{roi} ({unit_name(unit)})" if unit == "pixels" else roi


def overall_line(note: str, *, of: str = "") -> str:
    """What the overall rows leave out, in words ("" when nothing): under a printed table, or
    after a run that prints none (``of``: the file whose rows they are).

    Example:
        >>> overall_line("without 1 series unlike the training data (3 slices)", of="csa.csv")
        'the overall mean, std and n of csa.csv: without 1 series unlike the training data (3 slices)'
    """  # noqa: E501
    if not note:
        return ""
    return f"the overall mean, std and n{f' of {of}' if of else ''}: {note}"


def series_row(row: str, series: object) -> str:
    """The label of a series' own summary row: ``row`` (mean, std or n) and the series, whose
    name the written tables show (``mean series p01``; numbered while only grouping slices).

    Example:
        >>> series_row("mean", "p01"), series_row("n", 2)
        ('mean series p01', 'n series 2')
    """
    return f"{row} series {series}"


def series_label(files: Sequence[str]) -> str:
    """The ``file`` cell of a series' summary rows: its first and last slice and their count.

    Example:
        >>> series_label(["p01/s1", "p01/s2", "p01/s3"])
        'p01/s1 … p01/s3 (3 slices)'
    """
    span = files[0] if len(files) == 1 else f"{files[0]} … {files[-1]}"
    return f"{span} ({len(files)} slice{'s' * (len(files) != 1)})"


def summary_stats(values: np.ndarray) -> np.ndarray:
    """Mean, std (ddof 1) and n of each column of ``(slices, ROIs)`` areas, as three rows.

    Over the slices where the ROI is present (area > 0; NaN is absent): the mean is NaN without
    any, the std NaN (not 0) below two. Each column is summed as pandas sums a frame's column
    (pairwise, along a contiguous row of the transposed values), so the numbers are those of
    ``frame.where(frame > 0).mean() / .std() / .count()`` bit for bit, without a frame.

    Example:
        >>> summary_stats(np.array([[2.0, 0.0], [4.0, 5.0]]))
        array([[3.        , 5.        ],
               [1.41421356,        nan],
               [2.        , 1.        ]])
    """
    columns = np.ascontiguousarray(np.asarray(values, dtype=float).T)
    present = columns > 0
    n = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(present, columns, 0.0).sum(axis=1) / n
        deviation = np.where(present, columns - mean[:, None], 0.0)
        std = np.sqrt((deviation * deviation).sum(axis=1) / (n - 1))
    mean[n == 0] = np.nan
    std[n < 2] = np.nan
    return np.vstack([mean, std, n.astype(float)])


def with_summary_rows(slices: pd.DataFrame, series: tuple[int, ...]) -> pd.DataFrame:
    """Index the slice rows "1".."N"; add mean / std / n per series (two or more) and overall.

    Mean and std are over the slices where the ROI is present (area > 0), n counts them; the
    standard deviation is the sample one (ddof 1): NaN, not 0, over a single slice
    (`summary_stats`), as the std rows' ``file`` cells say (`summary_cell`). Built in one
    piece: a cohort writes this table for every series.
    """
    rois = [column for column in slices.columns if column != "file"]
    values = slices[rois].to_numpy(dtype=float)
    files = slices["file"].tolist()
    rows_of: dict[int, list[int]] = {}  # one pass: a cohort has 100,000 series
    for i, k in enumerate(series):
        rows_of.setdefault(k, []).append(i)
    groups = sorted(rows_of)
    blocks, names, labels = [values], [str(i) for i in range(1, len(files) + 1)], list(files)
    for number in groups if len(groups) > 1 else []:
        members = rows_of[number]
        blocks.append(summary_stats(values[members]))
        names += [series_row(row, number) for row in SUMMARY_ROWS]
        span = series_label([str(files[i]) for i in members])
        labels += [summary_cell(row, span) for row in SUMMARY_ROWS]
    blocks.append(summary_stats(values))
    names += list(SUMMARY_ROWS)
    labels += [summary_cell(row, PRESENT) for row in SUMMARY_ROWS]
    wide = pd.DataFrame(np.vstack(blocks), index=names, columns=rois)
    wide.insert(0, "file", pd.Series(labels, index=names, dtype=object))
    return wide


def summarised(slices: pd.DataFrame, series: Sequence[int]) -> pd.DataFrame:
    """The wide table of per-slice rows (columns ``file`` then ROIs) with its summary rows.

    The rows `measure_areas` adds (per series when several, then overall), for tables put
    together from parts, e.g. the series of a cohort (`sliceseg.inference.merge`).

    Example:
        >>> summarised(pd.DataFrame({"file": ["a", "b"], "disc": [1.0, 3.0]}), [1, 1]).loc["mean"]
    """
    return with_summary_rows(slices.reset_index(drop=True), tuple(series))


def series_note() -> str:
    """The ``notes`` cell of each row of a cohort's ``series.csv``: what its mean, std and n
    columns are over, in the words of the area tables' summary rows (`summary_cell`) and of
    the overall rows' rule (`overall_mean_clause`), so that the file says it, not only the docs.

    Example:
        >>> series_note().split(";")[0]
        "mean, sample std (n − 1): over the series' slices with the ROI (area > 0), the std empty below 2 of them"
    """  # noqa: E501
    return (
        f"mean, {SAMPLE_STD}: over the series' {PRESENT}, the std empty below 2 of them; "
        "n: how many; a series unlike the training data keeps its own numbers here; in csa.csv "
        + overall_mean_clause("its areas")
    )


def overall_mean_clause(subject: str, *, is_every_series: bool | None = None) -> str:
    """Say what the overall mean and std (`leave_out_flagged`) do with series unlike the
    training data, in the words of every line and report that says it.

    Args:
        subject: what is left out, e.g. "its areas" (one series), "their areas".
        is_every_series: whether every series is unlike the training data (then they are over
            all of them); None where the sayer does not know (a line on one series).

    Example:
        >>> overall_mean_clause("their areas", is_every_series=False)
        'their areas are left out of the overall mean and std'
    """
    every = "every series is unlike the training data"
    if is_every_series:
        return f"{every}: the overall mean and std are over all of them"
    clause = f"{subject} are left out of the overall mean and std"
    if is_every_series is None:
        clause += f" (unless {every}: then those are over all of them)"
    return clause


def leave_out_flagged(
    overall: pd.DataFrame, values: pd.DataFrame, marks: Sequence[bool], series: int
) -> None:
    """Recompute the ``mean`` / ``std`` / ``n`` rows of ``overall`` (those it has) in place
    without the marked slices, their ``file`` cells saying what was left out; over every slice
    when every slice is marked, so that a study of one odd series still has numbers.

    Args:
        overall: a table with a ``file`` column and the ROI columns of ``values``.
        values: per slice, its area per ROI (columns: the ROIs).
        marks: per slice, whether its series is unlike the training data.
        series: how many series are unlike the training data.

    Example:
        >>> leave_out_flagged(wide, per_slice, [False, False, True], 1)
        >>> wide.loc["mean", "file"]
        'slices with the ROI (area > 0); without 1 series unlike the training data (1 slice)'
    """
    kept = [row for row, mark in enumerate(marks) if not mark]
    left_out = len(marks) - len(kept)
    count = f"{left_out} slice{'s' * (left_out != 1)}"
    if kept:
        numbers = summary_stats(values.iloc[kept].to_numpy(dtype=float))
        for row, row_numbers in zip(SUMMARY_ROWS, numbers, strict=True):
            if row in overall.index:
                overall.loc[row, list(values.columns)] = row_numbers
        note = f"without {series} series unlike the training data ({count})"
    else:
        note = f"every series is unlike the training data ({count}): over all of them"
    for row in SUMMARY_ROWS:
        if row in overall.index:
            overall.loc[row, "file"] = f"{overall.loc[row, 'file']}; {note}".lstrip("; ")
