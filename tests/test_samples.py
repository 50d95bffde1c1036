"""Tests for sliceseg.dataset.samples: check_dataset, load_samples and their label scheme."""

from __future__ import annotations

import numpy as np
import pytest

import sliceseg
from conftest import LABEL_COLS, LABEL_ROWS, add_pair, square_label, write_test_dicom
from sliceseg.dataset.check import CheckReport
from sliceseg.dataset.problems import NOT_TRAINED_ON
from sliceseg.dataset.samples import check_dataset, load_samples, load_usable_samples
from sliceseg.dataset.source import DataSource
from sliceseg.errors import ConfigError, LabelError, PairingError


def messages(report: CheckReport, kind: str) -> list[str]:
    return [p.message for p in report.problems if p.kind == kind]


class TestCheckDataset:
    def test_source_may_be_a_data_source_a_path_or_a_string(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p02/s1", square_label(second=None))
        by_path = check_dataset(tmp_path)
        by_text = sliceseg.check_dataset(str(tmp_path))
        source = DataSource.from_dirs(
            images_dir=tmp_path / "dicoms", labels_dir=tmp_path / "labels", num_labels=3
        )
        given = check_dataset(source)
        assert by_path.num_samples == by_text.num_samples == given.num_samples == 2
        assert by_path.roi_names == by_text.roi_names == ("ROI 1", "ROI 2")
        assert given.roi_names == ("ROI 1", "ROI 2", "ROI 3")  # num_labels fixed K

    def test_jpeg_label_is_snapped_with_a_warning(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(40, second=80))
        add_pair(tmp_path, "p01/s2", square_label(40, second=80), label_suffix=".jpg")
        samples, report = load_samples(tmp_path)
        (lossy,) = messages(report, "lossy_label")
        changed = int(lossy.split(": ")[1].split(" pixels")[0])
        assert changed > 0 and "save labels as PNG or NPY" in lossy
        np.testing.assert_array_equal(samples[1].label, samples[0].label)

    def test_jpeg_of_roi_numbers_is_left_out_not_measured_wrong(self, tmp_path):
        # A 0..2 JPEG: compression turns background pixels into ROI 1 and ROI 2 into ROI 1 or
        # 3; snapping them kept a wrong area with only a warning.
        label = np.kron(square_label(1, second=2), np.ones((3, 3), np.uint8))
        for key in ("p01/s1", "p02/s1"):
            add_pair(tmp_path, key, label, image_shape=label.shape)
        add_pair(tmp_path, "p03/s1", label, label_suffix=".jpg", image_shape=label.shape)
        samples, report = load_usable_samples(tmp_path)
        assert [s.key for s in samples] == ["p01/s1", "p02/s1"]
        (error,) = [p for p in report.errors if "s1.jpg" in p.message]
        assert "0..2, 1 apart" in error.message and "save the label map as PNG" in error.message
        assert not messages(report, "lossy_label")

    def test_jpeg_only_dataset_guesses_the_values_with_a_warning(self, tmp_path):
        label = np.kron(square_label(40, second=80), np.ones((3, 3), np.uint8))
        for key in ("p01/s1", "p02/s1"):
            add_pair(tmp_path, key, label, label_suffix=".jpg", image_shape=label.shape)
        report = check_dataset(tmp_path)
        assert report.is_trainable, report.to_text()
        assert report.scheme.is_display_scaled and report.scheme.num_labels == 2
        assert "guessed from the JPEG files" in messages(report, "lossy_only")[0]
        assert report.roi_stats[0].mean_area_mm2 == pytest.approx(30 * 30 * 0.4, rel=0.02)
        assert report.roi_stats[1].mean_area_mm2 == pytest.approx(12 * 18 * 0.4, rel=0.05)

    def test_display_scaled_labels_are_recognised(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(40, second=80))
        add_pair(tmp_path, "p02/s1", square_label(40, second=None))
        samples, report = load_samples(tmp_path)
        assert report.scheme.is_display_scaled and report.scheme.num_labels == 2
        assert "mapped in order: 0→0, 40→1, 80→2" in messages(report, "display_scaled")[0]
        assert set(np.unique(samples[0].label)) == {0, 1, 2}

    def test_given_num_labels_accepts_a_rare_value(self, tmp_path):
        six_rois = np.resize(np.arange(7, dtype=np.uint8), (LABEL_ROWS, LABEL_COLS))
        for i in range(5):
            add_pair(tmp_path, f"p01/s{i}", six_rois)
        stray = six_rois.copy()
        stray[0, 0] = 7
        add_pair(tmp_path, "p01/s9", stray)
        assert not check_dataset(tmp_path).is_trainable
        source = DataSource.from_dirs(tmp_path, num_labels=7)
        assert check_dataset(source).is_trainable

    def test_extra_value_above_num_labels_is_an_error(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label(second=3))
        report = check_dataset(DataSource.from_dirs(tmp_path, num_labels=2))
        assert not report.is_trainable
        message = messages(report, "label_scheme")[0]
        assert "reach ROI 3, above num_labels=2" in message and "3: p01/s2.png" in message

    def test_float_label_with_non_whole_values(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label().astype(np.float32) * 0.5, label_suffix=".npy")
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        (message,) = messages(report, "unreadable_label")
        assert "s2.npy: float values that are not whole numbers" in message

    def test_rgb_label_with_different_channels(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        label = square_label()
        add_pair(tmp_path, "p01/s2", np.stack([label * 100, label, label], axis=-1))
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        assert "channels differ" in messages(report, "unreadable_label")[0]

    def test_mixed_label_schemes_are_explained(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(1, second=2))
        add_pair(tmp_path, "p01/s2", square_label(40, second=80))
        report = check_dataset(tmp_path)
        assert not report.is_trainable and report.scheme is None
        assert "do not form one scheme" in messages(report, "label_scheme")[0]
        assert "40: p01/s2.png" in messages(report, "label_scheme")[0]
        assert "set --num-labels (num_labels) to K if" in messages(report, "label_scheme")[0]

    def test_roi_names_from_labels_txt_set_k(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text("psoas left\npsoas right\n")
        assert check_dataset(tmp_path).roi_names == ("psoas left", "psoas right")
        (tmp_path / "labels.txt").write_text("one\ntwo\nthree\n")
        report = check_dataset(tmp_path)
        assert report.is_trainable and report.roi_names == ("one", "two", "three")
        assert messages(report, "absent_roi") == ["three (value 3) appears in no label file."]

    def test_too_few_roi_names_is_an_error(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels.txt").write_text("only one\n")
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        message = messages(report, "label_scheme")[0]
        assert "above num_labels=1" in message and "(K = 1 ROI names in " in message
        with pytest.raises(ConfigError, match=r"labels\.txt: 1 ROI names but num_labels=2"):
            check_dataset(DataSource.from_dirs(tmp_path, num_labels=2))

    def test_multi_frame_dicom_with_2d_label_is_a_mismatch(self, tmp_path):
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", np.zeros((3, LABEL_ROWS, LABEL_COLS)))
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "cine.npy", square_label())
        (message,) = messages(check_dataset(tmp_path), "shape_mismatch")
        assert "3 frames of 20×24" in message and "(3, 20, 24) .npy" in message
        # the map is on the DICOM's grid: re-exporting it "on the DICOM's own grid" fixes nothing
        assert message.endswith("or save each frame's map as cine_f000 .. cine_f002.")


class TestLoadSamples:
    def test_returns_samples_beside_the_report(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (tmp_path / "labels" / "notes.txt").write_text("x")
        (sample,), report = load_samples(tmp_path)
        assert sample.key == "p01/s1"
        assert sample.label.dtype == np.uint8 and sample.label.shape == sample.image.shape
        assert report.num_samples == 1 and messages(report, "sidecar")

    def test_multi_frame_keys_are_slice_names(self, tmp_path):
        frames = np.zeros((3, LABEL_ROWS, LABEL_COLS))
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", frames)
        write_test_dicom(tmp_path / "dicoms" / "p01" / "cine.dcm", frames, series_uid="1.2.3")
        for key in ("cine", "p01/cine"):
            (tmp_path / "labels" / key).parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "labels" / f"{key}.npy", np.stack([square_label()] * 3))
        samples, report = load_samples(tmp_path)
        assert report.num_samples == 6
        expected = [f"{d}cine_f00{i}" for d in ("", "p01/") for i in range(3)]
        assert [s.key for s in samples] == expected
        assert [s.key.rsplit("/", 1)[-1] for s in samples] == [s.image.name for s in samples]

    def test_raises_one_line_when_unfit(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label().astype(np.float32) / 3, label_suffix=".npy")
        with pytest.raises(
            LabelError, match=r"not fit for training .*not whole numbers.*sliceseg check"
        ) as info:
            load_samples(tmp_path)
        assert "\n" not in str(info.value)

    def test_no_usable_slice_is_refused_as_measure_and_evaluate_refuse(self, tmp_path):
        """Training refused "not fit for training (2 error(s)): 2 pairs, 0 slices, ...: a | b
        Run `...` for the full report.", measure and evaluate "nothing to <verb>": with no
        slice left, training says it in their words ("train on"; no lines came before it)."""
        for key in ("p01/s1", "p01/s2"):
            add_pair(tmp_path, key, square_label())
            (tmp_path / "labels" / f"{key}.png").write_bytes(b"not a png")
        with pytest.raises(LabelError) as info:
            load_samples(tmp_path)
        assert str(info.value) == (
            f"nothing to train on in {tmp_path / 'labels'}: 2 problem(s) left out every labelled "
            "slice; the first: labels/p01/s1.png: cannot read the label map (cannot identify "
            "image file 'labels/p01/s1.png'); expected a readable .png file; export it again; "
            f"run `sliceseg check {tmp_path}` for the full report."
        )

    def test_empty_raises_pairing_error(self, tmp_path):
        (tmp_path / "dicoms").mkdir()
        (tmp_path / "labels").mkdir()
        with pytest.raises(PairingError, match="no DICOM file in"):
            load_samples(tmp_path)

    def test_separate_folders_name_both_in_the_hint(self, tmp_path):
        (tmp_path / "scans").mkdir()
        (tmp_path / "manual").mkdir()
        source = DataSource.from_dirs(images_dir=tmp_path / "scans", labels_dir=tmp_path / "manual")
        with pytest.raises(PairingError, match=r"--images .*scans --labels .*manual"):
            load_samples(source)


class TestLoadUsableSamples:
    def test_good_pairs_survive_a_bad_one(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label().astype(np.float32) / 3, label_suffix=".npy")
        samples, report = load_usable_samples(tmp_path)
        assert [s.key for s in samples] == ["p01/s1"]
        assert not report.is_trainable and messages(report, "unreadable_label")

    def test_a_labelled_copy_of_a_dicom_is_left_out_and_named(self, tmp_path):
        """A patient folder copied under another name passed as FIT: each slice counted and
        trained twice, and without PatientID on both sides of the validation split."""
        import shutil

        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label(second=None))
        add_pair(tmp_path, "p02/s1", square_label())
        for folder in ("dicoms", "labels"):
            shutil.copytree(tmp_path / folder / "p01", tmp_path / folder / "p01_old")
        samples, report = load_usable_samples(tmp_path)
        assert [s.key for s in samples] == ["p01/s1", "p01/s2", "p02/s1"]
        assert not report.is_trainable and report.num_pairs == 5
        (copied,) = [p for p in report.problems if p.kind == "copied_image"]
        assert copied.message.startswith(
            "2 labelled DICOM file(s) hold the same image as another labelled file (same "
            "series, InstanceNumber and position, and the same pixels or SOPInstanceUID; e.g. "
            "p01_old/s1 is p01/s1)"
        )
        assert [p.relative_to(tmp_path).as_posix() for p in copied.paths] == [
            "dicoms/p01_old/s1.dcm",
            "labels/p01_old/s1.png",
            "dicoms/p01_old/s2.dcm",
            "labels/p01_old/s2.png",
        ]
        with pytest.raises(PairingError, match="hold the same image as another labelled file"):
            load_samples(tmp_path)


class TestPerFrameLabelMaps:
    """Label maps of a multi-frame file's frames, named as ``predict`` writes them."""

    def test_each_pairs_with_its_own_frame(self, tmp_path):
        from sliceseg.io.labels import write_label_png

        stored = np.stack([np.full((LABEL_ROWS, LABEL_COLS), 10 * (f + 1)) for f in range(3)])
        write_test_dicom(tmp_path / "dicoms" / "p01" / "cine.dcm", stored)
        for frame in range(3):  # frame f: a square of f + 1 rows × 2 columns of ROI 1
            label = np.zeros((LABEL_ROWS, LABEL_COLS), np.uint8)
            label[: frame + 1, :2] = 1
            write_label_png(tmp_path / "labels" / "p01" / f"cine_f{frame:03d}.png", label)
        samples, report = load_samples(tmp_path)
        assert report.num_pairs == 3 and not messages(report, "unmatched_label")
        assert not messages(report, "unmatched_image")
        assert [s.key for s in samples] == [f"p01/cine_f00{f}" for f in range(3)]
        assert [int(s.image.pixels[0, 0]) for s in samples] == [10, 20, 30]
        assert [int(np.count_nonzero(s.label == 1)) for s in samples] == [2, 4, 6]

    def test_a_frame_the_file_lacks_is_named(self, tmp_path):
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", np.zeros((2, LABEL_ROWS, LABEL_COLS)))
        (tmp_path / "labels").mkdir()
        for frame in (0, 5):
            np.save(tmp_path / "labels" / f"cine_f00{frame}.npy", square_label())
        samples, report = load_usable_samples(tmp_path)
        assert [s.key for s in samples] == ["cine_f000"]
        (message,) = messages(report, "shape_mismatch")
        assert message.startswith("cine_f005: frame 5 of cine.dcm, which has 2 frames (0 to 1)")
        assert "one label map per frame named cine_f000 .. cine_f001;" in message  # as check's

    def test_frames_without_a_label_map_are_listed_as_unlabelled(self, tmp_path):
        """Frames 2 and 3 of a 4-frame file labelled frame by frame went unmentioned, while a
        single-frame DICOM without a label map is listed."""
        write_test_dicom(
            tmp_path / "dicoms" / "p01" / "cine.dcm", np.ones((4, LABEL_ROWS, LABEL_COLS))
        )
        (tmp_path / "labels" / "p01").mkdir(parents=True)
        for frame in (0, 1):
            np.save(tmp_path / "labels" / "p01" / f"cine_f00{frame}.npy", square_label())
        add_pair(tmp_path, "p01/s1", square_label())
        write_test_dicom(tmp_path / "dicoms" / "p01" / "s2.dcm", np.ones((LABEL_ROWS, LABEL_COLS)))
        report = check_dataset(tmp_path)
        assert report.is_trainable and report.num_samples == 3
        assert messages(report, "unmatched_image") == [
            f"1 DICOM file(s) without a label map of the same relative name ({NOT_TRAINED_ON})",
            "2 frame(s) of multi-frame DICOM file(s) without a label map named for the frame "
            f"({NOT_TRAINED_ON})",
        ]
        text = report.to_text()
        assert "-- dicoms/p01/s2.dcm\n" in text
        assert "-- dicoms/p01/cine_f002, dicoms/p01/cine_f003" in text

    def test_two_label_maps_of_one_frame_are_a_duplicate(self, tmp_path):
        """cine_f001 and cine_f0001 both name frame 1: that slice was counted and trained twice."""
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", np.zeros((3, LABEL_ROWS, LABEL_COLS)))
        (tmp_path / "labels").mkdir()
        for name in ("cine_f000", "cine_f001", "cine_f0001"):
            np.save(tmp_path / "labels" / f"{name}.npy", square_label())
        samples, report = load_usable_samples(tmp_path)
        assert [s.key for s in samples] == ["cine_f000"]
        assert not report.is_trainable and not messages(report, "unmatched_label")
        (message,) = messages(report, "duplicate")
        assert message.startswith(
            "2 label maps name the same frame of one DICOM file (cine_f0001.npy, cine_f001.npy)"
        )
