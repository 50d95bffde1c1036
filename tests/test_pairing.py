"""Tests for sliceseg.dataset.pairing: pairing by relative path, and slice keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import LABEL_COLS, LABEL_ROWS, add_pair, square_label, write_test_dicom
from sliceseg.dataset.pairing import likely_images, pair_files, slice_key
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


def _typo_folder(root: Path, image_name: str, *, neighbours: bool = True) -> None:
    """p01/img0001..0003 labelled, the label p01/img0012.npy, its DICOM named ``image_name``;
    unlabelled neighbours p01/img0011 and p01/img0013 (as close to img0012 as a typo is)."""
    for key in ("p01/img0001", "p01/img0002", "p01/img0003"):
        add_pair(root, key, square_label())
    add_pair(root, "p01/img0012", square_label(), label_suffix=".npy", image_name=image_name)
    for key in ("p01/img0011", "p01/img0013") if neighbours else ():
        add_pair(root, key)


class TestLikelyImages:
    @pytest.mark.parametrize(
        "image_name", ["p01/img00l2.dcm", "p01/lmg0012.dcm", "p1/img0012.dcm", "p01/img012.dcm"]
    )
    def test_a_mistyped_name_gets_its_dicom_not_a_neighbour(self, tmp_path, image_name):
        """A label whose name differs from its DICOM's by a typo was only "without a DICOM
        file"; the DICOMs of the next slices, as close in spelling, are never offered."""
        from sliceseg.dataset.samples import check_dataset

        _typo_folder(tmp_path, image_name)
        pairing = pair_files(tmp_path / "dicoms", tmp_path / "labels")
        found = likely_images(pairing, tmp_path / "dicoms", tmp_path / "labels")
        assert found == [(tmp_path / "labels/p01/img0012.npy", tmp_path / "dicoms" / image_name)]
        (line,) = [
            p.message for p in check_dataset(tmp_path).problems if p.kind == "unmatched_label"
        ]
        assert line == (
            "1 label map(s) without a DICOM file of the same relative name (left out; name each "
            f"as its DICOM is named; did you mean {image_name} for p01/img0012.npy?)"
        )

    def test_another_slice_number_or_a_tie_is_no_hint(self, tmp_path):
        """img0012's DICOM deleted: img0011 and img0013 are other slices, never a typo."""
        _typo_folder(tmp_path, "p01/img0012.dcm")
        (tmp_path / "dicoms/p01/img0012.dcm").unlink()
        add_pair(tmp_path, "p02/img0012")  # p01/img0012 and p02/img0012: two folders off
        pairing = pair_files(tmp_path / "dicoms", tmp_path / "labels")
        assert likely_images(pairing, tmp_path / "dicoms", tmp_path / "labels") == []

    def test_a_labelled_dicom_is_not_offered(self, tmp_path):
        _typo_folder(tmp_path, "p01/img00l2.dcm", neighbours=False)
        np.save(tmp_path / "labels/p01/img00l2.npy", square_label())
        pairing = pair_files(tmp_path / "dicoms", tmp_path / "labels")
        assert likely_images(pairing, tmp_path / "dicoms", tmp_path / "labels") == []
