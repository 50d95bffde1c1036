"""Tests for sliceseg.dataset.check: the report's findings, ROI statistics, text and JSON forms."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import LABEL_COLS, LABEL_ROWS, add_pair, square_label
from sliceseg.dataset.check import CheckReport, roi_stats
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.samples import check_dataset
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.io.roi_values import LabelScheme


def messages(report: CheckReport, kind: str) -> list[str]:
    return [p.message for p in report.problems if p.kind == kind]


def sample_on(spacing_mm: tuple[float, float] | None, label: np.ndarray) -> Sample:
    image = Slice(
        pixels=np.zeros(label.shape, np.float32),
        spacing_mm=spacing_mm,
        spacing_source="PixelSpacing" if spacing_mm else "none",
        source=Path("/data/s.dcm"),
    )
    return Sample(key="s", image=image, label=label)


class TestRoiStats:
    def test_areas_use_row_and_column_spacing(self):
        # 10×10 square at 0.5 × 0.8 mm = 40 mm²; at 0.25 × 2.0 mm = 50 mm²; the 4×6 box is
        # 9.6 mm² and 12 mm²: means 45 and 10.8 mm².
        samples = [sample_on((0.5, 0.8), square_label()), sample_on((0.25, 2.0), square_label())]
        roi1, roi2 = roi_stats(samples, LabelScheme((0, 1, 2)), ("a", "b"))
        assert (roi1.num_slices, roi1.mean_area_mm2) == (2, pytest.approx(45.0))
        assert roi2.mean_area_mm2 == pytest.approx(10.8)
        assert roi1.mean_area_px is None and roi1.num_slices_without_spacing == 0

    def test_slices_without_spacing_count_pixels(self):
        samples = [sample_on(None, square_label()), sample_on((1.0, 1.0), square_label())]
        roi1, _ = roi_stats(samples, LabelScheme((0, 1, 2)), ("a", "b"))
        assert (roi1.mean_area_mm2, roi1.mean_area_px) == (pytest.approx(100.0), 100.0)
        assert roi1.num_slices == 2 and roi1.num_slices_without_spacing == 1


def test_a_label_named_but_for_case_or_a_mask_ending_gets_the_fix(tmp_path):
    """On Windows `S1.PNG` pairs with `s1.dcm`; here it does not: say so, with the rename."""
    add_pair(tmp_path, "p01/s1", square_label())
    add_pair(tmp_path, "p01/s2", square_label(), image_name="p01/S2.dcm")  # label p01/s2.png
    add_pair(tmp_path, "p01/s3_mask", square_label(), image_name="p01/s3.dcm")
    add_pair(tmp_path, "p01/s4", square_label(), image_name="p01/other.dcm")  # no near name
    report = check_dataset(tmp_path)
    (near,) = [p for p in report.problems if p.kind == "near_miss"]
    assert [p.name for p in near.paths] == ["s2.png", "s3_mask.png"]
    assert near.message == (
        "2 label map(s) would pair with a DICOM but for their path's letter case, an ending such "
        "as _mask, or one folder more (left out); name each as its DICOM is named, at the same "
        "path below the label folder (e.g. p01/s2.png → p01/S2.png)"
    )
    assert report.num_pairs == 1  # told, not guessed


def test_a_label_the_rename_line_names_is_on_no_other_line(tmp_path):
    """A label map the rename line names was also on the "without a DICOM file" line: each is
    named once, the others without a DICOM on their line (with its count)."""
    add_pair(tmp_path, "p01/s1", square_label())
    add_pair(tmp_path, "p01/s3_mask", square_label(), image_name="p01/s3.dcm")
    add_pair(tmp_path, "p01/s4", square_label(), image_name="p01/other.dcm")  # no near name
    report = check_dataset(tmp_path)
    (near,) = [p for p in report.problems if p.kind == "near_miss"]
    (unmatched,) = [p for p in report.problems if p.kind == "unmatched_label"]
    assert [p.name for p in near.paths] == ["s3_mask.png"]
    assert [p.name for p in unmatched.paths] == ["s4.png"]
    assert unmatched.message.startswith("1 label map(s) without a DICOM file")
    assert report.to_text().count("labels/p01/s3_mask.png") == 1
    assert "Unmatched: 2 DICOM without label, 2 label without DICOM, 0 skipped" in report.to_text()


def test_a_label_named_with_the_dicom_suffix_kept_gets_the_fix(tmp_path):
    """`s1.dcm.png` (the DICOM's file name plus .png) was only 'without a DICOM file'."""
    add_pair(tmp_path, "p01/s0", square_label())
    add_pair(tmp_path, "p01/s1.dcm", square_label(), image_name="p01/s1.dcm")
    (message,) = messages(check_dataset(tmp_path), "near_miss")
    assert message.endswith("(e.g. p01/s1.dcm.png → p01/s1.png)")


@pytest.mark.parametrize("folder", ["P01", "export/p01"])  # letter case; one level deeper
def test_a_label_folder_named_otherwise_gets_the_rename_of_its_path(tmp_path, folder):
    """The example rename names the folder that differs (not 's1.png → s1.png')."""
    for key in ("p01/s1", "p01/s2"):
        add_pair(tmp_path, key, square_label())
    labels = tmp_path / "labels"
    (labels / folder).parent.mkdir(parents=True, exist_ok=True)
    (labels / "p01").rename(labels / folder)
    (message,) = messages(check_dataset(tmp_path), "near_miss")
    assert message.startswith("2 label map(s) would pair with a DICOM")
    assert message.endswith(f"(e.g. {folder}/s1.png → p01/s1.png)")


def test_a_label_of_another_patient_is_not_offered_as_a_rename(tmp_path):
    add_pair(tmp_path, "p01/s1", square_label())
    add_pair(tmp_path, "p02/s2", image_name="p02/s2.dcm")  # no label
    add_pair(tmp_path, "p03/s2", square_label(), image_name="p04/x.dcm")  # labels/p03/s2.png
    assert messages(check_dataset(tmp_path), "near_miss") == []


class TestCheckReport:
    def test_fit_dataset_with_area_worked_out_by_hand(self, tmp_path):
        for key in ("p01/s1", "p01/s2", "p02/s1"):
            add_pair(tmp_path, key, square_label())
        report = check_dataset(tmp_path)
        assert report.is_trainable, report.to_text()
        assert report.num_pairs == 3 and report.num_samples == 3
        assert not hasattr(report, "samples")  # the pixels travel beside the report
        assert report.scheme.stored_values == (0, 1, 2)
        assert report.roi_names == ("ROI 1", "ROI 2")
        roi1, roi2 = report.roi_stats
        assert roi1.num_slices == 3
        assert roi1.mean_area_mm2 == pytest.approx(10 * 10 * 0.5 * 0.8)  # 40 mm²
        assert roi2.mean_area_mm2 == pytest.approx(4 * 6 * 0.5 * 0.8)  # 9.6 mm²
        assert report.value_files == {0: 3, 1: 3, 2: 3}
        text = report.to_text()
        assert "FIT for training" in text and "40.0 mm²" in text
        data = json.loads(json.dumps(report.to_dict()))
        assert data["num_samples"] == 3 and data["rois"][0]["mean_area_mm2"] == pytest.approx(40)

    def test_unmatched_files_are_named_warnings(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/lonely")
        np.save(tmp_path / "labels" / "p01" / "orphan.npy", square_label())
        report = check_dataset(tmp_path)
        assert report.is_trainable
        text = report.to_text()
        assert "1 DICOM file(s) without a label map" in text and "dicoms/p01/lonely.dcm" in text
        assert "1 label map(s) without a DICOM" in text and "labels/p01/orphan.npy" in text

    def test_a_dicomdir_is_skipped_as_an_index_not_unpaired(self, tmp_path):
        """A DICOMDIR (a CD export's index) has the DICM marker, so check listed it as a "DICOM
        file without a label map"; it is skipped as the index it is, by its name or, renamed,
        by its (0002,0002) MediaStorageSOPClassUID."""
        import shutil

        from pydicom.data import get_testdata_file

        dicomdir = get_testdata_file("DICOMDIR", download=False)
        if dicomdir is None:
            pytest.skip("DICOMDIR is not installed (pip install pydicom-data)")
        add_pair(tmp_path, "p01/s1", square_label())
        shutil.copy(dicomdir, tmp_path / "dicoms" / "DICOMDIR")
        shutil.copy(dicomdir, tmp_path / "dicoms" / "p01" / "index.dcm")
        report = check_dataset(tmp_path)
        assert report.is_trainable and report.pairing.images_without_labels == []
        assert not messages(report, "unmatched_image")
        assert messages(report, "skipped") == [
            "2 file(s) skipped: a DICOMDIR, the index of a CD/DVD export, not an image; left out "
            "(the images it lists are read from their own files)"
        ]
        assert "without a label map" not in report.to_text()

    def test_a_label_of_a_dicom_that_is_no_dicom_names_both(self, tmp_path):
        """An empty or non-DICOM `s2.dcm` beside `s2.png` was "1 label map(s) without a DICOM
        file of the same relative name ... name each as its DICOM is named" (it is) and FIT,
        while a truncated DICOM is an unreadable-image error."""
        from sliceseg.cli import main

        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label())
        (tmp_path / "dicoms" / "p01" / "s2.dcm").write_bytes(b"")
        (tmp_path / "dicoms" / "p01" / "notes.txt").write_text("scanner notes")
        report = check_dataset(tmp_path)
        assert [p.kind for p in report.problems] == ["unreadable_image", "sidecar"]
        unreadable, skipped = report.problems
        assert unreadable.severity == "error"
        assert unreadable.message == (
            "1 label map(s) whose file in the DICOM folder is not a DICOM file (no 'DICM' "
            "marker and not readable as DICOM), e.g. p01/s2.dcm: the slice is left out; copy "
            "the DICOM file again from the scanner or PACS, or remove its label map"
        )
        assert [p.name for p in unreadable.paths] == ["s2.dcm", "s2.png"]
        assert [p.name for p in skipped.paths] == ["notes.txt"]
        assert report.num_samples == 1 and report.roi_stats[0].num_slices == 1
        assert main(["check", str(tmp_path)]) == 1

    def test_the_unmatched_line_counts_a_label_of_an_unreadable_dicom_as_such(self, tmp_path):
        """The summary counted a label map whose DICOM is there but empty or not a DICOM as a
        "label without DICOM" (and its DICOM again among the skipped), while its error line
        says what it is: the label's DICOM file is unreadable."""
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label())
        add_pair(tmp_path, "p01/s3", square_label())
        (tmp_path / "dicoms" / "p01" / "s2.dcm").write_bytes(b"")
        (tmp_path / "dicoms" / "p01" / "s3.dcm").unlink()
        (tmp_path / "dicoms" / "p01" / "notes.txt").write_text("scanner notes")
        (line,) = [ln for ln in check_dataset(tmp_path).to_text().splitlines() if "Unmatched" in ln]
        assert line == (
            "Unmatched: 0 DICOM without label, 1 label without DICOM, 1 label whose DICOM is "
            "unreadable, 1 skipped"
        )

    def test_the_json_lists_the_files_the_unmatched_line_counts(self, tmp_path):
        """``--json`` still listed a label map whose DICOM is unreadable under
        ``labels_without_images`` (and its DICOM under ``skipped``), unlike the text's
        ``Unmatched:`` line: both now come from `CheckReport.unmatched`."""
        for key in ("p01/s1", "p01/s2", "p01/s3"):
            add_pair(tmp_path, key, square_label())
        (tmp_path / "dicoms" / "p01" / "s2.dcm").write_bytes(b"")
        (tmp_path / "dicoms" / "p01" / "s3.dcm").unlink()
        (tmp_path / "dicoms" / "p01" / "notes.txt").write_text("scanner notes")
        report = check_dataset(tmp_path)
        data = json.loads(json.dumps(report.to_dict()))
        labels, dicoms = tmp_path / "labels" / "p01", tmp_path / "dicoms" / "p01"
        assert data["labels_without_images"] == [str(labels / "s3.png")]
        (unreadable,) = data["labels_of_unreadable_images"]
        assert (unreadable["label"], unreadable["image"]) == (
            str(labels / "s2.png"),
            str(dicoms / "s2.dcm"),
        )
        assert [item["path"] for item in data["skipped"]] == [str(dicoms / "notes.txt")]
        counts = [len(data[k]) for k in ("images_without_labels", "labels_without_images")]
        counts += [len(data["labels_of_unreadable_images"]), len(data["skipped"])]
        assert (
            f"Unmatched: {counts[0]} DICOM without label, {counts[1]} label without DICOM, "
            f"{counts[2]} label whose DICOM is unreadable, {counts[3]} skipped" in report.to_text()
        )

    def test_a_reader_message_names_its_file_once(self, tmp_path, monkeypatch):
        """A label map that cannot be read was "/abs/d/labels/p01/s2.png: cannot read ... --
        labels/p01/s2.png": each line names files relative to the folder given, as given
        absolute or relative, and a message that begins with its only file is not followed by
        it again; the line of no pairs at all names the folders as given."""
        data = tmp_path / "d"
        for key in ("p01/s1", "p01/s2"):
            add_pair(data, key, square_label())
        (data / "labels" / "p01" / "s2.png").write_bytes(b"not a png")
        monkeypatch.chdir(tmp_path)
        for given in (data, Path("d")):
            report = check_dataset(given)
            (line,) = [report.problem_line(p) for p in report.problems]
            message = (
                "labels/p01/s2.png: cannot read the label map (cannot identify image file "
                "'labels/p01/s2.png'); expected a readable .png file; export it again."
            )
            assert line == f"  - [unreadable_label] {message}"
            assert report.problem_lines() == [f"error: {message}"]
            assert report.summary_line().endswith(
                ": labels/p01/s2.png: cannot read the label "
                "map (cannot identify image file 'labels/p01/s2.png'); expected a readable .png "
                "file; export it again."
            )
        (data / "labels" / "p01" / "s1.png").unlink()
        (data / "labels" / "p01" / "s2.png").unlink()
        (empty,) = messages(check_dataset(data), "empty")
        assert empty.startswith(f"no DICOM file in {data / 'dicoms'} pairs with")

    def test_a_mask_saved_as_0_255_among_roi_numbers_is_named_as_such(self, tmp_path):
        """One map saved for viewing (0/255) beside maps of 0..2 was told to "raise num_labels
        to 255", which would make 253 empty ROIs."""
        for key in ("p01/s1", "p01/s2"):
            add_pair(tmp_path, key, square_label())
        add_pair(tmp_path, "p01/s3", square_label(255, second=None))
        report = check_dataset(tmp_path)
        (message,) = messages(report, "label_values")
        assert message.endswith(
            "labels/p01/s3.png: values [255] in 100 pixels are not in the dataset's label "
            "scheme 0..2; a mask saved for viewing (0/255)? save the ROI's number (1..2) in "
            "place of 255."
        )
        assert "num_labels" not in message
        assert report.num_samples == 2 and not report.is_trainable

    def test_long_name_lists_are_truncated(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        for i in range(8):
            add_pair(tmp_path, f"p01/x{i}")
        assert "dicoms/p01/x4.dcm and 3 more" in check_dataset(tmp_path).to_text(max_names=5)

    def test_shape_mismatch_is_named(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", np.zeros((LABEL_ROWS, LABEL_COLS + 1), np.uint8))
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        (message,) = messages(report, "shape_mismatch")
        assert message.startswith("p01/s2: image is 20×24 but the label is 20×25")

    def test_extra_value_in_one_file_is_an_error(self, tmp_path):
        six_rois = np.repeat(np.arange(7, dtype=np.uint8), 4)[: LABEL_ROWS * LABEL_COLS // 4]
        six_rois = np.resize(six_rois, (LABEL_ROWS, LABEL_COLS))
        for i in range(5):
            add_pair(tmp_path, f"p01/s{i}", six_rois)
        stray = six_rois.copy()
        stray[0, 0] = 7
        add_pair(tmp_path, "p01/s9", stray)
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        (message,) = messages(report, "stray_value")
        assert "value 7 (ROI 7) appears in only 1 of 6 label files" in message
        assert "while the others hold at most 6" in message
        # Both a CLI user and a Python caller read what to type.
        assert message.endswith("or set --num-labels (num_labels) to 7 if it is a real ROI.")
        assert "labels/p01/s9.png" in report.to_text()

    def test_missing_common_roi_is_a_warning(self, tmp_path):
        for i in range(10):
            add_pair(tmp_path, f"p01/s{i}", square_label())
        add_pair(tmp_path, "p01/t", square_label(second=None))
        report = check_dataset(tmp_path)
        assert report.is_trainable
        (message,) = messages(report, "missing_roi")
        assert message.startswith("inconsistent labelling: ROI 2 (value 2) is in 10 of 11")

    def test_a_label_map_of_only_background_is_named_once(self, tmp_path):
        """A blank export passed without a word (and, among 10 or more maps, as one
        "inconsistent labelling" line per ROI): it trains the slice's muscles as background."""
        for i in range(10):
            add_pair(tmp_path, f"p01/s{i}", square_label())
        add_pair(tmp_path, "p02/blank", np.zeros((LABEL_ROWS, LABEL_COLS), np.uint8))
        report = check_dataset(tmp_path)
        assert report.is_trainable and report.num_samples == 11
        assert [p.kind for p in report.problems] == ["empty_label"]
        (empty,) = report.problems
        assert empty.message.startswith("1 label map(s) hold no ROI, only background (0)")
        assert [p.name for p in empty.paths] == ["blank.png"]

    def test_empty_folder_is_not_trainable(self, tmp_path):
        (tmp_path / "dicoms").mkdir()
        (tmp_path / "labels").mkdir()
        report = check_dataset(tmp_path)
        assert not report.is_trainable and report.num_samples == 0
        assert "no DICOM file in" in messages(report, "empty")[0]
        assert "NOT FIT for training" in report.to_text()

    def test_slices_without_spacing_are_counted_in_pixels(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(), spacing=None)
        report = check_dataset(tmp_path)
        assert report.roi_stats[0].mean_area_mm2 is None
        assert report.roi_stats[0].mean_area_px == 100
        assert "100 px on 1 slices without spacing" in report.to_text()
        assert "1 of 1 slices have no pixel spacing" in messages(report, "no_spacing")[0]


def _transposed(root: Path) -> None:
    add_pair(root, "p01/s3", square_label().T.copy())


def _os_clutter(root: Path) -> None:
    """Thumbs.db and desktop.ini were one warning each per side ("not a label map: suffix
    '.db'"), notes.txt one per side: a user read 4 warnings about files they never made."""
    for folder in (root / "dicoms" / "p01", root / "labels" / "p01"):
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: ignored
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))  # hidden on Windows
        (folder / "desktop.ini").write_text("[.ShellClassInfo]")
        (folder / "notes.txt").write_text("scanner notes")
    (root / "labels" / "volumes.csv").write_text("slice,area\n")


def _bmp_label(root: Path) -> None:
    add_pair(root, "p01/s3")
    iio.imwrite(root / "labels" / "p01" / "s3.bmp", square_label())


@pytest.mark.parametrize(
    ("build", "found", "code"),
    [
        (_transposed, [("error", "shape_mismatch", "24×20 (it looks transposed)")], 1),
        (
            _os_clutter,
            [("note", "sidecar", "3 text or table file(s) left out (not images)")],
            0,
        ),
        (
            _bmp_label,
            [
                ("warning", "unmatched_image", "1 DICOM file(s) without a label map"),
                ("warning", "skipped", "1 file(s) skipped: not a label map: suffix '.bmp'"),
            ],
            0,
        ),
    ],
    ids=["transposed", "os_clutter", "bmp_label"],
)
def test_a_messy_folder_names_each_problem_and_keeps_the_good_pairs(tmp_path, build, found, code):
    from sliceseg.cli import main

    for key in ("p01/s1", "p01/s2"):
        add_pair(tmp_path, key, square_label())
    build(tmp_path)
    report = check_dataset(tmp_path)
    assert [(p.severity, p.kind) for p in report.problems] == [f[:2] for f in found]
    for problem, (_, _, fragment) in zip(report.problems, found, strict=True):
        assert fragment in problem.message and problem.paths
    assert report.num_samples == 2 and report.roi_stats[0].num_slices == 2
    assert main(["check", str(tmp_path)]) == code
    text = report.to_text()
    assert "Thumbs.db" not in text and "desktop.ini" not in text


def test_notes_beside_the_data_are_one_note_not_a_warning(tmp_path):
    """notes.txt and a table beside the label maps: told once, in no warning count."""
    for key in ("p01/s1", "p01/s2"):
        add_pair(tmp_path, key, square_label())
    (tmp_path / "labels" / "p01" / "notes.txt").write_text("s2 is hard")
    (tmp_path / "labels" / "Areas.CSV").write_text("slice,area\n")
    report = check_dataset(tmp_path)
    assert report.problem_lines() == [
        "note: 2 text or table file(s) left out (not images) -- labels/Areas.CSV, "
        "labels/p01/notes.txt"
    ]
    assert (
        report.warnings == []
        and report.summary_line() == "2 pairs, 2 slices, 0 error(s), 0 warning(s)."
    )
    assert report.to_text().endswith(
        "Notes (1):\n  - [sidecar] 2 text or table file(s) left out (not images) -- "
        "labels/Areas.CSV, labels/p01/notes.txt"
    )


class TestRoiNamesFile:
    """labels.txt as Windows editors save it: names read as written, or one line naming it."""

    @pytest.mark.parametrize("inside", ["labels.txt", "p01/labels.txt", "p01/Labels.txt"])
    def test_one_put_inside_the_label_folder_is_named_with_where_it_belongs(self, tmp_path, inside):
        """It got "skipped: not a label map: suffix '.txt'", and its names were silently not
        used; usage.md puts it beside the label folder (DATA/labels.txt), where it is read."""
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels" / inside).write_text("psoas\n")
        report = check_dataset(tmp_path)
        (skipped,) = [p for p in report.problems if p.kind == "skipped"]
        assert skipped.message == (
            "1 file(s) skipped: ROI names inside the label folder are not read; expected "
            f"labels.txt beside the label folder; move it to {tmp_path / 'labels.txt'}"
        )
        assert skipped.paths == (tmp_path / "labels" / inside,)
        (tmp_path / "labels" / inside).rename(tmp_path / "labels.txt")
        assert check_dataset(tmp_path).roi_names == ("psoas",)

    def test_one_inside_beside_the_one_read_is_told_to_go(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text("psoas\n")
        (tmp_path / "labels" / "labels.txt").write_text("disc\n")
        report = check_dataset(tmp_path)
        (skipped,) = [p for p in report.problems if p.kind == "skipped"]
        assert skipped.message.endswith(
            f"beside the label folder; the names are read from {tmp_path / 'labels.txt'}; "
            "remove this one"
        )
        assert report.roi_names == ("psoas",)

    def test_a_name_given_twice_is_one_line_naming_the_file(self, tmp_path, capsys):
        """Each ROI is a column found by its name: ROI 2's areas would fill both columns."""
        from sliceseg.cli import main

        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text("psoas\npsoas\n")
        with pytest.raises(ConfigError, match=r"labels\.txt: ROI name 'psoas' \(ROIs 1, 2\) given"):
            check_dataset(tmp_path)
        for command in (
            ["check", str(tmp_path)],
            [
                "measure",
                str(tmp_path / "labels"),
                "--dicoms",
                str(tmp_path / "dicoms"),
                "--out",
                str(tmp_path / "out"),
            ],
        ):
            assert main(command) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "labels.txt: ROI name 'psoas' (ROIs 1, 2)" in err
            assert "rename one" in err
        assert not (tmp_path / "out").exists()

    def test_a_byte_order_mark_is_not_part_of_the_first_name(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_bytes("\ufeffpsoas\r\nfat\r\n".encode())
        assert check_dataset(tmp_path).roi_names == ("psoas", "fat")

    def test_a_file_that_is_not_utf8_is_one_line_naming_it(self, tmp_path, capsys):
        from sliceseg.cli import main

        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_bytes("Wirbelkörper\nfat\n".encode("cp1252"))
        with pytest.raises(ConfigError, match=r"labels\.txt: not UTF-8 text .*save it as UTF-8"):
            check_dataset(tmp_path)
        assert main(["check", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "labels.txt: not UTF-8" in err

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("background\npsoas\ndisc\n", "line 1 'background' names the background (0)"),
            ("0 background\n1 psoas\n2 disc\n", "line 1 '0 background' names the background"),
            ("1: psoas\n\n1: disc\n", "line 3 '1: disc' is numbered 1 but names ROI 2"),
        ],
    )
    def test_a_background_line_or_a_number_off_its_line_is_one_line(
        self, tmp_path, capsys, text, expected
    ):
        """Names are read in line order: a background line gave ROI 1's areas the name
        'background', ROI 2's 'psoas', ..., FIT for training with one warning."""
        from sliceseg.cli import main

        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text(text)
        assert main(["check", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"labels.txt: {expected}" in err
        assert "ROI 1's name on line 1" in err

    def test_lines_numbered_in_their_order_are_read_as_written(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text("1 psoas\n2 disc\n")
        assert check_dataset(tmp_path).roi_names == ("1 psoas", "2 disc")

    def test_a_background_name_given_in_python_is_refused(self):
        from sliceseg.dataset.source import DataSource

        with pytest.raises(ConfigError, match=r"roi_names: 'Background' names the background"):
            DataSource(Path("d"), Path("l"), roi_names=("Background", "psoas"))
