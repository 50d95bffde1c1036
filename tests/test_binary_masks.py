"""Tests for sliceseg.dataset.binary_masks: a binary mask saved among maps of ROI numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sliceseg.dataset.binary_masks import binary_mask_problems
from sliceseg.dataset.samples import check_dataset
from test_check import sample_on


def phantom_copy(tiny_phantom: Path, tmp_path: Path) -> Path:
    data = tmp_path / "train"
    shutil.copytree(tiny_phantom / "train", data)
    return data


def rewrite(data: Path, key: str, change) -> None:
    """Replace the label map of ``key`` (the phantom's PNG or NPY) by ``change(label)``: a mask
    (bool) as ``np.save(labels/<key>.npy, label > 0)`` writes it, else in the same file."""
    (path,) = (data / "labels").glob(f"{key}.*")
    label = np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))
    changed = change(label)
    if changed.dtype == bool:
        path.unlink()
        np.save(path.with_suffix(".npy"), changed)
    elif path.suffix == ".npy":
        np.save(path, changed.astype(label.dtype))
    else:
        Image.fromarray(changed.astype(np.uint8)).save(path)


def kinds(problems) -> list[str]:
    return [p.kind for p in problems]


class TestOnThePhantom:
    def test_one_binary_mask_is_named_with_its_fix(self, tiny_phantom, tmp_path):
        data = phantom_copy(tiny_phantom, tmp_path)
        rewrite(data, "sub01/sub01_s00", lambda label: label > 0)
        report = check_dataset(data)
        assert kinds(report.warnings) == ["binary_mask"]
        (warning,) = report.warnings
        assert warning.paths == (data / "labels" / "sub01" / "sub01_s00.npy",)
        assert warning.message.startswith("1 label map holds only ROI 1 (vertebral body), over ")
        assert "× the largest vertebral body in the maps that hold other ROIs too (" in (
            warning.message
        )
        assert warning.message.endswith(
            "a binary mask saved instead of the ROI numbers? Save the map of ROI numbers 0..6 "
            "(0 = background)."
        )
        line = report.problem_lines()[0]
        assert line.startswith("warning: 1 label map holds only ROI 1")
        assert line.endswith(" -- labels/sub01/sub01_s00.npy")

    def test_a_whole_series_of_masks_is_named(self, tiny_phantom, tmp_path):
        """The largest vertebral body comes from maps holding other ROIs: masks hide no mask."""
        data = phantom_copy(tiny_phantom, tmp_path)
        for i in range(3):
            rewrite(data, f"sub02/sub02_s0{i}", lambda label: label > 0)
        (warning,) = check_dataset(data).warnings
        assert warning.kind == "binary_mask"
        assert [p.name for p in warning.paths] == [f"sub02_s0{i}.npy" for i in range(3)]
        assert warning.message.startswith("3 label maps hold only ROI 1 (vertebral body), up to ")

    def test_the_untouched_phantom_has_no_warning(self, tiny_phantom):
        assert check_dataset(tiny_phantom / "train").warnings == []

    def test_rois_present_on_some_slices_only_are_no_mask(self, tiny_phantom, tmp_path):
        """A slice of the vertebral body alone, one of the subcutaneous fat alone (the largest
        ROI), and the psoas on a third of the slices: ROIs that come and go, not masks."""
        data = phantom_copy(tiny_phantom, tmp_path)
        rewrite(data, "sub01/sub01_s00", lambda label: np.where(label == 1, 1, 0))
        rewrite(data, "sub02/sub02_s00", lambda label: np.where(label == 6, 6, 0))
        for key in ("sub01/sub01_s01", "sub02/sub02_s01", "sub03/sub03_s00", "sub03/sub03_s01"):
            rewrite(data, key, lambda label: np.where(np.isin(label, (2, 3)), 0, label))
        report = check_dataset(data)
        assert report.warnings == []
        assert [s.num_slices for s in report.roi_stats] == [8, 3, 3, 7, 7, 8]


def squares(size: int, *, second: bool, value: int = 1) -> np.ndarray:
    label = np.zeros((40, 40), np.uint8)
    label[:size, :size] = value
    if second:
        label[-2:, -2:] = 2
    return label


class TestRule:
    @pytest.mark.parametrize(("size", "flagged"), [(17, False), (18, True)])
    def test_more_than_three_times_the_largest_beside_other_rois(self, size, flagged):
        # ROI 1 beside ROI 2: 10×10 px at 0.5 mm = 25 mm²; alone: 17×17 = 72.25 mm² (2.9×),
        # 18×18 = 81 mm² (3.2×).
        samples = [
            sample_on((0.5, 0.5), squares(10, second=True)),
            sample_on((0.5, 0.5), squares(size, second=False)),
        ]
        files = [Path("a.npy"), Path("b.npy")]
        problems = binary_mask_problems(samples, files, ("disc", "muscle"))
        assert [p.paths for p in problems] == ([(Path("b.npy"),)] if flagged else [])
        if flagged:
            assert problems[0].message.startswith(
                "1 label map holds only ROI 1 (disc), over 81 mm²: 3.2× the largest disc in the "
                "maps that hold other ROIs too (25 mm²)"
            )

    def test_no_reference_no_warning(self):
        """An ROI never beside another (or a dataset of one ROI) cannot be judged by size."""
        samples = [
            sample_on((0.5, 0.5), squares(5, second=False)),
            sample_on((0.5, 0.5), squares(30, second=False)),
        ]
        assert binary_mask_problems(samples, [Path("a"), Path("b")], ("disc", "muscle")) == []

    def test_slices_without_spacing_compare_pixels(self):
        """Areas compare in one unit: 324 px without spacing is 3.24× the 100 px beside ROI 2
        without spacing (not 0.8× the 400 px at 0.1 mm); 324 px at 0.1 mm is 3.24 mm², 0.8×
        the 4 mm² beside ROI 2 there (not 3.24× 100 px)."""
        samples = [
            sample_on((0.1, 0.1), squares(20, second=True)),
            sample_on(None, squares(10, second=True)),
            sample_on(None, squares(18, second=False)),
            sample_on((0.1, 0.1), squares(18, second=False)),
        ]
        files = [Path("a"), Path("b"), Path("c"), Path("d")]
        (problem,) = binary_mask_problems(samples, files, ("disc", "muscle"))
        assert problem.paths == (Path("c"),)
        assert "over 324 px: 3.2× the largest disc" in problem.message
        assert "too (100 px)" in problem.message
