"""The report at the size of a study: size of report.html for N slices and its load time in
headless Chromium (Debian's /usr/bin/chromium through playwright; nothing is downloaded).

Builds what ``predict_folder`` builds for N phantom slices (overlays and thumbnails beside the
report, the area table with a confidence column, the plausibility warnings, one area plot per
series), writes the report, and opens it three times in a fresh browser page: the time from
navigation start to the end of the ``load`` event (``performance`` timing; thumbnails below the
fold load lazily), the time until every embedded image is decoded (all made eager after the
load, as if the reader scrolled through), then the time one sort of the table and one filter
take.

Usage::

    python bench/report_size.py                       # 500 slices of 256², 5 series
    python bench/report_size.py --slices 500 --size 512 --out /tmp/report500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sliceseg.measure.areas import AreaTable, measure_areas
from sliceseg.phantom.generate import ROI_NAMES, make_phantom_arrays
from sliceseg.report.html import area_warnings, sided_pairs_from_names, write_report
from sliceseg.report.plots import plot_areas
from sliceseg.report.thumbnails import save_thumbnail
from sliceseg.report.visualize import save_overlay

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip


def build_study(out: Path, *, slices: int, size: int, series: int, unique: int) -> Path:
    """Write overlays, thumbnails, plots and report.html for ``slices`` slices; return it."""
    from sliceseg.io.dicom import Slice

    images, labels, spacings = make_phantom_arrays(unique, size=(size, size), seed=1)
    per_series = -(-slices // series)
    series = -(-slices // per_series)  # 2 slices asked in 5 series make 2 series, not 3 empty
    keys = [f"series{1 + i // per_series}/s{i:04d}" for i in range(slices)]
    picks = [i % unique for i in range(slices)]
    stack = [
        Slice(
            images[j],
            tuple(spacings[j]),
            "PixelSpacing",
            Path(f"{k}.dcm"),
            series_uid=k.split("/")[0],
        )
        for k, j in zip(keys, picks, strict=True)
    ]
    areas = measure_areas([labels[j] for j in picks], stack, ROI_NAMES, names=keys)
    areas = _with_random_confidence(areas, seed=2)
    overlays, thumbnails = [], []
    for key, j in zip(keys, picks, strict=True):
        overlay = out / "overlays" / f"{key}.jpg"
        save_overlay(overlay, images[j], labels[j], ROI_NAMES, title=key)
        overlays.append((key, overlay))
        thumbnails.append(save_thumbnail(out / "thumbnails" / f"{key}.jpg", images[j], labels[j]))
    figures = []
    for k in range(series):
        rows = areas.per_slice.iloc[k * per_series : (k + 1) * per_series].copy()
        rows.insert(0, "file", keys[k * per_series : (k + 1) * per_series])
        plot_areas(rows, path=out / f"areas_{k + 1}.png")
        figures.append((f"Area of each ROI along series {k + 1}", out / f"areas_{k + 1}.png"))
    names = list(ROI_NAMES)
    warnings = area_warnings(
        areas.wide.drop(columns=["confidence"]),
        roi_names=names,
        sided_pairs=sided_pairs_from_names(names),
        series=areas.series,
    )
    return write_report(
        out / "report.html", title=f"{slices}-slice study", settings={"slices": slices},
        area_table=areas.wide, overlays=overlays, warnings=warnings, thumbnails=thumbnails,
        figures=figures,
    )  # fmt: skip


def _with_random_confidence(areas: AreaTable, *, seed: int) -> AreaTable:
    from sliceseg.inference.confidence import with_confidence

    n = int(areas.long["slice"].max())
    rng = np.random.default_rng(seed)
    return with_confidence(areas, rng.beta(8, 1, size=(n, len(ROI_NAMES))))


def measure_load(report: Path, *, repeats: int = 3) -> dict[str, float]:
    """Median seconds: navigation start → load event end (lazy thumbnails below the fold not
    yet decoded) and → every image decoded; one sort; one filter."""
    from playwright.sync_api import sync_playwright

    loads, decodes, sorts, filters = [], [], [], []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(repeats):
            page = browser.new_page()
            page.goto(report.as_uri(), wait_until="load", timeout=120_000)
            timing = page.evaluate(
                "() => { const t = performance.getEntriesByType('navigation')[0];"
                " return t.loadEventEnd - t.startTime; }"
            )
            loads.append(timing / 1000)
            decodes.append(
                page.evaluate(
                    "async () => { const all = Array.from(document.images).filter(i => i.src);"
                    " all.forEach(i => { i.loading = 'eager'; });"
                    " await Promise.all(all.map(i => i.decode()));"
                    " return performance.now() / 1000; }"
                )
            )
            start = time.perf_counter()
            page.click("#area-table thead th:nth-child(4)")
            page.evaluate("() => document.querySelector('#area-table tbody').rows.length")
            sorts.append(time.perf_counter() - start)
            start = time.perf_counter()
            page.select_option("#row-filter", "review")
            filters.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return {
        "load_s": statistics.median(loads),
        "load_max_s": max(loads),
        "decoded_s": statistics.median(decodes),
        "sort_s": statistics.median(sorts),
        "filter_s": statistics.median(filters),
    }


def missing_browser() -> str | None:
    """The one line that says what to install when playwright or Chromium is missing (the
    ``bench`` and ``dev`` extras bring playwright; Debian's package, Chromium); None: both there."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            "bench/report_size.py: playwright is not installed; pip install -e '.[bench]' "
            f"(it drives Debian's {CHROMIUM}; no browser is downloaded)."
        )
    if not Path(CHROMIUM).is_file():
        return (
            f"bench/report_size.py: no Chromium at {CHROMIUM}; apt-get install chromium "
            "(playwright drives it; no browser is downloaded)."
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """Build the study's report, print its size and load time; 2 (one line) without the
    browser it drives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=256, help="rows = cols of each slice")
    parser.add_argument("--series", type=int, default=5)
    parser.add_argument("--unique", type=int, default=50, help="distinct phantom slices drawn")
    parser.add_argument("--out", type=Path, default=Path("report_size_output"))
    args = parser.parse_args(argv)
    missing = missing_browser()  # before the study is built, which takes minutes
    if missing is not None:
        print(missing, file=sys.stderr)
        return 2
    started = time.perf_counter()
    report = build_study(args.out, slices=args.slices, size=args.size, series=args.series,
                         unique=args.unique)  # fmt: skip
    built = time.perf_counter() - started
    size_mb = report.stat().st_size / 1e6
    beside = sum(p.stat().st_size for p in (args.out / "overlays").rglob("*.jpg")) / 1e6
    timing = measure_load(report)
    print(
        f"{args.slices} slices of {args.size}²: report.html {size_mb:.1f} MB (goal < 15), "
        f"full overlays beside it {beside:.1f} MB (not embedded); built in {built:.0f} s\n"
        f"headless Chromium: load {timing['load_s']:.2f} s median of 3 (max "
        f"{timing['load_max_s']:.2f}; goal < 3), every thumbnail decoded after "
        f"{timing['decoded_s']:.2f} s, sort {timing['sort_s'] * 1000:.0f} ms, "
        f"filter {timing['filter_s'] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
