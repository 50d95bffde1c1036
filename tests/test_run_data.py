"""Tests for sliceseg.training.run_data: the data of one run as training sees it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pydicom

from conftest import add_pair, square_label, tiny_config
from sliceseg.cli import main
from sliceseg.dataset.problems import Problem
from sliceseg.dataset.samples import check_dataset, load_samples
from sliceseg.dataset.source import DataSource
from sliceseg.dataset.split import split_by_patient
from sliceseg.io.series_plan import plan_cohort
from sliceseg.model_space.intensity import PER_SLICE_NAME
from sliceseg.training.run_data import SHOWN_WARNINGS, check_warning_lines, load_training_data
from test_binary_masks import phantom_copy, rewrite


def ct_and_mr_set(root: Path) -> None:
    """Five CT patients and one MR patient, one labelled slice each."""
    for i in range(6):
        add_pair(root, f"p{i}/s1", square_label(), patient_id=f"P{i}")
        if i < 5:
            path = root / "dicoms" / f"p{i}" / "s1.dcm"
            ds = pydicom.dcmread(path)
            ds.Modality = "CT"
            ds.save_as(path)


class TestLoadTrainingData:
    def test_auto_normalisation_is_ct_only_when_every_slice_of_the_set_is(self, tmp_path):
        ct_and_mr_set(tmp_path)
        samples, _ = load_samples(tmp_path)
        seed = next(
            seed
            for seed in range(50)
            if any(
                s.image.modality == "MR"
                for s in split_by_patient(samples, validation_fraction=0.2, seed=seed)[1]
            )
        )  # a split that puts the MR patient in validation: every training slice is CT
        config = tiny_config(tmp_path, tmp_path / "m", seed=seed, validation_fraction=0.2)
        data = load_training_data(config, None)
        assert {len(data.train), len(data.validation)} == {5, 1}
        assert data.normalisation.name == PER_SLICE_NAME

    def test_validation_series_are_named_as_predict_names_them(self, tmp_path):
        """An unlabelled series in p0/ whose file sorts first: `sliceseg predict` names it p0
        and the labelled one p0_2 (every series of the folder, `plan_cohort`), while training
        named only the labelled ones, so the validation series it recorded was p0."""
        for i in range(5):
            add_pair(tmp_path, f"p{i}/s1", square_label(), patient_id=f"P{i}")
        add_pair(tmp_path, "p0/a0", None, series_uid="1.2.99", patient_id="P0")
        samples, _ = load_samples(tmp_path)
        seed = next(
            seed
            for seed in range(50)
            if [s.key for s in split_by_patient(samples, validation_fraction=0.2, seed=seed)[1]]
            == ["p0/s1"]
        )
        config = tiny_config(tmp_path, tmp_path / "m", seed=seed, validation_fraction=0.2)
        data = load_training_data(config, None)
        planned = {s.name for s in plan_cohort(tmp_path / "dicoms").series}
        assert planned == {"p0", "p0_2", "p1", "p2", "p3", "p4"}
        assert data.validation_series == (("p0_2", 1),)


def train_one_epoch(data: Path, out: Path, capsys) -> list[str]:
    """Train one tiny epoch through the CLI; return the lines it printed."""
    argv = ["train", str(data), "--out", str(out), "--epochs", "1", "--input-shape", "64"]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def main_check_lines(data: Path, capsys) -> list[str]:
    """The lines `sliceseg check DATA` prints."""
    main(["check", str(data)])
    return capsys.readouterr().out.splitlines()


class TestCheckWarnings:
    """What `sliceseg check` warns about, train shows before its first epoch (and counts)."""

    def test_train_shows_a_binary_mask_warning_naming_its_file(
        self, tiny_phantom, tmp_path, capsys
    ):
        data = phantom_copy(tiny_phantom, tmp_path)
        rewrite(data, "sub01/sub01_s00", lambda label: label > 0)
        printed = train_one_epoch(data, tmp_path / "m", capsys)
        heading = "Data check: 1 warning(s); training goes on with the data as it is:"
        (warning,) = check_dataset(data).warnings
        line = f"  - [binary_mask] {warning.message} -- labels/sub01/sub01_s00.npy"
        assert printed[printed.index(heading) + 1] == line
        assert printed.index(line) < next(
            i for i, text in enumerate(printed) if text.startswith("Completed epochs: 1/1")
        )  # before the first epoch's line
        assert line in main_check_lines(data, capsys)  # the very line check prints
        settings = json.loads((tmp_path / "m" / "sliceseg_settings.json").read_text())
        assert settings["data_check_warnings"] == 1

    def test_the_untouched_phantom_shows_no_warning(self, tiny_phantom, tmp_path, capsys):
        printed = train_one_epoch(tiny_phantom / "train", tmp_path / "m", capsys)
        assert [line for line in printed if "Data check" in line or "- [" in line] == []
        settings = json.loads((tmp_path / "m" / "sliceseg_settings.json").read_text())
        assert settings["data_check_warnings"] == 0

    def test_past_the_first_ones_it_says_how_many_more_and_where_to_see_them(self, tiny_phantom):
        source = DataSource.from_dirs(tiny_phantom / "train")
        found = [Problem("warning", f"kind_{n}", f"finding {n}.") for n in range(12)]
        report = dataclasses.replace(check_dataset(source), problems=found)
        lines = check_warning_lines(report, source)
        assert lines[0] == "Data check: 12 warning(s); training goes on with the data as it is:"
        assert lines[1:-1] == tuple(f"  - [kind_{n}] finding {n}." for n in range(SHOWN_WARNINGS))
        assert lines[-1] == f"  (2 more; run `sliceseg check {tiny_phantom / 'train'}` for all)"
