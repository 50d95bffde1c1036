"""One value per segment name: majority values, free values for losers, given names, relabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceseg.data.segment_names import harmonise_segments, relabel
from sliceseg.errors import LabelError
from sliceseg.io.volumes import LabelVolume, Segment


def _named(path: str, pairs: list[tuple[str, int]]) -> LabelVolume:
    values = np.zeros((4, 4, len(pairs)), np.uint8)
    for k, (_, value) in enumerate(pairs):
        values[0, 0, k] = value
    segments = tuple(Segment(name, value) for name, value in pairs)
    return LabelVolume(values, np.eye(4), segments, Path(path), "seg.nrrd")


class TestHarmoniseSegments:
    def test_the_disagreeing_file_is_renumbered_with_a_warning(self):
        volumes = [
            _named("a.seg.nrrd", [("vertebral body", 1), ("left psoas", 2), ("right psoas", 3)]),
            _named("b.seg.nrrd", [("Vertebral  Body", 1), ("left psoas", 2), ("right psoas", 3)]),
            _named("c.seg.nrrd", [("vertebral body", 1), ("right psoas", 2), ("left psoas", 3)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"vertebral body": 1, "left psoas": 2, "right psoas": 3}
        assert mapping.remaps == {Path("c.seg.nrrd"): {2: 3, 3: 2}}
        assert mapping.warnings == [
            "c.seg.nrrd: segments renumbered to match the dataset: "
            "'right psoas' 2 → 3, 'left psoas' 3 → 2"
        ]

    def test_a_name_that_loses_its_value_gets_a_free_one(self):
        volumes = [
            _named("a.seg.nrrd", [("bone", 1)]),
            _named("b.seg.nrrd", [("bone", 1)]),
            _named("c.seg.nrrd", [("fat", 1), ("muscle", 2)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"bone": 1, "muscle": 2, "fat": 3}
        assert mapping.remaps == {Path("c.seg.nrrd"): {1: 3}}

    def test_given_names_fix_the_values(self):
        volumes = [_named("a.seg.nrrd", [("psoas", 1), ("bone", 2)])]
        mapping = harmonise_segments(volumes, roi_names=["bone", "psoas"])
        assert mapping.remaps == {Path("a.seg.nrrd"): {1: 2, 2: 1}}
        assert mapping.names_by_value == {1: "bone", 2: "psoas"}

    def test_relabel_swaps_in_one_pass(self):
        values = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
        np.testing.assert_array_equal(relabel(values, {1: 2, 2: 1}), [[0, 2, 1], [1, 2, 0]])

    def test_an_unknown_name_lists_the_known_ones(self):
        volumes = [_named("a.seg.nrrd", [("psoas", 1), ("liver", 2)])]
        with pytest.raises(
            LabelError,
            match=r"a\.seg\.nrrd: segment name\(s\) \['liver'\] not in labels\.txt \(bone, psoas\)",
        ):
            harmonise_segments(volumes, roi_names=["bone", "psoas"], names_source="labels.txt")
