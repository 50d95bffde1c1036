"""Evaluation metrics on label maps and areas: Dice, IoU, HD95 in mm, Bland–Altman, ICC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from sliceseg.errors import ConfigError, LabelError

_ICC_KINDS: tuple[str, ...] = ("3,1", "2,1")


def _to_numpy(labels: Any) -> np.ndarray:
    if hasattr(labels, "detach"):  # a torch tensor, possibly on a GPU
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels)


def confusion_counts(
    pred: Any, target: Any, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return true-positive, false-positive and false-negative pixel counts of ROIs 1..K.

    Args:
        pred: predicted label map(s), (H, W) or (B, H, W), ints 0..C-1; numpy or torch.
        target: reference label map(s) of the same shape.
        num_classes: C = K + 1 (background included).

    Returns:
        ``(tp, fp, fn)``, each (K,) int64, pooled over all pixels given.

    Raises:
        ConfigError: ``num_classes < 2``.
        LabelError: shapes differ, or a value lies outside 0..C-1.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 (background + 1 ROI), got {num_classes}.")
    pred_np, target_np = _to_numpy(pred), _to_numpy(target)
    if pred_np.shape != target_np.shape:
        raise LabelError(
            f"prediction {pred_np.shape} and reference {target_np.shape} label maps differ in "
            "shape; compare them on the same grid."
        )
    pred_np, target_np = pred_np.astype(np.int64).ravel(), target_np.astype(np.int64).ravel()
    for name, values in (("prediction", pred_np), ("reference", target_np)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise LabelError(
                f"{name} label values span {values.min()}..{values.max()}; expected "
                f"0..{num_classes - 1} for {num_classes} classes."
            )
    matrix = np.bincount(target_np * num_classes + pred_np, minlength=num_classes**2)
    matrix = matrix.reshape(num_classes, num_classes)  # rows: reference, columns: prediction
    tp = np.diag(matrix)
    fp, fn = matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp
    return tp[1:], fp[1:], fn[1:]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    present = denominator > 0
    out[present] = numerator[present] / denominator[present]
    return out


def dice_per_class(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """Return the Dice coefficient of each ROI 1..K: ``2 TP / (2 TP + FP + FN)``.

    Args:
        pred: predicted label map(s), (H, W) or (B, H, W), ints 0..C-1; numpy or torch. A batch
            is pooled (one Dice over all its pixels).
        target: reference label map(s) of the same shape.
        num_classes: C = K + 1 (background included).

    Returns:
        (K,) float64; nan where the ROI is absent from both.

    Raises:
        ConfigError: ``num_classes < 2``.
        LabelError: shapes differ, or values outside 0..C-1.

    Example:
        >>> a = np.zeros((20, 20), int); a[0:10, 0:10] = 1
        >>> b = np.zeros((20, 20), int); b[0:10, 0:12] = 1
        >>> float(dice_per_class(a, b, 2)[0])  # 200 / 220
        0.9090909090909091
    """
    return dice_from_counts(*confusion_counts(pred, target, num_classes))


def dice_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Return ``2 TP / (2 TP + FP + FN)`` per ROI from pixel counts (e.g. summed over batches).

    Args:
        tp: true-positive counts per ROI, as from `confusion_counts`.
        fp: false-positive counts, same shape.
        fn: false-negative counts, same shape.

    Returns:
        float64 Dice per ROI; nan where all three counts are 0 (ROI absent from both).

    Example:
        >>> dice_from_counts(np.array([100]), np.array([20]), np.array([0])).tolist()
        [0.9090909090909091]
    """
    tp = np.asarray(tp, dtype=np.float64)
    return _ratio(2.0 * tp, 2.0 * tp + np.asarray(fp) + np.asarray(fn))


def iou_per_class(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """Return the intersection over union (Jaccard) of each ROI 1..K: ``TP / (TP + FP + FN)``.

    Args, Returns and Raises as ``dice_per_class``.
    """
    tp, fp, fn = confusion_counts(pred, target, num_classes)
    return _ratio(tp.astype(np.float64), (tp + fp + fn).astype(np.float64))


def _surface(mask: np.ndarray) -> np.ndarray:
    # Pixels of the mask with a 4-neighbour outside it (the image border counts as outside).
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95_mm(
    pred_mask: np.ndarray, true_mask: np.ndarray, spacing_mm: tuple[float, float]
) -> float:
    """Return the 95th-percentile symmetric Hausdorff distance between two masks' boundaries.

    Distances are Euclidean in mm using the pixel spacing (``distance_transform_edt`` with
    ``sampling=spacing_mm``) between boundary pixels. As in MONAI's
    ``compute_hausdorff_distance(percentile=95)``, the result is the larger of the two
    directed 95th percentiles (MedPy's ``hd95`` takes the 95th percentile of both directions
    pooled, which can be smaller).

    An ROI missed entirely is counted, not dropped: when exactly one mask is empty the
    distance is ``inf``; when both are empty it is nan (nothing to compare).

    Args:
        pred_mask: (H, W) bool, the predicted ROI.
        true_mask: (H, W) bool, the reference ROI.
        spacing_mm: (row, col) spacing from (0028,0030) PixelSpacing, row first.

    Returns:
        Distance in mm; nan when both empty; inf when exactly one is empty.

    Raises:
        ConfigError: a spacing is not > 0.
        LabelError: the masks differ in shape or are not 2D.

    Example:
        >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
        >>> hausdorff95_mm(a, np.roll(a, 2, axis=1), (0.5, 0.5))
        1.0
    """
    pred, true = np.asarray(pred_mask, bool), np.asarray(true_mask, bool)
    if pred.shape != true.shape or pred.ndim != 2:
        raise LabelError(f"masks must be 2D and equal in shape, got {pred.shape} and {true.shape}.")
    spacing = tuple(float(s) for s in spacing_mm)
    if len(spacing) != 2 or not all(s > 0 for s in spacing):
        raise ConfigError(f"spacing_mm must be two values > 0 (row, col), got {spacing_mm!r}.")
    has_pred, has_true = pred.any(), true.any()
    if not has_pred and not has_true:
        return float("nan")
    if has_pred != has_true:
        return float("inf")
    pred_surface, true_surface = _surface(pred), _surface(true)
    to_true = ndimage.distance_transform_edt(~true_surface, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)
    forward = np.percentile(to_true[pred_surface], 95)
    backward = np.percentile(to_pred[true_surface], 95)
    return float(max(forward, backward))


@dataclass(frozen=True)
class BlandAltman:
    """Bland–Altman agreement of paired measurements; differences are auto − manual.

    Attributes:
        bias: mean difference.
        sd: standard deviation of the differences (ddof = 1).
        lower_loa: lower 95% limit of agreement, ``bias − 1.96 sd``.
        upper_loa: upper 95% limit of agreement, ``bias + 1.96 sd``.
        n: number of pairs used.
    """

    bias: float
    sd: float
    lower_loa: float
    upper_loa: float
    n: int


def _paired(auto: Any, manual: Any) -> tuple[np.ndarray, np.ndarray]:
    a, m = np.asarray(auto, np.float64).ravel(), np.asarray(manual, np.float64).ravel()
    if a.shape != m.shape:
        raise ConfigError(
            f"paired measurements differ in length ({a.size} auto, {m.size} manual); "
            "give one automatic and one manual value per slice."
        )
    keep = np.isfinite(a) & np.isfinite(m)
    return a[keep], m[keep]


def bland_altman(auto: Any, manual: Any) -> BlandAltman:
    """Return the Bland–Altman bias and 95% limits of agreement of ``auto`` vs ``manual``.

    Pairs with a non-finite value are dropped. With one pair the bias is its difference and
    the spread is nan; with none, everything is nan.

    Args:
        auto: automatic measurements, e.g. areas in mm², (n,).
        manual: manual measurements, (n,).

    Returns:
        ``BlandAltman`` with differences ``auto − manual``.

    Raises:
        ConfigError: the two differ in length.

    Example:
        >>> bland_altman([11.0, 12.0, 13.0], [10.0, 10.0, 10.0]).bias
        2.0
    """
    a, m = _paired(auto, manual)
    diff = a - m
    n = int(diff.size)
    bias = float(diff.mean()) if n else float("nan")
    sd = float(diff.std(ddof=1)) if n >= 2 else float("nan")
    return BlandAltman(
        bias=bias, sd=sd, lower_loa=bias - 1.96 * sd, upper_loa=bias + 1.96 * sd, n=n
    )


def icc_from_ratings(ratings: Any, *, kind: str = "3,1") -> float:
    """Return the intraclass correlation of an (n targets × k raters) table.

    Two-way ANOVA (Shrout & Fleiss 1979; McGraw & Wong 1996) with BMS the between-targets,
    JMS the between-raters and EMS the residual mean square:

    - "3,1": two-way mixed, consistency, single measures: ``(BMS − EMS) / (BMS + (k−1) EMS)``;
    - "2,1": two-way random, absolute agreement, single measures:
      ``(BMS − EMS) / (BMS + (k−1) EMS + k (JMS − EMS) / n)``.

    Args:
        ratings: (n, k) with n ≥ 2 targets and k ≥ 2 raters; rows with a non-finite value are
            dropped.
        kind: "3,1" or "2,1".

    Returns:
        The ICC; nan with fewer than 2 targets or no variance at all.

    Raises:
        ConfigError: unknown ``kind``, or not an (n, k ≥ 2) table.
    """
    if kind not in _ICC_KINDS:
        raise ConfigError(f"ICC kind {kind!r} is unknown; use one of {', '.join(_ICC_KINDS)}.")
    table = np.asarray(ratings, np.float64)
    if table.ndim != 2 or table.shape[1] < 2:
        raise ConfigError(f"ratings must be (targets, raters >= 2), got shape {table.shape}.")
    table = table[np.isfinite(table).all(axis=1)]
    n, k = table.shape
    if n < 2:
        return float("nan")
    grand = table.mean()
    ss_rows = k * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((table - grand) ** 2).sum() - ss_rows - ss_cols
    bms, jms = ss_rows / (n - 1), ss_cols / (k - 1)
    ems = ss_error / ((n - 1) * (k - 1))
    denominator = bms + (k - 1) * ems
    if kind == "2,1":
        denominator += k * (jms - ems) / n
    return float((bms - ems) / denominator) if denominator > 0 else float("nan")


def icc(auto: Any, manual: Any, *, kind: str = "3,1") -> float:
    """Return the ICC of paired automatic and manual measurements (two raters).

    Args:
        auto: automatic measurements, (n,).
        manual: manual measurements, (n,).
        kind: "3,1" (consistency, two-way mixed, single measures; the default) or "2,1"
            (absolute agreement, two-way random, single measures).

    Returns:
        The ICC; nan with fewer than 2 finite pairs.

    Raises:
        ConfigError: lengths differ or unknown ``kind``.

    Example:
        >>> round(icc([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]), 3)  # a constant offset: consistent
        1.0
    """
    a, m = _paired(auto, manual)
    return icc_from_ratings(np.stack([a, m], axis=1), kind=kind)
