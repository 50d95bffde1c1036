"""Tests for sliceseg.dataset.pairing: pairing by relative path, and slice keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import LABEL_COLS, LABEL_ROWS, add_pair, square_label, write_test_dicom
from sliceseg.dataset.pairing import pair_files, slice_key
from sliceseg.io.dicom import read_slice, read_slices


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
