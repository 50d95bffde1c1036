"""One value per segment name: ROI values 1..K in the documented order, given names, relabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceseg.dataset.segment_names import SEGMENT_ORDER, harmonise_segments, relabel
from sliceseg.errors import LabelError
from sliceseg.io.label_volume import LabelVolume, Segment


def _named(path: str, pairs: list[tuple[str, int]]) -> LabelVolume:
    values = np.zeros((4, 4, len(pairs)), np.uint8)
    for k, (_, value) in enumerate(pairs):
        values[0, 0, k] = value
    segments = tuple(Segment(name, value) for name, value in pairs)
    return LabelVolume(values, np.eye(4), segments, Path(path), "seg.nrrd")


def _messages(mapping, kind: str) -> list[str]:
    return [p.message for p in mapping.problems if p.kind == kind]


class TestHarmoniseSegments:
    def test_the_disagreeing_file_is_renumbered_with_a_warning(self):
        volumes = [
            _named("a.seg.nrrd", [("vertebral body", 1), ("left psoas", 2), ("right psoas", 3)]),
            _named("b.seg.nrrd", [("vertebral body", 1), ("left psoas", 2), ("right psoas", 3)]),
            _named("c.seg.nrrd", [("vertebral body", 1), ("right psoas", 2), ("left psoas", 3)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"vertebral body": 1, "left psoas": 2, "right psoas": 3}
        assert mapping.remaps == {Path("c.seg.nrrd"): {2: 3, 3: 2}}
        assert _messages(mapping, "renumbered") == [
            "c.seg.nrrd: segments renumbered to match the dataset: "
            "'right psoas' 2 → 3, 'left psoas' 3 → 2"
        ]
        assert [p.kind for p in mapping.problems] == ["renumbered"]

    def test_a_dataset_that_agrees_is_left_as_it_is(self):
        volumes = [
            _named("a.seg.nrrd", [("spine", 1), ("psoas", 2)]),
            _named("b.seg.nrrd", [("psoas", 2), ("spine", 1)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"spine": 1, "psoas": 2}
        assert mapping.remaps == {} and mapping.problems == []

    def test_values_are_1_to_k_even_when_the_files_agree_on_a_gap(self):
        # "psoas" deleted in Slicer: the files agree on 1 and 3; ROI values must be 1..K.
        volumes = [_named(f"{c}.seg.nrrd", [("spine", 1), ("fat", 3)]) for c in "ab"]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"spine": 1, "fat": 2}
        assert mapping.remaps == {Path("a.seg.nrrd"): {3: 2}, Path("b.seg.nrrd"): {3: 2}}

    def test_no_agreed_value_gives_the_first_files_order(self):
        # Every name has a different value in every file: each one's usual value is the first
        # file's (p2 comes before p10 in path order, whatever the order given).
        volumes = [
            _named("p10.seg.nrrd", [("a", 2), ("b", 3), ("c", 1)]),
            _named("p2.seg.nrrd", [("a", 3), ("b", 1), ("c", 2)]),
            _named("p3.seg.nrrd", [("a", 1), ("b", 2), ("c", 3)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"b": 1, "c": 2, "a": 3}
        assert mapping.remaps == {
            Path("p3.seg.nrrd"): {1: 3, 2: 1, 3: 2},
            Path("p10.seg.nrrd"): {2: 3, 3: 1, 1: 2},
        }

    def test_the_most_common_value_wins_then_first_appearance(self):
        # a: 2 in two files; b: 1, 2, 3 once each -> the first file's, 1; c: 3 in two files;
        # d: only in f4, as 2 -> ties with a on usual value 2, and appears after it.
        volumes = [
            _named("f1.seg.nrrd", [("b", 1), ("a", 2), ("c", 3)]),
            _named("f2.seg.nrrd", [("c", 1), ("b", 2), ("a", 3)]),
            _named("f3.seg.nrrd", [("a", 2), ("b", 3), ("c", 4)]),
            _named("f4.seg.nrrd", [("d", 2), ("c", 3)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"b": 1, "a": 2, "d": 3, "c": 4}

    def test_a_name_whose_value_is_taken_follows_in_first_appearance(self):
        volumes = [
            _named("a.seg.nrrd", [("bone", 1)]),
            _named("b.seg.nrrd", [("bone", 1)]),
            _named("c.seg.nrrd", [("fat", 1), ("muscle", 2)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"bone": 1, "fat": 2, "muscle": 3}
        assert mapping.remaps == {Path("c.seg.nrrd"): {1: 2, 2: 3}}

    def test_the_union_of_names_with_a_line_for_files_that_lack_one(self):
        volumes = [
            _named("a.seg.nrrd", [("spine", 1), ("psoas", 2)]),
            _named("b.seg.nrrd", [("spine", 1), ("psoas", 2), ("fat", 3)]),
            _named("c.seg.nrrd", [("spine", 1), ("psoas", 2)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"spine": 1, "psoas": 2, "fat": 3}
        (problem,) = [p for p in mapping.problems if p.kind == "missing_segment"]
        assert problem.message == (
            "segment 'fat' is in 1 of 3 segmentation files; in the 2 without it the ROI counts "
            "as background: add the segment there if the tissue is visible"
        )
        assert problem.paths == (Path("a.seg.nrrd"), Path("c.seg.nrrd"))

    def test_names_differing_in_case_or_spaces_are_one_roi_with_a_line(self):
        volumes = [
            _named("a.seg.nrrd", [("Left Psoas", 1), ("spine", 2)]),
            _named("b.seg.nrrd", [(" left  psoas ", 2), ("Spine", 1)]),
            _named("c.seg.nrrd", [("LEFT PSOAS", 1), ("spine", 2)]),
        ]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"Left Psoas": 1, "spine": 2}
        assert _messages(mapping, "segment_spelling") == [
            "segment 'Left Psoas' is also spelled ' left  psoas ' (1 file(s)), 'LEFT PSOAS' "
            "(1 file(s)): names that differ only in case or spaces are one ROI, named 'Left Psoas'",
            "segment 'spine' is also spelled 'Spine' (1 file(s)): names that differ only in case "
            "or spaces are one ROI, named 'spine'",
        ]
        assert mapping.remaps == {Path("b.seg.nrrd"): {2: 1, 1: 2}}

    def test_two_segments_of_one_file_with_one_name_are_merged_with_a_line(self):
        volumes = [_named("a.seg.nrrd", [("fat", 1), ("psoas", 2), ("Fat", 3)])]
        mapping = harmonise_segments(volumes)
        assert mapping.values_by_name == {"fat": 1, "psoas": 2}
        assert mapping.remaps == {Path("a.seg.nrrd"): {3: 1}}
        assert _messages(mapping, "merged_segments") == [
            "a.seg.nrrd: segments 'fat' (1) and 'Fat' (3) have one name (ignoring case and "
            "spaces) and are merged into one ROI; rename one in 3D Slicer if they are different "
            "tissues"
        ]

    def test_the_values_line_states_the_order(self):
        volumes = [_named("a.seg.nrrd", [("psoas", 2), ("bone", 1)])]
        mapping = harmonise_segments(volumes)
        assert mapping.values_line == (
            "ROI values from segment names: 1 = bone, 2 = psoas; order: each name's most common "
            "value over the files (a tie: the first file's, files in path order), then first "
            "appearance; add labels.txt (one name per line) to choose the order"
        )
        assert mapping.values_line.endswith(SEGMENT_ORDER) and mapping.is_from_segment_names

    def test_given_names_fix_the_values(self):
        volumes = [_named("a.seg.nrrd", [("psoas", 1), ("Bone", 2)])]
        mapping = harmonise_segments(volumes, roi_names=["bone", "psoas"], names_source="l.txt")
        assert mapping.remaps == {Path("a.seg.nrrd"): {1: 2, 2: 1}}
        assert mapping.names_by_value == {1: "bone", 2: "psoas"}
        assert mapping.values_line == (
            "ROI values from l.txt: 1 = bone, 2 = psoas; order: as listed in l.txt"
        )
        assert not mapping.is_from_segment_names

    def test_no_named_volume_gives_nothing(self):
        unnamed = LabelVolume(np.zeros((2, 2, 2), np.uint8), np.eye(4), (), Path("a.nii"), "nifti")
        mapping = harmonise_segments([unnamed])
        assert (mapping.values_by_name, mapping.remaps, mapping.values_line) == ({}, {}, "")

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
