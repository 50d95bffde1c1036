"""Tests for sliceseg.report.cohort: the cohort's report.html."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import pandas as pd

from sliceseg.measure.summary_rows import overall_mean_clause
from sliceseg.report.cohort import CohortSummary, write_cohort_report

FAILED = pd.DataFrame(columns=["series", "slices", "reason"])


def _row(name: str, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "series": name,
        "slices": 3,
        "mean psoas": 1000.0,
        "std psoas": 10.0,
        "n psoas": 3,
        "lowest_confidence": 0.5,
        "unlike_training": "",
        "warnings": 0,
        "warning_text": "",
        "report": f"series/{name}/report.html",
    }
    return row | values


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}  # link text -> href
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links[data] = self._href
            self._href = None


def _page(tmp_path: Path, rows: list[dict[str, object]], rois=("psoas",)) -> str:
    summary = CohortSummary(pd.DataFrame(rows), FAILED, "mm2", list(rois))
    return write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")


def test_a_series_link_opens_its_own_report_whatever_its_name(tmp_path):
    """A browser reads ``#`` as the start of a fragment, ``?`` of a query and ``%20`` as a
    space: the names must be URL-encoded, not only HTML-escaped, to reach the folder."""
    names = ["p 01", "p#2", "p%203", "p&4?x", "Müller é", "<script>alert(1)</script>"]
    page = _page(tmp_path, [_row(name) for name in names])
    parser = _Links()
    parser.feed(page)
    base = (tmp_path / "report.html").as_uri()
    for name in names:
        target = urlparse(urljoin(base, parser.links[name]))
        assert not target.fragment and not target.query, (name, parser.links[name])
        assert Path(unquote(target.path)) == tmp_path / "series" / name / "report.html"
    assert "<script>alert" not in page


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []  # the text of every <td>
        self._open = False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._open = True
            self.cells.append("")

    def handle_endtag(self, tag):
        self._open = self._open and tag != "td"

    def handle_data(self, data):
        if self._open:
            self.cells[-1] += data


def test_the_first_warnings_are_the_warning_text_cut_not_its_html(tmp_path):
    """The 300 characters shown are the warning's, not those of its escaped HTML, where one
    ``&`` is five: the cell showed 180 characters, or ended in a broken ``&am``."""
    warning = "s01.dcm: left/right psoas ratio 0.41 & <0.5 of the series median"
    text = " | ".join([warning] * 6)
    page = _page(tmp_path, [_row("p01", warnings=6, warning_text=text)])
    parser = _Cells()
    parser.feed(page)
    assert " | ".join([warning] * 4) + " | … (2 more)" in parser.cells


def test_the_first_warnings_end_at_a_warning_s_end_and_say_how_many_more(tmp_path):
    """Cut at 300 characters, the cell ended in the middle of a word ("… | sub")."""
    warnings = [f"sub{n:02d}/slice_{n:03d}.dcm: right psoas area 41 % of the series median"
                for n in range(1, 9)]  # fmt: skip
    page = _page(tmp_path, [_row("p01", warnings=8, warning_text=" | ".join(warnings))])
    parser = _Cells()
    parser.feed(page)
    (cell,) = [c for c in parser.cells if c.startswith("sub01/")]
    shown, rest = cell.split(" | … (")
    assert shown.split(" | ") == warnings[: len(shown.split(" | "))]
    assert rest == f"{len(warnings) - len(shown.split(' | '))} more)"
    assert len(shown) <= 300


def test_an_roi_found_in_no_series_is_named_not_left_out(tmp_path):
    """Every series without the ROI (its mean an empty cell): the histogram section showed
    the other ROIs only, or nothing under its heading, without a word."""
    rows = [
        _row(name, **{"mean psoas": np.nan, "std psoas": np.nan, "n psoas": 0}) for name in "ab"
    ]
    rows = [row | {"mean iliacus": 500.0 + k} for k, row in enumerate(rows)]
    section = _page(tmp_path, rows, rois=("psoas", "iliacus")).split("<h2>Mean area per series")[1]
    parser = _Cells()
    parser.feed(section.replace("figcaption", "td"))  # the captions' text
    assert parser.cells == [
        "psoas: in no series",
        "iliacus: 2 series, median 500.5 mm², range 500.0–501.0 mm²",
    ]


def _captions(page: str) -> list[str]:
    """The captions of the report's histograms of the series' mean areas."""
    parser = _Cells()
    parser.feed(page.split("<h2>Mean area per series")[1].replace("figcaption", "td"))
    return parser.cells


def test_the_histograms_leave_out_the_series_unlike_the_training_data(tmp_path):
    """csa.csv's overall rows leave such a series out, but the histogram of the series' means
    (its median and range) held it without a word: an inverted-contrast series' 3,800 mm²
    vertebral body stretched it. It is left out and counted, unless every series is unlike
    the training data (then, as csa.csv's rows, it is over all of them)."""
    rows = [_row("p1", **{"mean psoas": 1000.0}), _row("p2", **{"mean psoas": 1002.0})]
    rows.append(_row("odd", **{"mean psoas": 9000.0}, unlike_training="contrast"))
    lines = ["series odd is unlike the training data: contrast"]
    summary = CohortSummary(pd.DataFrame(rows), FAILED, "mm2", ["psoas"], unlike_training=lines)
    expected = [
        "psoas: 2 series, median 1001.0 mm², range 1000.0–1002.0 mm²; 1 series unlike the "
        "training data left out"
    ]
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    assert _captions(page) == expected
    assert "left out of the overall mean and std, and of the histograms below" in page
    merged = CohortSummary(  # as the merge gives them: per ROI every series' mean and mark
        pd.DataFrame(rows[:1]), FAILED, "mm2", ["psoas"], unlike_training=lines,
        series_count=3, means={"psoas": np.array([1000.0, 1002.0, 9000.0])},
        means_unlike={"psoas": np.array([False, False, True])},
    )  # fmt: skip
    page = write_cohort_report(tmp_path / "merged.html", merged).read_text(encoding="utf-8")
    assert _captions(page) == expected
    every = [row | {"unlike_training": "contrast"} for row in rows]
    page = _page(tmp_path, every)
    assert _captions(page) == ["psoas: 3 series, median 1002.0 mm², range 1000.0–9000.0 mm²"]


def test_a_series_unlike_the_training_data_is_marked_where_it_comes_first(tmp_path):
    """It is listed above less confident series, under a heading that said the list was by
    confidence, with nothing saying why: it now says so in its row and in the heading."""
    rows = [_row("sure but unlike", lowest_confidence=0.9, unlike_training="contrast"), _row("p2")]
    page = _page(tmp_path, rows)
    review = page.split("<h2>Review first</h2>")[1].split("<h2>")[0]
    parser = _Cells()
    parser.feed(review)
    assert parser.cells[0] == "sure but unlike ⚠ unlike the training data"
    assert parser.cells[5] == "p2"
    assert "unlike the training data first, then" in review


def test_failed_series_past_the_shown_lines_are_counted(tmp_path):
    """250 failed series: 200 rows, and nothing said that 50 more were in failed.csv."""
    failed = pd.DataFrame(
        [[f"s{k:03d}", 3, "no PixelSpacing"] for k in range(250)], columns=FAILED.columns
    )
    summary = CohortSummary(pd.DataFrame([_row("p01")]), failed, "mm2", ["psoas"])
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    assert page.count("<tr class='fail'>") == 200
    assert "… 50 more failed series in failed.csv" in page


def test_slice_counts_are_whole_numbers_and_a_missing_one_a_dash(tmp_path):
    """failed.csv's ``slices`` is empty for a failure recorded before its slices were counted:
    the column read as floats, and the report showed "3.0" and "nan"."""
    failed = pd.DataFrame([["s1", 3, "no PixelSpacing"], ["s2", None, "unreadable"]],
                          columns=FAILED.columns)  # fmt: skip
    rows = [_row("p01"), _row("p02", slices=pd.NA, warnings=2)]
    summary = CohortSummary(pd.DataFrame(rows), failed, "mm2", ["psoas"])
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    parser = _Cells()
    parser.feed(page.split("<h2>Failed series</h2>")[1].split("<h2>")[0])
    assert parser.cells == ["s1", "3", "no PixelSpacing", "s2", "–", "unreadable"]
    parser = _Cells()
    parser.feed(page.split("<h2>Review first</h2>")[1].split("<h2>")[0])
    # tied on confidence: in series order (`review_key`), not by warnings
    assert parser.cells == ["p01", "3", "0.500", "0", "", "p02", "–", "0.500", "2", ""]


def test_the_histogram_range_has_its_unit(tmp_path):
    """The caption said "median 1001.0 mm², range 1000.0–1002.0": the range had no unit."""
    rows = [_row("p1", **{"mean psoas": 1000.0}), _row("p2", **{"mean psoas": 1002.0})]
    assert _captions(_page(tmp_path, rows))[0].endswith("range 1000.0–1002.0 mm²")


def test_files_left_out_past_the_shown_lines_are_counted_from_notes_count(tmp_path):
    """A merge keeps the first lines of the files left out and counts them all."""
    notes = [f"Skipped s{k:06d}/a.dcm: cannot decode pixel data" for k in range(200)]
    summary = CohortSummary(
        pd.DataFrame([_row("p01")]), FAILED, "mm2", ["psoas"], notes=notes, notes_count=100_000
    )
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    assert page.count("<li>Skipped s") == 200
    assert "<li>… 99800 more</li>" in page


def test_warnings_cut_by_the_merge_keep_their_count_when_the_report_cuts_them():
    """The merge keeps a series' warnings cut (`first_warnings`), the report cuts them again:
    four 95-character warnings of six came out as "… (1 more)" instead of "… (3 more)"."""
    from sliceseg.report.cohort import first_warnings

    warnings = [f"{n}" * 95 for n in range(1, 7)]
    once = first_warnings(" | ".join(warnings))
    assert once == " | ".join(warnings[:3]) + " | … (3 more)"
    assert first_warnings(once) == once


def test_the_banner_says_the_overall_rows_are_over_every_series_when_every_one_is_unlike(
    tmp_path,
):
    """Every series unlike the training data: csa.csv's overall rows are over all of them, but
    the banner said they were left out of them; with one of two, it still says so."""
    rows = [_row(f"p{k}", unlike_training="contrast") for k in (1, 2)]
    lines = [f"series p{k} is unlike the training data: contrast" for k in (1, 2)]
    summary = CohortSummary(pd.DataFrame(rows), FAILED, "mm2", ["psoas"], unlike_training=lines)
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    banner = page.split("<section class='unlike'>")[1].split("</section>")[0]
    assert overall_mean_clause("", is_every_series=True) in banner  # a series report's words
    assert "left out of the overall mean" not in banner
    summary = CohortSummary(
        pd.DataFrame([rows[0], _row("p3")]), FAILED, "mm2", ["psoas"], unlike_training=lines[:1]
    )
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    words = "their areas are left out of the overall mean and std, and of the histograms below"
    assert f"{words}, and these series" in page


def test_a_series_line_a_series_report_and_the_cohort_report_word_the_rule_alike(tmp_path):
    """Three places said what the overall rows do with series unlike the training data, each
    in its own words; now all take `overall_mean_clause`'s."""
    from sliceseg.inference.familiarity import unlike_line
    from sliceseg.measure.series_verdict import Verdict
    from sliceseg.report.html import write_report

    line = unlike_line("p1", Verdict(True, ("contrast",)))
    assert line.endswith(f"; {overall_mean_clause('its areas')}.")
    table = pd.DataFrame(
        {"file": ["a", "b", "x"], "psoas": [1.0, 2.0, 1.5], "unlike_training": [1, 0, ""]},
        index=["1", "2", "mean"],
    )
    page = write_report(
        tmp_path / "r.html", title="t", settings={}, area_table=table, overlays=[],
        figures=[], warnings=[], unlike_training=[line],
    ).read_text(encoding="utf-8")  # fmt: skip
    rows = [_row("p1", unlike_training="contrast"), _row("p2")]
    summary = CohortSummary(pd.DataFrame(rows), FAILED, "mm2", ["psoas"], unlike_training=[line])
    cohort = write_cohort_report(tmp_path / "c.html", summary).read_text(encoding="utf-8")
    clause = overall_mean_clause("their areas", is_every_series=False)
    assert clause in page and clause in cohort


def test_series_left_out_are_said_under_the_counts_not_among_the_files(tmp_path):
    """A merge after one shard of two: the counts read as a whole cohort, and the line naming
    the series not finished sat at the bottom under "Files left out"."""
    line = "2 series of the input not finished, left out (p3, p4): a shard still running"
    files = ["Skipped p1/a.dcm: cannot decode pixel data"]
    summary = CohortSummary(
        pd.DataFrame([_row("p1"), _row("p2")]), FAILED, "mm2", ["psoas"], notes=files,
        left_out=[line],
    )  # fmt: skip
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    head, rest = page.split("<h2>Series left out</h2>")
    assert "Some series are left out of the tables: see Series left out." in head
    assert rest.index(line) < rest.index("<h2>Review first</h2>")
    files_left_out = page.split("<h2>Files left out</h2>")[1]
    assert files[0] in files_left_out and line not in files_left_out
    failed = pd.DataFrame([["p1", 3, "no PixelSpacing"]], columns=FAILED.columns)
    summary = CohortSummary(pd.DataFrame(), failed, "mm2", ["psoas"], series_count=0, slices=0)
    assert "No series finished: all 1 failed" in write_cohort_report(
        tmp_path / "all.html", summary
    ).read_text(encoding="utf-8")
    summary = CohortSummary(
        pd.DataFrame(), failed, "mm2", ["psoas"], series_count=0, slices=0, left_out=[line]
    )
    page = write_cohort_report(tmp_path / "some.html", summary).read_text(encoding="utf-8")
    assert "No series finished: 1 failed</b>" in page and line in page


def test_series_tied_on_confidence_are_in_csa_long_order_as_suggest_ranks_them():
    """Two series with the same lowest confidence, the later one (in csa_long.csv's order)
    with more warnings: the cohort report put it first (ties by warnings) while `suggest`
    (`least_confident`) ranks the same scores in the tables' order; both now follow the one
    review order (`review_key`): unlike the training data, confidence, csa_long.csv's order."""
    from sliceseg.measure.review_order import least_confident
    from sliceseg.report.cohort import review_order

    table = pd.DataFrame(
        [
            _row("p9", lowest_confidence=0.4),
            _row("p10", lowest_confidence=0.4, warnings=3),
            _row("p11", lowest_confidence=0.2),
            _row("p12", lowest_confidence=0.9, unlike_training="its Modality is CT"),
        ]
    )
    reviewed = review_order(table)["series"].tolist()
    flagged = [bool(text) for text in table["unlike_training"]]
    ranked = least_confident(
        table["lowest_confidence"].tolist(), table["series"], n=4, flagged=flagged
    )
    assert reviewed == [table["series"][i] for i in ranked] == ["p12", "p11", "p9", "p10"]


def test_the_runs_tissue_lines_are_shown_once_under_the_counts(tmp_path):
    """The lines on the series that lack tissue columns were printed only: a researcher who
    reads report.html beside csa.csv found empty CT columns without a word."""
    from sliceseg.measure.tissue import TissueSettings
    from sliceseg.measure.tissue_notes import SeriesTissue, tissue_lines

    series = {"p2": SeriesTissue(("MR",)), "p3": SeriesTissue(()), "p4": SeriesTissue(("CT",))}
    lines = tissue_lines(series, ["psoas"], TissueSettings(adipose_hu=(-200, -40)))
    assert len(lines) == 2  # no Modality (p3), not CT given CT options (p2)
    rows = [_row(name) for name in ("p1", "p2", "p3", "p4")]
    summary = CohortSummary(pd.DataFrame(rows), FAILED, "mm2", ["psoas"], tissue_notes=lines)
    page = write_cohort_report(tmp_path / "report.html", summary).read_text(encoding="utf-8")
    head, rest = page.split("<h2>Tissue columns</h2>")
    assert "<h1>sliceseg cohort report</h1><p>4 series" in head
    for line in lines:
        assert page.count(html.escape(line)) == 1 and rest.index(html.escape(line)) < rest.index(
            "<h2>Review first</h2>"
        )
    assert "Tissue columns" not in _page(tmp_path, rows)
