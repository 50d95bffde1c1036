"""The demo: phantom → train → predict the unseen subjects → areas against the known truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.inference.area_bias import area_bias_table, format_area_bias, without_area_calibration
from sliceseg.inference.evaluate import EvaluationResult, evaluate_model
from sliceseg.inference.folder import SegmentationRun, predict_folder
from sliceseg.inference.predict import predict_slices
from sliceseg.io.files import atomic_path
from sliceseg.io.output_folders import prepare_output_dir
from sliceseg.io.tables import write_csv
from sliceseg.measure.areas import AreaTable, measure_areas
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.phantom.generate import generate_phantom
from sliceseg.postprocess.cleanup import PostProcessing
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
    area_bias: pd.DataFrame | None = None


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


def area_bias_on_test(
    run: SegmentationRun, model: Bundle | Path | str, truth_csv: Path
) -> pd.DataFrame:
    """Per ROI, the mean signed area error (%) of the segmented slices against the phantom's
    true areas: with the plain argmax and with the model's area calibration (chosen on
    validation, never on these slices), both with its clean-up steps.

    Args:
        run: ``predict_folder``'s result with ``model`` (the calibrated areas).
        model: the model it ran.
        truth_csv: the phantom's true areas (``truth.csv``; keys as the run's slice keys).

    Returns:
        One row per ROI (`sliceseg.inference.area_bias.AREA_BIAS_COLUMNS`).
    """
    bundle = as_bundle(model)
    images, keys = [p.image for p in run.predictions], [p.key for p in run.predictions]
    plain = measure_areas(
        predict_slices(without_area_calibration(bundle), images), images, bundle.roi_names,
        names=keys,
    )  # fmt: skip
    truth = pd.read_csv(truth_csv)
    truth = truth[truth["key"].isin(keys)]
    return area_bias_table(
        {(str(k), int(r)): float(a) for k, r, a in truth[["key", "roi", "area_mm2"]].values},
        _areas_by_key(plain),
        _areas_by_key(run.areas),
        roi_names=bundle.roi_names,
        calibration=PostProcessing.from_dict(bundle.metadata.postprocessing or {}).calibration,
    )


def _areas_by_key(areas: AreaTable) -> dict[tuple[str, int], float]:
    long = areas.long[["file", "roi", "area_mm2"]]
    return {(str(k), int(r)): float(a) for k, r, a in long.values}


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

    Raises:
        ConfigError: ``minutes`` is not more than 0, or ``out_dir`` is in use.

    Example:
        >>> result = run_demo("demo_output", minutes=3)
    """
    if not minutes > 0:  # NaN too; said before the phantom is generated
        raise ConfigError(f"--minutes must be more than 0, got {minutes:g} (default 6).")
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
        write_csv(errors, tmp)
    log("4/4 Evaluating against the manual labels ...")
    evaluation = evaluate_model(
        training.best_model, phantom.test_dir, out / "evaluation", overwrite=True
    )
    log("\nArea error against the phantom's true areas (test subjects):")
    log(errors.to_string(float_format=lambda v: f"{v:.2f}"))
    bias = area_bias_on_test(run, training.best_model, phantom.truth_csv)
    with atomic_path(out / "predictions" / "area_bias.csv") as tmp:
        write_csv(bias, tmp)
    log("\nArea bias per ROI on the test subjects (mean signed error against the true areas):")
    log("plain argmax vs the area calibration chosen on validation (never on these slices)")
    log(format_area_bias(bias))
    dice = evaluation.summary["dice_mean"]
    per_roi = ", ".join(f"{name} {value:.3f}" for name, value in dice.items())
    log(f"\nMean Dice on test subjects: {dice.mean():.3f} (per ROI: {per_roi})")
    log(f"Report: {run.report}")
    return DemoResult(training, run, evaluation, errors, bias)
