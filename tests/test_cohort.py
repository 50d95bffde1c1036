"""Tests for sliceseg.inference.cohort: shards, resume, failures, records, merge, identity."""

from __future__ import annotations

import builtins
import dataclasses
import datetime
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from conftest import full_disk_on_write
from sliceseg.cli import main
from sliceseg.errors import ConfigError, SlicesegError
from sliceseg.inference import cohort, cohort_decode, cohort_network, cohort_series, merge
from sliceseg.inference.cohort import CohortOptions, predict_cohort
from sliceseg.inference.cohort_record import check_out_dir
from sliceseg.inference.records import RunRecord, RunSettings, series_dir
from sliceseg.inference.shards import Shard
from sliceseg.io.series_plan import plan_cohort
from sliceseg.measure.areas import is_summary_row
from sliceseg.measure.series_verdict import Verdict
from sliceseg.measure.spacing import SpacingFallback
from sliceseg.measure.summary_rows import summarised
from sliceseg.measure.tissue import TissueSettings
from sliceseg.phantom.generate import ROI_NAMES
from sliceseg.report import cohort as cohort_report

LEAN = RunSettings(roi_names=(), visuals="none", exports=(), report=False)
HERE = CohortOptions(workers=0)
ROIS = list(ROI_NAMES)


@pytest.fixture
def cohort_dir(tiny_phantom: Path, tmp_path: Path) -> Path:
    """Four series (sub01..sub04), three slices each, copied so that their mtimes are ours."""
    out = tmp_path / "cohort"
    for split in ("train", "test"):
        for folder in sorted((tiny_phantom / split / "dicoms").iterdir()):
            shutil.copytree(folder, out / folder.name)
    return out


class _StoppedClock(datetime.datetime):
    """A clock that always reads 2026-01-02 03:04, whatever the test's wall time."""

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> _StoppedClock:
        return cls(2026, 1, 2, 3, 4, tzinfo=tz)


@pytest.fixture
def report_clock(monkeypatch: pytest.MonkeyPatch) -> str:
    """The cohort report's time stamp, one for every run of a test: two runs that wrote the
    same report in different minutes (20:20, 20:21) made a page comparison fail at random."""
    monkeypatch.setattr(cohort_report, "datetime", _StoppedClock)
    return "written 2026-01-02 03:04"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and its mtime (ns)."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(out / name) for name in ("csa.csv", "csa_long.csv", "series.csv")}


def assert_same_tables(a: Path, b: Path) -> None:
    for name, table in tables(a).items():
        pd.testing.assert_frame_equal(table, tables(b)[name], check_exact=True, obj=name)


class TestShards:
    @pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 50])
    def test_disjoint_and_covering(self, count):
        names = [f"p{i:03d}" for i in range(23)]
        parts = [Shard(k, count).take(names) for k in range(1, count + 1)]
        taken = [name for part in parts for name in part]
        assert sorted(taken) == names and len(taken) == len(set(taken))
        sizes = [len(part) for part in parts]
        assert max(sizes) - min(sizes) <= 1  # balanced to one series
        if count > len(names):
            assert sizes.count(0) == count - len(names)

    def test_the_plan_is_sorted_by_name(self, cohort_dir):
        plan = plan_cohort(cohort_dir)
        assert [s.name for s in plan.series] == ["sub01", "sub02", "sub03", "sub04"]
        assert [s.num_slices for s in plan.series] == [3, 3, 3, 3]
        assert Shard(2, 3).take([s.name for s in plan.series]) == ["sub02"]

    def test_a_folder_named_like_a_suffix_keeps_every_series_apart(self, cohort_dir):
        """sub02's files moved into sub01/ (two series there) and sub03/ renamed sub01_2/:
        the second series of sub01/ was also named sub01_2, and both wrote one folder."""
        for path in (cohort_dir / "sub02").glob("*.dcm"):
            path.rename(cohort_dir / "sub01" / path.name)
        (cohort_dir / "sub03").rename(cohort_dir / "sub01_2")
        plan = plan_cohort(cohort_dir)
        names = [s.name for s in plan.series]
        assert len(names) == len(set(names)) == 4
        own = next(s for s in plan.series if s.name == "sub01_2")
        assert {f.source.parent.name for f in own.files} == {"sub01_2"}


@pytest.mark.slow
def test_two_shards_and_merge_equal_one_run(tiny_model, cohort_dir, tmp_path):
    whole = predict_cohort(tiny_model, cohort_dir, tmp_path / "one", settings=LEAN, options=HERE)
    assert whole.merged is not None and len(whole.finished) == 4
    for k in (1, 2, 3):  # three shards of four series: 2 + 1 + 1
        part = predict_cohort(
            tiny_model,
            cohort_dir,
            tmp_path / "three",
            settings=LEAN,
            options=CohortOptions(workers=0, shard=Shard(k, 3)),
        )
        assert part.merged is None and len(part.finished) == (2 if k == 1 else 1)
    assert main(["merge", str(tmp_path / "three")]) == 0
    assert_same_tables(tmp_path / "one", tmp_path / "three")
    wide = pd.read_csv(tmp_path / "one" / "csa.csv", index_col="slice")
    assert [str(i) for i in range(1, 13)] == [i for i in wide.index if i.isdigit()]
    series = pd.read_csv(tmp_path / "one" / "series.csv")
    assert list(series["series"]) == ["sub01", "sub02", "sub03", "sub04"]
    assert list(series["slices"]) == [3, 3, 3, 3]
    # The merged rows equal measure.areas' summary of the series' slice rows, computed whole.
    parts = []
    for name in series["series"]:
        own = pd.read_csv(tmp_path / "one" / "series" / name / "csa.csv", index_col="slice")
        parts.append(own.loc[[i for i in own.index if not is_summary_row(i)], ["file", *ROIS]])
    expected = summarised(pd.concat(parts), [k for k in range(1, 5) for _ in range(3)])
    names = list(series["series"])  # the rows name each series: "mean series sub02"
    expected.index = [
        f"{i.split()[0]} series {names[int(i.split()[2]) - 1]}" if "series" in i else i
        for i in expected.index
    ]
    rows = [i for i in expected.index if i.isdigit() or "series" in i]  # overall rows aside
    pd.testing.assert_frame_equal(
        wide.loc[rows, ["file", *ROIS]], expected.loc[rows], check_dtype=False, check_names=False
    )


def fail_writing(monkeypatch, name: str):
    """Make writing series ``name`` fail with "RuntimeError: disk hiccup"; return the real
    `write_series` (to put back)."""
    real = cohort.write_series

    def broken(context, decoded):
        if decoded.series.name == name:
            raise RuntimeError("disk hiccup")
        return real(context, decoded)

    monkeypatch.setattr(cohort, "write_series", broken)
    return real


@pytest.mark.slow
def test_resume_after_a_failure_keeps_finished_series_untouched(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    real = fail_writing(monkeypatch, "sub03")
    first = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    assert first.failed == [("sub03", "RuntimeError: disk hiccup")]
    assert sorted(first.finished) == ["sub01", "sub02", "sub04"]
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub03"] and "disk hiccup" in failed["reason"][0]
    assert not (out / "series" / "sub03").exists()  # nothing half-written under the final name
    before = {name: snapshot(out / "series" / name) for name in ("sub01", "sub02", "sub04")}

    monkeypatch.setattr(cohort, "write_series", real)
    lines: list[str] = []
    second = predict_cohort(
        tiny_model, cohort_dir, out, settings=LEAN, options=HERE, log=lines.append
    )
    assert second.finished == ["sub03"] and second.already_done == 3 and not second.failed
    assert "3 series already done, skipped" in lines[0]
    for name, files in before.items():
        assert snapshot(out / "series" / name) == files  # same bytes, same mtimes
    assert list(pd.read_csv(out / "failed.csv")["series"]) == []  # header only
    assert (out / "failed.csv").read_text().strip() == "series,slices,reason"
    predict_cohort(tiny_model, cohort_dir, tmp_path / "clean", settings=LEAN, options=HERE)
    assert_same_tables(out, tmp_path / "clean")


@pytest.mark.slow
def test_a_series_whose_redo_failed_is_redone_when_its_older_settings_come_back(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """Issue found by review: sub03 finished, its redo with --tta --overwrite failed (out of
    memory), and the run without --tta came back: sub03's folder matched it, so every run
    skipped it as done while the newer failure record kept it out of the tables and in
    failed.csv: exit 3 for ever, whatever was run."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    real = fail_writing(monkeypatch, "sub03")
    tta = dataclasses.replace(LEAN, tta=True)
    redo = dataclasses.replace(HERE, overwrite=True)
    assert predict_cohort(tiny_model, cohort_dir, out, settings=tta, options=redo).failed
    monkeypatch.setattr(cohort, "write_series", real)
    back = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=redo)
    assert "sub03" in back.finished and not back.failed
    assert back.merged is not None and back.merged.is_complete
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub02", "sub03", "sub04"]
    assert (out / "failed.csv").read_text().strip() == "series,slices,reason"


@pytest.mark.slow
def test_a_half_written_series_is_redone(tiny_model, cohort_dir, tmp_path):
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    keep = snapshot(out / "series" / "sub01")
    # A run killed while writing sub02: its temporary folder, no final folder.
    partial = out / "series" / ".sliceseg-tmp.sub02.12345"
    shutil.move(out / "series" / "sub02", partial)
    (partial / "record.json").unlink()
    # And sub04's record names other input files (one was replaced since).
    src = next((cohort_dir / "sub04").glob("*.dcm"))
    src.write_bytes(src.read_bytes())
    again = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    assert sorted(again.finished) == ["sub02", "sub04"] and again.already_done == 2
    assert not partial.exists()
    assert (out / "series" / "sub02" / "record.json").is_file()
    assert snapshot(out / "series" / "sub01") == keep


@pytest.mark.slow
def test_another_model_into_the_same_out_is_refused(tiny_model, cohort_dir, tmp_path):
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    other = tmp_path / "other.pt"
    data = bytearray(Path(tiny_model).read_bytes())
    other.write_bytes(bytes(data))
    with open(other, "ab") as handle:  # same weights, another file: another checksum
        handle.write(b"\0")
    with pytest.raises(ConfigError) as refused:
        predict_cohort(other, cohort_dir, out, settings=LEAN, options=HERE)
    message = str(refused.value)
    assert "sliceseg_best.pt" in message and "other.pt" in message and "--overwrite" in message
    assert "\n" not in message
    tta = RunSettings(roi_names=(), visuals="none", exports=(), report=False, tta=True)
    with pytest.raises(ConfigError, match=r"it was made with tta=false, this run asks tta=true"):
        predict_cohort(tiny_model, cohort_dir, out, settings=tta, options=HERE)


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (
            {"tissue": TissueSettings(adipose_hu=(-200.0, -40.0))},
            "its settings differ in --adipose-hu: it was made with "
            "tissue.adipose_hu=[-190.0, -30.0], this run asks tissue.adipose_hu=[-200.0, -40.0]",
        ),
        (
            {"fallback": SpacingFallback(fov_mm=(240.0, 240.0))},
            "its settings differ in --fov: it was made with fallback.fov_mm=null, this run asks "
            "fallback.fov_mm=[240.0, 240.0]",
        ),
    ],
)
def test_other_settings_into_the_same_out_name_the_flag(tmp_path, changed, expected):
    """A rerun of `predict` with another --adipose-hu was refused with
    'it was made with tissue={"adipose_hu": [-190.0, -30.0], ...}': a whole dict, no flag."""
    first = RunRecord("m.pt", "0" * 64, LEAN)
    assert check_out_dir(tmp_path, first, overwrite=False) == ""
    again = RunRecord("m.pt", "0" * 64, dataclasses.replace(LEAN, **changed))
    with pytest.raises(ConfigError) as refused:
        check_out_dir(tmp_path, again, overwrite=False)
    assert str(refused.value) == (
        f"{tmp_path}: {expected}; use another --out, or pass --overwrite (overwrite=True) to redo "
        "every series."
    )


def half_with_another_model(model: Path, cohort: Path, out: Path, tmp_path: Path) -> list[str]:
    """Shard 1 of 2 of another model (another checksum) into ``out`` with --overwrite; the
    series it finished."""
    other = tmp_path / "other.pt"
    other.write_bytes(Path(model).read_bytes() + b"\0")
    half = CohortOptions(workers=0, shard=Shard(1, 2), overwrite=True)
    return predict_cohort(other, cohort, out, settings=LEAN, options=half).finished


@pytest.mark.slow
def test_merge_leaves_out_the_series_another_model_made(tiny_model, cohort_dir, tmp_path, capsys):
    """A new model into the same --out with --overwrite, one shard of two done so far: the
    merge mixed both models' areas in csa.csv without a word. The earlier model's series are
    left out now, and named; and the merge exits 3 (it exited 0: `afterok` and `$?` took the
    cohort, half of it missing from the tables, for complete) until they are redone."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    assert half_with_another_model(tiny_model, cohort_dir, out, tmp_path) == ["sub01", "sub03"]
    assert main(["merge", str(out)]) == 3
    assert not merge.merge_cohort(out).is_complete
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub03"]
    assert set(pd.read_csv(out / "csa_long.csv")["series"]) == {"sub01", "sub03"}
    assert "2 series made by another model or settings left out (sub02, sub04)" in (
        capsys.readouterr().err
    )
    second = CohortOptions(workers=0, shard=Shard(2, 2), merge=True)
    predict_cohort(tmp_path / "other.pt", cohort_dir, out, settings=LEAN, options=second)
    assert main(["merge", str(out)]) == 0


GONE = "1 series not in the input of the latest predict run left out (sub02); to merge them, run "


def three_series(cohort_dir: Path) -> list[str]:
    """Remove sub04 from the cohort: sub01, sub02 and sub03 are left (their names)."""
    shutil.rmtree(cohort_dir / "sub04")
    return sorted(p.name for p in cohort_dir.iterdir())


@pytest.mark.slow
def test_the_tables_name_each_series_as_series_csv_and_its_folder(tiny_model, cohort_dir, tmp_path):
    """csa_long.csv's ``series`` held 1..S and csa.csv's rows said ``mean series 3`` while
    series.csv and OUT/series/<name>/ name the series: a join on ``series`` matched nothing."""
    three_series(cohort_dir)
    (cohort_dir / "sub03").rename(cohort_dir / "site 01")  # a name with a space and digits
    names = ["site 01", "sub01", "sub02"]
    rows = [f"{row} series {name}" for name in names for row in ("mean", "std", "n")]
    for out, shards in (("one", [Shard(1, 1)]), ("two", [Shard(1, 2), Shard(2, 2)])):
        for shard in shards:
            options = CohortOptions(workers=0, shard=shard)
            predict_cohort(tiny_model, cohort_dir, tmp_path / out, settings=LEAN, options=options)
        assert main(["merge", str(tmp_path / out)]) == 0
        series = pd.read_csv(tmp_path / out / "series.csv", dtype={"series": str})
        folders = sorted(p.name for p in (tmp_path / out / "series").iterdir())
        assert list(series["series"]) == names == folders
        long = pd.read_csv(tmp_path / out / "csa_long.csv", dtype={"series": str})
        assert list(dict.fromkeys(long["series"])) == names
        assert len(long.merge(series, on="series")) == len(long) == 9 * len(ROIS)
        wide = pd.read_csv(tmp_path / out / "csa.csv", index_col="slice", dtype={"slice": str})
        assert [i for i in wide.index if is_summary_row(i)] == [*rows, "mean", "std", "n"]
        assert wide.loc["n series site 01", "file"].endswith("(3 slices)")
        for name in names:
            own = pd.read_csv(series_dir(tmp_path / out, name) / "csa_long.csv", dtype=str)
            assert set(own["series"]) == {name}
    assert_same_tables(tmp_path / "one", tmp_path / "two")


@pytest.mark.slow
def test_a_series_removed_from_the_input_is_left_out_of_the_merge(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """sub02 predicted, then its files removed from the input (a wrong patient) and the same
    command run again: its folder stayed in OUT/series and the merge put its areas into csa.csv,
    csa_long.csv and series.csv as if it were part of the input, without a word."""
    assert three_series(cohort_dir) == ["sub01", "sub02", "sub03"]
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 0
    capsys.readouterr()
    shutil.rmtree(cohort_dir / "sub02")
    assert main([*argv, "--visuals", "none"]) == 0
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub03"]
    wide = pd.read_csv(out / "csa.csv", index_col="slice")
    assert not wide["file"].astype(str).str.startswith("sub02").any()
    assert set(pd.read_csv(out / "csa_long.csv")["series"]) == {"sub01", "sub03"}
    printed = capsys.readouterr()
    assert "2 series already done, skipped; 0 to do" in printed.out
    assert f"warning: {GONE}" in printed.err
    assert f"or delete {out / 'series'}/<name>" in printed.err
    assert (out / "series" / "sub02" / "record.json").is_file()  # nothing deleted
    assert GONE in (out / "report.html").read_text(encoding="utf-8")
    assert main(["merge", str(out)]) == 0
    assert GONE in capsys.readouterr().err
    clean = ["predict", str(tiny_model), str(cohort_dir), "--out", str(tmp_path / "clean")]
    assert main([*clean, "--workers", "0", "--visuals", "none"]) == 0
    assert_same_tables(out, tmp_path / "clean")
    # Two shards of the same input, then merge: the same tables, the same line.
    for k in (1, 2):
        main([*argv, "--visuals", "none", "--shard", f"{k}/2"])
    assert main(["merge", str(out)]) == 0
    assert GONE in capsys.readouterr().err
    assert_same_tables(out, tmp_path / "clean")


@pytest.mark.slow
def test_an_overwrite_names_a_removed_series_as_gone_not_outdated(tiny_model, cohort_dir, tmp_path):
    """A new model with --overwrite, one shard of two done, sub04 removed from the input: the
    merge said "run the predict command again to redo" sub04, which no run would redo."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    shutil.rmtree(cohort_dir / "sub04")
    assert half_with_another_model(tiny_model, cohort_dir, out, tmp_path) == ["sub01", "sub03"]
    merged = merge.merge_cohort(out)
    assert (merged.outdated, merged.gone) == (("sub02",), ("sub04",))
    assert merged.notes[0].startswith("1 series made by another model or settings left out")
    assert merged.notes[1].startswith("1 series not in the input of the latest predict run")
    assert list(merged.series["series"]) == ["sub01", "sub03"]


@pytest.mark.slow
def test_a_failed_series_removed_from_the_input_leaves_failed_csv(tiny_model, cohort_dir, tmp_path):
    """sub02 failed (no PixelSpacing), so the user removed the bad scan: failed.csv still listed
    it and every merge exited 3. It is named in the line instead; its failure record stays."""
    three_series(cohort_dir)
    drop_spacing(cohort_dir / "sub02")
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 3
    shutil.rmtree(cohort_dir / "sub02")
    assert main([*argv, "--visuals", "none"]) == 0
    assert (out / "failed.csv").read_text().strip() == "series,slices,reason"
    assert (out / "failed" / "sub02.json").is_file()
    merged = merge.merge_cohort(out)
    assert merged.gone == ("sub02",) and GONE in merged.notes[0] and len(merged.failed) == 0


@pytest.mark.slow
def test_an_out_folder_without_the_input_list_merges_as_before(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """A folder written before OUT/input_series.json existed merges every finished series; the
    next predict run writes the list."""
    three_series(cohort_dir)
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    (out / "input_series.json").unlink(missing_ok=True)
    shutil.rmtree(cohort_dir / "sub02")
    assert main(["merge", str(out)]) == 0
    assert "not in the input" not in capsys.readouterr().err
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub02", "sub03"]
    run = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    assert run.merged is not None and run.merged.gone == ("sub02",)
    assert json.loads((out / "input_series.json").read_text())["series"] == ["sub01", "sub03"]
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub03"]


@pytest.mark.slow
def test_a_run_refused_on_a_user_error_puts_the_input_list_back(tiny_model, cohort_dir, tmp_path):
    """Another folder whose every series lacks PixelSpacing into the same --out (exit 2): the
    earlier run's outputs stay as they were, its input list included."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    before = (out / "input_series.json").read_bytes()
    other = tmp_path / "other"
    shutil.copytree(cohort_dir / "sub01", other / "new01")
    drop_spacing(other / "new01")
    with pytest.raises(SlicesegError, match="no PixelSpacing"):
        predict_cohort(tiny_model, other, out, settings=LEAN, options=HERE)
    assert (out / "input_series.json").read_bytes() == before
    assert merge.merge_cohort(out).gone == ()


@pytest.mark.slow
def test_a_series_failed_on_a_malformed_spacing_names_its_value(tmp_path, capsys):
    """The refusal of a malformed PixelSpacing said "the warning before names the value": no
    warning comes before it in failed.csv, nor in ``measure``. It now names the value; alone,
    the series ends the run on that line (exit 2)."""
    from conftest import write_test_dicom
    from test_evaluate import model_with_values
    from test_measure import malformed_spacing_dicom

    model = model_with_values(tmp_path / "m.pt", (0, 1, 2))
    write_test_dicom(tmp_path / "dicoms" / "p0" / "a.dcm", np.zeros((4, 4)), series_uid="1.2.3")
    malformed_spacing_dicom(tmp_path / "dicoms" / "p1" / "a.dcm", b"0.7\\abc ")
    out = tmp_path / "out"
    argv = ["predict", str(model), str(tmp_path / "dicoms"), "--out", str(out), "--workers", "0",
            "--visuals", "none"]  # fmt: skip
    assert main(argv) == 3  # p0 measured, p1 failed
    reason = (
        'its PixelSpacing (0028,0030) "0.7\\abc" is malformed or not > 0 (expected two '
        "positive numbers, row mm and column mm), so areas in mm² are unknown; give --fov MM "
        "(and --matrix ROWS COLS), or --pixels to report pixel counts."
    )
    path = tmp_path / "dicoms" / "p1" / "a.dcm"
    assert f"warning: series p1 failed: {path}: {reason}" in capsys.readouterr().err.splitlines()
    failed = pd.read_csv(out / "failed.csv")
    assert failed.to_dict("records") == [
        {"series": "p1", "slices": 1, "reason": f"p1/a.dcm: {reason}"}
    ]
    alone = [*argv[:2], str(path.parent), "--out", str(tmp_path / "alone"), *argv[5:]]
    assert main(alone) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {path}: {reason}"


def test_a_device_that_is_not_there_is_refused_before_out_is_written(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Issue found by review: `--device gpu` (or cuda on a machine without one) was refused
    after cohort.json was written, so the corrected command with other settings was then
    refused as "made with" the run that made nothing."""
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--device", "gpu", "--visuals", "none"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err
    assert not out.exists()
    assert main([*argv, "--device", "cpu", "--visuals", "none", "--tta"]) == 0


def corrupt_series(folder: Path) -> None:
    """Cut the pixel data of every file of a series: the headers stay readable."""
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PixelData = ds.PixelData[:10]
        ds.save_as(path)


def drop_spacing(folder: Path) -> None:
    """Remove (0028,0030) PixelSpacing from every file of a series: areas cannot be in mm²."""
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)


@pytest.mark.slow
def test_a_bad_series_lands_in_failed_csv_and_the_others_are_complete(
    tiny_model, cohort_dir, tmp_path, capsys
):
    drop_spacing(cohort_dir / "sub02")
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "1"]
    assert main([*argv, "--visuals", "none"]) == 3
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub02"] and failed["slices"][0] == 3
    assert "no PixelSpacing" in failed["reason"][0] and "--fov" in failed["reason"][0]
    assert "series sub02 failed" in capsys.readouterr().err
    series = pd.read_csv(out / "series.csv")
    assert list(series["series"]) == ["sub01", "sub03", "sub04"]
    for name in series["series"]:
        labels = list((out / "series" / name / "labels").rglob("*.png"))
        assert len(labels) == 3 and (out / "series" / name / "record.json").is_file()
    assert not (out / "series" / "sub02").exists()
    assert main(["merge", str(out)]) == 3  # still failed
    assert main([*argv, "--visuals", "none", "--fov", "200"]) == 2  # another setting: refused


@pytest.mark.slow
def test_a_finished_series_that_fails_when_redone_is_failed_not_merged(
    tiny_model, cohort_dir, tmp_path
):
    """sub02 finished, then was exported again without PixelSpacing: its redo fails. The older
    folder (of other inputs) stayed and its failure was dropped from failed.csv, so the
    tables kept the old areas and `merge` said every series was done (exit 0)."""
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 0
    drop_spacing(cohort_dir / "sub02")
    assert main([*argv, "--visuals", "none"]) == 3
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub02"] and "no PixelSpacing" in failed["reason"][0]
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub03", "sub04"]
    assert set(pd.read_csv(out / "csa_long.csv")["series"]) == {"sub01", "sub03", "sub04"}
    assert main(["merge", str(out)]) == 3


@pytest.mark.slow
def test_a_shard_whose_every_series_fails_keeps_them_in_failed_csv(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Four shards of four series, sub02 without PixelSpacing: shard 2 failed on its only
    series, took it for a run where everything failed (exit 2) and removed its failure record
    (and the cohort.json the other shards share), so the merge said all done without sub02."""
    drop_spacing(cohort_dir / "sub02")
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    codes = [main([*argv, "--visuals", "none", "--shard", f"{k}/4"]) for k in (2, 1, 3, 4)]
    assert codes == [3, 0, 0, 0]
    assert "series sub02 failed" in capsys.readouterr().err
    assert main(["merge", str(out)]) == 3
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub02"] and "no PixelSpacing" in failed["reason"][0]
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub03", "sub04"]


@pytest.mark.slow
def test_a_run_whose_every_series_fails_for_different_reasons_exits_3_with_a_report(
    tiny_model, cohort_dir, tmp_path, monkeypatch, capsys
):
    """Three series without PixelSpacing, sub03 failing to write: not one kind of user error,
    so the merge refused the folder as a user error (exit 2, no report) where failures give 3."""
    for name in ("sub01", "sub02", "sub04"):
        drop_spacing(cohort_dir / name)
    fail_writing(monkeypatch, "sub03")
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 3
    printed = capsys.readouterr().out
    assert f"0 series (0 already done, 4 failed, listed in {out / 'failed.csv'})" in printed
    failed = pd.read_csv(out / "failed.csv")
    assert list(failed["series"]) == ["sub01", "sub02", "sub03", "sub04"]
    assert failed["reason"][2] == "RuntimeError: disk hiccup"
    assert "no PixelSpacing" in failed["reason"][0]
    assert "No series finished: all 4 failed" in (out / "report.html").read_text(encoding="utf-8")
    assert main(["merge", str(out)]) == 3


@pytest.mark.slow
def test_an_overwrite_that_fails_on_a_user_error_keeps_the_earlier_run(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Files without PixelSpacing done with --fov; then --overwrite --tta without --fov: every
    series fails, exit 2. That run took back the cohort.json it had written over the earlier
    one, so the earlier run's folder was no predict folder any more (merge refused it, the
    original command was refused as a non-empty folder)."""
    for name in ("sub01", "sub02", "sub03", "sub04"):
        drop_spacing(cohort_dir / name)
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    first = [*argv, "--visuals", "none", "--fov", "200"]
    assert main(first) == 0
    before = (out / "cohort.json").read_bytes()
    assert main([*argv, "--visuals", "none", "--tta", "--overwrite"]) == 2
    assert "no PixelSpacing" in capsys.readouterr().err
    assert (out / "cohort.json").read_bytes() == before
    assert main(["merge", str(out)]) == 0
    assert main(first) == 0
    assert "4 series already done, skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_a_series_of_damaged_files_is_skipped_file_by_file(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Damaged files are left out and named, as always, even when they are a whole series."""
    corrupt_series(cohort_dir / "sub03")
    out = tmp_path / "out"
    code = main(["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("skipped ") == 3 and "sub03_s00.dcm" in err
    assert (out / "failed.csv").read_text().strip() == "series,slices,reason"
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub01", "sub02", "sub04"]
    assert "sub03_s00.dcm" in (out / "report.html").read_text(encoding="utf-8")
    assert "not finished" not in err  # its files are named: it is not a series still to do


@pytest.mark.slow
def test_a_copied_file_is_measured_once(tiny_model, cohort_dir, tmp_path):
    """A slice exported twice into its series is read once (its copy named) and the tables
    equal those of the folder without the copy: its mean and std do not count it twice."""
    plain = predict_cohort(tiny_model, cohort_dir, tmp_path / "plain", settings=LEAN, options=HERE)
    original = sorted((cohort_dir / "sub02").glob("*.dcm"))[1]
    shutil.copy(original, original.with_name("zz_copy.dcm"))
    run = predict_cohort(tiny_model, cohort_dir, tmp_path / "copied", settings=LEAN, options=HERE)
    assert run.slices == plain.slices == 12
    assert run.unread == [
        f"{original.with_name('zz_copy.dcm')}: the same image as {original} (same series, "
        "number, position and pixels); measured once, from that file; remove the copy."
    ]
    for name in ("csa.csv", "csa_long.csv"):
        pd.testing.assert_frame_equal(
            tables(tmp_path / "copied")[name], tables(tmp_path / "plain")[name]
        )


@pytest.mark.slow
def test_an_out_folder_inside_the_inputs_is_not_read_and_a_seg_among_them_is_skipped(
    tiny_model, cohort_dir, tmp_path
):
    """`--out` inside the DICOM folder: a rerun read its own DICOM-SEG exports as images (and
    measured their frames); a DICOM-SEG (or an RT dose grid) among the images is not one."""
    settings = RunSettings(roi_names=(), visuals="none", exports=("seg",), report=False)
    out = cohort_dir / "results"
    first = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert first.slices == 12 and (out / "series" / "sub01" / "exports" / "sub01.seg.dcm").is_file()
    again = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert (again.planned, again.already_done, again.slices, again.skipped) == (4, 4, 0, [])
    seg = cohort_dir / "sub02" / "labels.seg.dcm"
    shutil.copy(out / "series" / "sub01" / "exports" / "sub01.seg.dcm", seg)
    shutil.rmtree(out)
    run = predict_cohort(tiny_model, cohort_dir, tmp_path / "out", settings=LEAN, options=HERE)
    assert run.slices == 12 and [s.path for s in run.skipped] == [seg]
    assert run.skipped[0].reason == (
        f"{seg}: a segmentation (DICOM-SEG), not an image to segment; move it out of the folder "
        "(labels go in the labels folder)."
    )


def test_the_dicom_folder_itself_is_refused_as_out(tiny_model, cohort_dir, capsys):
    """Its outputs would mix with the DICOMs and be read by the next run; refused before a
    header is read, whatever --overwrite says, and nothing is written."""
    before = snapshot(cohort_dir)
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", f"{cohort_dir}/", "--overwrite"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {cohort_dir}: --out is the DICOM folder itself, so the outputs would be read as "
        f"inputs by the next run; choose a folder of its own (e.g. {cohort_dir / 'results'})."
    )
    assert snapshot(cohort_dir) == before


@pytest.mark.slow
def test_a_damaged_file_inside_a_series_is_named_once(tiny_model, cohort_dir, tmp_path, capsys):
    """Its series is measured without it; the line says the file's name once, then why (the
    reason used to repeat it: "sub03_s01.dcm: /…/sub03_s01.dcm: cannot decode …"), and begins
    `skipped` as the manual says of every damaged file (it began `warning:`)."""
    damaged = sorted((cohort_dir / "sub03").glob("*.dcm"))[1]
    ds = pydicom.dcmread(damaged)
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(damaged)
    out = tmp_path / "out"
    code = main(["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"])
    assert code == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if damaged.name in line]
    assert len(notes) == 1 and notes[0].count(damaged.name) == 1, notes
    assert notes[0].startswith(f"skipped {damaged}: cannot decode pixel data")
    assert pd.read_csv(out / "series.csv").set_index("series").loc["sub03", "slices"] == 2


@pytest.mark.slow
def test_the_cohort_report_names_a_file_left_out_while_decoding(tiny_model, cohort_dir, tmp_path):
    """A file whose pixels cannot be decoded, in a series that finishes without it: the
    manual says damaged files are named in the report; the cohort's named only the files the
    plan left out. The merge reads them from the series' records, so a standalone merge too."""
    damaged = sorted((cohort_dir / "sub03").glob("*.dcm"))[1]
    ds = pydicom.dcmread(damaged)
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(damaged)
    out = tmp_path / "out"
    reported = dataclasses.replace(LEAN, report=True)  # the cohort's report.html only
    run = predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=HERE)
    assert run.finished == ["sub01", "sub02", "sub03", "sub04"]
    line = f"<li>Skipped sub03/{damaged.name}: cannot decode pixel data"  # under the input
    assert (out / "report.html").read_text(encoding="utf-8").count(line) == 1
    (out / "report.html").unlink()
    assert main(["merge", str(out)]) == 0
    assert (out / "report.html").read_text(encoding="utf-8").count(line) == 1


def cut_pixels(path: Path) -> Path:
    """Cut one file's pixel data: its header stays readable, decoding it fails."""
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:10]
    ds.save_as(path)
    return path


@pytest.mark.slow
def test_the_cohort_files_name_every_left_out_file_under_the_input(
    tiny_model, cohort_dir, tmp_path, report_clock
):
    """Files left out while planning were named under the input folder, those left out while
    decoding (the records, a copy's original, a failure's reason) by absolute path: one report
    spelt files two ways, and a results folder moved elsewhere showed the author's paths. The
    printed ``skipped`` lines (`CohortRun.unread`) still name the files as found."""
    (cohort_dir / "sub02" / "notes.txt").write_text("not an image")  # left out while planning
    original = sorted((cohort_dir / "sub02").glob("*.dcm"))[1]
    copy = shutil.copy(original, original.with_name("zz_copy.dcm"))  # the rest while decoding
    damaged = cut_pixels(sorted((cohort_dir / "sub04").glob("*.dcm"))[1])
    corrupt_series(cohort_dir / "sub03")  # no readable file: OUT/unreadable/sub03.json
    drop_spacing(cohort_dir / "sub01")  # fails: failed.csv
    out = tmp_path / "out"
    settings = RunSettings(roi_names=(), visuals="auto", exports=(), report=True)
    run = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert [line.split(": ")[0] for line in run.unread] == [str(copy), str(damaged)]
    assert f"as {original} (same" in run.unread[0]
    same = f"the same image as sub02/{original.name} (same series, number, position and pixels)"
    lines = [
        "<li>Skipped sub02/notes.txt: not a DICOM file",
        "<li>Skipped sub03/sub03_s00.dcm: cannot decode pixel data",
        f"<li>Skipped sub02/zz_copy.dcm: {same}",
        f"<li>Skipped sub04/{damaged.name}: cannot decode pixel data",
    ]
    report = (out / "report.html").read_text(encoding="utf-8")
    assert [report.count(line) for line in lines] == [1, 1, 1, 1] and report_clock in report
    assert f"Skipped sub04/{damaged.name}: cannot decode" in (
        out / "series" / "sub04" / "report.html"
    ).read_text(encoding="utf-8")
    record = json.loads((out / "unreadable" / "sub03.json").read_text(encoding="utf-8"))
    assert [f["path"] for f in record["skipped"]] == [f"sub03/sub03_s0{i}.dcm" for i in range(3)]
    assert record["skipped"][0]["reason"].startswith("sub03/sub03_s00.dcm: cannot decode pixel")
    reason = pd.read_csv(out / "failed.csv")["reason"][0]
    assert reason.startswith("sub01/sub01_s0") and "no PixelSpacing" in reason, reason
    absolute = {str(cohort_dir).encode(), str(cohort_dir.resolve()).encode()}
    named = [
        p for p in out.rglob("*") if p.is_file() and any(a in p.read_bytes() for a in absolute)
    ]
    assert named == []
    (out / "report.html").unlink()  # a standalone merge reads the same records
    assert main(["merge", str(out)]) == 3
    assert (out / "report.html").read_text(encoding="utf-8") == report


@pytest.mark.slow
def test_a_uidless_folder_is_one_series_per_folder_everywhere(tiny_model, cohort_dir, tmp_path):
    for path in cohort_dir.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.SeriesInstanceUID
        ds.save_as(path)
    out = tmp_path / "out"
    settings = RunSettings(roi_names=(), visuals="all", exports=("nifti",), report=True)
    run = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    names = ["sub01", "sub02", "sub03", "sub04"]
    assert sorted(run.finished) == names
    for name in names:
        folder = out / "series" / name
        assert (folder / "segmentation.gif").is_file() and (folder / "areas.png").is_file()
        assert [p.name for p in (folder / "exports").iterdir()] == [f"{name}.nii.gz"]
    long = pd.read_csv(out / "csa_long.csv")
    assert sorted(set(long["series"])) == names
    wide = pd.read_csv(out / "csa.csv", index_col="slice")
    assert {f"mean series {name}" for name in names} <= set(wide.index)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert all(f"series/{name}/report.html" in html for name in names)


@pytest.mark.slow
def test_two_series_in_one_folder_export_under_their_own_names(tiny_model, cohort_dir, tmp_path):
    """sub02's files moved into sub01/: two series named sub01 and sub01_2 (docs/usage.md);
    each series folder's exports carry its own name, not both sub01.nii.gz."""
    for path in sorted((cohort_dir / "sub02").iterdir()):
        path.rename(cohort_dir / "sub01" / path.name)
    (cohort_dir / "sub02").rmdir()
    out = tmp_path / "out"
    settings = RunSettings(roi_names=(), visuals="none", exports=("nifti",), report=False)
    run = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert sorted(run.finished) == ["sub01", "sub01_2", "sub03", "sub04"]
    for name in run.finished:
        exports = out / "series" / name / "exports"
        assert [p.name for p in exports.iterdir()] == [f"{name}.nii.gz"]


@pytest.mark.slow
def test_an_export_not_written_is_named_in_the_series_folder_not_its_temporary_one(
    tiny_model, cohort_dir, tmp_path
):
    """Issue found by review: a series of two slice sizes (no volume) said
    ``OUT/series/.sliceseg-tmp.sub01.<pid>/exports/sub01.seg.dcm: DICOM-SEG not written``, a
    folder gone when the line is read, and its record.json named the input folder by the path
    it was given (the author's absolute path) where every other record names files under it."""
    ds = pydicom.dcmread(cohort_dir / "sub02" / "sub02_s00.dcm")  # 96×96 beside 112×96
    first = pydicom.dcmread(cohort_dir / "sub01" / "sub01_s00.dcm")
    ds.SeriesInstanceUID, ds.InstanceNumber = first.SeriesInstanceUID, 9
    ds.ImagePositionPatient = [*first.ImagePositionPatient[:2], 0.0]
    ds.save_as(cohort_dir / "sub01" / "sub01_s09.dcm")
    out = tmp_path / "out"
    settings = dataclasses.replace(LEAN, exports=("seg", "nifti"))
    run = predict_cohort(tiny_model, cohort_dir.resolve(), out, settings=settings, options=HERE)
    seg, nifti = [note for note in run.notes if note.startswith("sub01: ")]
    assert seg.startswith("sub01: seg not written: slice sub01_s09.dcm has 96×96 pixels")
    assert ".sliceseg-tmp" not in seg + nifti
    record = json.loads((out / "series" / "sub01" / "record.json").read_text(encoding="utf-8"))
    assert record["summary"]["export_notes"][0] == seg
    assert record["summary"]["export_notes"][1].startswith("sub01: nifti not written: sub01: ")
    assert str(cohort_dir.resolve()) in nifti  # the printed line names it as found


def test_visuals_auto_draws_every_slice_of_a_small_run_only():
    assert cohort_series.visual_mode("auto", cohort_series.VISUALS_ALL_UP_TO) == "all"
    assert cohort_series.visual_mode("auto", cohort_series.VISUALS_ALL_UP_TO + 1) == "flagged"
    scores = [np.array([0.9, 0.8]), np.array([0.2, 0.3]), np.array([0.7, 0.9])]
    chosen = cohort_series.choose_visuals(
        "flagged", ["a/1", "a/2", "a/3"], scores, ["a/3: ROI lost"]
    )
    assert chosen.keys == frozenset({"a/2", "a/3"}) and not chosen.animations


def test_flagged_visuals_draw_a_one_slice_series_only_when_something_names_it():
    """An L3-like cohort (one slice per series): only the flagged series is drawn, whatever its
    confidence; a series of 2+ slices still gets its least confident slice."""
    drawn = set()
    for k in range(20):  # one-slice series; p07 the least confident and unflagged
        key, score = f"p{k:02d}/l3", 0.05 if k == 7 else 0.5 + k / 100
        unlike = [f"series p{k:02d} is unlike the training data: odd"] if k == 12 else []
        chosen = cohort_series.choose_visuals("flagged", [key], [np.array([score])], [], unlike)
        drawn |= chosen.keys or set()
    assert drawn == {"p12/l3"}
    warned = cohort_series.choose_visuals(
        "flagged", ["p20/l3"], [np.array([0.9])], ["p20/l3: odd L/R ratio"]
    )
    assert warned.keys == frozenset({"p20/l3"})
    multi = [np.array([0.9, 0.8]), np.array([0.6, 0.7]), np.array([0.95, 0.9])]
    chosen = cohort_series.choose_visuals("flagged", ["q/1", "q/2", "q/3"], multi, [])
    assert chosen.keys == frozenset({"q/2"})


def test_flagged_visuals_draw_only_the_slice_a_warning_names():
    """A key was matched as a substring of the warnings: one about p01/s10 or p01/s11 also
    drew p01/s1, which no warning names."""
    keys = ["p01/s1", "p01/s10", "p01/s11", "p01/s12"]
    scores = [np.array([0.9]), np.array([0.95]), np.array([0.85]), np.array([0.8])]
    warnings = [
        "p01/s10: left / right area ratio is 2.10, far from the series median 1.00",
        "p01/s11: psoas is missing (area 0) although both neighbouring slices have it",
    ]
    chosen = cohort_series.choose_visuals("flagged", keys, scores, warnings)
    assert chosen.keys == frozenset({"p01/s10", "p01/s11", "p01/s12"})  # + the least confident


def test_flagged_visuals_draw_the_slice_a_warning_names_when_its_name_holds_a_colon():
    """The key ended at the warning's first ": ", so a warning about ``p01/scan: 2`` drew
    nothing (past 500 slices its picture was missing from the report the warning links to)."""
    keys = ["p01/scan", "p01/scan: 2", "p01/scan: 3"]
    scores = [np.array([0.9]), np.array([0.95]), np.array([0.5])]
    warnings = ["p01/scan: 2: psoas is missing (area 0) although both neighbouring slices have it"]
    chosen = cohort_series.choose_visuals("flagged", keys, scores, warnings)
    assert chosen.keys == frozenset({"p01/scan: 2", "p01/scan: 3"})  # + the least confident


def test_all_visuals_draw_no_gif_or_plot_for_a_one_slice_series():
    lone = cohort_series.choose_visuals("all", ["p01/l3"], [np.array([0.4])], [])
    assert lone.keys is None and not lone.animations and not lone.figures
    series = cohort_series.choose_visuals("all", ["q/1", "q/2"], [np.array([0.4, 0.5])], [])
    assert series.keys is None and series.animations and series.figures


@pytest.mark.slow
def test_a_large_run_draws_a_one_slice_series_only_when_it_is_flagged(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """Past `VISUALS_ALL_UP_TO` (lowered here), sub01..sub03 keep one slice each and only
    sub02, unlike the training data, gets an overlay; sub04 (three slices) gets one."""
    for name in ("sub01", "sub02", "sub03"):
        for path in sorted((cohort_dir / name).rglob("*.dcm"))[1:]:
            path.unlink()
    monkeypatch.setattr(cohort_series, "VISUALS_ALL_UP_TO", 2)

    def judged(bundle, slices, labels, **kwargs):
        return Verdict(any("sub02" in str(image.source) for image in slices), ("odd contrast",))

    monkeypatch.setattr(cohort_series, "check_series", judged)
    # no plausibility warning (the short training's would name slices of sub04)
    monkeypatch.setattr(cohort_series, "area_warnings", lambda table, **kwargs: [])
    settings = RunSettings(roi_names=(), visuals="auto", exports=(), report=True)
    out = tmp_path / "out"
    run = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert sorted(run.finished) == ["sub01", "sub02", "sub03", "sub04"]
    drawn = {
        name: len(list((out / "series" / name).rglob("overlays/**/*.jpg"))) for name in run.finished
    }
    assert drawn == {"sub01": 0, "sub02": 1, "sub03": 0, "sub04": 1}
    assert not list(out.rglob("*.gif"))


def test_confidence_where_the_probabilities_lie_equals_the_host_formula():
    """The GPU path of roi_confidence (torch sums) gives the numpy path's scores."""
    import torch

    from sliceseg.inference.confidence import _roi_confidence_on_device, roi_confidence

    rng = np.random.default_rng(0)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(7, 40, 50))).float() * 3, dim=0)
    label = probs.argmax(dim=0).numpy().astype(np.uint8)
    label[:, :10] = 0  # some of each ROI believed but not predicted
    label[label == 6] = 0  # ROI 6 believed, never predicted
    expected = roi_confidence(probs.numpy(), label)
    np.testing.assert_allclose(_roi_confidence_on_device(probs, label), expected, atol=1e-9)
    always = np.array([False, True, False, False, False, True])  # ROI 6 expected, missing: 0
    expected = roi_confidence(probs.numpy(), label, always)
    assert expected[5] == 0.0 and expected[1] > 0
    np.testing.assert_allclose(_roi_confidence_on_device(probs, label, always), expected, atol=1e-9)
    empty = torch.zeros((3, 4, 4))
    empty[0] = 1.0  # nothing believed, nothing predicted: sure
    assert list(_roi_confidence_on_device(empty, np.zeros((4, 4), np.uint8))) == [1.0, 1.0]


def test_predict_scores_with_the_model_s_always_present_rois(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """The run's confidence knows which ROIs the model's training slices always showed."""
    from sliceseg.inference.familiarity import always_present_rois
    from sliceseg.models.bundle import load_bundle

    given: list[object] = []

    class Recording(cohort_network.ConfidenceCollector):
        def __init__(self, always_present=None):
            given.append(always_present)
            super().__init__(always_present)

    monkeypatch.setattr(cohort_network, "ConfidenceCollector", Recording)
    predict_cohort(tiny_model, cohort_dir, tmp_path / "out", settings=LEAN, options=HERE)
    expected = always_present_rois(load_bundle(tiny_model))
    assert expected is not None and given
    for flags in given:
        np.testing.assert_array_equal(flags, expected)


@pytest.mark.slow
def test_decoding_falls_back_to_the_main_process_when_the_workers_die(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """The pool breaks after one series and no worker process starts again: the rest are
    decoded here, each exactly once."""
    from concurrent.futures.process import BrokenProcessPool

    def breaks_after_one(pending, count, job):
        series = pending.popleft()
        yield series, cohort_decode.decode_here(series)
        raise BrokenProcessPool("a worker died")

    monkeypatch.setattr(cohort_decode, "decoded_in_workers", breaks_after_one)
    monkeypatch.setattr(cohort_decode, "_started_pool", lambda: None)
    options = CohortOptions(workers=2)
    with pytest.warns(RuntimeWarning, match="decoding in the main process"):
        run = predict_cohort(tiny_model, cohort_dir, tmp_path / "o", settings=LEAN, options=options)
    assert sorted(run.finished) == ["sub01", "sub02", "sub03", "sub04"] and not run.failed


def test_cohort_histogram_of_means_equal_but_for_rounding():
    # np.histogram(bins=20) refuses [1234.5, 1234.5000000000002]: "Too many bins for data range"
    from sliceseg.report.cohort import _histogram

    svg = _histogram(
        pd.Series([1234.5, 1234.5000000000002, 1234.5]), 0, "psoas", "mm²", colour="#e6194b"
    )
    assert svg.count("<rect") == 20
    assert "psoas: 3 series, median 1234.5 mm²" in svg


@pytest.mark.slow
def test_no_report_writes_no_report_at_all(tiny_model, cohort_dir, tmp_path):
    out = tmp_path / "quiet"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none", "--no-report"]) == 0
    assert (out / "csa.csv").is_file() and (out / "series.csv").is_file()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("report.html")) == []
    assert main(["merge", str(out)]) == 0
    assert not (out / "report.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("replaced", [False, True])
def test_a_run_killed_between_the_two_renames_is_mended(tiny_model, cohort_dir, tmp_path, replaced):
    """kill -9 while a finished series is replaced: its older folder lies aside (hidden), the
    new one under its temporary name, and (``replaced``) perhaps already in place."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    series = out / "series"
    before = snapshot(series / "sub02")
    aside = series / ".sliceseg-tmp.sub02.old.4242"
    temporary = series / ".sliceseg-tmp.sub02.4242"
    shutil.copytree(series / "sub02", temporary)
    (temporary / "record.json").unlink()  # killed while writing it
    if replaced:
        shutil.copytree(series / "sub02", aside)
    else:
        (series / "sub02").rename(aside)
    lines: list[str] = []
    again = predict_cohort(
        tiny_model, cohort_dir, out, settings=LEAN, options=HERE, log=lines.append
    )
    assert "4 series already done, skipped" in lines[0] and again.finished == []
    assert snapshot(series / "sub02") == before  # the finished folder back, bytes and mtimes
    assert sorted(p.name for p in series.iterdir()) == ["sub01", "sub02", "sub03", "sub04"]


@pytest.mark.slow
def test_a_series_in_deeply_nested_long_folders_is_predicted_under_a_shortened_name(
    tiny_model, cohort_dir, tmp_path
):
    """Folders of 120 + 120 characters: the series' name (241 bytes) made its temporary
    folder and OUT/failed/<name>.json longer than a file name may be, and the run stopped."""
    deep = cohort_dir / ("a" * 120) / ("b" * 120)
    deep.parent.mkdir()
    (cohort_dir / "sub02").rename(deep)
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 0
    series = pd.read_csv(out / "series.csv")
    long = [name for name in series["series"] if name.startswith("a" * 100)]
    assert len(series) == 4 and len(long) == 1
    assert len(long[0].encode()) <= 200 and (out / "series" / long[0] / "record.json").is_file()
    assert main([*argv, "--visuals", "none"]) == 0  # the same name again: resumed, not redone
    assert sorted(p.name for p in (out / "series").iterdir()) == sorted(series["series"])


@pytest.mark.slow
def test_a_second_run_into_an_out_being_written_is_refused(tiny_model, cohort_dir, tmp_path):
    """Two runs without --shard into one --out at once: the second removed the first's
    temporary folders as a killed run's (its series then failed), and both wrote every series;
    shards of one run still run together."""
    from sliceseg.inference.records import run_lock

    out = tmp_path / "out"
    writing = out / "series" / ".sliceseg-tmp.sub02.4242"  # the first run's series in progress
    writing.mkdir(parents=True)
    (out / "cohort.json").write_text("{}")  # let a second run through check_out_dir (overwrite)
    options = CohortOptions(workers=0, overwrite=True)
    with run_lock(out, whole=True):
        with pytest.raises(ConfigError, match=r"another `sliceseg predict` is writing into"):
            predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=options)
        assert writing.is_dir() and (out / "cohort.json").read_text() == "{}"
        assert sorted(p.name for p in (out / "series").iterdir()) == [writing.name]
    shard = CohortOptions(workers=0, overwrite=True, shard=Shard(1, 2), merge=False)
    with run_lock(out, whole=False):  # shard 2/2 running: shard 1/2 goes on beside it
        run = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=shard)
    assert run.finished == ["sub01", "sub03"]


@pytest.mark.slow
def test_a_shard_started_twice_at_once_is_refused(tiny_model, cohort_dir, tmp_path, capsys):
    """A SLURM requeue of shard 1/2 while the first still ran: both predicted and wrote the
    same series into one folder (shards share the folder's lock)."""
    from sliceseg.inference.shard_lock import shard_lock

    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    out.mkdir()
    lock = out / ".sliceseg-lock.shard-1-of-2"
    with shard_lock(out, Shard(1, 2)):
        assert main([*argv, "--visuals", "none", "--shard", "1/2"]) == 2
        assert not (out / "series").exists()
        assert main([*argv, "--visuals", "none", "--shard", "2/2"]) == 0
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(error) == 1 and f"delete {lock} and run again." in error[0]
    assert error[0].startswith(f"error: {out}: shard 1/2 is already running (pid {os.getpid()} ")
    assert sorted(p.name for p in (out / "series").iterdir()) == ["sub02", "sub04"]
    assert main([*argv, "--visuals", "none", "--shard", "1/2"]) == 0  # its holder ended
    assert not lock.exists()


@pytest.mark.slow
def test_the_shards_of_one_run_split_the_same_series_or_refuse(
    tiny_model, cohort_dir, tmp_path, monkeypatch, capsys
):
    """A series added after shard 1/2 of a SLURM array started: shard 2/2 split another list
    (sub01, sub01b, sub02, ...), so sub02 and sub04 went unpredicted and sub01b twice."""
    from conftest import copy_series

    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "812")
    assert main([*argv, "--visuals", "none", "--shard", "1/2"]) == 0
    copy_series(cohort_dir / "sub01", cohort_dir / "sub01b")
    shutil.rmtree(cohort_dir / "sub03")
    capsys.readouterr()
    assert main([*argv, "--visuals", "none", "--shard", "2/2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"error: {out / 'input_series.json'}: the input folder {cohort_dir} changed since "
        "another shard of this run (SLURM array job 812) planned it: 1 series added (sub01b), "
        "1 series removed (sub03); the 2 shards of a run must split the same series, or some "
        f"would be predicted twice and others never. Put {cohort_dir} back as it was and run "
        "shard 2/2 again, or let the running shards end, then run all of them again as a new "
        "run (finished series are skipped)."
    )
    assert sorted(p.name for p in (out / "series").iterdir()) == ["sub01", "sub03"]
    assert main(["merge", str(out)]) == 3  # the plan is shard 1/2's: 2/2's share not done
    assert "2 series of the input not finished, left out (sub02, sub04)" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "813")  # the array submitted again: a new run
    for shard in ("1/2", "2/2"):
        assert main([*argv, "--visuals", "none", "--shard", shard]) == 0
    assert main(["merge", str(out)]) == 0
    series = pd.read_csv(out / "series.csv")["series"].tolist()
    assert series == ["sub01", "sub01b", "sub02", "sub04"]


@pytest.mark.slow
def test_shards_given_by_hand_split_the_same_series_while_one_runs(
    tiny_model, cohort_dir, tmp_path
):
    """Outside a launch (no job ID) shards of one count are one run while another runs."""
    from sliceseg.inference.shard_lock import shard_lock

    out = tmp_path / "out"
    first = CohortOptions(workers=0, shard=Shard(1, 2), merge=False)
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=first)
    shutil.rmtree(cohort_dir / "sub04")
    second = dataclasses.replace(first, shard=Shard(2, 2))
    with (
        shard_lock(out, Shard(1, 2)),
        pytest.raises(ConfigError, match=r"1 series removed \(sub04\);"),
    ):
        predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=second)
    run = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=second)
    assert run.finished == ["sub02"]  # 1/2 had ended: a new run of 3 series


def full_disk(monkeypatch, written: str) -> None:
    """Make writing the files whose (temporary) name starts with ``written`` fail as a full
    disk does: an OSError that names no file."""
    real = io.open

    def full(file, mode="r", *args, **kwargs):
        named = isinstance(file, (str, os.PathLike))
        if named and "w" in mode and Path(file).name.startswith(written):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", full)
    monkeypatch.setattr(builtins, "open", full)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_keeps_what_was_written(
    tiny_model, cohort_dir, tmp_path, monkeypatch, capsys
):
    """sub03 failed and its failure record could not be written (the disk is full): the run
    ended as a bug of ours (exit 4, "internal error"), naming no file."""
    out = tmp_path / "out"
    fail_writing(monkeypatch, "sub03")
    full_disk(monkeypatch, ".sliceseg-tmp.sub03.")  # OUT/failed/sub03.json
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"error: {out / 'failed' / 'sub03.json'}: cannot write it (No space left on device); "
        "free space on its disk, or choose another output folder, and run the command again."
    )
    finished = sorted(p.parent.name for p in (out / "series").glob("*/record.json"))
    assert finished == ["sub01", "sub02", "sub04"]


def test_a_series_failing_while_written_leaves_no_hidden_copy(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """Its half-written temporary folder stayed (taking space) until the next run's recovery.
    (A full disk stops the run: `test_a_full_disk_while_a_series_is_written_stops_the_run...`.)"""
    real = cohort_series.write_outputs

    def failing(folder, *args, **kwargs):
        written = real(folder, *args, **kwargs)  # the outputs are written, then a write fails
        if "sub03" in kwargs["series_names"].values():
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return written

    monkeypatch.setattr(cohort_series, "write_outputs", failing)
    run = predict_cohort(tiny_model, cohort_dir, tmp_path / "out", settings=LEAN, options=HERE)
    assert [name for name, _ in run.failed] == ["sub03"]
    left = sorted(p.name for p in (tmp_path / "out" / "series").iterdir())
    assert left == ["sub01", "sub02", "sub04"]  # no .sliceseg-tmp.sub03.<pid> beside them


def test_a_full_disk_while_a_series_is_written_stops_the_run_and_a_rerun_goes_on(
    tiny_model, cohort_dir, tmp_path, monkeypatch, capsys
):
    """The disk filled up while sub02's outputs were written, with room left for the small
    failure records: every later series was decoded, predicted and failed in turn (a cohort of
    100,000 spent its hours failing them), exit 3, failed.csv naming a hidden temporary file.
    The run now stops at the full disk, in one line naming the series' folder and the fix."""
    out = tmp_path / "out"
    real = io.open

    def full(file, mode="r", *args, **kwargs):
        if "w" in mode and "/series/.sliceseg-tmp.sub02." in Path(file).as_posix():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(file, mode, *args, **kwargs)

    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    with monkeypatch.context() as patch:
        patch.setattr(io, "open", full)
        patch.setattr(builtins, "open", full)
        assert main([*argv, "--visuals", "none", "--batch-size", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out / 'series' / 'sub02'}: cannot write the series' outputs (No space left on "
        "device); free space on its disk, then run the same command again (the finished series "
        "are skipped)."
    )
    assert not (out / "failed").exists() and not (out / "failed.csv").exists()
    assert not list((out / "series").glob(".*"))  # no half-written copy left taking space
    assert main([*argv, "--visuals", "none"]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert sorted(p.parent.name for p in (out / "series").glob("*/record.json")) == [
        "sub01",
        "sub02",
        "sub03",
        "sub04",
    ]


@pytest.mark.slow
def test_a_merge_on_a_full_disk_keeps_the_earlier_tables(tiny_model, cohort_dir, tmp_path, capsys):
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    before = snapshot(out)
    with pytest.MonkeyPatch.context() as patch:
        full_disk(patch, "failed.csv")  # in the merge's hidden folder
        assert main(["merge", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {out / 'failed.csv'}: cannot write it (No space left on")
    assert snapshot(out) == before  # series.csv, written before, stays too


@pytest.mark.slow
@pytest.mark.parametrize("full", [full_disk, full_disk_on_write])
def test_a_full_disk_while_merging_csa_csv_names_csa_csv(
    tiny_model, cohort_dir, tmp_path, capsys, full
):
    """csa.csv and csa_long.csv are written together: a full disk while writing csa.csv was
    reported as a failure to write csa_long.csv (the error names no file; the inner write took
    it for its own). Neither table is replaced: the two stay one merge's."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    for name in ("csa.csv", "csa_long.csv"):
        (out / name).write_text(f"an earlier merge's {name}\n")
    with pytest.MonkeyPatch.context() as patch:
        full(patch, "csa.csv")  # csa.csv's file in the merge's hidden folder, not csa_long.csv's
        assert main(["merge", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out / 'csa.csv'}: cannot write it (No space left on device); free space on "
        "its disk, or choose another output folder, and run the command again."
    )
    for name in ("csa.csv", "csa_long.csv"):
        assert (out / name).read_text() == f"an earlier merge's {name}\n"
    assert not list(out.glob(".sliceseg-tmp.*"))


@pytest.mark.slow
def test_a_run_ending_on_a_user_error_takes_back_its_unreadable_records(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """A run that ends on a user error (exit 2) takes back what it recorded; the series it
    found with no readable file stayed in OUT/unreadable/ (and the earlier run's record of
    such a series was written over), so a merge named them for the earlier run's results."""
    for name in ("sub01", "sub02", "sub04"):
        drop_spacing(cohort_dir / name)
    corrupt_series(cohort_dir / "sub03")  # unreadable in both runs
    out = tmp_path / "out"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main([*argv, "--visuals", "none", "--fov", "200"]) == 0
    earlier = snapshot(out / "unreadable")
    corrupt_series(cohort_dir / "sub04")  # unreadable in the second run only
    capsys.readouterr()
    assert main([*argv, "--visuals", "none", "--tta", "--overwrite"]) == 2
    printed = capsys.readouterr()
    assert "series sub04: none of its 3 file(s) could be read" in printed.out
    assert "no PixelSpacing" in printed.err.strip().splitlines()[-1]
    assert snapshot(out / "unreadable") == earlier  # sub03.json: the same bytes and mtime
    assert list(earlier) == ["sub03.json"] and not (out / "failed").exists()
    merged = merge.merge_cohort(out)
    assert merged.unreadable == ("sub03",) and merged.is_complete


@pytest.mark.slow
def test_a_merge_names_the_series_of_the_input_not_finished(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """A merge while a shard still ran (or after one was stopped), or over a damaged
    record.json, left those series out of every table without a word."""
    out = tmp_path / "out"
    shard = CohortOptions(workers=0, shard=Shard(1, 2), merge=False)
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=shard)  # sub01, sub03
    record = out / "series" / "sub03" / "record.json"
    record.write_text(record.read_text()[:40])
    assert main(["merge", str(out)]) == 3  # not complete
    printed = capsys.readouterr()
    assert "Merged 1 series (3 slices), 0 failed" in printed.out
    assert printed.err.strip() == (
        "warning: 3 series of the input not finished, left out (sub02, sub03, sub04): a predict "
        "run or shard still running, stopped or not run, or a damaged record.json; run the "
        "predict command (each shard) again, which skips the finished series, then `sliceseg "
        f"merge {out}`."
    )
    again = predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=shard)
    assert again.finished == ["sub03"]  # the damaged record's series is redone
    assert merge.merge_cohort(out).unfinished == ("sub02", "sub04")


def _shard(k: int, *, merge: bool = False) -> CohortOptions:
    return CohortOptions(workers=0, shard=Shard(k, 2), merge=merge)


@pytest.mark.slow
def test_a_merge_leaves_out_a_finished_series_whose_files_changed_since(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Issue found by review: a file removed from sub01 after the cohort was predicted, then a
    rerun of shard 2 only (shard 1 killed by its time limit) and a merge: csa.csv still held the
    removed file's slice, and the merge exited 0 as if the cohort were complete."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=HERE)
    (cohort_dir / "sub01" / "sub01_s02.dcm").unlink()
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=_shard(2))
    capsys.readouterr()
    assert main(["merge", str(out)]) == 3
    printed = capsys.readouterr()
    assert "Merged 3 series (9 slices), 0 failed" in printed.out
    assert printed.err.strip() == (
        "warning: 1 series whose input files changed since they were predicted left out "
        "(sub01); run the predict command (each shard) again to redo them."
    )
    assert list(pd.read_csv(out / "series.csv")["series"]) == ["sub02", "sub03", "sub04"]
    assert "sub01" not in set(pd.read_csv(out / "csa_long.csv")["series"])
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=_shard(1))
    assert main(["merge", str(out)]) == 0
    wide = pd.read_csv(out / "csa.csv", index_col="slice", dtype={"slice": str})
    slices = wide.loc[[not is_summary_row(i) for i in wide.index], "file"]
    assert [f for f in slices if f.startswith("sub01/")] == ["sub01/sub01_s00", "sub01/sub01_s01"]


@pytest.mark.slow
def test_a_merge_before_every_shard_ran_exits_3_until_they_have(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """A merge after shard 1 of 2 (shard 2 killed by a time limit, or still running) exited 0:
    `afterok` and `$?` took the cohort for complete."""
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=_shard(1))
    capsys.readouterr()
    assert main(["merge", str(out)]) == 3
    printed = capsys.readouterr()
    assert "Merged 2 series (6 slices), 0 failed" in printed.out
    assert printed.err.startswith(
        "warning: 2 series of the input not finished, left out (sub02, sub04): "
    )
    assert "run the predict command (each shard) again" in printed.err
    merged = merge.merge_cohort(out)
    assert merged.unfinished == ("sub02", "sub04") and not merged.is_complete
    predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=_shard(2))
    assert main(["merge", str(out)]) == 0
    printed = capsys.readouterr()
    assert "Merged 4 series (12 slices), 0 failed" in printed.out and printed.err == ""


@pytest.mark.slow
def test_a_series_of_damaged_files_is_known_to_a_later_merge(
    tiny_model, cohort_dir, tiny_phantom, tmp_path, capsys
):
    """A series whose every file is damaged was recorded nowhere: a standalone merge named it
    as not finished. Now ``OUT/unreadable/<name>.json`` keeps its files until it finishes."""
    corrupt_series(cohort_dir / "sub03")
    out = tmp_path / "out"
    reported = dataclasses.replace(LEAN, report=True)  # the cohort's report.html only
    for k in (1, 2):
        predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=_shard(k))
    capsys.readouterr()
    code = main(["merge", str(out)])
    printed = capsys.readouterr()
    assert printed.err.strip() == (
        "warning: 1 series of the input with no readable file left out (sub03): every file "
        f"damaged, each named with why in {out / 'unreadable'}/<name>.json; replace the files "
        "and run the predict command again."
    )
    assert code == 0 and "Merged 3 series (9 slices), 0 failed" in printed.out
    record = json.loads((out / "unreadable" / "sub03.json").read_text(encoding="utf-8"))
    assert [Path(f["path"]).name for f in record["skipped"]] == [
        f"sub03_s0{i}.dcm" for i in range(3)
    ]
    assert all("cannot decode pixel data" in f["reason"] for f in record["skipped"])
    assert "sub03_s00.dcm: cannot decode pixel data" in (out / "report.html").read_text()
    assert (out / "failed.csv").read_text().strip() == "series,slices,reason"
    assert merge.merge_cohort(out).unreadable == ("sub03",)
    shutil.rmtree(cohort_dir / "sub03")  # the files mended: the series finishes
    shutil.copytree(next(tiny_phantom.glob("*/dicoms/sub03")), cohort_dir / "sub03")
    predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=_shard(1))
    assert not (out / "unreadable" / "sub03.json").exists()
    assert main(["merge", str(out)]) == 0
    assert "Merged 4 series (12 slices), 0 failed" in capsys.readouterr().out
    corrupt_series(cohort_dir / "sub03")  # damaged again: its older result is not merged
    predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=_shard(1))
    merged = merge.merge_cohort(out)
    assert list(merged.series["series"]) == ["sub01", "sub02", "sub04"]
    assert merged.unreadable == ("sub03",) and merged.is_complete


@pytest.mark.slow
def test_sharded_and_unsharded_reports_name_the_planned_out_files_alike(
    tiny_model, cohort_dir, tmp_path, report_clock
):
    """A file the plan left out (not DICOM) was passed to an unsharded run's merge in memory
    only: a standalone merge after shards did not name it, so one cohort had two reports.
    ``input_series.json`` keeps it (path under the input, why), and every merge reads it."""
    (cohort_dir / "sub02" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    reported = dataclasses.replace(LEAN, report=True)
    predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=HERE)
    whole = (out / "report.html").read_text(encoding="utf-8")
    line = (
        "<li>Skipped sub02/notes.txt: not a DICOM file (no &#x27;DICM&#x27; marker and not "
        "readable as DICOM)</li>"
    )
    shutil.rmtree(out)
    for k in (1, 2):
        predict_cohort(tiny_model, cohort_dir, out, settings=reported, options=_shard(k))
    assert main(["merge", str(out)]) == 0
    assert (out / "report.html").read_text(encoding="utf-8") == whole
    assert whole.count(line) == 1 and whole.count(report_clock) == 1


@pytest.mark.slow
def test_a_merge_of_a_cohort_with_no_readable_series_says_so(
    tiny_model, cohort_dir, tmp_path, capsys
):
    """Every series' files damaged: the merge said "no finished or failed series to merge; run
    `sliceseg predict` into this folder first" after predict had run; it now says why."""
    for folder in cohort_dir.iterdir():
        corrupt_series(folder)
    out = tmp_path / "out"
    expected = (
        f"error: {out}: no series to merge: every file of every series of the input is "
        "unreadable (4 series: sub01, sub02, sub03, sub04); each file is named with why in "
        f"{out / 'unreadable'}/<name>.json; replace the files (or give the right input folder) "
        "and run the predict command again."
    )
    args = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == expected
    assert main(["merge", str(out)]) == 2
    assert capsys.readouterr().err.strip() == expected


# A real `sliceseg predict` that stalls when it starts to decode sub03 (the earlier series
# decoded, perhaps written): it says so in a file, so that the test sends SIGTERM right there.
STALLED_PREDICT = """
import sys, time
from pathlib import Path
from sliceseg.cli import main
from sliceseg.inference import cohort_decode
real = cohort_decode.decode_here
def stalled(series):
    if series.name == "sub03":
        Path(sys.argv[1]).touch()
        time.sleep(120)
    return real(series)
cohort_decode.decode_here = stalled
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_sigtermed_run_removes_the_series_being_written_and_a_rerun_finishes_it(
    tiny_model, cohort_dir, tmp_path
):
    """SIGTERM (`kill`, a SLURM job's time limit) ended the process at once, without a line
    (and a series being written stayed in its hidden temporary folder); now it ends as on
    Ctrl-C: the series in hand are written or removed, one line, exit 143."""
    from cohort_runs import clean_env

    out, ready = tmp_path / "out", tmp_path / "sub03-decoding"
    argv = ["predict", str(tiny_model), str(cohort_dir), "--out", str(out), "--workers", "0"]
    argv += ["--visuals", "none"]
    command = [sys.executable, "-c", STALLED_PREDICT, str(ready), *argv]
    child = subprocess.Popen(command, env=clean_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read()
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        "terminated (SIGTERM); files already written are kept; the same command again goes on "
        "(the finished series are skipped)."
    )
    assert not list(out.rglob(".sliceseg-tmp.*"))  # no hidden half-written series
    assert main(argv) == 0
    whole = tmp_path / "whole"
    assert main([*argv[:4], str(whole), *argv[5:]]) == 0
    assert_same_tables(out, whole)


def test_a_renamed_segment_label_is_said_once_per_run(tiny_model, cohort_dir, tmp_path, capsys):
    """Issue found by review: a model ROI name DICOM-SEG must change (a backslash) was said
    once per series of a cohort; it is the model's name, so the run says it once."""
    from sliceseg.models.bundle import load_bundle, save_bundle

    bundle = load_bundle(tiny_model)
    names = ("fat\\water", *bundle.metadata.roi_names[1:])
    metadata = dataclasses.replace(bundle.metadata, roi_names=names)
    model = save_bundle(tmp_path / "m.pt", bundle.model, metadata)
    out = tmp_path / "out"
    argv = ["predict", str(model), str(cohort_dir), "--out", str(out), "--export", "seg"]
    assert main([*argv, "--workers", "0", "--visuals", "none", "--no-report"]) == 0
    printed = capsys.readouterr()
    said = [
        line
        for line in (printed.out + printed.err).splitlines()
        if "is written as SegmentLabel" in line
    ]
    assert said == [
        "warning: DICOM-SEG: ROI 1's name 'fat\\water' is written as SegmentLabel 'fat/water' "
        "(at most 64 characters, no backslash, one name per segment); the .seg.nrrd export and "
        "the tables keep the whole name."
    ]
    assert len(list(out.glob("series/*/exports/*.seg.dcm"))) == 4


def test_a_dicom_folder_inside_out_is_refused_and_its_dicoms_kept(
    tiny_model, tiny_phantom, tmp_path, capsys
):
    """`--out study --overwrite` with the DICOMs in study/series: each series' folder
    OUT/series/<name> was its input folder, replaced whole by its outputs (every DICOM deleted).
    Refused before a header is read, whatever --overwrite says."""
    study = tmp_path / "study"
    dicoms = study / "series"
    for folder in sorted((tiny_phantom / "train" / "dicoms").iterdir()):
        shutil.copytree(folder, dicoms / folder.name)
    before = snapshot(study)
    argv = ["predict", str(tiny_model), str(dicoms), "--out", str(study), "--overwrite"]
    assert main([*argv, "--workers", "0", "--visuals", "none"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {dicoms}: the DICOM folder is inside --out {study}, where a run replaces each "
        "series' folder whole (its DICOMs would be deleted); choose an --out outside it."
    )
    assert snapshot(study) == before


def test_a_cohort_in_pixels_says_so_in_its_tables_and_resumes(tiny_model, cohort_dir, tmp_path):
    """``predict --pixels``: every csa.csv (the series' and the cohort's) names the unit in its
    ROI columns, the merge reads them, and a rerun finds the series done (their tables whole)."""
    for path in cohort_dir.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.PixelSpacing
        ds.save_as(path)
    out = tmp_path / "out"
    pixels = dataclasses.replace(LEAN, fallback=SpacingFallback(pixels_only=True))
    run = predict_cohort(tiny_model, cohort_dir, out, settings=pixels, options=HERE)
    assert run.merged is not None and run.merged.is_complete and len(run.finished) == 4
    columns = ["file", *(f"{roi} (pixels)" for roi in ROIS), "confidence"]
    for table in (out / "csa.csv", out / "series" / "sub01" / "csa.csv"):
        assert list(pd.read_csv(table, index_col="slice").columns)[: len(columns)] == columns
    series = pd.read_csv(out / "series.csv")  # a mean in pixels said so there too
    rois = [f"{statistic} {roi}" for statistic in ("mean", "std") for roi in ROIS]
    assert list(series.columns[2 : 2 + 3 * len(ROIS)]) == [
        *(f"{column} (pixels)" for column in rois),
        *(f"n {roi}" for roi in ROIS),
    ]
    assert series[f"mean {ROIS[0]} (pixels)"].notna().all()
    again = predict_cohort(tiny_model, cohort_dir, out, settings=pixels, options=HERE)
    assert again.already_done == 4 and again.finished == []
    assert pd.read_csv(out / "series.csv").equals(series)  # a resume's merge: the same table


def test_ct_options_on_mr_series_are_said_once_a_run(tiny_model, cohort_dir, tmp_path):
    """``--adipose-hu`` on a cohort of MR series printed its line once per series (hundreds in
    a mixed cohort); the run says it once, naming how many series and the first few."""
    import warnings

    settings = dataclasses.replace(LEAN, tissue=TissueSettings(adipose_hu=(-200.0, -40.0)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = predict_cohort(
            tiny_model, cohort_dir, tmp_path / "out", settings=settings, options=HERE
        )
    said = [str(w.message) for w in caught if "not CT" in str(w.message)]
    said += [note for note in run.notes if "not CT" in note]
    assert said == [
        "4 series are not CT (sub01, sub02, sub03 and 1 more; Modality MR), so --adipose-hu "
        "(adipose_hu) -200 -40 measures nothing on them: the CT columns (imat_fraction, "
        "imat_mm2, muscle_radiodensity_hu) are for CT slices only."
    ]


@pytest.mark.parametrize(
    ("modality", "said"),
    [
        (
            None,
            "4 series have no (0008,0060) Modality in their files (sub01, sub02, sub03 and 1 "
            "more), so their muscle ROIs get no CT columns (imat_fraction, imat_mm2, "
            "muscle_radiodensity_hu); if they are CT, set Modality to CT in the files.",
        ),
        (
            "CT",
            "4 CT series have values that are not Hounsfield units (sub01, sub02, sub03 and 1 "
            "more); the first, sub01: CT whose lowest value after (0028,1052) RescaleIntercept "
            "/ (0028,1053) RescaleSlope is ",
        ),
    ],
    ids=["no Modality", "not in HU"],
)
def test_series_lacking_tissue_columns_are_said_once_a_run(
    tiny_model, cohort_dir, tmp_path, modality, said
):
    """A cohort whose series had no Modality, or were CT without their rescale, printed that
    note once per series (hundreds in a cohort); the run says it once, naming how many series
    and the first few."""
    import warnings

    for path in cohort_dir.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if modality is None:
            del ds.Modality
        else:
            ds.Modality = modality
        ds.save_as(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = predict_cohort(tiny_model, cohort_dir, tmp_path / "out", settings=LEAN, options=HERE)
    lines = [str(w.message) for w in caught] + run.notes
    found = [line for line in lines if "Modality in" in line or "Hounsfield" in line]
    assert len(found) == 1 and found[0].startswith(said)


class _Planned(Exception):
    """Raised where a shard would start predicting: the test is of its plan only."""


def test_two_shards_of_one_run_planning_at_once_split_one_list(
    tiny_model, cohort_dir, tmp_path, monkeypatch
):
    """Shards 1/2 and 2/2 of one SLURM array started in the same moment, sub04 removed
    between their plans: both found no plan, both wrote their own and both ran, splitting two
    lists (sub04 was predicted by neither, or twice)."""
    import threading

    from sliceseg.inference import records

    fewer = tmp_path / "fewer"
    shutil.copytree(cohort_dir, fewer)
    shutil.rmtree(fewer / "sub04")
    both_planned, digest, seen = threading.Barrier(2, timeout=20), records.inputs_digest, set()

    def inputs_digest(inputs):  # the worst moment: each has planned, neither has written
        if threading.current_thread().name not in seen:
            seen.add(threading.current_thread().name)
            both_planned.wait()
        return digest(inputs)

    def planned(*args, **kwargs):
        raise _Planned

    monkeypatch.setattr(records, "inputs_digest", inputs_digest)
    monkeypatch.setattr(cohort, "recover_folders", planned)
    out, ended = tmp_path / "out", {}

    def shard(index: int, root: Path) -> None:
        options = CohortOptions(workers=0, shard=Shard(index, 2, run="SLURM array job 7"))
        try:
            predict_cohort(tiny_model, root, out, settings=LEAN, options=options)
        except (_Planned, ConfigError) as error:
            ended[index] = error

    second = threading.Thread(target=shard, args=(2, fewer), name="2")
    second.start()
    shard(1, cohort_dir)
    second.join(30)
    assert sorted(type(error).__name__ for error in ended.values()) == ["ConfigError", "_Planned"]
    refused = next(error for error in ended.values() if isinstance(error, ConfigError))
    assert "changed since another shard of this run (SLURM array job 7) planned it: 1 series " in (
        str(refused)
    )
    kept = json.loads((out / "input_series.json").read_text())["series"]
    winner = cohort_dir if isinstance(ended[1], _Planned) else fewer
    assert kept == sorted(p.name for p in winner.iterdir())


def test_shards_of_another_count_are_refused_while_those_run(tiny_model, cohort_dir, tmp_path):
    """``--shard 1/4`` running and ``--shard 2/8`` into the same folder: they split the series
    differently (sub02 is 2/4's and 2/8's), and nothing but the documentation said not to."""
    from sliceseg.inference.shard_lock import shard_lock

    out = tmp_path / "out"
    out.mkdir()
    options = CohortOptions(workers=0, shard=Shard(2, 8), merge=False)
    with shard_lock(out, Shard(1, 4)), pytest.raises(ConfigError) as refused:
        predict_cohort(tiny_model, cohort_dir, out, settings=LEAN, options=options)
    assert str(refused.value).startswith(
        f"{out}: shards of 4 are running into it (shard 1/4; lock file "
        f"{out / '.sliceseg-lock.shard-1-of-4'}), and this is shard 2/8: shards of 4 and of 8 "
    )
    assert not (out / "series").exists()


def test_a_resumed_run_says_its_ct_options_line_of_every_series(tiny_model, cohort_dir, tmp_path):
    """A resumed run (sub03 redone, three series done before) said "1 series is not CT
    (sub03 ...)" under a csa.csv of four MR series: the line counted only those it predicted."""
    import warnings

    settings = dataclasses.replace(LEAN, tissue=TissueSettings(adipose_hu=(-200.0, -40.0)))
    out = tmp_path / "out"
    predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    shutil.rmtree(series_dir(out, "sub03"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert (run.already_done, run.finished) == (3, ["sub03"])
    assert [note for note in run.notes if "not CT" in note] == [
        "4 series are not CT (sub01, sub02, sub03 and 1 more; Modality MR), so --adipose-hu "
        "(adipose_hu) -200 -40 measures nothing on them: the CT columns (imat_fraction, "
        "imat_mm2, muscle_radiodensity_hu) are for CT slices only."
    ]
    assert pd.read_csv(out / "series.csv")["series"].tolist() == [f"sub0{k}" for k in range(1, 5)]
    again = predict_cohort(tiny_model, cohort_dir, out, settings=settings, options=HERE)
    assert again.finished == [] and [n for n in again.notes if "not CT" in n] == run.notes[-1:]
