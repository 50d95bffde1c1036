"""Tests for sliceseg.dataset.pairing: DataSource, pairing by relative path, and slice keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import LABEL_COLS, LABEL_ROWS, add_pair, square_label, write_test_dicom
from sliceseg.dataset.pairing import DataSource, pair_files, slice_key
from sliceseg.errors import ConfigError, PairingError
from sliceseg.io.dicom import read_slice, read_slices


class TestDataSourceFromDirs:
    def test_defaults_and_overrides(self, tmp_path):
        for name in ("dicoms", "labels", "other"):
            (tmp_path / name).mkdir()
        source = DataSource.from_dirs(str(tmp_path))
        assert (source.images_dir, source.labels_dir) == (tmp_path / "dicoms", tmp_path / "labels")
        assert source.data_dir == tmp_path and source.num_labels is None
        source = DataSource.from_dirs(
            None, images_dir=tmp_path / "other", labels_dir=str(tmp_path / "labels")
        )
        assert (source.images_dir, source.labels_dir) == (tmp_path / "other", tmp_path / "labels")
        assert source.data_dir is None

    def test_names_become_a_tuple_of_strings(self, tmp_path):
        for name in ("dicoms", "labels"):
            (tmp_path / name).mkdir()
        source = DataSource.from_dirs(tmp_path, num_labels=2, roi_names=["left", "right"])
        assert source.roi_names == ("left", "right") and source.num_labels == 2

    def test_missing_folder_lists_what_exists(self, tmp_path):
        (tmp_path / "images").mkdir()
        with pytest.raises(
            PairingError, match=r"dicoms: DICOM folder does not exist \(folders in .*: images\)"
        ):
            DataSource.from_dirs(tmp_path)

    def test_a_file_given_for_a_folder_is_called_a_file(self, tmp_path):
        """`--labels labels/s1.png` or `check labels.txt` said "folder does not exist"."""
        add_pair(tmp_path, "p01/s1", square_label())
        label = tmp_path / "labels" / "p01" / "s1.png"
        with pytest.raises(PairingError) as given:
            DataSource.from_dirs(images_dir=tmp_path / "dicoms", labels_dir=label)
        assert str(given.value) == (
            f"{label}: a file, not a folder; give the folder that holds the label files, e.g. "
            f"{label.parent}."
        )
        (tmp_path / "labels.txt").write_text("a\nb\n")
        with pytest.raises(PairingError) as data_dir:
            DataSource.from_dirs(tmp_path / "labels.txt")
        assert str(data_dir.value).startswith(
            f"{tmp_path / 'labels.txt'}: a file, not a folder; give the folder that holds dicoms/"
        )

    def test_no_folder_given(self):
        with pytest.raises(ConfigError, match="give DATA_DIR"):
            DataSource.from_dirs(None, images_dir="x")

    @pytest.mark.parametrize("num_labels", [0, -1])
    def test_num_labels_below_one_is_refused(self, tmp_path, num_labels):
        with pytest.raises(ConfigError, match=rf"num_labels={num_labels}: expected at least 1"):
            DataSource(tmp_path / "dicoms", tmp_path / "labels", num_labels=num_labels)

    def test_a_name_given_twice_is_refused(self, tmp_path):
        with pytest.raises(ConfigError, match=r"roi_names: ROI name 'a' \(ROIs 1, 3\) given more"):
            DataSource(tmp_path / "d", tmp_path / "l", roi_names=("a", "b", "a"))

    def test_names_must_match_num_labels(self, tmp_path):
        with pytest.raises(ConfigError, match="roi_names: 1 ROI names but num_labels=2"):
            DataSource(tmp_path / "d", tmp_path / "l", num_labels=2, roi_names=("only",))


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

    @pytest.mark.parametrize("labels", ["dicoms", "dicoms/labels"])
    def test_labels_in_or_under_the_dicom_folder_are_not_skipped_files(self, tmp_path, labels):
        """`--images d --labels d` (or d/labels) paired, but called every label map "skipped:
        not a DICOM file" and (in one folder) every DICOM "skipped: not a label map"."""
        for key in ("p01/s1", "p01/s2"):
            add_pair(tmp_path, key, square_label())
            (tmp_path / labels / "p01").mkdir(parents=True, exist_ok=True)
            label = tmp_path / "labels" / f"{key}.png"
            label.replace(tmp_path / labels / f"{key}.png")
        (tmp_path / labels / "p01" / "notes.txt").write_text("x")
        pairing = pair_files(tmp_path / "dicoms", tmp_path / labels)
        assert [p.key for p in pairing.pairs] == ["p01/s1", "p01/s2"]
        assert [p.label_path.parent for p in pairing.pairs] == [tmp_path / labels / "p01"] * 2
        assert not pairing.images_without_labels and not pairing.labels_without_images
        # Listed once, not also as "not a label map" when both sides share the folder.
        assert [s.path.name for s in pairing.skipped] == ["notes.txt"]


class TestSliceKey:
    def test_single_frame_key_is_the_pair_key(self, tmp_path):
        add_pair(tmp_path, "p01/a/slice_1", square_label(), image_name="p01/a/slice_1.DCM")
        (pair,) = pair_files(tmp_path / "dicoms", tmp_path / "labels").pairs
        (image,) = read_slices(pair.image_path)
        assert slice_key(image, tmp_path / "dicoms") == pair.key == "p01/a/slice_1"

    def test_frame_key_ends_like_slice_name(self, tmp_path):
        path = write_test_dicom(
            tmp_path / "p01" / "cine.dcm", np.zeros((12, LABEL_ROWS, LABEL_COLS))
        )
        image = read_slice(path, frame=11)
        assert image.name == "cine_f011"
        assert slice_key(image, tmp_path) == "p01/cine_f011"
        assert slice_key(image, tmp_path / "p01") == image.name

    def test_relative_and_absolute_roots_agree(self, tmp_path, monkeypatch):
        write_test_dicom(tmp_path / "scans" / "p01" / "s1.dcm", np.zeros((4, 4)))
        monkeypatch.chdir(tmp_path)
        image = read_slice(Path("scans/p01/s1.dcm"))
        assert slice_key(image, tmp_path / "scans") == slice_key(image, "scans") == "p01/s1"

    def test_file_outside_root_is_refused(self, tmp_path):
        image = read_slice(write_test_dicom(tmp_path / "a" / "s1.dcm", np.zeros((4, 4))))
        with pytest.raises(ValueError, match=r"s1.dcm: not inside .*b"):
            slice_key(image, tmp_path / "b")
