"""The demo: phantom → train → predict the unseen subjects → areas against the known truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sliceseg.inference.evaluate import EvaluationResult, evaluate_model
from sliceseg.inference.folder import SegmentationRun, predict_folder
from sliceseg.io.files import atomic_path, prepare_output_dir
from sliceseg.measure.areas import AreaTable
from sliceseg.phantom.generate import generate_phantom
from sliceseg.training.config import TrainConfig
from sliceseg.training.loop import TrainResult, train
from sliceseg.training.progress import print_flush


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo produced."""

    training: TrainResult
    segmentation: SegmentationRun
    evaluation: EvaluationResult
    area_errors: pd.DataFrame


def compare_with_truth(areas: AreaTable, truth_csv: Path) -> pd.DataFrame:
    """Return, per ROI, the mean absolute area error (mm² and %) of measured areas against truth.

    Args:
        areas: areas measured on the phantom's test DICOMs (keys as in ``truth.csv``).
        truth_csv: the phantom's true areas (from its continuous shapes).

    Returns:
        One row per ROI: slices, mean true area, mean measured area, mean |error| mm² and %.
    """
    truth = pd.read_csv(truth_csv)
    measured = areas.long[["file", "roi", "area_mm2"]].rename(columns={"file": "key"})
    merged = truth.merge(measured, on=["key", "roi"], how="inner")
    merged = merged[merged["area_mm2_x"] > 0]
    merged["abs_error_mm2"] = (merged["area_mm2_y"] - merged["area_mm2_x"]).abs()
    merged["abs_error_pct"] = 100 * merged["abs_error_mm2"] / merged["area_mm2_x"]
    return merged.groupby("roi_name", sort=False).agg(
        slices=("key", "count"),
        true_area_mm2=("area_mm2_x", "mean"),
        measured_area_mm2=("area_mm2_y", "mean"),
        mean_abs_error_mm2=("abs_error_mm2", "mean"),
        mean_abs_error_pct=("abs_error_pct", "mean"),
    )


def run_demo(
    out_dir: Path | str,
    *,
    minutes: float = 6.0,
    overwrite: bool = False,
    log: Callable[[str], None] = print_flush,
) -> DemoResult:
    """Generate a phantom, train the default model, segment the test subjects, and compare.

    Args:
        out_dir: folder for everything (phantom/, model/, predictions/, evaluation/).
        minutes: training budget in wall-clock minutes.
        overwrite: allow a non-empty ``out_dir``.
        log: where lines go.

    Returns:
        The training, segmentation and evaluation results and the area errors per ROI.

    Example:
        >>> result = run_demo("demo_output", minutes=3)
    """
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    log("1/4 Generating the phantom (16 training + 4 test subjects × 10 slices) ...")
    phantom = generate_phantom(out / "phantom", seed=0, overwrite=True)
    log(f"2/4 Training the default model for up to {minutes:g} minutes ...")
    config = TrainConfig(
        data_dir=str(phantom.train_dir),
        out_dir=str(out / "model"),
        epochs=400,
        max_minutes=minutes,
        print_checkpoint=10,
        save_checkpoint=50,
        roi_names=tuple(phantom.roi_names),
        overwrite=True,
    )
    training = train(config, log=log)
    log("3/4 Segmenting the unseen test subjects ...")
    run = predict_folder(
        training.best_model, phantom.test_dir / "dicoms", out / "predictions", overwrite=True
    )
    log(run.areas.to_text())
    errors = compare_with_truth(run.areas, phantom.truth_csv)
    with atomic_path(out / "predictions" / "area_errors.csv") as tmp:
        errors.to_csv(tmp)
    log("4/4 Evaluating against the manual labels ...")
    evaluation = evaluate_model(
        training.best_model, phantom.test_dir, out / "evaluation", overwrite=True
    )
    log("\nArea error against the phantom's true areas (test subjects):")
    log(errors.to_string(float_format=lambda v: f"{v:.2f}"))
    dice = evaluation.summary["dice_mean"]
    per_roi = ", ".join(f"{name} {value:.3f}" for name, value in dice.items())
    log(f"\nMean Dice on test subjects: {dice.mean():.3f} (per ROI: {per_roi})")
    log(f"Report: {run.report}")
    return DemoResult(training, run, evaluation, errors)
