"""Tests for sliceseg.inference.merge and merge_tables: the streamed merge writes the tables
the whole-table merge wrote (kept below as the reference), whatever the chunk size."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from conftest import copy_series, invert_pixels, with_network_checks_open
from csv_text import numeric_cells, significant_digits
from sliceseg.errors import ConfigError
from sliceseg.inference import merge, merge_tables
from sliceseg.inference.cohort import CohortOptions, predict_cohort
from sliceseg.inference.familiarity import SeriesVerdict, with_familiarity
from sliceseg.inference.records import RunSettings, finished_series, series_dir
from sliceseg.io.tables import write_csv
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    FAMILIARITY_COLUMN,
    AreaTable,
    is_count_row,
    is_summary_row,
)
from sliceseg.measure.series_verdict import Verdict
from sliceseg.measure.summary_rows import series_label, summarised, summary_cell
from sliceseg.measure.tissue import CT_COLUMNS
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.report.cohort import review_order

TABLES = ("csa.csv", "csa_long.csv", "series.csv", "failed.csv")


@pytest.fixture(scope="module", params=["profile", "no profile"])
def predicted(request, tiny_model, tiny_phantom, tmp_path_factory) -> Path:
    """A cohort output: five series of three slices, one of them inverted (flagged when the
    model has its training profile; the other model file has none)."""
    root = tmp_path_factory.mktemp("merge")
    cohort = root / "cohort"
    for split in ("train", "test"):
        for folder in sorted((tiny_phantom / split / "dicoms").iterdir()):
            shutil.copytree(folder, cohort / folder.name)
    copy_series(cohort / "sub02", cohort / "sub02x", invert_pixels)
    model = with_network_checks_open(tiny_model, root / "open.pt")
    if request.param == "no profile":
        bundle = load_bundle(model)
        old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": None})
        model = save_bundle(root / "old.pt", bundle.model, old)
    settings = RunSettings(roi_names=(), visuals="none", exports=())
    out = root / "out"
    predict_cohort(model, cohort, out, settings=settings, options=CohortOptions(workers=0))
    return out


def _whole_merge(out: Path, into: Path) -> None:
    """The merge as it was: every series' tables parsed at once, summarised whole."""
    finished = finished_series(out)
    slices, summaries, longs, counts = [], [], [], []
    for name, _ in finished:
        wide = pd.read_csv(series_dir(out, name) / "csa.csv", index_col="slice", dtype=str)
        is_summary = [is_summary_row(i) for i in wide.index]
        text = (series_dir(out, name) / "csa.csv").read_text().splitlines()
        slices += [ln for ln, s in zip(text[1:], is_summary, strict=True) if not s]
        summaries += [
            (ln, len(counts) + 1) for ln, s in zip(text[1:], is_summary, strict=True) if s
        ]
        counts.append(is_summary.count(False))
        longs.append(pd.read_csv(series_dir(out, name) / "csa_long.csv"))
    header = text[0]
    table = pd.read_csv(
        io.StringIO("\n".join([header, *slices])), index_col="slice", dtype={"slice": str}
    )
    table = table.drop(columns=[FAMILIARITY_COLUMN], errors="ignore")
    confidence = table.pop(CONFIDENCE_COLUMN)
    numbers = [k for k, n in enumerate(counts, 1) for _ in range(n)]
    whole = summarised(table, [1] * len(table))
    own = pd.read_csv(
        io.StringIO("\n".join([header, *(ln for ln, _ in summaries)])),
        index_col="slice",
        dtype={"slice": str},
    )
    own = own.drop(columns=[FAMILIARITY_COLUMN, CONFIDENCE_COLUMN], errors="ignore")
    files = table["file"].astype(str).tolist()
    starts = np.cumsum([0, *counts[:-1]])
    labels = [series_label(files[s : s + n]) for s, n in zip(starts, counts, strict=True)]
    own["file"] = [
        summary_cell(str(row), labels[k - 1])
        for row, (_, k) in zip(own.index, summaries, strict=True)
    ]
    own.index = [f"{i} series {k}" for i, (_, k) in zip(own.index, summaries, strict=True)]
    wide = pd.concat([whole.iloc[: len(table)], own, whole.iloc[len(table) :]])[list(table.columns)]
    wide[CONFIDENCE_COLUMN] = float("nan")
    wide.iloc[: len(table), wide.columns.get_loc(CONFIDENCE_COLUMN)] = confidence.to_numpy()
    long = pd.concat(longs, ignore_index=True)
    long["slice"] += np.repeat(starts, [len(x) for x in longs])
    long["series"] = np.repeat(np.arange(1, len(longs) + 1), [len(x) for x in longs])
    areas = AreaTable(wide=wide, long=long, series=tuple(numbers))
    reasons = [record["summary"]["unlike_training"] for _, record in finished]
    if any(reason is not None for reason in reasons):
        verdicts = [
            SeriesVerdict(k, "", "", n, Verdict(bool(r), (r,) if r else ()))
            for k, (n, r) in enumerate(zip(counts, reasons, strict=True), 1)
        ]
        areas = with_familiarity(areas, verdicts)
    areas.named([name for name, _ in finished]).save(into)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [1, 2, 256])
def test_streamed_merge_writes_the_whole_table_merge_bytes(predicted, tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(merge_tables, "CHUNK_SERIES", chunk)
    monkeypatch.setattr(merge, "CHUNK_SERIES", chunk)
    merged = merge.merge_cohort(predicted)
    _whole_merge(predicted, tmp_path)
    for name in ("csa.csv", "csa_long.csv"):
        assert (predicted / name).read_bytes() == (tmp_path / name).read_bytes(), name
    wide = pd.read_csv(predicted / "csa.csv", index_col="slice", dtype={"slice": str})
    last = finished_series(predicted)[-1][0]
    assert f"mean series {last}" in wide.index and len(merged.counts) == 5 and merged.slices == 15
    series = pd.read_csv(predicted / "series.csv")
    assert series["series"].tolist() == ["sub01", "sub02", "sub02x", "sub03", "sub04"]
    assert series["slices"].tolist() == [3] * 5
    assert merged.areas.wide.shape == wide.shape  # read back from the files


def test_the_reports_histograms_leave_out_the_flagged_series_as_csa_csv_does(predicted):
    """The cohort report's histogram of the series' mean areas held the inverted series
    that csa.csv's overall rows leave out."""
    merged = merge.merge_cohort(predicted)
    series = pd.read_csv(predicted / "series.csv", keep_default_na=False)
    flagged = series["unlike_training"] != ""
    roi = series.columns[2].removeprefix("mean ")
    means = pd.to_numeric(series[f"mean {roi}"], errors="coerce")[~flagged].dropna()
    section = merged.report.read_text(encoding="utf-8").split("<h2>Mean area per series")[1]
    caption = section.split("<figcaption>")[1].split("</figcaption>")[0]
    assert caption.startswith(f"{roi}: {len(means)} series, median {means.median():.1f} mm²")
    assert caption.endswith("; 1 series unlike the training data left out") == flagged.any()


@pytest.mark.slow
def test_the_series_table_and_report_equal_those_of_every_row_at_once(predicted, monkeypatch):
    monkeypatch.setattr(merge, "CHUNK_SERIES", 2)
    monkeypatch.setattr(merge, "REVIEW_FIRST", 2)  # the bounded list keeps only the first two
    merged = merge.merge_cohort(predicted)
    text = (predicted / "series.csv").read_text()
    rows = [merge._series_row(predicted, n, r["summary"]) for n, r in finished_series(predicted)]
    whole = pd.DataFrame(rows)
    buffer = io.StringIO()
    write_csv(whole, buffer, index=False)  # the one rule for user CSVs' numbers
    assert text == buffer.getvalue()
    report = merged.report.read_text()
    assert "5 series, 15 slices" in report
    expected = review_order(whole).head(30)["series"].tolist()
    review = report.split("<h2>Review first</h2>")[1]
    cells = [cell.split(" <b>⚠")[0] for cell in review.split("<tr><td>")[1:]]  # the name
    shown = [cell.split("</")[0].rsplit(">", 1)[-1] for cell in cells]
    assert shown == expected[:2]
    flagged = whole["unlike_training"].astype(bool).sum()
    has_profile = FAMILIARITY_COLUMN in pd.read_csv(predicted / "csa.csv")
    assert flagged == has_profile  # the inverted copy, when the model can tell
    assert (whole.loc[whole["unlike_training"] != "", "series"] == "sub02x").all()
    assert (f"⚠ {flagged} series unlike the training data" in report) == bool(flagged)


@pytest.mark.slow
def test_series_table_counts_the_slices_each_mean_is_over(predicted):
    """series.csv's ``n <roi>``: the slices of the series where the ROI has an area (> 0),
    counted from the series' own csa_long.csv, which its ``mean <roi>`` is the mean over."""
    merge.merge_cohort(predicted)
    series = pd.read_csv(predicted / "series.csv", dtype=str, keep_default_na=False)
    checked = 0
    for _, row in series.iterrows():
        long = pd.read_csv(series_dir(predicted, row["series"]) / "csa_long.csv")
        for roi, areas in long.groupby("roi_name")["area_mm2"]:
            present = areas[areas > 0]
            assert row[f"n {roi}"] == str(len(present)), (row["series"], roi)
            if len(present):
                assert float(row[f"mean {roi}"]) == pytest.approx(present.mean())
            checked += 1
    assert checked == 5 * 6  # five series, six ROIs


def test_series_columns_are_the_keys_of_a_series_row(tmp_path):
    """series.csv is reindexed to `series_columns`: a key `_series_row` adds and the column list
    lacks would be dropped without a word."""
    summary = {"slices": 2, "mean": {"a": 1.0, "b": 2.0}, "std": {"a": 0.1, "b": 0.2}}
    summary |= {"n": {"a": 2, "b": 1}, "warnings": ["w"], "lowest_confidence": 0.9}
    row = merge._series_row(tmp_path, "s1", summary)
    assert list(row) == merge.series_columns(["a", "b"])


def test_series_csv_says_what_its_mean_std_and_n_are_over(predicted):
    """series.csv's mean / std / n columns said their rules only in the docs (which slices
    count, the sample std, the series unlike the training data); its last column, ``notes``,
    says them on every row, as csa.csv's summary rows say theirs in their ``file`` cell."""
    series = pd.read_csv(predicted / "series.csv", keep_default_na=False)
    assert list(series.columns)[-1] == "notes"
    assert set(series["notes"]) == {
        "mean, sample std (n − 1): over the series' slices with the ROI (area > 0), the std "
        "empty below 2 of them; n: how many; a series unlike the training data keeps its own "
        "numbers here; in csa.csv its areas are left out of the overall mean and std (unless "
        "every series is unlike the training data: then those are over all of them)"
    }


@pytest.mark.slow
def test_an_older_first_record_keeps_the_count_columns(predicted, tmp_path):
    """A record written before ``n <roi>`` existed, first in merge order, leaves its own count
    cells empty and every other series' counts in place (columns come from the run's ROIs)."""
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    merge.merge_cohort(out)
    reference = pd.read_csv(out / "series.csv", dtype=str, keep_default_na=False)
    first_name, record = finished_series(out)[0]
    record["summary"].pop("n")
    (series_dir(out, first_name) / "record.json").write_text(json.dumps(record))
    merge.merge_cohort(out)
    series = pd.read_csv(out / "series.csv", dtype=str, keep_default_na=False)
    counts = [c for c in series.columns if c.startswith("n ")]
    assert list(series.columns) == list(reference.columns) and len(counts) == 6
    assert (series.loc[0, counts] == "").all()
    assert series.loc[1:, counts].equals(reference.loc[1:, counts])
    assert series.drop(columns=counts).equals(reference.drop(columns=counts))


@pytest.mark.slow
def test_counts_are_whole_numbers_in_every_table(predicted):
    """The n rows of csa.csv, the unlike_training marks, and the counts of csa_long.csv and
    series.csv read 3, not 3.0."""
    merge.merge_cohort(predicted)
    wide = pd.read_csv(predicted / "csa.csv", dtype=str, keep_default_na=False)
    counts = wide[[is_count_row(s) for s in wide["slice"]]]
    assert len(counts) == 5 + 1  # n series <name> of each of the 5 series, n
    rois = [c for c in wide.columns[2:] if c not in (CONFIDENCE_COLUMN, FAMILIARITY_COLUMN)]
    assert counts[rois].map(str.isdigit).all().all(), counts[rois]
    if FAMILIARITY_COLUMN in wide:
        assert set(wide[FAMILIARITY_COLUMN]) == {"0", "1", ""}
    long = pd.read_csv(predicted / "csa_long.csv", dtype=str)
    whole = ["slice", "roi", "pixels"] + [FAMILIARITY_COLUMN] * (FAMILIARITY_COLUMN in long)
    assert long[whole].map(str.isdigit).all().all()
    series = pd.read_csv(predicted / "series.csv", dtype=str)
    whole = ["slices", "warnings", *(c for c in series.columns if c.startswith("n "))]
    assert len(whole) == 2 + 6
    assert series[whole].map(str.isdigit).all().all()


@pytest.mark.slow
def test_every_table_of_a_cohort_writes_its_numbers_without_binary_noise(predicted):
    """The phantom's spacings (4 decimals) gave areas such as 268.29082176000003 in the series'
    tables and the cohort's; each cell has at most 12 significant digits, and an area still
    reads back as pixels × row spacing × column spacing."""
    merge.merge_cohort(predicted)
    tables = [*(predicted / name for name in TABLES), *predicted.glob("series/*/csa*.csv")]
    assert len(tables) == 4 + 2 * 5
    for path in tables:
        cells = numeric_cells(path.read_text(encoding="utf-8"))
        assert max(map(significant_digits, cells), default=0) <= 12, path
    long = pd.read_csv(predicted / "csa_long.csv")
    exact = long["pixels"] * long["row_spacing_mm"] * long["col_spacing_mm"]
    assert long["area_mm2"].to_numpy() == pytest.approx(exact.to_numpy(), rel=1e-9)
    assert (long["area_mm2"] > 0).any()


def _as_ct(ds: pydicom.Dataset) -> None:
    """Relabel a file CT, its stored values − 1024 as HU: an edit for `copy_series`."""
    ds.Modality, ds.RescaleIntercept, ds.RescaleSlope = "CT", -1024, 1


@pytest.fixture(scope="module")
def mixed(tiny_model, tiny_phantom, tmp_path_factory) -> Path:
    """A cohort output of two MR series and one CT series (whose muscles get the CT columns)."""
    root = tmp_path_factory.mktemp("mixed")
    cohort = root / "cohort"
    for name in ("sub01", "sub02"):
        shutil.copytree(tiny_phantom / "train" / "dicoms" / name, cohort / name)
    copy_series(cohort / "sub01", cohort / "sub01ct", _as_ct)
    settings = RunSettings(roi_names=(), visuals="none", exports=())
    predict_cohort(
        tiny_model, cohort, root / "out", settings=settings, options=CohortOptions(workers=0)
    )
    return root / "out"


@pytest.mark.slow
def test_a_folder_of_ct_and_mr_series_merges_with_the_ct_columns_where_they_apply(mixed):
    """Issue found by running predict on pydicom's own test files: a CT series' tidy table has
    the muscle columns and an MR one's not, and the merge refused them as another run's."""
    own = {name: pd.read_csv(series_dir(mixed, name) / "csa_long.csv") for name in
           ("sub01", "sub01ct", "sub02")}  # fmt: skip
    assert set(CT_COLUMNS) <= set(own["sub01ct"].columns)
    assert not set(CT_COLUMNS) & set(own["sub01"].columns)
    long = pd.read_csv(mixed / "csa_long.csv")
    assert list(long.columns) == list(own["sub01ct"].columns)  # where the CT series has them
    for name, table in own.items():
        merged = long[long["series"] == name].reset_index(drop=True)
        expected = table.reindex(columns=long.columns).drop(columns=["slice", "series"])
        pd.testing.assert_frame_equal(
            merged.drop(columns=["slice", "series"]), expected, check_dtype=False, obj=name
        )
    ct_rows = long[long["series"] == "sub01ct"]
    assert ct_rows["muscle_radiodensity_hu"].notna().any()  # measured, not left empty
    assert long.loc[long["series"] != "sub01ct", list(CT_COLUMNS)].isna().all().all()
    wide = pd.read_csv(mixed / "csa.csv", index_col="slice", dtype={"slice": str})
    assert wide.loc["n"].drop("file").astype(float).max() <= 9  # three series of three slices


def test_another_runs_series_is_refused_naming_the_column(mixed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed, out)
    table = series_dir(out, "sub02") / "csa_long.csv"
    pd.read_csv(table).assign(PatientID="p2").to_csv(table, index=False)
    with pytest.raises(
        ConfigError, match=r"sub02/csa_long.csv: its columns differ .*\(PatientID\)"
    ):
        merge.merge_cohort(out)


def test_merge_order_puts_a_new_column_after_its_neighbour():
    columns = merge_tables.merge_order(["a", "b", "c"], ["a", "imat_mm2", "b", "c"], "x")
    assert columns == ["a", "imat_mm2", "b", "c"]
    assert merge_tables.merge_order(["a", "imat_mm2", "b"], ["a", "b"], "x") == columns[:3]
    assert merge_tables.merge_order([], ["imat_mm2", "a"], "x") == ["imat_mm2", "a"]


def test_a_merges_notes_name_the_first_series_and_count_the_rest(tmp_path):
    """They ended a cut list with ", …", where every other list says "and 2 more" (`few_of`)."""
    from sliceseg.inference.merge_notes import gone_notes, nothing_readable_message

    names = [f"p{i:02d}" for i in range(1, 13)]
    (line,) = gone_notes(tmp_path, names)
    assert line.startswith(
        "12 series not in the input of the latest predict run left out (p01, p02, p03, p04, "
        "p05, p06, p07, p08, p09, p10 and 2 more); "
    )
    assert "(12 series: p01, p02, p03, p04, p05 and 7 more); " in nothing_readable_message(
        tmp_path, names
    )


def test_a_merged_run_reads_back_names_that_look_like_numbers_as_names(tmp_path):
    """Slice keys, file names and series folders such as "00012" are names: read back as the
    numbers 12 they would no longer match the files or series.csv."""
    from sliceseg.inference.merge import MergeResult

    (tmp_path / "csa.csv").write_text("slice,file,VB\n1,00012,10.5\nmean,,10.5\n")
    (tmp_path / "csa_long.csv").write_text(
        "slice,series,file,roi,roi_name,area_mm2\n1,0001,00012,1,007,10.5\n"
    )
    (tmp_path / "series.csv").write_text("series,slices\n0001,1\n")
    run = MergeResult(tmp_path, pd.DataFrame(), None, (1,))
    assert run.areas.wide["file"].tolist()[0] == "00012"
    assert run.areas.long["file"].tolist() == ["00012"]
    assert run.areas.long["roi_name"].tolist() == ["007"]
    assert run.areas.long["series"].tolist() == ["0001"]  # series.csv's name
    assert run.series["series"].tolist() == ["0001"]


def test_patient_ids_with_leading_zeros_reach_the_cohort_table_as_written(
    tiny_model, tiny_phantom, tmp_path
):
    """`--keep-patient-info`: a PatientID 00123 (and a PatientName 007) must be the cohort
    csa_long.csv's, as in the series' own table — a number 123 links to no patient."""
    cohort = tmp_path / "cohort"
    folders = sorted((tiny_phantom / "train" / "dicoms").iterdir())[:2]
    for k, folder in enumerate(folders):
        (cohort / folder.name).mkdir(parents=True)
        for path in sorted(folder.glob("*.dcm")):
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName = f"0012{k}", f"00{k}"
            ds.save_as(cohort / folder.name / path.name)
    settings = RunSettings(roi_names=(), visuals="none", exports=(), keep_patient_info=True)
    out = tmp_path / "out"
    run = predict_cohort(tiny_model, cohort, out, settings=settings, options=CohortOptions())
    written = pd.read_csv(out / "csa_long.csv", dtype=str)
    assert sorted(set(written["patient_id"])) == ["00120", "00121"]
    assert sorted(set(written["patient_name"])) == ["000", "001"]
    assert run.merged is not None
    assert sorted(set(run.merged.areas.long["patient_id"])) == ["00120", "00121"]


def _all_failed(out: Path) -> Path:
    """A shards' folder whose every series failed, each for its own reason, after an earlier
    merge had written area tables (of series since redone and failed)."""
    from sliceseg.inference.attempts import failure_path
    from sliceseg.inference.cohort_record import check_out_dir
    from sliceseg.inference.records import RunRecord

    check_out_dir(
        out, RunRecord("m.pt", "ab" * 32, RunSettings(roi_names=("psoas",))), overwrite=False
    )
    reasons = {"p01": "p01.dcm: no PixelSpacing; give --fov", "p02": "RuntimeError: disk full"}
    for name, reason in reasons.items():
        failure_path(out, name).parent.mkdir(exist_ok=True)
        failure = {"series": name, "slices": 3, "reason": reason}
        failure_path(out, name).write_text(json.dumps(failure) + "\n")
    for name in ("csa.csv", "csa_long.csv"):
        (out / name).write_text("slice,file,psoas\n1,old.dcm,10.0\n")
    return out


def test_a_merge_where_every_series_failed_lists_them_and_exits_3(tmp_path, capsys):
    """Every series failed, for different reasons: the merge refused the folder as a user
    error (exit 2) with no report, while failures give exit 3."""
    from sliceseg.cli import main

    out = _all_failed(tmp_path / "out")
    assert main(["merge", str(out)]) == 3
    assert capsys.readouterr().out.startswith(
        f"Merged 0 series (0 slices), 2 failed; tables in {out}/"
    )
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["p01", "p02"]
    assert list(failed["reason"]) == [
        "p01.dcm: no PixelSpacing; give --fov",
        "RuntimeError: disk full",
    ]
    assert (out / "series.csv").read_text() == ",".join(merge.series_columns(["psoas"])) + "\n"
    assert not (out / "csa.csv").exists() and not (out / "csa_long.csv").exists()  # not old areas
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "No series finished: all 2 failed" in page and "RuntimeError: disk full" in page
    assert 'href="csa.csv"' not in page
    with pytest.raises(ConfigError, match=r"no series finished \(2 failed, see failed.csv\)"):
        _ = merge.merge_cohort(out).areas


def test_a_series_keeps_the_record_of_its_latest_attempt_only(tmp_path):
    """A failed series whose files are all damaged since is unreadable (skipped, no longer in
    failed.csv), and the other way round: never both."""
    from sliceseg.inference.attempts import (
        failure_path,
        unreadable_path,
        write_failure,
        write_unreadable,
    )
    from sliceseg.io.dicom import SkippedFile
    from sliceseg.io.series_plan import PlannedSeries

    out = _all_failed(tmp_path / "out")
    p01 = PlannedSeries("1.2.3", "p01", ())
    skipped = [SkippedFile(Path("p01/a.dcm"), "p01/a.dcm: cannot decode")]
    write_unreadable(out, p01, skipped, root=Path("."))
    assert not failure_path(out, "p01").exists()
    merged = merge.merge_cohort(out)
    assert list(merged.failed["series"]) == ["p02"] and merged.unreadable == ("p01",)
    write_failure(out, p01, "RuntimeError: disk full", root=Path("."))
    assert not unreadable_path(out, "p01").exists()
    assert list(merge.merge_cohort(out).failed["series"]) == ["p01", "p02"]


def test_a_merge_with_no_series_at_all_is_a_user_error(tmp_path, capsys):
    from sliceseg.cli import main
    from sliceseg.inference.cohort_record import check_out_dir
    from sliceseg.inference.records import RunRecord

    out = tmp_path / "out"
    check_out_dir(
        out, RunRecord("m.pt", "ab" * 32, RunSettings(roi_names=("psoas",))), overwrite=False
    )
    assert main(["merge", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out}: no finished or failed series to merge; run `sliceseg predict` into this "
        "folder first."
    )
    assert not (out / "series.csv").exists() and not (out / "report.html").exists()


def test_series_in_pixels_beside_series_in_mm2_are_refused_naming_both(mixed, tmp_path):
    """Issue found by review: ``predict --pixels`` on a folder where one series has no
    PixelSpacing wrote its pixel counts into ``csa.csv`` under "mm²", in one mean with the
    other series' mm²."""
    out = tmp_path / "out"
    shutil.copytree(mixed, out)
    record = series_dir(out, "sub02") / "record.json"
    data = json.loads(record.read_text())
    data["summary"]["unit"] = "pixels"
    record.write_text(json.dumps(data))
    table = series_dir(out, "sub02") / "csa.csv"  # a pixel series' ROI columns name the unit
    header, rest = table.read_text().split("\n", 1)
    rois = set(data["summary"]["mean"])
    named = [f"{c} (pixels)" if c in rois else c for c in header.split(",")]
    table.write_text(",".join(named) + "\n" + rest)
    with pytest.raises(ConfigError) as refused:
        merge.merge_cohort(out)
    # it said "(no PixelSpacing (0028,0030), --pixels)", untrue of a malformed one
    assert str(refused.value) == (
        f"{out}: series sub02 is measured in pixels (--pixels: its files have no spacing in mm) "
        "while series sub01 is in mm², so the cohort's areas and means would mix the two; give "
        "--fov MM (and --matrix ROWS COLS) and run again with --overwrite, or predict the "
        "series without a spacing into another --out."
    )


def test_the_files_left_out_stay_bounded_however_many_series_left_some_out():
    """100,000 finished series with a damaged file each: the first lines kept, all counted;
    the plan's files come first and the total is theirs plus the series'."""
    from sliceseg.inference.merge_notes import SkippedLines
    from sliceseg.io.dicom import SkippedFile
    from sliceseg.report.cohort import SHOWN_LINES

    decoding = SkippedLines()
    for k in range(100_000):
        decoding.add([f"s{k:06d}/a.dcm: cannot decode pixel data"])
    assert (len(decoding.lines), decoding.count) == (SHOWN_LINES, 100_000)
    assert decoding.lines[0] == "Skipped s000000/a.dcm: cannot decode pixel data"
    files = SkippedLines()
    files.add_files([SkippedFile(Path("notes.txt"), "notes.txt: not DICOM")])
    files.extend(decoding)
    assert files.lines[:2] == ["Skipped notes.txt: not DICOM", decoding.lines[0]]
    assert (len(files.lines), files.count) == (SHOWN_LINES, 100_001)


def test_the_plans_left_out_files_are_kept_compact_and_counted(tmp_path):
    """100,000 files left out while planning: ``input_series.json`` keeps the first lines the
    report shows (path under the input, why) and the count, not 100,000 paths; written twice,
    it is not rewritten."""
    from sliceseg.inference.merge_notes import SkippedLines
    from sliceseg.inference.records import read_input_skipped, write_input_series
    from sliceseg.io.dicom import SkippedFile
    from sliceseg.io.series_plan import CohortPlan
    from sliceseg.report.cohort import SHOWN_LINES

    root = tmp_path / "in"
    left = [SkippedFile(root / f"f{k:06d}.txt", "not a DICOM file") for k in range(100_000)]
    plan = CohortPlan(root, (), tuple(left))
    assert write_input_series(tmp_path, plan) == ""
    assert (tmp_path / "input_series.json").stat().st_size < 20_000  # 100,000 lines: megabytes
    assert write_input_series(tmp_path, plan) is None
    files, count = read_input_skipped(tmp_path)
    assert (len(files), count) == (SHOWN_LINES, 100_000)
    lines = SkippedLines()
    lines.add_files(files, count=count)
    assert lines.lines[0] == "Skipped f000000.txt: not a DICOM file"
    assert (len(lines.lines), lines.count) == (SHOWN_LINES, 100_000)
    assert read_input_skipped(tmp_path / "older") == ([], 0)


def test_merging_a_predict_folder_output_says_it_needs_no_merge(tiny_model, tiny_phantom, tmp_path):
    from sliceseg.inference.folder import predict_folder

    out = tmp_path / "run"
    predict_folder(tiny_model, tiny_phantom / "test" / "dicoms", out, device="cpu", report=False)
    with pytest.raises(ConfigError) as caught:
        merge.merge_cohort(out)
    assert str(caught.value) == (
        f"{out}: holds csa.csv but no cohort.json: a predict_folder (or `sliceseg measure`) "
        "output, whose tables are written whole already; it needs no merge. merge_cohort "
        "(`sliceseg merge`) joins the series of a predict_cohort (`sliceseg predict`) run."
    )
    assert (out / "csa.csv").is_file() and not (out / "series.csv").exists()


def test_merging_a_folder_that_is_no_run_says_which_run_it_takes(tmp_path):
    with pytest.raises(ConfigError) as caught:
        merge.merge_cohort(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: no cohort.json, so not the output folder of a predict_cohort (`sliceseg "
        "predict`) run; give the --out of such a run."
    )


def _shard_folder(out: Path, *, finished: str, inputs: list[str]) -> Path:
    """A cohort folder (cohort.json of model ``ab…``) holding series ``finished`` made by
    another model (``cd…``), and an input of the series ``inputs``."""
    from sliceseg.inference.cohort_record import check_out_dir
    from sliceseg.inference.records import RunRecord

    record = RunRecord("m.pt", "ab" * 32, RunSettings(roi_names=("psoas",)))
    check_out_dir(out, record, overwrite=False)
    older = {**record.to_dict(), "model": {"name": "old.pt", "sha256": "cd" * 32}}
    series_dir(out, finished).mkdir(parents=True)
    (series_dir(out, finished) / "record.json").write_text(json.dumps(older))
    (out / "input_series.json").write_text(json.dumps({"series": inputs}))
    return out


def test_a_merge_of_another_models_series_only_names_them_not_an_empty_folder(tmp_path):
    """``predict --overwrite`` with a new model, its shard not done yet: the merge said "no
    finished or failed series to merge; run `sliceseg predict` into this folder first", of a
    folder holding the earlier model's series and a shard still to run."""
    out = _shard_folder(tmp_path / "out", finished="p01", inputs=["p01", "p02"])
    with pytest.raises(ConfigError) as caught:
        merge.merge_cohort(out)
    assert str(caught.value) == (
        f"{out}: no series of the latest predict run's model and settings finished or failed "
        "yet: 1 series made by another model or settings (p01); 1 series of the input not "
        f"finished (p02); run the predict command (each shard) again, then `sliceseg merge {out}`."
    )


def test_a_damaged_cohort_json_is_refused_in_one_line(tmp_path, capsys):
    """A cohort.json that is not JSON: a merge whose series had all failed ended in an
    internal error (KeyError: 'roi_names'); one with finished series called them another
    model's and said to run predict first."""
    from sliceseg.cli import main

    out = _all_failed(tmp_path / "out")
    (out / "cohort.json").write_text("{")
    assert main(["merge", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out / 'cohort.json'}: damaged (not the JSON record of a predict run), so the "
        "model and settings of the series are unknown; run the predict command again with "
        f"--overwrite, which rewrites it and skips the series of that model and settings, then "
        f"`sliceseg merge {out}`."
    )


def test_merging_a_folder_that_is_not_there_says_so(tmp_path):
    """A typo in the folder's name was answered "no cohort.json", as if the folder were there."""
    for path, what in ((tmp_path / "typo", "no such folder"), (tmp_path / "f.txt", "not a folder")):
        if what == "not a folder":
            path.write_text("x")
        with pytest.raises(ConfigError) as caught:
            merge.merge_cohort(path)
        assert str(caught.value) == (
            f"{path}: {what}; give the --out of a predict_cohort (`sliceseg predict`) run."
        )


@pytest.mark.slow
def test_series_of_another_model_left_out_make_the_merge_exit_3(predicted, tmp_path, capsys):
    """A new model with --overwrite, one shard done: the merge left the earlier model's
    series out of the tables and exited 0, so `afterok` jobs ran on half a cohort."""
    from sliceseg.cli import main

    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    name, record = finished_series(out)[0]
    record["model"]["sha256"] = "cd" * 32
    (series_dir(out, name) / "record.json").write_text(json.dumps(record))
    assert main(["merge", str(out)]) == 3
    assert f"1 series made by another model or settings left out ({name})" in (
        capsys.readouterr().err
    )
    merged = merge.merge_cohort(out)
    assert not merged.is_complete and merged.outdated == (name,)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Series left out</h2>" in page and "Some series are left out of the tables" in page


@pytest.mark.slow
def test_a_run_without_report_removes_an_earlier_cohort_report(predicted, tmp_path):
    """``predict --no-report --overwrite`` into a folder with a report: the earlier run's
    report.html stayed, showing the earlier series as this run's."""
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    assert merge.merge_cohort(out).report == out / "report.html"
    for path in [out / "cohort.json", *(out / "series").glob("*/record.json")]:
        data = json.loads(path.read_text())
        data["settings"]["report"] = False
        path.write_text(json.dumps(data))
    merged = merge.merge_cohort(out)
    assert merged.report is None and not (out / "report.html").exists()
    assert merged.is_complete and len(merged.series) == 5


COHORT_OUTPUTS = ("csa.csv", "csa_long.csv", "series.csv", "failed.csv", "report.html")


def test_a_merge_with_nothing_to_merge_removes_the_earlier_merges_outputs(tmp_path, capsys):
    """``predict --overwrite`` with a new model, no shard done yet: the merge stopped (exit 2)
    and left the earlier model's csa.csv, series.csv and report.html, read as this run's."""
    from sliceseg.cli import main

    out = _shard_folder(tmp_path / "out", finished="p01", inputs=["p01", "p02"])
    for name in COHORT_OUTPUTS:
        (out / name).write_text("earlier\n")
    assert main(["merge", str(out)]) == 2
    assert [name for name in COHORT_OUTPUTS if (out / name).exists()] == []
    assert capsys.readouterr().err.strip() == (
        f"error: {out}: no series of the latest predict run's model and settings finished or "
        "failed yet: 1 series made by another model or settings (p01); 1 series of the input "
        f"not finished (p02); run the predict command (each shard) again, then `sliceseg merge "
        f"{out}`. Removed the earlier merge's csa.csv, csa_long.csv, series.csv, failed.csv, "
        "report.html: they showed series this run does not hold."
    )


def _fail(*_args: object, **_kwargs: object) -> None:
    raise ConfigError("disk full")


def _earlier_outputs(out: Path) -> dict[str, str]:
    """Mark every cohort output as an earlier merge's; return what each holds."""
    for name in COHORT_OUTPUTS:
        (out / name).write_text(f"earlier {name}\n")
    return {name: f"earlier {name}\n" for name in COHORT_OUTPUTS}


def test_a_merge_whose_report_fails_leaves_the_earlier_outputs_all_as_they_were(
    tmp_path, monkeypatch
):
    """failed.csv and series.csv were renamed into place (and the area tables removed) before
    the report was written: a failing report left new tables beside the earlier report."""
    out = _all_failed(tmp_path / "out")
    earlier = _earlier_outputs(out)
    monkeypatch.setattr(merge, "write_cohort_report", _fail)
    with pytest.raises(ConfigError, match="disk full"):
        merge.merge_cohort(out)
    assert {name: (out / name).read_text() for name in COHORT_OUTPUTS} == earlier
    assert list(out.glob(".sliceseg-tmp*")) == []


@pytest.mark.slow
def test_a_merge_whose_area_tables_fail_leaves_the_earlier_outputs_as_they_were(
    predicted, tmp_path, monkeypatch
):
    """series.csv was renamed into place before the area tables were written: a merge that
    failed there left a new series.csv beside the earlier csa.csv and report."""
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    earlier = _earlier_outputs(out)
    monkeypatch.setattr(merge, "write_area_tables", _fail)
    with pytest.raises(ConfigError, match="disk full"):
        merge.merge_cohort(out)
    assert {name: (out / name).read_text() for name in COHORT_OUTPUTS} == earlier
    assert list(out.glob(".sliceseg-tmp*")) == []


def _damage(out: Path, table: str, damage: str) -> tuple[str, str]:
    """Damage the table of the second series; return its name and the reason the merge gives."""
    name, record = finished_series(out)[1]
    path = series_dir(out, name) / table
    roi = next(iter(record["summary"]["mean"]))
    if damage == "missing":
        path.unlink()
        return name, f"{table} is missing"
    if damage == "empty":
        path.write_text("")
        return name, f"{table} is empty"
    if damage == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
        return name, f"{table} is not a readable CSV table"
    if damage == "wrong columns":
        header, rest = path.read_text().split("\n", 1)
        path.write_text(header.replace(f",{roi},", ",x,") + "\n" + rest)
        return name, f"{table} lacks the column {roi}"
    path.write_text(path.read_text() + "1,2\n")  # a cut-off row
    return name, f"{table} has ragged rows"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("table", "damage"),
    [
        ("csa.csv", "missing"),
        ("csa.csv", "empty"),
        ("csa.csv", "garbage"),
        ("csa.csv", "wrong columns"),
        ("csa_long.csv", "missing"),
        ("csa_long.csv", "cut off"),
    ],
)
def test_a_series_with_a_damaged_table_is_left_out_and_named(
    predicted, tmp_path, capsys, table, damage
):
    """One damaged series table made the whole merge refuse (exit 2): no cohort tables."""
    from sliceseg.cli import main

    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    name, why = _damage(out, table, damage)
    assert main(["merge", str(out)]) == 3
    assert (
        f"warning: 1 series with a damaged table left out ({name}: {why}) in {out / 'series'}"
        f"/<name>/; run the predict command again, which redoes them, then `sliceseg merge "
        f"{out}`."
    ) in capsys.readouterr().err.splitlines()
    kept = pd.read_csv(out / "series.csv", dtype={"series": str})["series"].tolist()
    assert len(kept) == 4 and name not in kept
    assert sorted(set(pd.read_csv(out / "csa_long.csv", dtype=str)["series"])) == kept
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Series left out</h2>" in page and f"({name}: {why})" in page
    merged = merge.merge_cohort(out)
    assert merged.damaged == ((name, why),) and not merged.is_complete


@pytest.mark.slow
def test_predict_redoes_a_series_whose_table_is_damaged(predicted, tmp_path):
    """The resume took a series with a record as finished, whatever its tables held: every
    later run skipped it and every merge left it out."""
    out = tmp_path / "out"
    shutil.copytree(predicted, out)
    name, _ = _damage(out, "csa.csv", "empty")
    model = predicted.parent / json.loads((out / "cohort.json").read_text())["model"]["file"]
    settings = RunSettings(roi_names=(), visuals="none", exports=())
    run = predict_cohort(
        model, predicted.parent / "cohort", out, settings=settings, options=CohortOptions(workers=0)
    )
    assert run.merged is not None and run.merged.is_complete and run.merged.damaged == ()
    redone = (series_dir(out, name) / "csa.csv").read_text()
    assert redone == (series_dir(predicted, name) / "csa.csv").read_text()


def test_a_merge_clears_what_a_killed_merge_left_but_not_a_running_one_s(tmp_path):
    """Issue found by review: a merge killed outright left its hidden folder in OUT
    (``.sliceseg-tmp.together.*``), and nothing ever removed it."""
    import socket
    import subprocess
    import sys

    out = _all_failed(tmp_path / "out")
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])  # a process that has ended
    dead.wait()
    stages = {
        "killed": f".sliceseg-tmp.together.{host}-{dead.pid}.k2j3_a9x",
        "unnamed": ".sliceseg-tmp.together.abc_1234",  # named before names held the process
        "running": f".sliceseg-tmp.together.{host}-{os.getppid()}.zz9_abcd",
        "elsewhere": ".sliceseg-tmp.together.node-7.example.org-4242.q1w2e3r4",
    }
    for name in stages.values():
        (out / name).mkdir()
        (out / name / "series.csv").write_text("half\n")
    merge.merge_cohort(out)
    left = sorted(p.name for p in out.glob(".sliceseg-tmp*"))
    assert left == sorted([stages["running"], stages["elsewhere"]])


def test_a_failure_record_half_renamed_by_a_killed_run_is_listed_once(tmp_path):
    """``kill -9`` between writing a failure record and renaming it left its temporary file
    (``OUT/failed/.sliceseg-tmp.p01.<random>.json``, whole JSON), and the merge read it as a
    record of its own: p01 was listed twice in failed.csv."""
    from sliceseg.inference.attempts import failure_path, unreadable_path

    out = _all_failed(tmp_path / "out")
    for record in (failure_path(out, "p01"), unreadable_path(out, "p03")):
        record.parent.mkdir(exist_ok=True)
        data = {"series": record.stem, "slices": 3, "reason": "x", "skipped": []}
        (record.parent / f".sliceseg-tmp.{record.stem}.k1ll3d.json").write_text(json.dumps(data))
    merged = merge.merge_cohort(out)
    assert list(merged.failed["series"]) == ["p01", "p02"]
    assert merged.unreadable == ()
    assert list(pd.read_csv(out / "failed.csv")["series"]) == ["p01", "p02"]


class _Killed(BaseException):
    """``kill -9``: nothing after it runs, no cleanup either."""


@pytest.mark.slow
def test_a_merge_run_again_after_a_kill_between_its_renames_writes_the_uninterrupted_tables(
    predicted, tmp_path, monkeypatch
):
    """``kill -9`` after some of the merge's renames leaves new tables beside an earlier merge's
    (and its hidden folder): merging again gives every table an uninterrupted merge gives."""
    from sliceseg.io import files
    from sliceseg.report import cohort as cohort_report

    class Stopped(cohort_report.datetime):  # type: ignore[name-defined,misc]
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, tzinfo=tz)

    monkeypatch.setattr(cohort_report, "datetime", Stopped)
    names = (*TABLES, "report.html")
    whole = tmp_path / "whole"
    shutil.copytree(predicted, whole)
    merge.merge_cohort(whole)
    expected = {name: (whole / name).read_bytes() for name in names}
    real_replace = os.replace
    for step in range(len(names) + 1):
        out = tmp_path / f"killed-at-{step}"
        shutil.copytree(predicted, out)
        shutil.move(series_dir(out, "sub04"), tmp_path / f"aside-{step}")
        merge.merge_cohort(out)  # the earlier merge: without sub04
        old = {name: (out / name).read_bytes() for name in names}
        shutil.move(tmp_path / f"aside-{step}", series_dir(out, "sub04"))
        renamed: list[str] = []

        def replace(source, target, renamed=renamed, step=step):
            if len(renamed) == step:
                raise _Killed
            renamed.append(Path(target).name)
            real_replace(source, target)

        with monkeypatch.context() as killed:
            killed.setattr(files.os, "replace", replace)
            killed.setattr(files.shutil, "rmtree", lambda *args, **kwargs: None)
            with pytest.raises(_Killed) if step < len(names) else contextlib.nullcontext():
                merge.merge_cohort(out)
        found = {name: (out / name).read_bytes() for name in names}
        assert found == {n: (expected if n in renamed else old)[n] for n in names}  # mixed
        assert old["csa.csv"] != expected["csa.csv"]
        merge.merge_cohort(out)
        assert {name: (out / name).read_bytes() for name in names} == expected, step


@pytest.mark.slow
def test_a_merge_of_shards_says_the_cohort_s_tissue_line_once(
    tiny_model, tiny_phantom, tmp_path, capsys
):
    """Shards 1/2 and 2/2 of four MR series with --adipose-hu: each shard's log said "2 series
    are not CT (...)" of its own share, and `sliceseg merge` said nothing, so a reader of the
    merged csa.csv had no single line for the cohort; the merge says it once, as a run of
    every series words it."""
    from sliceseg.cli import main
    from sliceseg.inference.shards import Shard
    from sliceseg.measure.tissue import TissueSettings

    cohort, out = tmp_path / "cohort", tmp_path / "out"
    for split in ("train", "test"):
        for folder in sorted((tiny_phantom / split / "dicoms").iterdir()):
            shutil.copytree(folder, cohort / folder.name)
    settings = RunSettings(roi_names=(), visuals="none", exports=(), report=False,
                           tissue=TissueSettings(adipose_hu=(-200.0, -40.0)))  # fmt: skip
    shard_options = [CohortOptions(workers=0, shard=Shard(k, 2)) for k in (1, 2)]
    shards = [predict_cohort(tiny_model, cohort, out, settings=settings, options=options)
              for options in shard_options]  # fmt: skip
    said = (
        "series are not CT ({}; Modality MR), so --adipose-hu (adipose_hu) -200 -40 measures "
        "nothing on them: the CT columns (imat_fraction, imat_mm2, muscle_radiodensity_hu) "
        "are for CT slices only."
    )
    assert [run.notes for run in shards] == [
        [f"2 {said.format('sub01, sub03')}"],
        [f"2 {said.format('sub02, sub04')}"],
    ]
    capsys.readouterr()
    assert main(["merge", str(out)]) == 0
    printed = capsys.readouterr().err.splitlines()
    cohort_line = f"4 {said.format('sub01, sub02, sub03 and 1 more')}"
    assert printed == [f"warning: {cohort_line}"]
    assert merge.merge_cohort(out).tissue_notes == (cohort_line,)


def test_the_merge_keeps_only_the_series_a_tissue_line_names():
    """The cohort's tissue lines from the series' record summaries: what they say is the
    run's wording over every series, while only the series a line names are kept (a CT
    cohort of thousands keeps none) and a record written before sliceseg kept Modality adds
    nothing."""
    from sliceseg.inference.merge_notes import TissueLines
    from sliceseg.measure.tissue import TissueSettings
    from sliceseg.measure.tissue_notes import SeriesTissue, tissue_lines

    summaries = {
        "p1": {"modality": ["CT"], "not_hu": ""},
        "p2": {"modality": ["MR"], "not_hu": ""},
        "p3": {"modality": [], "not_hu": ""},
        "p4": {"modality": ["CT"], "not_hu": "CT whose lowest value is 12"},
        "p5": {"slices": 3},  # an older record
    }
    kept = TissueLines()
    for name, summary in summaries.items():
        kept.add(name, summary)
    assert list(kept.series) == ["p2", "p3", "p4"]
    settings = {"roi_names": ["psoas"], "tissue": {"adipose_hu": [-200, -40], "muscle_hu":
                [-29.0, 150.0], "muscle_rois": None}}  # fmt: skip
    every = {name: SeriesTissue(tuple(s["modality"]), s["not_hu"])
             for name, s in list(summaries.items())[:4]}  # fmt: skip
    tissue = TissueSettings(adipose_hu=(-200, -40))
    assert kept.lines(settings) == tissue_lines(every, ["psoas"], tissue)
    no_modality, not_hu, not_ct = kept.lines(settings)
    assert no_modality.startswith("1 series has no (0008,0060) Modality in its files (p3), ")
    assert not_hu == (
        "1 CT series has values that are not Hounsfield units (p4): CT whose lowest value is 12"
    )
    assert not_ct.startswith("1 series is not CT (p2; Modality MR), so --adipose-hu (adipose_hu) "
                             "-200 -40 measures nothing on it: ")  # fmt: skip


def _no_modality(ds: pydicom.Dataset) -> None:
    """Remove (0008,0060) Modality: an edit for `copy_series`."""
    del ds.Modality


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "adipose_hu", "said"),
    [
        (
            None,
            (-200.0, -40.0),
            "1 series is not CT (p3; Modality MR), so --adipose-hu (adipose_hu) -200 -40 "
            "measures nothing on it: the CT columns (imat_fraction, imat_mm2, "
            "muscle_radiodensity_hu) are for CT slices only.",
        ),
        (
            _no_modality,
            None,
            "1 series has no (0008,0060) Modality in its files (p3), so its muscle ROIs get no "
            "CT columns (imat_fraction, imat_mm2, muscle_radiodensity_hu); if it is CT, set "
            "Modality to CT in the files.",
        ),
    ],
    ids=["not CT", "no Modality"],
)
def test_the_cohort_report_shows_the_runs_tissue_line_once_merged_or_not(
    tiny_model, tiny_phantom, tmp_path, monkeypatch, edit, adipose_hu, said
):
    """An MR series (or one without Modality) among CT ones: predict and merge printed the
    line, while report.html, which a researcher reads beside csa.csv, did not say it; it shows
    it once, and a merge of two shards shows the page a single run shows."""
    from sliceseg.inference.shards import Shard
    from sliceseg.measure.tissue import TissueSettings
    from sliceseg.report import cohort as cohort_report

    class Stopped(cohort_report.datetime):  # type: ignore[name-defined,misc]
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, tzinfo=tz)

    monkeypatch.setattr(cohort_report, "datetime", Stopped)
    cohort = tmp_path / "cohort"
    for name, source in (("p1", "sub01"), ("p2", "sub02")):
        copy_series(tiny_phantom / "train" / "dicoms" / source, cohort / name, _as_ct)
    copy_series(tiny_phantom / "train" / "dicoms" / "sub03", cohort / "p3", edit)
    tissue = TissueSettings() if adipose_hu is None else TissueSettings(adipose_hu=adipose_hu)
    settings = RunSettings(roi_names=(), visuals="none", exports=(), tissue=tissue)
    run = predict_cohort(tiny_model, cohort, tmp_path / "whole", settings=settings,
                         options=CohortOptions(workers=0))  # fmt: skip
    assert run.notes == [said] and run.merged is not None and run.merged.report is not None
    page = run.merged.report.read_text(encoding="utf-8")
    assert page.count("<h2>Tissue columns</h2>") == 1 and page.count(said) == 1
    for k in (1, 2):
        options = CohortOptions(workers=0, shard=Shard(k, 2))
        predict_cohort(tiny_model, cohort, tmp_path / "shards", settings=settings, options=options)
    merged = merge.merge_cohort(tmp_path / "shards")
    assert merged.tissue_notes == (said,) and merged.report is not None
    assert merged.report.read_text(encoding="utf-8") == page


@pytest.mark.slow
def test_a_cohort_report_without_series_lacking_tissue_columns_shows_no_tissue_line(mixed):
    """Two MR series beside a CT one, no CT option given: nothing to say about tissue columns."""
    page = (mixed / "report.html").read_text(encoding="utf-8")
    assert "<h2>Tissue columns</h2>" not in page
    assert "no (0008,0060) Modality" not in page and "Hounsfield" not in page
