"""The study-size report in a real browser (Debian's chromium driven by playwright): open a
slice from its thumbnail, sort the area table, filter it to flagged and low-confidence slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sliceseg.report.html import write_report
from sliceseg.report.thumbnails import save_thumbnail
from sliceseg.report.visualize import save_overlay

CHROMIUM = Path("/usr/bin/chromium")
NAMES = ["vertebral body", "left psoas major"]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's /usr/bin/chromium is missing"),
]


def _run(tmp_path: Path) -> tuple[Path, pd.DataFrame, list[str]]:
    """12 slices: areas and confidences drawn at random, warnings naming slices 3 and 8."""
    rng = np.random.default_rng(4)
    files = [f"sub{1 + i // 6}/s{i:02d}" for i in range(12)]
    table = pd.DataFrame(
        {
            "file": files,
            "vertebral body": rng.uniform(900, 1400, 12).round(3),
            "left psoas major": rng.uniform(500, 900, 12).round(3),
        },
        index=[str(i) for i in range(1, 13)],
    )
    table.loc["mean"] = ["", *table[NAMES].mean().tolist()]
    table.loc["std"] = ["", *table[NAMES].std().tolist()]
    table["confidence"] = [*rng.uniform(0.5, 1.0, 12).round(4), np.nan, np.nan]
    overlays, thumbnails = [], []
    for i, file in enumerate(files):
        image = rng.normal(size=(96, 80))
        label = np.zeros((96, 80), np.uint8)
        label[20 + i : 50, 10:40], label[30:60, 45:70] = 1, 2
        overlay = save_overlay(tmp_path / "overlays" / f"{file}.jpg", image, label, NAMES)
        overlays.append((file, overlay))
        thumbnails.append(save_thumbnail(tmp_path / "thumbnails" / f"{file}.jpg", image, label))
    warnings = [f"{files[2]}: vertebral body is missing", f"{files[7]}: ratio far off"]
    report = write_report(
        tmp_path / "report.html", title="study", settings={}, area_table=table,
        overlays=overlays, figures=[], warnings=warnings, thumbnails=thumbnails,
    )  # fmt: skip
    return report, table, files


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _visible_slices(page) -> list[str]:
    return page.eval_on_selector_all(
        "#area-table tbody:first-of-type tr",
        "rows => rows.filter(r => !r.hidden).map(r => r.cells[0].textContent.trim())",
    )


def _column(page, index: int) -> list[float]:
    return page.eval_on_selector_all(
        "#area-table tbody:first-of-type tr",
        f"rows => rows.map(r => parseFloat(r.cells[{index}].getAttribute('data-value')))",
    )


def test_click_a_thumbnail_opens_the_full_overlay(tmp_path, page):
    report, _, files = _run(tmp_path)
    page.goto(report.as_uri())
    assert not page.is_visible("#viewer")
    page.click("#slice-5 a.thumb")
    page.wait_for_function("document.getElementById('viewer-img').naturalWidth > 0")
    assert page.is_visible("#viewer")
    shown = page.get_attribute("#viewer-img", "src")
    assert shown == f"overlays/{files[4]}.jpg"
    width = page.eval_on_selector("#viewer-img", "img => img.naturalWidth")
    assert width == Image.open(tmp_path / "overlays" / f"{files[4]}.jpg").width
    thumb = page.eval_on_selector("#slice-5 img", "img => img.naturalWidth")
    assert thumb < width  # the page itself holds the small picture only
    assert page.inner_text("#viewer-caption") == f"5 · {files[4]}"
    page.click("#viewer-close")
    assert not page.is_visible("#viewer")


def test_sort_by_any_column(tmp_path, page):
    report, table, _ = _run(tmp_path)
    page.goto(report.as_uri())
    slices = table.loc[[str(i) for i in range(1, 13)]]
    page.click("#area-table thead th:nth-child(3)")  # vertebral body
    assert _column(page, 2) == sorted(slices["vertebral body"])
    assert page.get_attribute("#area-table thead th:nth-child(3)", "aria-sort") == "ascending"
    page.click("#area-table thead th:nth-child(3)")
    assert _column(page, 2) == sorted(slices["vertebral body"], reverse=True)
    page.click("#area-table thead th:nth-child(5)")  # confidence
    expected = slices.sort_values("confidence").index.tolist()
    assert _visible_slices(page) == expected
    page.click("#area-table thead th:nth-child(1)")  # back to series order
    assert _visible_slices(page) == [str(i) for i in range(1, 13)]
    rows = page.eval_on_selector_all("#area-table tbody:last-of-type tr", "r => r.length")
    assert rows == 2  # mean and std stay below, unsorted


def test_filter_to_flagged_and_low_confidence(tmp_path, page):
    report, table, _ = _run(tmp_path)
    page.goto(report.as_uri())
    page.select_option("#row-filter", "flagged")
    assert _visible_slices(page) == ["3", "8"]
    assert page.inner_text("#rows-shown") == "2 of 12 slices shown"
    page.select_option("#row-filter", "low")
    lowest = table["confidence"].dropna().sort_values().index[:2]  # ceil(10 % of 12) = 2
    assert _visible_slices(page) == sorted(lowest, key=int)
    page.select_option("#row-filter", "all")
    assert len(_visible_slices(page)) == 12


def test_warning_links_to_its_slice(tmp_path, page):
    report, _, files = _run(tmp_path)
    page.goto(report.as_uri())
    page.click(f"#warnings a:text('{files[7]}')")
    assert page.evaluate("location.hash") == "#slice-8"
    review = page.eval_on_selector_all("#review li a", "links => links.map(a => a.hash)")
    assert len(review) == 2 and all(h.startswith("#slice-") for h in review)
