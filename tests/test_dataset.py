"""Tests for sliceseg.data.samples: pairing, the check report, load_samples and the series split."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from conftest import write_test_dicom
from sliceseg.data.samples import (
    CheckReport,
    Sample,
    check_dataset,
    load_samples,
    pair_files,
    resolve_data_dirs,
    split_by_series,
)
from sliceseg.errors import ConfigError, LabelError, PairingError
from sliceseg.io.dicom import Slice

ROWS, COLS = 20, 24


def square_label(value: int = 1, *, second: int | None = 2) -> np.ndarray:
    """A 10×10 square of ``value`` (40 mm² at 0.5 × 0.8 mm) and a 4×6 box of ``second``."""
    label = np.zeros((ROWS, COLS), np.uint8)
    label[2:12, 3:13] = value
    if second is not None:
        label[14:18, 14:20] = second
    return label


def add_pair(
    root: Path,
    key: str,
    label: np.ndarray | None = None,
    *,
    label_suffix: str = ".png",
    image_name: str | None = None,
    spacing: tuple[float, float] | None = (0.5, 0.8),
    series_uid: str | None = None,
    image_shape: tuple[int, int] = (ROWS, COLS),
) -> None:
    """Write dicoms/<key>.dcm (or ``image_name``) and labels/<key><label_suffix> under ``root``."""
    subject = key.split("/")[0] if "/" in key else "flat"
    image_path = root / "dicoms" / (image_name or f"{key}.dcm")
    pixels = np.full(image_shape, 100)
    write_test_dicom(
        image_path, pixels, spacing=spacing, series_uid=series_uid or f"1.2.{hash(subject) % 997}"
    )
    if label is None:
        return
    label_path = root / "labels" / f"{key}{label_suffix}"
    label_path.parent.mkdir(parents=True, exist_ok=True)
    if label_suffix == ".npy":
        np.save(label_path, label)
    elif label_suffix in (".tif", ".tiff"):
        tifffile.imwrite(label_path, label)
    else:
        iio.imwrite(label_path, label, **({"quality": 75} if label_suffix == ".jpg" else {}))


def messages(report: CheckReport, kind: str) -> list[str]:
    return [p.message for p in report.problems if p.kind == kind]


class TestResolveDataDirs:
    def test_defaults_and_overrides(self, tmp_path):
        for name in ("dicoms", "labels", "other"):
            (tmp_path / name).mkdir()
        assert resolve_data_dirs(tmp_path) == (tmp_path / "dicoms", tmp_path / "labels")
        dirs = resolve_data_dirs(
            None, images_dir=tmp_path / "other", labels_dir=str(tmp_path / "labels")
        )
        assert dirs == (tmp_path / "other", tmp_path / "labels")

    def test_missing_folder_lists_what_exists(self, tmp_path):
        (tmp_path / "images").mkdir()
        with pytest.raises(
            PairingError, match=r"dicoms: DICOM folder does not exist \(folders in .*: images\)"
        ):
            resolve_data_dirs(tmp_path)

    def test_no_folder_given(self):
        with pytest.raises(ConfigError, match="give DATA_DIR"):
            resolve_data_dirs(None, images_dir="x")


class TestPairFiles:
    def test_pairs_by_relative_path_in_nested_folders_with_mixed_suffixes(self, tmp_path):
        add_pair(tmp_path, "p01/slice_1", square_label(), label_suffix=".png")
        add_pair(
            tmp_path,
            "p01/slice_2",
            square_label(),
            label_suffix=".npy",
            image_name="p01/slice_2.DCM",
        )
        add_pair(
            tmp_path,
            "p02/a/slice_1",
            square_label(),
            label_suffix=".tif",
            image_name="p02/a/slice_1",
        )
        add_pair(
            tmp_path,
            "p02/1.2.840.5",
            square_label(),
            label_suffix=".png",
            image_name="p02/1.2.840.5",
        )
        pairing = pair_files(tmp_path / "dicoms", tmp_path / "labels")
        assert [p.key for p in pairing.pairs] == [
            "p01/slice_1",
            "p01/slice_2",
            "p02/1.2.840.5",
            "p02/a/slice_1",
        ]
        pair = pairing.pairs[1]
        assert (pair.image_path.name, pair.label_path.name) == ("slice_2.DCM", "slice_2.npy")
        assert not pairing.images_without_labels and not pairing.labels_without_images

    def test_unmatched_skipped_and_duplicates(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2")  # image only
        add_pair(tmp_path, "p01/s3", square_label())
        np.save(tmp_path / "labels" / "p01" / "s3.npy", square_label())  # duplicate key
        np.save(tmp_path / "labels" / "p01" / "s9.npy", square_label())  # label only
        (tmp_path / "labels" / "notes.txt").write_text("x")
        (tmp_path / "labels" / ".hidden.png").write_bytes(b"x")
        pairing = pair_files(tmp_path / "dicoms", tmp_path / "labels")
        assert [p.key for p in pairing.pairs] == ["p01/s1"]
        assert [p.name for p in pairing.images_without_labels] == ["s2.dcm"]
        assert [p.name for p in pairing.labels_without_images] == ["s9.npy"]
        assert [s.path.name for s in pairing.skipped] == ["notes.txt"]
        assert [sorted(p.name for p in d) for d in pairing.duplicates] == [["s3.npy", "s3.png"]]


class TestCheckDataset:
    def test_fit_dataset_with_area_worked_out_by_hand(self, tmp_path):
        for key in ("p01/s1", "p01/s2", "p02/s1"):
            add_pair(tmp_path, key, square_label())
        report = check_dataset(tmp_path)
        assert report.is_trainable, report.to_text()
        assert report.num_pairs == 3 and len(report.samples) == 3
        assert report.scheme.stored_values == (0, 1, 2)
        assert report.roi_names == ("ROI 1", "ROI 2")
        roi1, roi2 = report.roi_stats
        assert roi1.num_slices == 3
        assert roi1.mean_area_mm2 == pytest.approx(10 * 10 * 0.5 * 0.8)  # 40 mm²
        assert roi2.mean_area_mm2 == pytest.approx(4 * 6 * 0.5 * 0.8)  # 9.6 mm²
        sample = report.samples[0]
        assert sample.label.dtype == np.uint8 and sample.label.shape == sample.image.shape
        assert report.value_files == {0: 3, 1: 3, 2: 3}
        text = report.to_text()
        assert "FIT for training" in text and "40.0 mm²" in text
        json.dumps(report.to_dict())

    def test_unmatched_files_are_named_warnings(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/lonely")
        np.save(tmp_path / "labels" / "p01" / "orphan.npy", square_label())
        report = check_dataset(tmp_path)
        assert report.is_trainable
        text = report.to_text()
        assert "1 DICOM file(s) without a label map" in text and "dicoms/p01/lonely.dcm" in text
        assert "1 label map(s) without a DICOM" in text and "labels/p01/orphan.npy" in text

    def test_long_name_lists_are_truncated(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        for i in range(8):
            add_pair(tmp_path, f"p01/x{i}")
        assert "... and 3 more" in check_dataset(tmp_path).to_text(max_names=5)

    def test_shape_mismatch_is_named(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", np.zeros((ROWS, COLS + 1), np.uint8))
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        (message,) = messages(report, "shape_mismatch")
        assert message.startswith("p01/s2: image is 20×24 but the label is 20×25")

    def test_jpeg_label_is_snapped_with_a_warning(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(40, second=80))
        add_pair(tmp_path, "p01/s2", square_label(40, second=80), label_suffix=".jpg")
        report = check_dataset(tmp_path)
        assert report.is_trainable, report.to_text()
        (lossy,) = messages(report, "lossy_label")
        changed = int(lossy.split(": ")[1].split(" pixels")[0])
        assert changed > 0 and "save labels as PNG or NPY" in lossy
        np.testing.assert_array_equal(report.samples[1].label, report.samples[0].label)

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
        report = check_dataset(tmp_path)
        assert report.is_trainable
        assert report.scheme.is_display_scaled and report.scheme.num_labels == 2
        assert "mapped in order: 0→0, 40→1, 80→2" in messages(report, "display_scaled")[0]
        assert set(np.unique(report.samples[0].label)) == {0, 1, 2}

    def test_extra_value_in_one_file_is_an_error(self, tmp_path):
        six_rois = np.repeat(np.arange(7, dtype=np.uint8), 4)[: ROWS * COLS // 4]
        six_rois = np.resize(six_rois, (ROWS, COLS))
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
        assert "labels/p01/s9.png" in report.to_text()
        assert check_dataset(tmp_path, num_labels=7).is_trainable

    def test_extra_value_above_num_labels_is_an_error(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label(second=3))
        report = check_dataset(tmp_path, num_labels=2)
        assert not report.is_trainable
        message = messages(report, "label_scheme")[0]
        assert "reach ROI 3, above num_labels=2" in message and "3: p01/s2.png" in message

    def test_missing_common_roi_is_a_warning(self, tmp_path):
        for i in range(10):
            add_pair(tmp_path, f"p01/s{i}", square_label())
        add_pair(tmp_path, "p01/t", square_label(second=None))
        report = check_dataset(tmp_path)
        assert report.is_trainable
        (message,) = messages(report, "missing_roi")
        assert message.startswith("inconsistent labelling: ROI 2 (value 2) is in 10 of 11")

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

    def test_empty_folder_is_not_trainable(self, tmp_path):
        (tmp_path / "dicoms").mkdir()
        (tmp_path / "labels").mkdir()
        report = check_dataset(tmp_path)
        assert not report.is_trainable
        assert "no DICOM file in" in messages(report, "empty")[0]
        assert "NOT FIT for training" in report.to_text()

    def test_mixed_label_schemes_are_explained(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(1, second=2))
        add_pair(tmp_path, "p01/s2", square_label(40, second=80))
        report = check_dataset(tmp_path)
        assert not report.is_trainable and report.scheme is None
        assert "do not form one scheme" in messages(report, "label_scheme")[0]
        assert "40: p01/s2.png" in messages(report, "label_scheme")[0]

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
        with pytest.raises(ConfigError, match="1 ROI names but num_labels=2"):
            check_dataset(tmp_path, num_labels=2)

    def test_multi_frame_dicom_pairs_with_3d_npy(self, tmp_path):
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", np.zeros((3, ROWS, COLS)))
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "cine.npy", np.stack([square_label()] * 3))
        report = check_dataset(tmp_path)
        assert report.is_trainable, report.to_text()
        assert [s.key for s in report.samples] == ["cine#f0", "cine#f1", "cine#f2"]

    def test_multi_frame_dicom_with_2d_label_is_a_mismatch(self, tmp_path):
        write_test_dicom(tmp_path / "dicoms" / "cine.dcm", np.zeros((3, ROWS, COLS)))
        (tmp_path / "labels").mkdir()
        np.save(tmp_path / "labels" / "cine.npy", square_label())
        (message,) = messages(check_dataset(tmp_path), "shape_mismatch")
        assert "3 frames of 20×24" in message and "(3, 20, 24) .npy" in message

    def test_slices_without_spacing_are_counted_in_pixels(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label(), spacing=None)
        report = check_dataset(tmp_path)
        assert report.roi_stats[0].mean_area_mm2 is None
        assert report.roi_stats[0].mean_area_px == 100
        assert "100 px on 1 slices without spacing" in report.to_text()
        assert "1 of 1 slices have no pixel spacing" in messages(report, "no_spacing")[0]


class TestLoadSamples:
    def test_returns_samples(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        (sample,) = load_samples(tmp_path)
        assert sample.key == "p01/s1"

    def test_raises_one_line_when_unfit(self, tmp_path):
        add_pair(tmp_path, "p01/s1", square_label())
        add_pair(tmp_path, "p01/s2", square_label().astype(np.float32) / 3, label_suffix=".npy")
        with pytest.raises(
            LabelError, match=r"not fit for training .*not whole numbers.*sliceseg check"
        ) as info:
            load_samples(tmp_path)
        assert "\n" not in str(info.value)

    def test_empty_raises_pairing_error(self, tmp_path):
        (tmp_path / "dicoms").mkdir()
        (tmp_path / "labels").mkdir()
        with pytest.raises(PairingError, match="no DICOM file in"):
            load_samples(tmp_path)


def make_sample(key: str, series_uid: str = "") -> Sample:
    image = Slice(
        pixels=np.zeros((2, 2), np.float32),
        spacing_mm=(1.0, 1.0),
        spacing_source="PixelSpacing",
        source=Path(f"/data/{key}.dcm"),
        series_uid=series_uid,
    )
    return Sample(key=key, image=image, label=np.zeros((2, 2), np.uint8))


class TestSplitBySeries:
    def test_series_stay_on_one_side(self):
        samples = [make_sample(f"p{s}/s{i}", f"1.2.{s}") for s in range(6) for i in range(4)]
        train, val = split_by_series(samples, validation_fraction=0.3, seed=1)
        train_series = {s.image.series_uid for s in train}
        val_series = {s.image.series_uid for s in val}
        assert len(val_series) == 2 and not train_series & val_series
        assert len(train) + len(val) == 24
        again = split_by_series(samples, validation_fraction=0.3, seed=1)[1]
        assert [s.key for s in again] == [s.key for s in val]

    def test_sub_folder_is_the_group_without_series_uid(self):
        samples = [make_sample(f"p{s}/s{i}") for s in range(2) for i in range(3)]
        train, val = split_by_series(samples, validation_fraction=0.1)
        assert len(train) == len(val) == 3 and len({s.key.split("/")[0] for s in val}) == 1

    def test_single_group_gives_empty_validation_with_warning(self):
        samples = [make_sample(f"s{i}") for i in range(3)]
        with pytest.warns(UserWarning, match="validation set is empty"):
            train, val = split_by_series(samples)
        assert len(train) == 3 and val == []

    def test_bad_fraction(self):
        with pytest.raises(
            ConfigError, match=r"validation_fraction=1.0: expected a share in \[0, 1\)"
        ):
            split_by_series([make_sample("a")], validation_fraction=1.0)
