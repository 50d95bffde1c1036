"""Tests of the modality check: a series of another modality than the model's training slices,
or CT whose values are not HU, is flagged as unlike the training data (sliceseg.measure.modality,
its use in sliceseg.inference.familiarity, and the Modality stored by training)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import copy_series
from sliceseg.cli import main
from sliceseg.inference.familiarity import (
    NO_MODALITY_NOTE,
    NO_TRAINING_MODALITY_NOTE,
    FamiliarityWarning,
    check_series,
    modality_check,
)
from sliceseg.inference.folder import predict_folder
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_folder import read_series
from sliceseg.measure.modality import modality_reason
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle, save_bundle

MR_ON_CT = "its Modality is MR but the model was trained on CT: its areas are not trustworthy"
CT_ON_MR = "its Modality is CT but the model was trained on MR: its areas are not trustworthy"


def _slices(pixels: np.ndarray, modality: str, n: int = 3) -> list[Slice]:
    return [
        Slice(
            pixels.astype(np.float32),
            (1.0, 1.0),
            "PixelSpacing",
            Path(f"{k}.dcm"),
            modality=modality,
        )
        for k in range(n)
    ]


def _ct_in_hu() -> np.ndarray:
    """Air around a body of fat and muscle, in HU."""
    image = np.full((40, 40), -1000.0)
    image[5:35, 5:35] = -100.0
    image[10:30, 10:30] = 50.0
    return image


class TestModalityReason:
    def test_mr_on_a_ct_model_is_named(self):
        assert modality_reason(_slices(_ct_in_hu() + 1000, "MR"), ("CT",), expects_hu=True) == (
            MR_ON_CT
        )

    def test_ct_on_an_mr_model_is_named(self):
        assert modality_reason(_slices(_ct_in_hu(), "CT"), ("MR",), expects_hu=False) == CT_ON_MR

    def test_the_same_modality_is_not_flagged(self):
        assert modality_reason(_slices(_ct_in_hu(), "CT"), ("CT",), expects_hu=True) is None
        assert modality_reason(_slices(_ct_in_hu() + 1000, "MR"), ("MR",), expects_hu=False) is None
        # an MR model on MR exported as "OT": both not CT
        assert modality_reason(_slices(_ct_in_hu() + 1000, "OT"), ("MR",), expects_hu=False) is None

    def test_ct_whose_rescale_was_lost_is_not_hu(self):
        raw = _ct_in_hu() + 1024  # stored values: RescaleIntercept −1024 not applied
        reason = modality_reason(_slices(raw, "CT"), ("CT",), expects_hu=True)
        assert reason == (
            "3 of its 3 CT slices are not in Hounsfield units (lowest value 24; air is -1000 "
            "HU, fat about -100 HU) but the model was trained on CT in HU (RescaleSlope/"
            "Intercept lost?): its areas are not trustworthy"
        )

    def test_a_field_of_view_inside_the_body_is_hu(self):
        inside = _ct_in_hu()[10:30, 3:37]  # no air: fat (−100) and muscle (50) only
        assert modality_reason(_slices(inside, "CT"), ("CT",), expects_hu=True) is None

    def test_unknown_training_modality_compares_none(self):
        mr = _slices(_ct_in_hu() + 1000, "MR")
        assert modality_reason(mr, None, expects_hu=True) is None
        # a CT-normalised file from before still checks that CT is in HU
        raw = _slices(_ct_in_hu() + 1024, "CT")
        assert modality_reason(raw, None, expects_hu=True) is not None


def _with(bundle: Bundle, path: Path, **changes: object) -> Path:
    data = {**bundle.metadata.to_dict(), **changes}
    return save_bundle(path, bundle.model, ModelMetadata.from_dict(data))


@pytest.fixture(scope="module")
def relabelled(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom's (MR) test subject, and a copy of it whose Modality says CT."""
    root = tmp_path_factory.mktemp("modality") / "scans"
    (subject,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
    shutil.copytree(subject, root / "original")
    copy_series(subject, root / "relabelled", lambda ds: setattr(ds, "Modality", "CT"))
    return root


def test_training_stores_the_modality(tiny_model: Path):
    assert load_bundle(tiny_model).metadata.modalities == ("MR",)  # the phantom is MR


def test_a_relabelled_series_is_flagged_and_left_out(
    tiny_model: Path, relabelled: Path, tmp_path: Path
):
    run = predict_folder(tiny_model, relabelled, tmp_path / "out")
    assert [v.is_flagged for v in run.familiarity] == [False, True]
    assert run.warnings[0] == (
        f"series relabelled is unlike the training data: {CT_ON_MR}; its areas are left out "
        "of the overall mean and std (unless every series is unlike the training data: then "
        "those are over all of them)."
    )
    long = pd.read_csv(tmp_path / "out" / "csa_long.csv")
    marks = long.groupby(long["file"].str.startswith("relabelled"))["unlike_training"].max()
    assert marks.to_dict() == {False: 0, True: 1}


def test_an_mr_series_on_a_ct_model_is_flagged(tiny_model: Path, relabelled: Path, tmp_path: Path):
    bundle = load_bundle(tiny_model)
    ct = load_bundle(
        _with(
            bundle,
            tmp_path / "ct.pt",
            normalisation="ct_dataset",
            intensity={"clip": [-200.0, 300.0], "mean": 40.0, "std": 80.0},
            modalities=["CT"],
        )
    )
    mr = read_series(relabelled / "original")
    labels = [np.zeros(s.pixels.shape, np.uint8) for s in mr]
    verdict = check_series(ct, mr, labels)
    assert verdict is not None and verdict.reasons[0] == MR_ON_CT
    # relabelled CT, but MR values: no air below −500 HU
    reason = modality_check(ct, read_series(relabelled / "relabelled"))
    assert reason is not None and reason.startswith("3 of its 3 CT slices are not in Hounsfield")


def test_an_old_model_file_predicts_as_before_and_says_once(
    tiny_model: Path, relabelled: Path, tmp_path: Path
):
    old = _with(load_bundle(tiny_model), tmp_path / "old.pt", modalities=None)
    new = predict_folder(tiny_model, relabelled / "original", tmp_path / "new")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        run = predict_folder(old, relabelled, tmp_path / "out")
    said = [str(w.message) for w in caught if issubclass(w.category, FamiliarityWarning)]
    assert said == [NO_MODALITY_NOTE]
    assert [v.is_flagged for v in run.familiarity] == [False, False]  # no Modality compared
    first = run.areas.per_slice.iloc[: len(new.areas.per_slice)].to_numpy()
    assert np.array_equal(first, new.areas.per_slice.to_numpy())


def test_a_cohort_says_once_that_it_cannot_check_the_modality(
    tiny_model: Path, relabelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    old = _with(load_bundle(tiny_model), tmp_path / "old.pt", modalities=None)
    argv = ["predict", str(old), str(relabelled), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu", "--visuals", "none", "--export", "none"]) == 0
    assert capsys.readouterr().err.count("no modality check in this model file") == 1


def test_a_cohort_names_the_relabelled_series_in_series_csv(
    tiny_model: Path, relabelled: Path, tmp_path: Path
):
    argv = ["predict", str(tiny_model), str(relabelled), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu", "--visuals", "none", "--export", "none"]) == 0
    series = pd.read_csv(tmp_path / "out" / "series.csv", keep_default_na=False)
    assert dict(zip(series["series"], series["unlike_training"], strict=True)) == {
        "original": "",
        "relabelled": CT_ON_MR,
    }


def test_reprofile_gives_an_old_file_its_training_modality(
    tiny_model: Path, tiny_phantom: Path, tmp_path: Path
):
    from sliceseg.training.reprofile import reprofile

    old = _with(load_bundle(tiny_model), tmp_path / "old.pt", modalities=None)
    done = reprofile(old, tiny_phantom / "train")
    assert load_bundle(done.path).metadata.modalities == ("MR",)


def test_info_names_the_training_modality_and_whether_it_is_checked(
    tiny_model: Path, tmp_path: Path
):
    """`sliceseg info` said nothing of the training slices' Modality: a reader could not tell
    whether a series of another modality would be flagged."""
    from sliceseg.engine.model_info import model_summary

    bundle = load_bundle(tiny_model)
    assert model_summary(bundle)["training modality"] == (
        "MR: a series of another modality is flagged"
    )
    rows = {
        name: model_summary(_with(bundle, tmp_path / f"{name}.pt", modalities=modalities))
        for name, modalities in (("old", None), ("blank", ()))
    }
    rows = {name: row["training modality"] for name, row in rows.items()}
    assert rows["old"].startswith("not recorded (an older model file): a series of another")
    assert rows["blank"].startswith("none: the training slices had no (0008,0060) Modality")


def test_a_model_trained_without_modality_says_once_it_cannot_check_it(
    tiny_model: Path, relabelled: Path, tmp_path: Path
):
    """Training slices without a Modality stored none, and predict said nothing: a series of
    another modality went unflagged without a word."""
    blank = _with(load_bundle(tiny_model), tmp_path / "blank.pt", modalities=())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        run = predict_folder(blank, relabelled, tmp_path / "out")
    said = [str(w.message) for w in caught if issubclass(w.category, FamiliarityWarning)]
    assert said == [NO_TRAINING_MODALITY_NOTE]
    assert [v.is_flagged for v in run.familiarity] == [False, False]
