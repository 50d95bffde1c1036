"""Tests for sliceseg.models.model_info and ``sliceseg info MODEL``: what a model file holds."""

from __future__ import annotations

import json

from sliceseg.cli import main
from sliceseg.models import build_model
from sliceseg.models.bundle import save_bundle
from sliceseg.models.model_info import model_summary
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
