"""The cohort report: small and fast at 100,000 slices (distributions, review first, failures).

It embeds no pictures: one histogram per ROI of the series' mean areas (inline SVG), the series
to review first (unlike the training data, then lowest confidence: `review_key`) with links to
their own reports, the failed series with the reason, counts, and the run's lines on the
series that lack tissue columns (`tissue_lines`, as printed). Every series' own
``report.html`` is linked from ``series.csv`` (column ``report``) and from the rows shown here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from sliceseg.io.files import atomic_write_text
from sliceseg.measure.review_order import review_key
from sliceseg.measure.summary_rows import (
    area_column,
    overall_mean_clause,
    shown_number,
    unit_name,
)
from sliceseg.report.colours import roi_colour_hex

__all__ = [
    "REVIEW_FIRST",
    "SHOWN_LINES",
    "WARNING_CHARS",
    "CohortSummary",
    "first_warnings",
    "review_order",
    "write_cohort_report",
]

REVIEW_FIRST = 30
"""Series listed under "Review first"."""
SHOWN_LINES = 200
"""Lines shown per list (series unlike the training data, files left out, failed series)."""
WARNING_CHARS = 300
"""About how much of a series' warnings "Review first" shows (`first_warnings`)."""

_BINS = 20
_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1f2328; margin: 0; }
.unlike { background: #fdecea; border: 2px solid #b42318; border-radius: 8px; padding: 6px 16px; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 25px; border-bottom: 3px solid #0b5cad; padding-bottom: 6px; }
h2 { font-size: 19px; margin-top: 26px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #d1d9e0; padding: 3px 9px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; }
figure { margin: 0; } figcaption { font-size: 13px; color: #59636e; }
.fail { background: #fdecea; }
.note { background: #fff8c5; border-radius: 8px; padding: 2px 16px; }
"""


@dataclass(frozen=True)
class CohortSummary:
    """What the cohort report shows.

    Attributes:
        series: ``series.csv``'s table (series, slices, mean/std per ROI, lowest_confidence,
            warnings, warning_text, report).
        failed: ``failed.csv``'s table (series, slices, reason).
        unit: "mm2" or "pixels".
        roi_names: the ROIs, in order.
        notes: one line per input file left out (the first `SHOWN_LINES` are shown).
        unlike_training: one line per series unlike the training data (a banner on top; the
            first `SHOWN_LINES` are shown).
        series_count: how many series there are (None: ``len(series)``); with it, ``series``
            may hold only the series to review first (`review_order`), so that a merge keeps
            no table of the whole cohort.
        slices: slices over all series (None: the sum of ``series``' column).
        unlike_count: series unlike the training data (None: ``len(unlike_training)``).
        means: per ROI, every series' mean area (None: ``series``' ``mean <roi>`` columns).
        means_unlike: per ROI, for each of ``means``, whether that series is unlike the
            training data (None: none is; with ``means`` None, ``series``' column says).
        notes_count: how many lines ``notes`` stands for (None: ``len(notes)``); with it,
            ``notes`` may hold only the first lines (a merge keeps no list of every file).
        left_out: one line per kind of series of the input left out of the tables (not
            finished, another model's, removed from the input, ...), shown under the counts.
        tissue_notes: the run's lines on its series that lack tissue columns (no Modality, not
            in HU, not CT given CT options: `tissue_lines`), shown under those.
    """

    series: pd.DataFrame
    failed: pd.DataFrame
    unit: str
    roi_names: list[str]
    notes: list[str] = field(default_factory=list)
    unlike_training: list[str] = field(default_factory=list)
    series_count: int | None = None
    slices: int | None = None
    unlike_count: int | None = None
    means: Mapping[str, np.ndarray] | None = None
    means_unlike: Mapping[str, np.ndarray] | None = None
    notes_count: int | None = None
    left_out: list[str] = field(default_factory=list)
    tissue_notes: list[str] = field(default_factory=list)


def write_cohort_report(path: Path | str, summary: CohortSummary) -> Path:
    """Write the cohort's ``report.html`` (a few hundred kB at most, whatever the cohort's size).

    A cohort whose every series failed gets a report that says so, with the failed series and
    no area tables (there are none).

    Example:
        >>> write_cohort_report(out / "report.html", CohortSummary(table, failed, "mm2", names))
    """
    table = summary.series
    count = len(table) if summary.series_count is None else summary.series_count
    unit = unit_name(summary.unit)
    unlike = len(summary.unlike_training)
    parts = [_heading(summary, count), _left_out(summary.left_out), _tissue(summary.tissue_notes)]
    if count:
        parts += [
            _unlike(
                summary.unlike_training,
                unlike if summary.unlike_count is None else summary.unlike_count,
                count,
            ),
            _failed(summary.failed),
            _review(table, count),
            f"<h2>Mean area per series ({unit})</h2><div class='grid'>"
            + "".join(
                _histogram(*_means(summary, roi), roi, unit, colour=roi_colour_hex(k))
                for k, roi in enumerate(summary.roi_names, start=1)
            )
            + "</div>",
        ]
    else:
        parts.append(_failed(summary.failed))
    if summary.notes:
        shown = summary.notes[:SHOWN_LINES]
        items = "".join(f"<li>{html.escape(n)}</li>" for n in shown)
        count = len(summary.notes) if summary.notes_count is None else summary.notes_count
        more = f"<li>… {count - len(shown)} more</li>" if count > len(shown) else ""
        parts.append(f"<h2>Files left out</h2><ul>{items}{more}</ul>")
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>sliceseg cohort report</title><style>{_STYLE}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )
    return atomic_write_text(path, page)


def _heading(summary: CohortSummary, count: int) -> str:
    """The title, the counts and the tables; when no series finished, that said first."""
    slices = summary.slices
    if slices is None:
        slices = int(pd.to_numeric(summary.series["slices"], errors="coerce").fillna(0).sum())
    written = f"written {datetime.now():%Y-%m-%d %H:%M}"
    if not count:  # no areas: csa.csv and csa_long.csv are not written
        failed = f"{'' if summary.left_out else 'all '}{len(summary.failed)} failed"
        return (
            f"<h1>sliceseg cohort report</h1><p class='fail'><b>No series finished: {failed}"
            f"</b>, so there are no areas; {written}. Their reasons are below and in "
            '<a href="failed.csv">failed.csv</a>.</p>'
        )
    left_out = " <b>Some series are left out of the tables: see Series left out.</b>"
    return (
        f"<h1>sliceseg cohort report</h1><p>{count} series, {slices} slices, "
        f"{len(summary.failed)} failed series; {written}."
        f"{left_out if summary.left_out else ''} "
        'Tables: <a href="csa.csv">csa.csv</a>, <a href="csa_long.csv">csa_long.csv</a>, '
        '<a href="series.csv">series.csv</a>, <a href="failed.csv">failed.csv</a>.</p>'
    )


def _left_out(lines: list[str]) -> str:
    """The series of the input the tables lack, one line per kind, right under the counts."""
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<section class='fail'><h2>Series left out</h2><ul>{items}</ul></section>"


def _tissue(lines: list[str]) -> str:
    """The run's lines on the series whose tissue columns are empty or not in HU: a reader of
    the tables learns it here, not only from the log."""
    if not lines:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f"<section class='note'><h2>Tissue columns</h2><ul>{items}</ul></section>"


def _link(name: str, report: object) -> str:
    """A link to a series' report; its path URL-encoded (a ``#``, ``%`` or ``?`` in a name)."""
    text = html.escape(name)
    return f'<a href="{html.escape(quote(str(report)))}">{text}</a>' if report else text


def _means(summary: CohortSummary, roi: str) -> tuple[pd.Series, int]:
    """Every series' mean area of one ROI (those with a number) but those of the series unlike
    the training data, as csa.csv's overall rows (`write_area_tables`): over all when every
    series is; and how many series were left out."""
    if summary.means is not None:
        values = np.asarray(summary.means.get(roi, np.zeros(0)), dtype=float)
        marks = (summary.means_unlike or {}).get(roi)
        unlike = np.zeros(len(values), bool) if marks is None else np.asarray(marks, bool)
    else:
        table = summary.series
        name = f"mean {area_column(roi, summary.unit)}"  # as series.csv names it
        column = table.get(name, pd.Series(np.nan, index=table.index))
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        reasons = table.get("unlike_training", pd.Series("", index=table.index))
        unlike = (reasons.fillna("").astype(str) != "").to_numpy()
    if unlike.all():
        unlike = np.zeros(len(values), bool)
    kept = pd.Series(values[~unlike], dtype=float)
    return kept.dropna(), int(unlike.sum())


def _unlike(lines: list[str], count: int, series: int) -> str:
    """The banner of the ``count`` series (of ``series``) unlike the training data."""
    if not count:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines[:SHOWN_LINES])
    # as csa.csv's overall rows (`leave_out_flagged`) and the histograms: over all when all
    # are unlike
    mean = overall_mean_clause("their areas", is_every_series=count >= series)
    if count < series:
        mean += ", and of the histograms below"
    return (
        f"<section class='unlike'><h2>⚠ {count} series unlike the training data</h2><p>"
        "The model was not trained on data like these: their areas may be wrong however "
        f"confident it looks; {mean}, and these series come first under Review "
        f"first.</p><ul>{items}</ul></section>"
    )


def _failed(failed: pd.DataFrame) -> str:
    if not len(failed):
        return "<h2>Failed series</h2><p>None.</p>"
    rows = "".join(
        f"<tr class='fail'><td>{html.escape(str(r.series))}</td>"
        f"<td class='num'>{shown_number(r.slices, is_count=True)}</td>"
        f"<td>{html.escape(str(r.reason))}</td></tr>"
        for r in failed.head(SHOWN_LINES).itertuples()
    )
    more = len(failed) - SHOWN_LINES
    rest = f"<p>… {more} more failed series in failed.csv.</p>" if more > 0 else ""
    return (
        "<h2>Failed series</h2><p>Run the same command again to retry them.</p>"
        f"<table><tr><th>series</th><th>slices</th><th>reason</th></tr>{rows}</table>{rest}"
    )


def review_order(table: pd.DataFrame) -> pd.DataFrame:
    """Series to review first (``table``: rows of series.csv, in its order): by `review_key`,
    as `suggest` and the study report rank slices (unlike the training data, then the lowest
    confidence, ties in the table's order, csa_long.csv's)."""
    confidence = pd.to_numeric(table["lowest_confidence"], errors="coerce").to_numpy(float)
    unlike = table.get("unlike_training", pd.Series([""] * len(table), index=table.index))
    is_unlike = (unlike.fillna("").astype(str) != "").to_numpy()
    keys = [
        review_key(is_unlike=bool(is_unlike[i]), confidence=float(confidence[i]), position=i)
        for i in range(len(table))
    ]
    return table.iloc[sorted(range(len(table)), key=keys.__getitem__)]


def _review(table: pd.DataFrame, count: int) -> str:
    rows = []
    for r in review_order(table).head(REVIEW_FIRST).itertuples():
        confidence = "–" if pd.isna(r.lowest_confidence) else f"{float(r.lowest_confidence):.3f}"
        unlike = getattr(r, "unlike_training", "")
        mark = " <b>⚠ unlike the training data</b>" if isinstance(unlike, str) and unlike else ""
        rows.append(
            f"<tr><td>{_link(str(r.series), r.report)}{mark}</td>"
            f"<td class='num'>{shown_number(r.slices, is_count=True)}</td>"
            f"<td class='num'>{confidence}</td>"
            f"<td class='num'>{shown_number(r.warnings, is_count=True)}</td>"
            f"<td>{html.escape(first_warnings(str(r.warning_text or '')))}</td></tr>"
        )
    return (
        f"<h2>Review first</h2><p>The {min(REVIEW_FIRST, count)} series to review first: "
        "those unlike the training data first, then the lowest slice confidence (ties in "
        "series order, as csa_long.csv); every series is in series.csv.</p><table>"
        "<tr><th>series</th><th>slices</th><th>lowest confidence</th><th>warnings</th>"
        f"<th>first warnings</th></tr>{''.join(rows)}</table>"
    )


_MORE = re.compile(r"… \((\d+) more\)")  # how `first_warnings` ends what it cut


def first_warnings(text: str, limit: int = WARNING_CHARS) -> str:
    """A series' warnings (" | "-joined) cut to about ``limit`` characters at a warning's end,
    "… (N more)" saying what was left out, so that no warning is shown cut in the middle; a
    text it cut already keeps its count when cut again.

    Example:
        >>> first_warnings("a too small | b too large | c absent", limit=14)
        'a too small | … (2 more)'
    """
    if len(text) <= limit:
        return text
    warnings = text.split(" | ")
    earlier = _MORE.fullmatch(warnings[-1])  # a text cut before (the merge keeps it so)
    if earlier:
        warnings.pop()
    kept: list[str] = []
    for warning in warnings:
        if kept and len(" | ".join([*kept, warning])) > limit:
            break
        kept.append(warning)  # the first is kept whole, however long
    left = len(warnings) - len(kept) + (int(earlier[1]) if earlier else 0)
    return " | ".join(kept) + (f" | … ({left} more)" if left else "")


def _histogram(values: pd.Series, unlike: int, roi: str, unit: str, *, colour: str) -> str:
    """An inline SVG histogram of the series' mean area of one ROI, in the ROI's colour
    (``unlike``: series unlike the training data left out of ``values``)."""
    left_out = f"; {unlike} series unlike the training data left out" if unlike else ""
    if not len(values):  # said, not left out: the model found this ROI nowhere
        return (
            f"<figure><figcaption>{html.escape(roi)}: in no series{left_out}</figcaption></figure>"
        )
    low, high = float(values.min()), float(values.max())
    # means that differ only by rounding make a range numpy cannot split into bins
    scale = max(abs(low), 1.0)
    pad = 1e-6 * scale if high - low < 1e-9 * scale else 0.0
    counts, edges = np.histogram(values.to_numpy(), bins=_BINS, range=(low - pad, high + pad))
    width, height = 240, 90
    top = max(int(counts.max()), 1)
    bars = "".join(
        f"<rect x='{i * width / _BINS:.1f}' y='{height - c * height / top:.1f}' "
        f"width='{width / _BINS - 1:.1f}' height='{c * height / top:.1f}' fill='{colour}'/>"
        for i, c in enumerate(counts)
    )
    caption = (
        f"{html.escape(roi)}: {len(values)} series, median {np.median(values):.1f} {unit}, "
        f"range {edges[0]:.1f}–{edges[-1]:.1f} {unit}{left_out}"
    )
    return (
        f"<figure><svg width='{width}' height='{height}' role='img'>{bars}</svg>"
        f"<figcaption>{caption}</figcaption></figure>"
    )
