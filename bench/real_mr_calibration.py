"""The real-MR benchmark's area-calibration check: per ROI, the mean signed area error on the test
slices of sliceseg's model with its area calibration and with the plain argmax.

The calibration is chosen on validation slices; the test scanners and levels are seen by neither
training nor validation, so this is its effect on slices it was not chosen on. Both predictions
keep the model's clean-up steps and are scored by ``real_mr_score`` on the native grids.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from real_mr_score import Score, score_folder
from sliceseg.inference.area_bias import area_bias_table, without_area_calibration
from sliceseg.models.bundle import load_bundle, save_bundle
from sliceseg.postprocess.cleanup import PostProcessing


def plain_model_copy(model: Path, out: Path) -> Path:
    """Write ``model`` without its area calibration (clean-up steps kept) to ``out``."""
    plain = without_area_calibration(load_bundle(model))
    return save_bundle(out, plain.model, plain.metadata)


def areas_by_key(score: Score) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """(true, predicted) area in mm² per (slice key, ROI) from a score's rows."""
    true = {(r["key"], r["roi"]): r["true_mm2"] for r in score.rows}
    pred = {(r["key"], r["roi"]): r["pred_mm2"] for r in score.rows}
    return true, pred


def bias_table(
    calibrated: Score, plain: Score, *, roi_names: Sequence[str], model: Path
) -> pd.DataFrame:
    """Per ROI: test slices, mean signed area error (%) plain and calibrated, and the weight."""
    true, calibrated_mm2 = areas_by_key(calibrated)
    _, plain_mm2 = areas_by_key(plain)
    post = load_bundle(model).metadata.postprocessing or {}
    return area_bias_table(
        true,
        plain_mm2,
        calibrated_mm2,
        roi_names=roi_names,
        calibration=PostProcessing.from_dict(post).calibration,
    )


def markdown(table: pd.DataFrame, shorts: Sequence[str]) -> str:
    """The table as markdown, under the heading the benchmark prints."""
    lines = [
        "Area bias on held-out slices (test scanners): plain argmax vs calibrated",
        "",
        "| ROI | slices | plain argmax (%) | calibrated (%) | background weight |",
        "|---|---|---|---|---|",
    ]
    for short, (_name, row) in zip(shorts, table.iterrows(), strict=True):
        lines.append(
            f"| {short} | {int(row['slices'])} | {row['plain_bias_pct']:+.2f} | "
            f"{row['calibrated_bias_pct']:+.2f} | ×{row['background_weight']:.2f} |"
        )
    return "\n".join(lines)


def check_calibration(
    model: Path,
    test_dir: Path,
    calibrated_labels: Path,
    work: Path,
    *,
    roi_names: Sequence[str],
    shorts: Sequence[str] | None = None,
    env: Mapping[str, str],
) -> str:
    """Predict the test slices with ``model`` minus its calibration, score both predictions,
    write ``<work>/area_bias.csv`` and ``.md``; return the markdown."""
    plain = plain_model_copy(model, work / "plain_argmax.pt")
    command = [sys.executable, "-m", "sliceseg", "predict", str(plain), str(test_dir / "dicoms")]
    command += ["--out", str(work / "pred_plain"), "--no-report"]
    subprocess.run(command, env=dict(env), check=True, capture_output=True, text=True)
    table = bias_table(
        score_folder(test_dir, calibrated_labels, num_rois=len(roi_names)),
        score_folder(test_dir, work / "pred_plain" / "labels", num_rois=len(roi_names)),
        roi_names=roi_names,
        model=model,
    )
    table.to_csv(work / "area_bias.csv")
    text = markdown(table, shorts or roi_names)
    (work / "area_bias.md").write_text(text + "\n")
    return text
