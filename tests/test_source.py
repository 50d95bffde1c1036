"""Tests for sliceseg.dataset.source: where a labelled dataset lives, what it says of its ROIs."""

from __future__ import annotations

import pytest

from conftest import add_pair, square_label
from sliceseg.dataset.source import DataSource
from sliceseg.errors import ConfigError, PairingError


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
        with pytest.raises(
            ConfigError, match=rf"\(num_labels\) must be ≥ 1 .*, got {num_labels}\."
        ):
            DataSource(tmp_path / "dicoms", tmp_path / "labels", num_labels=num_labels)

    def test_a_name_given_twice_is_refused(self, tmp_path):
        with pytest.raises(ConfigError, match=r"roi_names: ROI name 'a' \(ROIs 1, 3\) given more"):
            DataSource(tmp_path / "d", tmp_path / "l", roi_names=("a", "b", "a"))

    def test_names_must_match_num_labels(self, tmp_path):
        with pytest.raises(ConfigError, match="roi_names: 1 ROI names but num_labels=2"):
            DataSource(tmp_path / "d", tmp_path / "l", num_labels=2, roi_names=("only",))


class TestRefuseOutputInside:
    @pytest.fixture
    def source(self, tmp_path):
        for folder in ("dicoms", "labels"):
            (tmp_path / "data" / folder).mkdir(parents=True)
        return DataSource.from_dirs(tmp_path / "data")

    def test_a_folder_in_the_labels_is_refused_naming_one_beside_them(self, source, tmp_path):
        out = tmp_path / "data" / "labels" / "ev"
        message = (
            f"{out}: --out lies in the label folder {source.labels_dir}, where the next run "
            "would read the files written there as its own; choose a folder outside it (e.g. "
            f"beside it: {tmp_path / 'data' / 'ev'})."
        )
        with pytest.raises(ConfigError) as refused:
            source.refuse_output_inside(out)
        assert str(refused.value) == message

    def test_the_dicom_folder_itself_is_refused(self, source, tmp_path):
        with pytest.raises(ConfigError, match=r"lies in the DICOM folder .* beside it: .*results"):
            source.refuse_output_inside(tmp_path / "data" / "dicoms")

    @pytest.mark.parametrize("out", ["data", "data/ev", "data/labels_ev", "ev"])
    def test_a_folder_outside_both_is_accepted(self, source, tmp_path, out):
        source.refuse_output_inside(tmp_path / out)
