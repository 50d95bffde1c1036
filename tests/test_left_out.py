"""``measure`` leaves out the files it cannot use, names each with why, and measures the rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import add_pair, square_label
from sliceseg.cli import main

GOOD = ("p01/s0", "p01/s1", "p01/s2")
NAMES = ["--labels", "psoas,body"]  # K = 2: a value 7 is above the ROI count


def _no_spacing(root: Path) -> str:
    add_pair(root, "p01/bad", square_label(), spacing=None)
    return "dicoms/p01/bad.dcm: no PixelSpacing (0028,0030) in the file"


def _malformed_spacing(root: Path) -> str:
    add_pair(root, "p01/bad", square_label())
    path = root / "dicoms/p01/bad.dcm"
    data = path.read_bytes()
    path.write_bytes(data.replace(b"DS\x08\x000.5\\0.8 ", b"DS\x08\x000.5\\abc "))
    return 'dicoms/p01/bad.dcm: its PixelSpacing (0028,0030) "0.5\\abc" is malformed'


def _truncated_dicom(root: Path) -> str:
    add_pair(root, "p01/bad", square_label())
    path = root / "dicoms/p01/bad.dcm"
    path.write_bytes(path.read_bytes()[:-300])
    return "dicoms/p01/bad.dcm: cannot decode pixel data"


def _label_on_another_grid(root: Path) -> str:
    add_pair(root, "p01/bad", np.zeros((5, 5), np.uint8))
    return "p01/bad: image is 20×24 but the label is 5×5; expected 20×24"


def _value_above_the_roi_count(root: Path) -> str:
    label = square_label()
    label[0, 0] = 7
    add_pair(root, "p01/bad", label)
    return "labels/p01/bad.png: values [7] in 1 pixels are not in the dataset's"


def _unreadable_label(root: Path) -> str:
    add_pair(root, "p01/bad", square_label())
    (root / "labels/p01/bad.png").write_bytes(b"not a png")
    return "labels/p01/bad.png: cannot read the label map"


def _label_without_a_dicom(root: Path) -> str:
    add_pair(root, "p01/bad", square_label())
    (root / "dicoms/p01/bad.dcm").unlink()
    return "1 label map(s) without a DICOM file of the same relative name"


def _label_of_a_file_that_is_no_dicom(root: Path) -> str:
    add_pair(root, "p01/bad", square_label())
    (root / "dicoms/p01/bad.dcm").write_bytes(b"not a DICOM file at all")
    return "1 label map(s) whose file in the DICOM folder is not a DICOM file"


BAD_KINDS: dict[str, Callable[[Path], str]] = {
    "no spacing": _no_spacing,
    "malformed spacing": _malformed_spacing,
    "truncated DICOM": _truncated_dicom,
    "label on another grid": _label_on_another_grid,
    "value above the ROI count": _value_above_the_roi_count,
    "unreadable label": _unreadable_label,
    "label without a DICOM": _label_without_a_dicom,
    "label of a file that is no DICOM": _label_of_a_file_that_is_no_dicom,
}


def _measure(root: Path, out: Path, *extra: str) -> int:
    labels, dicoms = str(root / "labels"), str(root / "dicoms")
    return main(["measure", labels, "--dicoms", dicoms, "--out", str(out), *NAMES, *extra])


def _good_folder(root: Path) -> Path:
    for key in GOOD:
        add_pair(root, key, square_label())
    return root


@pytest.mark.parametrize("kind", BAD_KINDS, ids=list(BAD_KINDS))
def test_one_bad_file_is_left_out_and_the_good_ones_are_measured(tmp_path, capsys, kind):
    """One slice without a usable spacing stopped the whole run (exit 2, no table): every
    per-file problem now leaves that file out, named with why, and the others are measured
    exactly as without it; failed.csv lists it, and the exit code is 3."""
    clean = _good_folder(tmp_path / "clean")
    assert _measure(clean, tmp_path / "clean_out") == 0
    capsys.readouterr()
    mixed = _good_folder(tmp_path / "mixed")
    reason = BAD_KINDS[kind](mixed)
    assert _measure(mixed, tmp_path / "out") == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("not measured: ")]
    assert reason in line
    assert err.splitlines()[-1] == (
        "finished with failures: 1 problem(s) left files out (the `not measured:` lines above, "
        f"listed in {tmp_path / 'out' / 'failed.csv'}); the other files are in the tables."
    )
    for table in ("csa.csv", "csa_long.csv"):
        measured = pd.read_csv(tmp_path / "out" / table)
        pd.testing.assert_frame_equal(measured, pd.read_csv(tmp_path / "clean_out" / table))
    assert list(pd.read_csv(tmp_path / "out" / "csa.csv")["psoas"][:3]) == [40.0] * 3
    (failed,) = pd.read_csv(tmp_path / "out" / "failed.csv").to_dict("records")
    assert reason in failed["reason"]
    if kind.startswith("label without") or kind.endswith("no DICOM"):  # none says its series
        assert np.isnan(failed["series"]) and np.isnan(failed["slices"])
    else:
        assert (failed["series"], failed["slices"]) == ("p01", 1)


def test_a_clean_run_writes_a_failed_csv_with_its_header_only(tmp_path, capsys):
    """As predict's: a failed.csv of an earlier run (--overwrite) never stays beside the tables."""
    root = _good_folder(tmp_path / "data")
    assert _measure(root, tmp_path / "out") == 0
    assert (tmp_path / "out" / "failed.csv").read_text() == "series,slices,reason\n"
    assert "finished with failures" not in capsys.readouterr().err


def test_every_slice_without_spacing_is_still_a_refusal_naming_one(tmp_path, capsys):
    """Nothing left to measure: the run is refused (exit 2), each file named on its line."""
    for key in GOOD:
        add_pair(tmp_path, key, square_label(), spacing=None)
    assert _measure(tmp_path, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("not measured: ")]) == 3
    assert lines[-1].startswith(
        f"error: nothing to measure in {tmp_path / 'labels'}: 3 problem(s) left out every "
        "labelled slice (among the `not measured:` lines); the first: dicoms/p01/s0.dcm: no "
        "PixelSpacing"
    )
    assert not (tmp_path / "out").exists()


def test_nothing_to_measure_counts_only_the_problems_that_left_a_slice_out(tmp_path, capsys):
    """The refusal said "2 problem(s) left out every labelled slice" and named first "1 label
    map(s) without a DICOM file": a label map without a DICOM labels no slice, yet it was
    counted, and named as the first reason. Its line stays; the count and the first are the
    slice left out."""
    add_pair(tmp_path, "p01/s0", square_label(), spacing=None)
    _label_without_a_dicom(tmp_path)
    assert _measure(tmp_path, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("not measured: ")]) == 2
    dicoms, labels = tmp_path / "dicoms", tmp_path / "labels"
    assert lines[-1] == (
        f"error: nothing to measure in {labels}: 1 problem(s) left out every labelled slice "
        "(among the `not measured:` lines); the first: dicoms/p01/s0.dcm: no PixelSpacing "
        "(0028,0030) in the file, so areas in mm² are unknown; give --fov MM (and --matrix ROWS "
        f"COLS), or --pixels to report pixel counts; run `sliceseg check --images {dicoms} "
        f"--labels {labels}` for the full report."
    )


def test_pixels_beside_mm2_still_refuses_the_run(tmp_path, capsys):
    """Mixing pixel counts and mm² in one table concerns the whole run, not one file."""
    _good_folder(tmp_path)
    add_pair(tmp_path, "p01/bare", square_label(), spacing=None)
    assert _measure(tmp_path, tmp_path / "out", "--pixels") == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: {tmp_path / 'dicoms/p01/bare.dcm'}: no PixelSpacing")
    assert "while other slices have a spacing in mm" in last


def test_the_warnings_come_before_a_refusal_after_reading(tmp_path, capsys):
    """measure printed its reader's warnings only after success: a refusal after reading (here
    the output folder in use) dropped them. They now come first, then the refusal."""
    _good_folder(tmp_path)
    add_pair(tmp_path, "p01/lonely")  # a DICOM without a label map: a warning
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("in use")
    assert _measure(tmp_path, tmp_path / "out") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        "warning: 1 DICOM file(s) without a label map of the same relative name (not measured)"
        " -- dicoms/p01/lonely.dcm"
    )
    assert lines[-1].startswith(f"error: {tmp_path / 'out'}")


def test_nothing_to_measure_names_measure_s_own_folders(tmp_path, capsys):
    """The line said "expected DATA_DIR/dicoms/<name>.dcm beside DATA_DIR/labels/...", a layout
    measure does not have (it takes LABELS_DIR and --dicoms); it names the folders given."""
    add_pair(tmp_path, "p01/a")
    (tmp_path / "manual").mkdir()
    np.save(tmp_path / "manual" / "b.npy", square_label())
    dicoms, labels = tmp_path / "dicoms", tmp_path / "manual"
    argv = ["measure", str(labels), "--dicoms", str(dicoms), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "DATA_DIR" not in last
    assert last == (
        f"error: nothing to measure: no DICOM file in {dicoms} pairs with a label map in "
        f"{labels}; expected {dicoms}/<name>.dcm beside {labels}/<name>.png (same relative "
        f"path); run `sliceseg check --images {dicoms} --labels {labels}` for the full report."
    )


def test_the_lines_and_failed_csv_leave_the_run_s_own_problem_to_the_refusal(tmp_path):
    """``measure`` and ``evaluate`` name their files left out through one `LeftOutFiles`:
    "no DICOM pairs with any label map" is the run's refusal, not a file left out (evaluate
    printed it as a ``not evaluated:`` line just before its refusal said it again)."""
    from sliceseg.dataset.left_out import LeftOutFiles, leave_out_unusable
    from sliceseg.dataset.samples import load_usable_samples
    from sliceseg.io.series_plan import plan_cohort
    from sliceseg.measure.spacing import SpacingFallback

    add_pair(tmp_path, "p01/a")  # a DICOM without a label map
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / "b.npy", square_label())  # a label map without a DICOM
    fallback = SpacingFallback()
    samples, report = leave_out_unusable(*load_usable_samples(tmp_path), fallback)
    assert samples == [] and "empty" in [p.kind for p in report.errors]
    files = LeftOutFiles(report, "not measured", fallback, unlabelled_use="not measured")
    unmatched = (
        "1 label map(s) without a DICOM file of the same relative name (left out; name each as "
        "its DICOM is named) -- labels/b.npy"
    )
    assert [line for line in files.lines if not line.startswith("warning: ROI")] == [
        "warning: 1 DICOM file(s) without a label map of the same relative name (not measured) "
        "-- dicoms/p01/a.dcm",
        f"not measured: {unmatched}",
    ]
    failed = files.failed_table(plan_cohort(tmp_path / "dicoms", exclude=tmp_path / "labels"))
    assert failed["reason"].tolist() == [unmatched]


def test_a_line_whose_message_begins_with_its_only_file_names_it_once(tmp_path, capsys):
    """``not measured: labels/p01/bad.png: cannot read ... -- labels/p01/bad.png`` named the
    file twice, on the line and in failed.csv's reason; the list after ``--`` is kept where
    it adds files (an unreadable DICOM's line names it and its label map)."""
    root = _good_folder(tmp_path / "data")
    _unreadable_label(root)
    _label_of_a_file_that_is_no_dicom(_good_folder(tmp_path / "other"))
    assert _measure(root, tmp_path / "out") == 3
    reason = (
        "labels/p01/bad.png: cannot read the label map (cannot identify image file "
        "'labels/p01/bad.png'); expected a readable .png file; export it again."
    )
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if ln.startswith("not measured: ")] == [f"not measured: {reason}"]
    (failed,) = pd.read_csv(tmp_path / "out" / "failed.csv").to_dict("records")
    assert (failed["series"], failed["slices"], failed["reason"]) == ("p01", 1, reason)
    assert _measure(tmp_path / "other", tmp_path / "other_out") == 3
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("not measured")]
    assert line.endswith(" -- dicoms/p01/bad.dcm, labels/p01/bad.png")


def test_left_out_exports_only_what_the_commands_call():
    """`failed_rows` and `series_of_files` stayed in ``__all__`` after `LeftOutFiles` became
    their only caller: the module's API is what other modules of sliceseg use."""
    import re

    import sliceseg.dataset.left_out as left_out

    here = Path(left_out.__file__)
    others = "\n".join(p.read_text() for p in here.parents[1].rglob("*.py") if p != here)
    unused = [n for n in left_out.__all__ if not re.search(rf"\b{n}\b", others)]
    assert unused == [] and set(left_out.__all__) == {
        "LeftOutFiles",
        "leave_out_unusable",
        "no_slice_refusal",
    }


def test_a_label_named_but_for_its_case_is_one_line_and_one_failed_row(tmp_path, capsys):
    """measure left a label map named but for its letter case out twice in words: a `not
    measured:` line "without a DICOM file" and a warning with its rename, both naming it. It is
    one `not measured:` line now, the rename's, and one failed.csv row."""
    root = _good_folder(tmp_path / "data")
    add_pair(root, "p01/s3", square_label(), image_name="p01/S3.dcm")  # labels/p01/s3.png
    assert _measure(root, tmp_path / "out") == 3
    err = capsys.readouterr().err.splitlines()
    named = [ln for ln in err if "p01/s3.png" in ln]
    reason = (
        "1 label map(s) would pair with a DICOM but for their path's letter case, an ending such "
        "as _mask, or one folder more (left out); name each as its DICOM is named, at the same "
        "path below the label folder (e.g. p01/s3.png → p01/S3.png) -- labels/p01/s3.png"
    )
    assert named == [f"not measured: {reason}"]
    (failed,) = pd.read_csv(tmp_path / "out" / "failed.csv").to_dict("records")
    assert failed["reason"] == reason
