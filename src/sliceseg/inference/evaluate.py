"""Evaluate a model on labelled slices: overlap, surface distance, and agreement of areas."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sliceseg.data.pairing import DataSource
from sliceseg.data.samples import load_samples
from sliceseg.errors import ConfigError
from sliceseg.inference.predict import predict_slices
from sliceseg.io.files import atomic_path, prepare_output_dir
from sliceseg.measure.areas import area_mm2
from sliceseg.measure.metrics import (
    bland_altman,
    dice_per_class,
    hausdorff95_mm,
    icc,
    iou_per_class,
)
from sliceseg.models.bundle import Bundle, load_bundle
from sliceseg.report.plots import plot_bland_altman

ICC_KIND = "3,1"


@dataclass(frozen=True)
class EvaluationResult:
    """Per-slice metrics, the per-ROI summary and the files written.

    Attributes:
        per_slice: one row per slice and ROI (dice, iou, hd95_mm, areas and their error).
        summary: one row per ROI: mean Dice / IoU, HD95, area error, Bland–Altman, ICC(3,1).
        files: the CSV and PNG files written.
    """

    per_slice: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]

    def to_text(self) -> str:
        """Return the summary as aligned text."""
        columns = [
            "dice_mean",
            "iou_mean",
            "hd95_mm_median",
            "area_error_pct_mean_abs",
            "ba_bias_mm2",
            "ba_loa_low_mm2",
            "ba_loa_high_mm2",
            "icc_3_1",
            "missed",
        ]
        shown = self.summary[columns].copy()
        return "Evaluation per ROI\n" + shown.to_string(float_format=lambda v: f"{v:.3f}")


def _slice_rows(key, label, truth, spacing, roi_names) -> list[dict[str, object]]:
    num_classes = len(roi_names) + 1
    dice = dice_per_class(label, truth, num_classes)
    iou = iou_per_class(label, truth, num_classes)
    rows = []
    for roi, name in enumerate(roi_names, 1):
        pred_mask, true_mask = label == roi, truth == roi
        auto, manual = area_mm2(pred_mask, spacing), area_mm2(true_mask, spacing)
        rows.append(
            {
                "key": key,
                "roi": roi,
                "roi_name": name,
                "dice": float(dice[roi - 1]),
                "iou": float(iou[roi - 1]),
                "hd95_mm": float(hausdorff95_mm(pred_mask, true_mask, spacing)),
                "area_manual_mm2": manual,
                "area_auto_mm2": auto,
                "area_error_mm2": auto - manual,
                "area_error_pct": 100.0 * (auto - manual) / manual if manual > 0 else np.nan,
                "missed": bool(true_mask.any() and not pred_mask.any()),
            }
        )
    return rows


def _summarise(per_slice: pd.DataFrame, roi_names) -> pd.DataFrame:
    rows = []
    for name in roi_names:
        part = per_slice[per_slice["roi_name"] == name]
        present = part[part["area_manual_mm2"] > 0]
        finite_hd = part["hd95_mm"][np.isfinite(part["hd95_mm"])]
        agreement = bland_altman(
            present["area_auto_mm2"].to_numpy(), present["area_manual_mm2"].to_numpy()
        )
        rows.append(
            {
                "roi_name": name,
                "slices": len(present),
                "dice_mean": part["dice"].mean(),
                "dice_std": part["dice"].std(),
                "iou_mean": part["iou"].mean(),
                "hd95_mm_median": finite_hd.median() if len(finite_hd) else np.nan,
                "area_manual_mm2_mean": present["area_manual_mm2"].mean(),
                "area_auto_mm2_mean": present["area_auto_mm2"].mean(),
                "area_error_pct_mean_abs": present["area_error_pct"].abs().mean(),
                "ba_bias_mm2": agreement.bias,
                "ba_loa_low_mm2": agreement.lower_loa,
                "ba_loa_high_mm2": agreement.upper_loa,
                "icc_3_1": icc(
                    present["area_auto_mm2"].to_numpy(),
                    present["area_manual_mm2"].to_numpy(),
                    kind=ICC_KIND,
                )
                if len(present) >= 2
                else np.nan,
                "missed": int(part["missed"].sum()),
            }
        )
    return pd.DataFrame(rows).set_index("roi_name")


def evaluate_model(
    model: Bundle | Path | str,
    data_dir: Path | str | None,
    out_dir: Path | str,
    *,
    images_dir: Path | str | None = None,
    labels_dir: Path | str | None = None,
    device: str = "auto",
    tta: bool = False,
    overwrite: bool = False,
    unlabelled_slices: str = "skip",
) -> EvaluationResult:
    """Compare a model's segmentations with manual labels at each slice's native resolution.

    Dice and IoU per slice and ROI; the 95% Hausdorff distance in mm (an ROI missed entirely
    gives an infinite distance and is counted in ``missed``, not dropped); area error in mm²
    and %; per ROI the Bland–Altman bias and 95% limits of agreement (auto − manual) and the
    intraclass correlation ICC(3,1) (two-way mixed, consistency, single measures).

    Writes ``evaluation_per_slice.csv``, ``evaluation_summary.csv`` and ``bland_altman.png``.

    Raises:
        ConfigError: the data's number of ROIs differs from the model's, or the output is in use.
        SlicesegError: the data is unfit (see ``sliceseg check``).

    Example:
        >>> result = evaluate_model("model/sliceseg_best.pt", "phantom/test", "evaluation/")
        >>> result.summary["dice_mean"]
    """
    bundle = model if isinstance(model, Bundle) else load_bundle(model)
    samples, _report = load_samples(
        DataSource.from_dirs(
            data_dir,
            images_dir=images_dir,
            labels_dir=labels_dir,
            unlabelled_slices=unlabelled_slices,
        )
    )
    num_labels = max(int(s.label.max()) for s in samples)
    if num_labels > bundle.metadata.num_labels:
        raise ConfigError(
            f"the labels hold ROI values up to {num_labels} but the model segments "
            f"{bundle.metadata.num_labels} ROIs; evaluate on data labelled like the training data."
        )
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    show = sys.stderr.isatty()
    predicted = predict_slices(
        bundle, [s.image for s in samples], device=device, tta=tta, progress=show
    )
    rows = []
    for sample, label in zip(samples, predicted, strict=True):
        spacing = sample.image.spacing_mm or (1.0, 1.0)
        rows.extend(_slice_rows(sample.key, label, sample.label, spacing, bundle.roi_names))
    per_slice = pd.DataFrame(rows)
    summary = _summarise(per_slice, bundle.roi_names)
    files = [
        out / "evaluation_per_slice.csv",
        out / "evaluation_summary.csv",
        out / "bland_altman.png",
    ]
    with atomic_path(files[0]) as tmp:
        per_slice.to_csv(tmp, index=False)
    with atomic_path(files[1]) as tmp:
        summary.to_csv(tmp)
    plot_bland_altman(
        per_slice["area_auto_mm2"].to_numpy(),
        per_slice["area_manual_mm2"].to_numpy(),
        title="Automatic vs manual area (mm²), all ROIs",
        path=files[2],
        groups=per_slice["roi_name"].to_numpy(),
    )
    return EvaluationResult(per_slice=per_slice, summary=summary, files=files)
