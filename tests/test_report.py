"""Tests for sliceseg.report.html: area plausibility checks and the self-contained HTML report."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sliceseg.errors import ConfigError
from sliceseg.measure.summary_rows import overall_mean_clause
from sliceseg.report.html import area_warnings, sided_pairs_from_names, write_report
from sliceseg.report.plots import plot_areas
from sliceseg.report.visualize import save_overlay

NAMES = ["vertebral body", "right psoas major", "left psoas major"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _area_table(rows: int = 6) -> pd.DataFrame:
    """A wide table as ``measure_areas`` builds it: slices "1".."N", then mean and std."""
    rng = np.random.default_rng(1)
    left = rng.uniform(900.0, 1100.0, rows)
    table = pd.DataFrame(
        {
            "file": [f"s{i:02d}.dcm" for i in range(1, rows + 1)],
            "vertebral body": rng.uniform(1200.0, 1400.0, rows),
            "right psoas major": left * rng.uniform(0.95, 1.05, rows),
            "left psoas major": left,
        },
        index=[str(i) for i in range(1, rows + 1)],
    )
    values = table[NAMES]
    table.loc["mean"] = ["", *values.mean().tolist()]
    table.loc["std"] = ["", *values.std(ddof=1).tolist()]
    return table


class _AreaTableParser(HTMLParser):
    """Collect the rows of ``<table id="area-table">``: row label and the data-value numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # > 0 inside the area table
        self.rows: dict[str, list[float]] = {}
        self._label: str | None = None
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and (self.depth or attributes.get("id") == "area-table"):
            self.depth += 1
        if not self.depth:
            return
        if tag == "tr":
            self._label = None
        elif tag == "th":
            self._in_th = True
        elif tag == "td" and "data-value" in attributes and self._label is not None:
            self.rows.setdefault(self._label, []).append(float(attributes["data-value"]))

    def handle_endtag(self, tag):
        if self.depth and tag == "th":
            self._in_th = False
        if self.depth and tag == "table":
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and self._in_th and data.strip() and self._label is None:
            self._label = data.strip()  # the row's first header cell: slice number, mean or std


def _parse_table(page: str) -> dict[str, list[float]]:
    parser = _AreaTableParser()
    parser.feed(page)
    return parser.rows


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.sources += [value or "" for name, value in attrs if name in ("src", "href")]


def _write_run(tmp_path: Path, *, warnings=()) -> tuple[Path, pd.DataFrame]:
    table = _area_table()
    rng = np.random.default_rng(2)
    overlays = []
    for i in range(1, 4):
        label = np.zeros((48, 64), np.uint8)
        label[10:30, 8:20], label[10:30, 24:36], label[10:30, 40:52] = 1, 2, 3
        path = save_overlay(tmp_path / f"s{i:02d}.jpg", rng.normal(size=(48, 64)), label, NAMES)
        overlays.append((f"s{i:02d}.dcm", path))
    plot_areas(table, path=tmp_path / "areas.png")
    report = write_report(
        tmp_path / "report.html",
        title="L3 areas <test> & co",
        settings={"model file": "model/sliceseg_best.pt", "architecture": "unet", "epochs": 20},
        area_table=table,
        overlays=overlays,
        figures=[("Area of each ROI along the series", tmp_path / "areas.png")],
        warnings=list(warnings),
        notes=["Skipped notes.txt: not a DICOM file"],
    )
    return report, table


class TestSidedPairsFromNames:
    @pytest.mark.parametrize(
        ("names", "pairs"),
        [
            (NAMES, [("left psoas major", "right psoas major")]),
            (["R psoas", "L psoas"], [("L psoas", "R psoas")]),
            (["psoas_right", "psoas_left", "ES_L", "ES_R"],
             [("psoas_left", "psoas_right"), ("ES_L", "ES_R")]),
            (["L3 vertebra", "left psoas", "right quadratus"], []),
        ],
    )  # fmt: skip
    def test_pairs(self, names, pairs):
        assert sided_pairs_from_names(names) == pairs


class TestAreaWarnings:
    def test_clean_table_has_no_warnings(self):
        table = _area_table()
        pairs = sided_pairs_from_names(NAMES)
        assert area_warnings(table, roi_names=NAMES, sided_pairs=pairs) == []

    def test_missing_roi_between_neighbours(self):
        table = _area_table()
        table.loc["3", "vertebral body"] = 0.0
        found = area_warnings(table, roi_names=NAMES)
        assert len(found) == 1
        assert found[0].startswith("s03.dcm: vertebral body is missing")
        assert "s02.dcm, s04.dcm" in found[0]

    def test_missing_at_the_ends_is_not_flagged(self):
        table = _area_table()
        table.loc["1", "vertebral body"] = 0.0
        table.loc["6", "vertebral body"] = 0.0
        assert area_warnings(table, roi_names=NAMES) == []

    def test_left_right_ratio_outlier(self):
        table = _area_table()
        table.loc["4", "right psoas major"] = table.loc["4", "left psoas major"] / 2.5
        pairs = sided_pairs_from_names(NAMES)
        found = area_warnings(table, roi_names=NAMES, sided_pairs=pairs)
        assert len(found) == 1
        assert found[0].startswith(
            "s04.dcm: left psoas major / right psoas major area ratio is 2.5"
        )

    def test_the_ratio_message_says_the_factor_the_rule_checks(self):
        """The rule is symmetric on a log scale (1.5 × or 1 / 1.5 × the median), but the
        message said "more than 50 % off" of a ratio 0.6 × the median: 40 % off."""
        table = _area_table()
        table[NAMES[1]] = table[NAMES[2]]  # ratio 1 on every slice: the median is 1
        table.loc["4", "left psoas major"] = 0.6 * table.loc["4", "right psoas major"]
        pairs = sided_pairs_from_names(NAMES)
        (found,) = area_warnings(table, roi_names=NAMES, sided_pairs=pairs)
        assert found == (
            "s04.dcm: left psoas major / right psoas major area ratio is 0.60, far from the "
            "series median 1.00 (below it by a factor of 1.67, more than the 1.5 allowed either "
            "way); check that left and right are not swapped, merged or cut."
        )
        table.loc["4", "left psoas major"] = 1.6 * table.loc["4", "right psoas major"]
        (found,) = area_warnings(table, roi_names=NAMES, sided_pairs=pairs)
        assert "(above it by a factor of 1.60, more than the 1.5 allowed either way)" in found

    def test_unknown_roi(self):
        with pytest.raises(ConfigError, match=r"\['spleen'\] are not columns"):
            area_warnings(_area_table(), roi_names=["spleen"])


class TestWriteReport:
    def test_self_contained(self, tmp_path):
        report, _ = _write_run(tmp_path)
        page = report.read_text(encoding="utf-8")
        parser = _Sources()
        parser.feed(page)
        srcs = [s for s in parser.sources if not s.startswith("#")]
        assert len(srcs) == 4 and all(s.startswith("data:image/") for s in srcs)
        text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", page).lower()
        assert "http" not in text and "url(" not in text and "@import" not in text
        assert re.findall(r"<script[^>]*>", text) == ["<script>"]  # one inline script, no src
        assert "L3 areas &lt;test&gt; &amp; co" in page

    def test_names_rois_mean_row_and_notes(self, tmp_path):
        report, _ = _write_run(tmp_path, warnings=["s03.dcm: vertebral body is missing"])
        page = report.read_text(encoding="utf-8")
        assert all(name in page for name in NAMES)
        assert '<tr class="summary first"><th>mean</th>' in page
        assert "1 warning" in page
        assert '<li><a href="#slice-3">s03.dcm</a>: vertebral body is missing</li>' in page
        assert "Skipped notes.txt" in page

    def test_a_warning_links_a_file_whose_name_holds_a_colon_and_space(self, tmp_path):
        """The file name ended at the warning's first ": ", so ``scan: 2.dcm`` lost its link
        and its row its flag; the longest name of a slice before a ": " is the file."""
        table = _area_table(rows=3)
        table["file"] = ["scan", "scan: 2.dcm", "a: b: c.dcm", "", ""]
        warnings = ["scan: 2.dcm: vertebral body is missing", "a: b: c.dcm: ratio: 2.0", "x: y"]
        page = write_report(
            tmp_path / "r.html", title="t", settings={}, area_table=table,
            overlays=[], figures=[], warnings=warnings,
        ).read_text(encoding="utf-8")  # fmt: skip
        assert '<li><a href="#row-2">scan: 2.dcm</a>: vertebral body is missing</li>' in page
        assert '<li><a href="#row-3">a: b: c.dcm</a>: ratio: 2.0</li>' in page
        assert "<li>x: y</li>" in page
        assert '<tr id="row-2" class="flagged">' in page and '<tr id="row-1">' in page

    def test_no_warnings_box(self, tmp_path):
        report, _ = _write_run(tmp_path)
        assert "No warnings" in report.read_text(encoding="utf-8")

    def test_table_numbers_equal_input(self, tmp_path):
        report, table = _write_run(tmp_path)
        rows = _parse_table(report.read_text(encoding="utf-8"))
        assert list(rows) == list(table.index)
        expected = table[NAMES].astype(float).to_numpy()
        np.testing.assert_allclose(np.array(list(rows.values())), expected, rtol=0, atol=1e-9)

    def test_one_decimal_shown(self, tmp_path):
        table = _area_table()
        table.loc["1", "vertebral body"] = 1234.5678
        path = write_report(
            tmp_path / "r.html", title="t", settings={}, area_table=table,
            overlays=[], figures=[], warnings=[],
        )  # fmt: skip
        assert 'data-value="1234.5678">1234.6</td>' in path.read_text(encoding="utf-8")

    def test_count_row_is_whole_and_the_summary_is_explained(self, tmp_path):
        table = _area_table()
        table.loc["n"] = ["slices with the ROI (area > 0)", 6.0, 5.0, 6.0]
        page = write_report(
            tmp_path / "r.html", title="t", settings={}, area_table=table,
            overlays=[], figures=[], warnings=[],
        ).read_text(encoding="utf-8")  # fmt: skip
        assert '<th>n</th><td>slices with the ROI (area &gt; 0)</td><td class="num" data-value' \
            '="6.0">6</td><td class="num" data-value="5.0">5</td>' in page  # fmt: skip
        assert "the mean and sample standard deviation (n − 1) over the slices where each ROI " \
            "is present (area &gt; 0), and n, how many" in page  # fmt: skip

    def test_the_banner_says_where_the_unlike_series_are_in_the_mean(self, tmp_path):
        """A cohort series' own report, its series unlike the training data: the banner said
        its areas were left out of the mean and std, which the table beneath is over."""
        line = "series p01 is unlike the training data: contrast"
        pages = {}
        for marks in ((1,) * 6, (1, 1, 1, 0, 0, 0)):
            table = _area_table()
            table["unlike_training"] = [*marks, "", ""]
            pages[marks] = write_report(
                tmp_path / "r.html", title="t", settings={}, area_table=table,
                overlays=[], figures=[], warnings=[], unlike_training=[line],
            ).read_text(encoding="utf-8")  # fmt: skip
        every, some = pages[(1,) * 6], pages[(1, 1, 1, 0, 0, 0)]
        # the words of every line and report on the overall rows (`overall_mean_clause`)
        assert "every series is unlike the training data: the overall mean and std are over " \
            "all of them, and their slices come first" in every  # fmt: skip
        assert "left out of the overall mean" not in every
        assert overall_mean_clause("their areas", is_every_series=False) in some
        assert overall_mean_clause("their areas", is_every_series=True) not in some

    def test_rows_of_an_unlike_series_are_marked_and_the_filter_says_what_it_keeps(self, tmp_path):
        """The table did not mark the rows of a series unlike the training data, and its
        "lowest confidence (N)" filter kept that series' slices first, however confident."""
        pages = {}
        for marks in ((1, 1, 1, 0, 0, 0), (0,) * 6):
            table = _area_table()
            table["confidence"] = [0.9, 0.9, 0.9, 0.2, 0.5, 0.6, np.nan, np.nan]
            table["unlike_training"] = [*marks, "", ""]
            pages[marks] = write_report(
                tmp_path / "r.html", title="t", settings={}, area_table=table,
                overlays=[], figures=[], warnings=[], low_confidence_share=0.5,
            ).read_text(encoding="utf-8")  # fmt: skip
        some, none = pages[(1, 1, 1, 0, 0, 0)], pages[(0,) * 6]
        rows = dict(re.findall(r'<tr id="row-(\d+)"(?: class="([^"]*)")?>', some))
        assert [("unlike" in rows[str(k)].split()) for k in range(1, 7)] == [True] * 3 + [False] * 3
        assert "the rows of a series unlike the training data are marked ⚠ and tinted red" in some
        assert '<option value="unlike">series unlike the training data (3)</option>' in some
        assert (
            '<option value="low">review first: series unlike the training data first, then '
            "lowest confidence (3)</option>" in some
        )
        assert "Review first (3): series unlike the training data first, then lowest" in some
        assert '<option value="low">review first: lowest confidence (3)</option>' in none
        assert 'value="unlike"' not in none and "unlike" not in "".join(
            re.findall(r'<tr id="row-\d+"(?: class="[^"]*")?>', none)
        )

    def test_missing_image(self, tmp_path):
        with pytest.raises(ConfigError, match=r"gone\.png: cannot read the overlay"):
            write_report(
                tmp_path / "r.html", title="t", settings={}, area_table=_area_table(),
                overlays=[("s01", tmp_path / "gone.png")], figures=[], warnings=[],
            )  # fmt: skip


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
        f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    """The report renders to a non-blank page whose table holds the numbers of csa.csv."""
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found (Debian: apt-get install -y chromium)")
    report, table = _write_run(tmp_path)
    csv = tmp_path / "csa.csv"
    table.to_csv(csv, index_label="slice")  # as AreaTable.save writes it
    started = time.perf_counter()
    shot = tmp_path / "report.png"
    _chromium(
        f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri(), profile=tmp_path / "p1"
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20, "the screenshot is nearly uniform"
    assert (pixels < 235).mean() > 0.05, "the screenshot is nearly white"
    dom = _chromium("--dump-dom", report.as_uri(), profile=tmp_path / "p2").stdout
    rows = _parse_table(dom)
    expected = pd.read_csv(csv, index_col="slice", dtype={"slice": str})
    assert list(rows) == list(expected.index)
    np.testing.assert_allclose(
        np.array(list(rows.values())), expected[NAMES].to_numpy(float), rtol=0, atol=1e-9
    )
    assert time.perf_counter() - started < 60


def test_a_report_of_some_slices_numbers_and_links_each_picture_as_its_own_slice(tmp_path):
    """`--visuals auto` past 500 slices draws only some slices: slice 5's picture is slice 5.

    Its figure is ``#slice-5`` with slice 5's confidence; the table rows and the review list
    of slices without a picture link to their table row, never to another slice's picture.
    """
    table = _area_table()
    table["confidence"] = [0.9, 0.8, 0.95, 0.85, 0.2, 0.7, np.nan, np.nan]  # + mean, std
    label = np.zeros((48, 64), np.uint8)
    label[10:30, 8:20] = 1
    overlay = save_overlay(tmp_path / "s05.jpg", np.ones((48, 64)), label, NAMES)
    page = write_report(
        tmp_path / "r.html", title="t", settings={}, area_table=table,
        overlays=[("s05.dcm", overlay)], figures=[], warnings=[], low_confidence_share=0.3,
    ).read_text(encoding="utf-8")  # fmt: skip
    assert '<figure id="slice-5" class="low">' in page and "<b>5</b> · s05.dcm · 0.200" in page
    assert 'id="slice-1"' not in page
    assert '<th><a href="#slice-5">5</a></th>' in page  # the drawn slice's row opens its picture
    assert '<th><a href="#slice-1">' not in page and "<th>1</th>" in page
    assert '<a href="#row-6">s06.dcm</a> · confidence 0.700' in page  # review: no picture


class _Thumbs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, data-full) of each thumbnail

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a" and attributes.get("class") == "thumb":
            self.links.append((attributes["href"] or "", attributes["data-full"] or ""))


def test_a_picture_whose_file_name_holds_a_hash_or_percent_opens_its_own_overlay(tmp_path):
    """A slice key keeps its DICOM file's name: ``IM#1`` and ``IM%201`` (not ``IM 1``) must
    reach ``overlays/IM#1.jpg`` and ``overlays/IM%201.jpg`` from the thumbnail's link."""
    table = _area_table(rows=3)
    table["file"] = ["IM#1", "IM%201", "Bild ü?", "", ""]
    label = np.zeros((48, 64), np.uint8)
    label[10:30, 8:20] = 1
    (tmp_path / "overlays").mkdir()
    overlays = [
        (name, save_overlay(tmp_path / "overlays" / f"{name}.jpg", np.ones((48, 64)), label, NAMES))
        for name in table["file"][:3]
    ]
    page = write_report(
        tmp_path / "report.html", title="t", settings={}, area_table=table, overlays=overlays,
        figures=[], warnings=[], thumbnails=[path for _, path in overlays],
    ).read_text(encoding="utf-8")  # fmt: skip
    parser = _Thumbs()
    parser.feed(page)
    base = (tmp_path / "report.html").as_uri()
    for (_name, path), links in zip(overlays, parser.links, strict=True):
        for link in links:
            target = urlparse(urljoin(base, link))
            assert not target.fragment and not target.query, link
            assert Path(unquote(target.path)) == path
