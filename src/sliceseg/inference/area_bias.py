"""What the area calibration does on slices it was not chosen on: per ROI, the mean signed area
error of a model's predictions with its calibration and with the plain argmax.

The calibration is chosen on validation slices; its honest test is unseen slices with known
areas (the phantom demo's test subjects, the real-MR benchmark's test scanners). Both
predictions keep the model's per-ROI clean-up steps; only the argmax differs.

Example:
    >>> bundle = load_bundle("model/sliceseg_best.pt")
    >>> plain = predict_slices(without_area_calibration(bundle), images)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sliceseg.models.bundle import Bundle
from sliceseg.postprocess.calibration import MIN_AREA_MM2, AreaCalibration
from sliceseg.postprocess.cleanup import PostProcessing

__all__ = ["AREA_BIAS_COLUMNS", "area_bias_table", "format_area_bias", "without_area_calibration"]

AREA_BIAS_COLUMNS = ("slices", "plain_bias_pct", "calibrated_bias_pct", "background_weight")
"""The columns of :func:`area_bias_table`, one row per ROI (indexed by name)."""


def without_area_calibration(bundle: Bundle) -> Bundle:
    """Return ``bundle`` with its area calibration removed (its clean-up steps kept): a model
    that predicts with the plain argmax."""
    post = PostProcessing.from_dict(bundle.metadata.postprocessing or {})
    plain = dataclasses.replace(post, calibration=AreaCalibration())
    metadata = dataclasses.replace(bundle.metadata, postprocessing=plain.to_dict())
    return dataclasses.replace(bundle, metadata=metadata)


def area_bias_table(
    true_mm2: Mapping[tuple[str, int], float],
    plain_mm2: Mapping[tuple[str, int], float],
    calibrated_mm2: Mapping[tuple[str, int], float],
    *,
    roi_names: Sequence[str],
    calibration: AreaCalibration | None = None,
) -> pd.DataFrame:
    """Per ROI, the mean signed area error (%) of the plain and the calibrated predictions.

    Args:
        true_mm2: (slice key, ROI value) → true area; slices and ROIs under
            :data:`~sliceseg.postprocess.calibration.MIN_AREA_MM2` are left out, as in the choice.
        plain_mm2: the same keys → area predicted with the plain argmax (0 when missing).
        calibrated_mm2: the same keys → area predicted with the model's calibration.
        roi_names: names of ROIs 1..K (the table's index).
        calibration: the model's, to show each ROI's background weight.

    Returns:
        One row per ROI with :data:`AREA_BIAS_COLUMNS` (nan where never measured).

    Example:
        >>> table = area_bias_table({("s1", 1): 100.0}, {("s1", 1): 104.0},
        ...                         {("s1", 1): 101.0}, roi_names=["disc"])
        >>> table.loc["disc", ["plain_bias_pct", "calibrated_bias_pct"]].tolist()
        [4.0, 1.0]
    """
    rows = []
    for roi, name in enumerate(roi_names, start=1):
        keys = [k for k, v in true_mm2.items() if k[1] == roi and v >= MIN_AREA_MM2]
        plain = [100 * (plain_mm2.get(k, 0.0) - true_mm2[k]) / true_mm2[k] for k in keys]
        calibrated = [100 * (calibrated_mm2.get(k, 0.0) - true_mm2[k]) / true_mm2[k] for k in keys]
        weight = np.exp(calibration.log_weight_of(roi)) if calibration else float("nan")
        rows.append((name, len(keys), _mean(plain), _mean(calibrated), weight))
    return pd.DataFrame(rows, columns=["roi_name", *AREA_BIAS_COLUMNS]).set_index("roi_name")


def format_area_bias(table: pd.DataFrame) -> str:
    """The table as aligned text: ROI, slices, plain → calibrated bias, background weight."""
    width = max([3, *(len(str(name)) for name in table.index)])
    lines = [
        f"{'ROI':<{width}} {'slices':>6} {'plain argmax':>13} {'calibrated':>11} {'weight':>7}"
    ]
    for name, row in table.iterrows():
        lines.append(
            f"{name!s:<{width}} {int(row['slices']):>6} {row['plain_bias_pct']:>+12.1f}% "
            f"{row['calibrated_bias_pct']:>+10.1f}% {row['background_weight']:>6.2f}×"
        )
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
