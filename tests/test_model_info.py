"""Tests for sliceseg.engine.model_info and ``sliceseg info MODEL``: what a model file holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sliceseg.cli import main
from sliceseg.engine.model_info import model_summary
from sliceseg.models import build_model
from sliceseg.models.bundle import save_bundle
from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
from sliceseg.postprocess.cleanup import PostProcessing
from test_predict import metadata


def small_unet():
    return build_model("unet", num_classes=2, input_size=32, depth=3)


def saved_model(tmp_path):
    post = PostProcessing(
        steps={1: ("largest_component",)}, calibration=AreaCalibration(2.0, 3.0, 0.2, 4.0, 2.5)
    )
    meta = metadata(
        input_size=96,
        hyperparameters={"depth": 3},
        target_spacing_mm=(0.5, 0.8),
        postprocessing=post.to_dict(),
        epoch=42,
    )
    return save_bundle(tmp_path / "m.pt", small_unet(), meta)


def test_info_prints_spacing_post_processing_and_calibration(tmp_path, capsys):
    path = saved_model(tmp_path)
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"model file: {path}"
    assert "trained epochs: 42" in lines
    assert "model grid: 96×96" in lines
    assert "target spacing: 0.5 × 0.8 mm (row × column)" in lines
    assert "neighbouring slices: none: each slice alone (2D)" in lines
    assert "weights: as trained at the epoch saved" in lines
    # named as the ROIs line and the calibration name them, not "ROI 1"
    assert "post-processing (chosen on validation): a: largest_component" in lines
    expected = "background ×7.39 (validation area bias +3.0 → +0.2 %)"
    assert f"area calibration (chosen on validation): {expected}" in lines
    assert main(["info", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows["area calibration (chosen on validation)"] == expected
    assert rows["ROIs"] == "a"


def test_an_older_model_file_says_its_validation_series_are_not_recorded(tmp_path, capsys):
    assert main(["info", str(saved_model(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "validation series (held out): not recorded (an older model file)" in lines


class TestBestModelEpochs:
    """`sliceseg info` on a ``_best.pt`` gave its epoch only, not of how many it was the best."""

    def best_model(self, tmp_path, **changes):
        settings = {"model_filename": "run"}
        meta = metadata(hyperparameters={"depth": 3}, epoch=7, settings=settings, **changes)
        return save_bundle(tmp_path / "run_best.pt", small_unet(), meta)

    def write_settings(self, tmp_path, best_epoch):
        end = {"epochs_completed": 20, "ended_by": "planned epochs: 20 of 20"}
        settings = {**end, "best_val_dice": 0.8614, "best_epoch": best_epoch}
        (tmp_path / "run_settings.json").write_text(json.dumps(settings))

    def test_the_run_s_end_the_file_records(self, tmp_path):
        end = {"epochs_completed": 20, "ended_by": "planned epochs: 20 of 20",
               "best_val_dice": 0.8614}  # fmt: skip
        path = self.best_model(tmp_path, run_end=end)
        assert model_summary(path)["trained epochs"] == (
            "7: the best by validation Dice (0.861) of the 20 epochs the run trained "
            "(it ended by planned epochs: 20 of 20)"
        )

    def test_an_older_best_model_reads_the_settings_file_beside_it(self, tmp_path):
        path = self.best_model(tmp_path)
        self.write_settings(tmp_path, best_epoch=7)
        assert model_summary(path)["trained epochs"] == (
            "7: the best by validation Dice (0.861) of the 20 epochs the run trained "
            "(it ended by planned epochs: 20 of 20; from run_settings.json beside it)"
        )

    @pytest.mark.parametrize("settings_epoch", [None, 5])  # none beside it; another run's best
    def test_a_best_model_of_a_run_not_ended_says_best_so_far(self, tmp_path, settings_epoch):
        path = self.best_model(tmp_path)
        if settings_epoch is not None:
            self.write_settings(tmp_path, best_epoch=settings_epoch)
        assert model_summary(path)["trained epochs"] == (
            "7: the best so far at epoch 7 (the run had not ended when it was written, or its "
            "settings file is not beside it: how many epochs it trained is not recorded)"
        )

    @pytest.mark.parametrize(
        ("end", "found"),
        [
            ({"epochs_completed": None, "ended_by": None, "best_val_dice": None},
             "run_end's epochs_completed is None, not a whole number of epochs"),
            ({"epochs_completed": 20, "ended_by": None, "best_val_dice": "high"},
             "run_end's best_val_dice is 'high', not a number or null (nothing validated)"),
            ({"epochs_completed": 20, "ended_by": 3, "best_val_dice": None},
             "run_end's ended_by is 3, not text or null"),
        ],
    )  # fmt: skip
    def test_a_hand_edited_run_end_is_refused_in_one_line_naming_the_field(
        self, tmp_path, capsys, end, found
    ):
        """A run_end with nulls made `sliceseg info` report a bug (int(None) in its text)."""
        path = self.best_model(tmp_path, run_end=end)
        assert main(["info", str(path)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: {path}: the model's metadata is incomplete or malformed (ValueError: "
            f"{found}); the file is damaged or was edited."
        ]

    def test_a_hand_edited_settings_file_beside_it_is_not_read(self, tmp_path):
        path = self.best_model(tmp_path)
        settings = {"epochs_completed": None, "best_val_dice": 0.8614, "best_epoch": 7}
        (tmp_path / "run_settings.json").write_text(json.dumps(settings))
        assert model_summary(path)["trained epochs"] == (
            "7: the best so far at epoch 7 (the run had not ended when it was written, or its "
            "settings file is not beside it: how many epochs it trained is not recorded)"
        )


def test_info_prints_each_roi_s_bias_before_and_after(tmp_path, capsys):
    calibration = AreaCalibration(
        per_roi={
            1: RoiCalibration(0.0, -0.4, -0.4),
            2: RoiCalibration(2.0, 46.7, -2.5, held_out_before_pct=40.0, held_out_after_pct=1.0),
        }
    )
    meta = metadata(
        num_classes=3,
        roi_names=("disc", "psoas"),
        hyperparameters={"depth": 3},
        postprocessing=PostProcessing(calibration=calibration).to_dict(),
    )
    model = build_model("unet", num_classes=3, input_size=32, depth=3)
    path = save_bundle(tmp_path / "m.pt", model, meta)
    assert main(["info", str(path)]) == 0
    expected = (
        "area calibration (chosen on validation): disc: area bias -0.4 → -0.4 % (unchanged); "
        "psoas: area bias +46.7 → -2.5 % (background ×7.39; held-out half +40.0 → +1.0 %)"
    )
    assert expected in capsys.readouterr().out.splitlines()


def test_an_older_model_file_says_it_has_no_spacing_or_calibration(tmp_path, capsys):
    old = metadata(hyperparameters={"depth": 3})
    path = save_bundle(tmp_path / "old.pt", small_unet(), old)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "target spacing: none: slices squeezed onto the square model grid" in out
    assert "area calibration (chosen on validation): none" in out


def test_a_missing_model_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'nope.pt'}: model file not found; give the path of a .pt "
        "from training."
    ]


def test_a_training_folder_given_as_the_model_names_its_best_model(tmp_path, capsys):
    """``sliceseg info model/`` said "model file not found" of a folder that exists."""
    path = save_bundle(tmp_path / "model" / "sliceseg_best.pt", small_unet(), metadata())
    assert main(["info", str(path.parent)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path.parent}: a folder, not a model file; give its model file, e.g. {path}."
    ]
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: a folder, not a model file; it holds no .pt file; give the path "
        "of a .pt from training."
    )


def test_a_folder_given_as_the_model_never_offers_a_cut_off_write(tmp_path, capsys):
    """A killed run's temporary file (``.sliceseg-tmp.sliceseg_4.<owner>.pt``, cut off) was
    offered as one of the folder's model files to give instead."""
    (tmp_path / "sliceseg_3.pt").write_bytes(b"")
    (tmp_path / ".sliceseg-tmp.sliceseg_4.node7-42~k2j3.pt").write_bytes(b"")
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: a folder, not a model file; give one of its model files "
        "(sliceseg_3.pt)."
    )


def test_a_folder_of_many_models_names_five_and_counts_the_rest(tmp_path, capsys):
    """It ended the list with ", ...", where every other list says "and 2 more" (`few_of`)."""
    for epoch in range(1, 8):
        (tmp_path / f"sliceseg_{epoch}.pt").write_bytes(b"")
    assert main(["info", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}: a folder, not a model file; give one of its model files "
        "(sliceseg_1.pt, sliceseg_2.pt, sliceseg_3.pt, sliceseg_4.pt, sliceseg_5.pt and 2 more)."
    )


def test_info_names_a_moving_average_of_the_weights(tmp_path, capsys):
    meta = metadata(hyperparameters={"depth": 3}, settings={"ema_decay": 0.998})
    path = save_bundle(tmp_path / "m.pt", small_unet(), meta)
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "weights: moving average over the training steps (decay 0.998 per step)" in lines


def test_an_epoch_checkpoint_without_a_profile_points_to_the_best_model(tmp_path, capsys):
    """sliceseg_100.pt of today's run read 'an older model file: sliceseg reprofile adds it';
    training stores the profile in the best model only."""
    meta = metadata(hyperparameters={"depth": 3}, settings={"model_filename": "spine"})
    path = save_bundle(tmp_path / "spine_100.pt", small_unet(), meta, training_state={"epoch": 1})
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "training data profile: none: series are not checked against the training data (an "
        "epoch checkpoint: training stores the profile in spine_best.pt only; predict with that "
        "file, or 'sliceseg reprofile MODEL TRAIN_DIR' adds it)" in lines
    )
    weights_only = save_bundle(tmp_path / "old.pt", small_unet(), meta)
    assert "an older model file" in model_summary(weights_only)["training data profile"]


def ct_model(tmp_path, **settings):
    """A model file of a CT run with ``normalisation`` auto: the dataset's HU numbers stored
    (`normalisation: ct_dataset`, `intensity`), as tests/test_intensity.py builds one."""
    meta = metadata(
        hyperparameters={"depth": 3},
        input_size=32,
        target_spacing_mm=(0.8, 0.8),
        normalisation="ct_dataset",
        intensity={"clip": [-200.0, 250.0], "mean": 40.0, "std": 20.0},
        settings={
            "normalisation": "auto",
            "loss": "dice_ce",
            "learning_rate": 0.003,
            "epochs": 50,
            "max_minutes": 30,
            "view": "wide",
            "target_spacing_mm": None,
            "ema_decay": 0.998,
            **settings,
        },
    )
    return save_bundle(tmp_path / "ct.pt", small_unet(), meta)


@pytest.mark.parametrize(
    ("epochs", "minutes", "expected"),
    [
        (1, 1, "1 epoch, or fewer within a time budget of 1 minute"),
        (1, None, "1 epoch, no time budget"),
        (2, 0.5, "2 epochs, or fewer within a time budget of 0.5 minutes"),
    ],
)
def test_info_counts_one_epoch_and_one_minute_in_the_singular(
    tmp_path, capsys, epochs, minutes, expected
):
    """`sliceseg info` printed "1 epochs" and "1 minutes"."""
    path = ct_model(tmp_path, epochs=epochs, max_minutes=minutes)
    assert main(["info", str(path)]) == 0
    assert f"planned training: {expected}" in capsys.readouterr().out.splitlines()


def test_info_shows_a_ct_models_hu_numbers_and_its_training(tmp_path, capsys):
    path = ct_model(tmp_path)
    assert main(["info", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "intensity normalisation: CT: HU clipped to [-200, 250], minus 40, divided by 20 (the "
        "training foreground's 0.5–99.5 percentiles, mean and std); normalisation auto: every "
        "training slice was CT" in lines
    )
    assert "loss: dice_ce" in lines
    assert "learning rate: 0.003 at the start, decaying to 0 over the planned training" in lines
    assert "planned training: 50 epochs, or fewer within a time budget of 30 minutes" in lines
    expected_view = "view: wide: coarser where needed, so that one crop shows most of a slice"
    assert expected_view in lines
    assert "weights: moving average over the training steps (decay 0.998 per step)" in lines
    fine_tuned = model_summary(ct_model(tmp_path, init_from="base.pt", target_spacing_mm=0.8))
    assert fine_tuned["intensity normalisation"].endswith(
        "; taken from the model it was fine-tuned from"
    )
    assert fine_tuned["view"] == "wide (no effect: target_spacing_mm was set)"
    assert fine_tuned["started from"] == "base.pt (as given; not recorded (an older model file))"


def test_info_shows_an_mr_models_per_slice_z_score(tmp_path):
    settings = {"normalisation": "auto", "epochs": None, "max_minutes": 20, "view": "auto"}
    meta = metadata(hyperparameters={"depth": 3}, target_spacing_mm=(1.0, 1.0), settings=settings)
    rows = model_summary(save_bundle(tmp_path / "mr.pt", small_unet(), meta))
    assert rows["intensity normalisation"] == (
        "per-slice z-score: each slice clipped to its own 0.5–99.5 percentiles, minus its mean, "
        "divided by its std; normalisation auto: not every training slice was CT"
    )
    assert rows["planned training"] == (
        "until a time budget of 20 minutes (no epoch count; the learning rate decays over it)"
    )
    assert rows["view"].startswith("auto: wide where a crop at the training slices' median")


def test_an_older_model_file_says_predict_z_scores_each_slice(tmp_path):
    """Files from before the normalisation setting store no settings of it and no intensity
    numbers; predict z-scores their every slice, a CT's too (`model_preparation`)."""
    spaced = metadata(hyperparameters={"depth": 3}, target_spacing_mm=(1.0, 1.0))
    for old in (spaced, metadata(hyperparameters={"depth": 3})):  # and a square-grid file
        rows = model_summary(save_bundle(tmp_path / "old.pt", small_unet(), old))
        assert rows["intensity normalisation"] == (
            "per-slice z-score: each slice clipped to its own 0.5–99.5 percentiles, minus its "
            "mean, divided by its std; a model file from before the normalisation setting: "
            "predict z-scores every slice, a CT's too"
        )
        assert rows["loss"] == rows["planned training"] == "not recorded (an older model file)"
        assert rows["learning rate"] == "not recorded (an older model file)"
    assert rows["view"] == "none: an older square-grid model file"


@pytest.mark.filterwarnings("ignore:no familiarity check")
def test_the_report_s_model_section_shows_the_normalisation(tmp_path):
    from conftest import write_ct_dicom
    from sliceseg.inference.folder import predict_folder

    scans = tmp_path / "scans"
    scans.mkdir()
    stored = np.full((40, 40), 24, dtype=np.uint16)  # air: -1000 HU
    stored[10:30, 10:30] = 1064  # soft tissue: 40 HU
    write_ct_dicom(scans / "a.dcm", stored, intercept=-1024)
    predict_folder(ct_model(tmp_path), scans, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    settings = html.split('id="settings"')[1].split("</table>")[0]
    assert (
        "<tr><th>intensity normalisation</th><td>CT: HU clipped to [-200, 250], minus 40, "
        "divided by 20" in settings
    )
    assert "<tr><th>planned training</th><td>50 epochs, or fewer within" in settings
