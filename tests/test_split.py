"""Tests for sliceseg.dataset.split: the training / validation split by patient."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import add_pair, square_label
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.samples import load_samples
from sliceseg.dataset.split import (
    held_out_series,
    held_out_text,
    hold_out_levels,
    patient_group,
    relative_levels,
    split_by_patient,
)
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.io.identity import slices_series_names
from sliceseg.training.config import TrainConfig


def make_sample(key: str, series_uid: str = "", patient_id: str = "") -> Sample:
    image = Slice(
        pixels=np.zeros((2, 2), np.float32),
        spacing_mm=(1.0, 1.0),
        spacing_source="PixelSpacing",
        source=Path(f"/data/{key}.dcm"),
        series_uid=series_uid,
        patient_id=patient_id,
    )
    return Sample(key=key, image=image, label=np.zeros((2, 2), np.uint8))


class TestPatientGroup:
    @pytest.mark.parametrize(
        ("key", "series_uid", "patient_id", "group"),
        [
            ("p01/ct/s1", "1.2.3", "PAT7", "patient:PAT7"),
            ("p01/ct/s1", "1.2.3", "", "folder:p01"),
            ("s1", "1.2.3", "", "series:1.2.3"),
            ("s1", "", "", ""),
        ],
    )
    def test_patient_then_subject_folder_then_series(self, key, series_uid, patient_id, group):
        assert patient_group(make_sample(key, series_uid, patient_id)) == group


class TestSplitByPatient:
    def test_two_series_of_one_patient_stay_on_one_side(self, tmp_path):
        # Patient "A" has two series in two folders; five other patients have one each.
        add_pair(tmp_path, "a_mr/s1", square_label(), series_uid="1.2.10", patient_id="A")
        add_pair(tmp_path, "a_ct/s1", square_label(), series_uid="1.2.11", patient_id="A")
        for i in range(5):
            add_pair(
                tmp_path, f"b{i}/s1", square_label(), series_uid=f"1.2.2{i}", patient_id=f"B{i}"
            )
        samples, _ = load_samples(tmp_path)
        assert {s.image.patient_id for s in samples} == {"A", "B0", "B1", "B2", "B3", "B4"}
        sides_of_a = set()
        for seed in range(12):
            train, val = split_by_patient(samples, validation_fraction=0.3, seed=seed)
            assert len(train) + len(val) == 7 and len({patient_group(s) for s in val}) == 2
            a_keys = {s.key for s in val if s.image.patient_id == "A"}
            assert a_keys in (set(), {"a_mr/s1", "a_ct/s1"}), f"seed {seed}: {a_keys}"
            sides_of_a.add(bool(a_keys))
        assert sides_of_a == {True, False}  # the seeds did put patient A on either side

    def test_series_stay_on_one_side_and_split_is_deterministic(self):
        samples = [make_sample(f"s{s}_{i}", f"1.2.{s}") for s in range(6) for i in range(4)]
        train, val = split_by_patient(samples, validation_fraction=0.3, seed=1)
        train_series = {s.image.series_uid for s in train}
        val_series = {s.image.series_uid for s in val}
        assert len(val_series) == 2 and not train_series & val_series
        assert len(train) + len(val) == 24
        again = split_by_patient(samples, validation_fraction=0.3, seed=1)[1]
        assert [s.key for s in again] == [s.key for s in val]

    def test_subject_folder_groups_series_without_patient_id(self):
        samples = [
            make_sample(f"p{p}/{series}/s{i}", f"1.2.{p}.{series}")
            for p in range(2)
            for series in ("mr", "ct")
            for i in range(3)
        ]
        train, val = split_by_patient(samples, validation_fraction=0.1)
        assert len(train) == len(val) == 6 and len({s.key.split("/")[0] for s in val}) == 1

    def test_a_folders_slices_without_patient_id_stay_with_its_patient(self):
        # p0's first series keeps PatientID P0, its second lost it (an export that strips it);
        # five other patients. p0 used to be two groups, "patient:P0" and "folder:p0".
        samples = [make_sample("p0/ct/s1", "1.2.0", "P0"), make_sample("p0/mr/s1", "1.2.9")]
        samples += [make_sample(f"p{i}/ct/s1", f"1.2.{i}", f"P{i}") for i in range(1, 6)]
        for seed in range(20):
            train, val = split_by_patient(samples, validation_fraction=0.2, seed=seed)
            sides = {s.key: side for side, part in (("t", train), ("v", val)) for s in part}
            assert sides["p0/ct/s1"] == sides["p0/mr/s1"], f"seed {seed}"
            assert len({s.key.split("/")[0] for s in val}) == 1

    def test_names_equal_under_natural_sort_split_the_same_in_every_process(self):
        # "p1" and "p01" sort as equals; their order must not come from the set's hash order,
        # which differs per process (each torchrun rank, each --resume).
        script = (
            "from test_split import make_sample\n"
            "from sliceseg.dataset.split import split_by_patient\n"
            "samples = [make_sample(f'{p}/s1') for p in ('p1', 'p01', 'p2', 'p02', 'p3', 'p03')]\n"
            "print(sorted(s.key for s in split_by_patient(samples, validation_fraction=0.5)[1]))"
        )
        tests_dir = Path(__file__).parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), *sys.path])}
        outputs = {
            subprocess.run(
                [sys.executable, "-c", script],
                env={**env, "PYTHONHASHSEED": str(hash_seed)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for hash_seed in range(6)
        }
        assert outputs == {"['p02/s1', 'p2/s1', 'p3/s1']\n"}  # p01 p1 p02 p2 p03 p3

    def test_single_group_gives_empty_validation_with_warning(self):
        samples = [make_sample(f"s{i}", patient_id="P") for i in range(3)]
        with pytest.warns(
            UserWarning, match=r"one patient \(one PatientID\).*validation set is empty"
        ):
            train, val = split_by_patient(samples)
        assert len(train) == 3 and val == []

    def test_warning_never_names_the_patient(self):
        samples = [make_sample(f"s{i}", patient_id="DOE^JOHN-123") for i in range(2)]
        with pytest.warns(UserWarning) as caught:
            split_by_patient(samples)
        assert "DOE" not in str(caught[0].message)

    def test_bad_fraction(self):
        with pytest.raises(
            ConfigError, match=r"validation_fraction=1.0: expected a share in \[0, 1\)"
        ):
            split_by_patient([make_sample("a")], validation_fraction=1.0)


def level_sample(patient: str, z_mm: float | None) -> Sample:
    image = Slice(
        pixels=np.zeros((2, 2), np.float32),
        spacing_mm=(1.0, 1.0),
        spacing_source="PixelSpacing",
        source=Path(f"/data/{patient}/{z_mm}.dcm"),
        patient_id=patient,
        position_mm=z_mm,
    )
    return Sample(key=f"{patient}/z{z_mm}", image=image, label=np.zeros((2, 2), np.uint8))


def keys(samples: list[Sample]) -> list[str]:
    return [s.key for s in samples]


class TestRelativeLevels:
    def test_zero_at_a_patients_lowest_position_one_at_its_highest(self):
        samples = [level_sample("A", 10.0), level_sample("A", 20.0), level_sample("A", 50.0)]
        assert relative_levels(samples) == [0.0, 0.25, 1.0]

    def test_per_patient(self):
        samples = [level_sample(p, z) for p in ("A", "B") for z in (0.0, 5.0, 10.0)]
        samples.append(level_sample("B", 20.0))
        assert relative_levels(samples) == [0.0, 0.5, 1.0, 0.0, 0.25, 0.5, 1.0]

    def test_unknown_without_a_position_or_with_too_few_levels(self):
        samples = [level_sample("A", 1.0), level_sample("A", 2.0), level_sample("B", None)]
        assert relative_levels(samples) == [None, None, None]


class TestHoldOutLevels:
    # 21 slices 1 mm apart: levels k/20; the bands hold k = 3, 4 (0.15, 0.2), 10 (0.5),
    # 16, 17 (0.8, 0.85)
    HELD = frozenset({3, 4, 10, 16, 17})

    def test_validation_only_at_levels_training_does_not_show(self):
        train = [level_sample("A", float(k)) for k in range(21)] + [level_sample("C", 7.0)]
        val = [level_sample("B", float(k)) for k in range(21)] + [level_sample("D", 3.0)]
        kept_train, kept_val = hold_out_levels(train, val)
        assert keys(kept_val) == [f"B/z{float(k)}" for k in sorted(self.HELD)] + ["D/z3.0"]
        expected_train = [f"A/z{float(k)}" for k in range(21) if k not in self.HELD]
        assert keys(kept_train) == [*expected_train, "C/z7.0"]  # C: one level, kept whole
        patients = {s.image.patient_id for s in kept_train}
        assert patients.isdisjoint({s.image.patient_id for s in kept_val})

    def test_a_slice_without_position_of_a_patient_with_levels_leaves_validation(self):
        # B's slice without a position may show any level, one training saw among them; E has
        # no positions at all and stays whole
        train = [level_sample("A", float(k)) for k in range(21)]
        val = [level_sample("B", float(k)) for k in range(21)] + [level_sample("B", None)]
        val += [level_sample("E", None), level_sample("E", None)]
        _, kept_val = hold_out_levels(train, val)
        expected = [f"B/z{float(k)}" for k in sorted(self.HELD)] + ["E/zNone", "E/zNone"]
        assert keys(kept_val) == expected

    def test_without_validation_levels_in_a_band_the_patient_split_stays(self):
        train = [level_sample("A", float(k)) for k in range(21)]
        val = [level_sample("B", z) for z in (0.0, 1.0, 100.0)]  # levels 0, 0.01, 1
        assert hold_out_levels(train, val) == (train, val)

    def test_the_setting_is_checked(self):
        with pytest.raises(
            ConfigError,
            match=r"--validation-split \(validation_split\) must be one of patient, levels",
        ):
            TrainConfig(validation_split="slices")


def _held_out(validation: list[Sample], others: tuple[Sample, ...] = (), root: str = "scans"):
    """`held_out_series` with the names predict gives every series of the folder."""
    every = [*validation, *others]
    names = slices_series_names([s.image for s in every], [s.key for s in every], root_name=root)
    return held_out_series(validation, names)


class TestHeldOutSeries:
    def test_series_are_named_as_predict_names_them_in_natural_order(self):
        validation = [
            make_sample("p10/mr/s1", "1.2.10"),
            make_sample("p2/mr/s1", "1.2.2"),
            make_sample("p10/mr/s2", "1.2.10"),
            make_sample("p2/ct/s1", "1.2.3"),
        ]
        assert _held_out(validation) == (("p2_ct", 1), ("p2_mr", 1), ("p10_mr", 2))

    def test_two_series_of_one_folder_are_named_as_predict_names_them(self):
        """The held-out series is the second of its folder: ``p01_2`` in predict's tables,
        also when the first (``p01``) trains; the folder's own series by the folder's name."""
        first, second = make_sample("p01/a", "1.2.7"), make_sample("p01/b", "1.2.8")
        assert _held_out([second], (first,)) == (("p01_2", 1),)
        top = [make_sample("s1", "1.2.5"), make_sample("s2", "1.2.6")]
        assert _held_out(top[1:], (top[0],)) == (("scans_2", 1),)

    def test_text_counts_the_series_and_slices_and_names_the_first_few(self):
        series = [("sub01", 3), ("sub03", 1), ("sub04", 3)]
        assert held_out_text(series, shown=2) == (
            "3 series (7 slices): sub01 (3 slices), sub03 (1 slice) and 1 more"
        )
        assert held_out_text(series).endswith("sub04 (3 slices)")
        assert held_out_text([]) == "none (no series held out for validation)"
