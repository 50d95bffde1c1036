"""Tests for sliceseg.training.run_data: the data of one run as training sees it."""

from __future__ import annotations

from pathlib import Path

import pydicom

from conftest import add_pair, square_label, tiny_config
from sliceseg.dataset.samples import load_samples
from sliceseg.dataset.split import split_by_patient
from sliceseg.model_space.intensity import PER_SLICE_NAME
from sliceseg.training.run_data import load_training_data


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
