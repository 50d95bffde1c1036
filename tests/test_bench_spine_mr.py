"""The spine-MR and small-structure benchmark sets: members read, label rules, level split."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import real_mr_small as small
import spine_mr_data as spine

BENCH = Path(__file__).resolve().parents[1] / "bench"

CT_NAME = re.compile(r"example_ct|ct_dicom|_ct[._/]", re.IGNORECASE)


def test_bench_code_names_only_the_mr_members_of_the_archive():
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(BENCH.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CT_NAME.search(line)
    ]
    assert offenders == []
    assert spine.MR_MEMBERS == (
        "tests/reference_files/example_mr_sm.nii.gz",
        "tests/reference_files/example_seg_mr.nii.gz",
        "totalsegmentator/map_to_binary.py",
    )


def test_a_member_outside_the_mr_ones_is_refused_before_the_archive_is_opened(tmp_path):
    missing_archive = tmp_path / "not_there.tar.gz"  # opening it would raise FileNotFoundError
    with pytest.raises(ValueError, match="not one of the spine-MR benchmark's members"):
        spine.read_member(missing_archive, "tests/reference_files/example_seg.nii.gz")


def test_the_total_mr_class_map_is_parsed_from_text_without_running_it():
    source = (
        "import os\nos.remove('/never')\n"  # would fail if the text were run
        'class_map = {"total": {1: "spleen"},\n'
        '             "total_mr": {19: "vertebrae", 46: "autochthon_left"}}\n'
    )
    assert spine.total_mr_classes(source) == {19: "vertebrae", 46: "autochthon_left"}


def _volume(indicators: np.ndarray) -> spine.SpineVolume:
    affine = np.diag([-3.0, -3.0, 3.0, 1.0])  # voxel axes to the left, posterior, superior
    affine[:3, 3] = (30.0, 30.0, 10.0)
    image = np.zeros(indicators.shape[1:], dtype=np.float32)
    return spine.SpineVolume(image=image, indicators=indicators, affine=affine, classes={})


def test_levels_are_every_mm_inside_each_block_and_test_planes_are_never_shared():
    volume = _volume(np.zeros((5, 4, 4, spine.N_PLANES), dtype=np.float32))
    expected = [10.0, 11.0, 12.0, 13.0, 19.0, 20.0, 21.0, 22.0]
    assert spine.block_levels(volume, [(0, 1), (3, 4)]) == expected
    top = spine.N_PLANES - 1  # planes 18, 19 at z = 63.996, 66.996: 67.00 would be outside
    shifted = _volume(volume.indicators)
    shifted.affine[2, 3] = 10.0 - 0.004
    assert spine.block_levels(shifted, [(top - 1, top)]) == [64.0, 65.0, 66.0, 66.99]

    def planes(levels: list[float]) -> set[int]:
        k = [(z - 10.0) / 3.0 for z in levels]
        return {int(np.floor(v + 1e-9)) for v in k} | {int(np.ceil(v - 1e-9)) for v in k}

    train = planes(spine.block_levels(volume, spine.TRAIN_PLANES))
    test = planes(spine.block_levels(volume, spine.TEST_PLANES))
    assert train.isdisjoint(test)
    assert train | test <= set(range(spine.N_PLANES))


def test_every_test_block_lies_between_two_training_blocks():
    for first, last in spine.TEST_PLANES:
        assert any(end < first for _, end in spine.TRAIN_PLANES), (first, last)
        assert any(start > last for start, _ in spine.TRAIN_PLANES), (first, last)


def test_an_roi_that_ends_between_a_test_block_and_the_next_training_block_is_named():
    indicators = np.zeros((5, 4, 4, spine.N_PLANES), dtype=np.float32)
    indicators[:, 1, 1, :] = 1.0  # every ROI on every plane: all bracketed
    assert spine.unbracketed_rois(_volume(indicators)) == []
    indicators[1, :, :, 4:] = 0.0  # the right iliopsoas ends after plane 3, inside a test block
    assert spine.unbracketed_rois(_volume(indicators)) == [
        "right iliopsoas on plane 2",
        "right iliopsoas on plane 3",
    ]


def test_spine_rule_takes_the_largest_indicator_above_one_half():
    indicators = np.zeros((5, 10, 10, spine.N_PLANES), dtype=np.float32)
    indicators[0, 2:5, 2:5, :] = 1.0  # vertebra in voxels i, j = 2..4 on every plane
    indicators[3, 6:8, 6:8, 4] = 1.0  # right erector spinae on plane 4 only
    volume = _volume(indicators)
    i, j = np.meshgrid(np.arange(10.0), np.arange(10.0), indexing="ij")
    x, y = 30.0 - 3.0 * i, 30.0 - 3.0 * j  # the world (x, y) of each voxel centre
    on_plane_4 = spine.spine_labels(volume, 22.0, x, y)
    assert np.count_nonzero(on_plane_4 == 1) == 9
    assert np.count_nonzero(on_plane_4 == 4) == 4
    halfway = spine.spine_labels(volume, 23.5, x, y)  # indicator 0.5 is not above one half
    assert np.count_nonzero(halfway == 4) == 0
    assert np.count_nonzero(halfway == 1) == 9


def test_small_rule_on_hand_made_probabilities():
    x = np.array([10.0, -10.0, 10.0, -10.0, 10.0, -10.0, 10.0, 1.0, 30.0])
    y = np.array([0.0, 0.0, 10.0, 10.0, -20.0, -20.0, 40.0, 10.0, 10.0])
    gm = np.array([0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    wm = np.zeros_like(gm)
    brain = np.ones_like(gm)
    # ventricle R, L; anterior grey R, L; posterior grey R, L; then too anterior, midline, lateral
    assert small.small_rule(gm, wm, brain, x, y).tolist() == [1, 2, 3, 4, 5, 6, 0, 0, 0]
    outside_brain = small.small_rule(gm[:2], wm[:2], np.zeros(2), x[:2], y[:2])
    assert outside_brain.tolist() == [0, 0]


def test_small_levels_keep_two_mm_between_training_and_test():
    train, test = small.split_small_levels()
    assert train == [0, 1, 2, 7, 8, 9, 14, 15, 16, 21, 22]
    assert test == [4, 5, 11, 12, 18, 19]
    assert min(abs(a - b) for a in train for b in test) == 2


def test_the_ct_sized_set_draws_ct_grids_at_the_same_levels():
    indicators = np.ones((5, 4, 4, spine.N_PLANES), dtype=np.float32)
    volume = _volume(indicators)
    default = spine.spine_plan(volume, 0)
    wide = spine.spine_plan(volume, 0, spacing_mm=spine.WIDE_SPACING_MM, fov_mm=spine.WIDE_FOV_MM)
    assert wide[:2] == default[:2]  # the same training and test levels
    scanners = [scanner for scanner, _, _ in (*wide[2], *wide[3])]
    assert all(0.7 <= mm <= 0.95 for s in scanners for mm in s.spacing_mm)
    assert all(360 / 0.95 - 1 <= n <= 480 / 0.7 + 1 for s in scanners for n in s.shape)
    assert max(max(s.shape) for s in scanners) > 512 > min(min(s.shape) for s in scanners)
    assert [len(levels) for _, levels, _ in wide[2]] == [spine.TRAIN_SLICES] * spine.TRAIN_SUBJECTS
