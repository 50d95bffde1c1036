"""Evaluate a model on labelled slices: overlap, surface distance, and agreement of areas."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sliceseg.data.check import shape_mismatch
from sliceseg.data.samples import Pair, Sample, pair_files, resolve_data_dirs
from sliceseg.errors import ConfigError, DicomReadError, LabelError, PairingError
from sliceseg.inference.folder import slice_key
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import read_slices
from sliceseg.io.files import atomic_path, output_run
from sliceseg.io.labels import LabelScheme, read_label_file, snap_lossy
from sliceseg.measure.areas import SpacingFallback, area_mm2, resolve_spacing
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
        notes: one line per test file left out (unreadable, unpaired, wrong shape).
        unit: "mm", or "pixels" with ``--pixels`` (then the ``_mm`` / ``_mm2`` columns are
            named ``_px`` / ``_px2``).
    """

    per_slice: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    unit: str = "mm"

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
        shown = self.summary[[_in_unit(c, self.unit) for c in columns]].copy()
        return "Evaluation per ROI\n" + shown.to_string(float_format=lambda v: f"{v:.3f}")


def _in_unit(column: str, unit: str) -> str:
    """The column's name for the unit: ``hd95_mm`` → ``hd95_px`` in pixels."""
    return column if unit == "mm" else column.replace("_mm2", "_px2").replace("_mm", "_px")


def model_label_scheme(bundle: Bundle) -> LabelScheme:
    """Return the label values the model was trained with (``label_values`` in its file).

    A model file from before ``label_values`` was recorded means plain ROI numbers 0..K.

    Example:
        >>> model_label_scheme(load_bundle("model/sliceseg_best.pt")).stored_values
        (0, 1, 2, 3, 4, 5, 6)
    """
    meta = bundle.metadata
    values = tuple(meta.label_values) or tuple(range(meta.num_classes))
    return LabelScheme(values, is_display_scaled=values != tuple(range(len(values))))


def load_test_samples(
    images_dir: Path, labels_dir: Path, scheme: LabelScheme, *, model_name: str = "the model"
) -> tuple[list[Sample], list[str]]:
    """Pair and read a labelled test set with the model's own label scheme, never a guessed one.

    Args:
        images_dir: the test DICOMs.
        labels_dir: their label maps (paired by relative path without suffix).
        scheme: the model's label values (`model_label_scheme`).
        model_name: the model file, named in messages.

    Returns:
        ``(samples, notes)``: the usable slices (labels 0..K) and one line per file left out
        (unreadable, unpaired, duplicated, or on another grid).

    Raises:
        LabelError: a label map holds a value outside the model's scheme (the message names
            the file and the values).
        PairingError: a folder does not exist.
    """
    pairing = pair_files(images_dir, labels_dir)
    notes = [
        f"not evaluated: {path}: no label map of the same name"
        for path in (pairing.images_without_labels)
    ]
    notes += [
        f"not evaluated: {path}: no DICOM of the same name"
        for path in (pairing.labels_without_images)
    ]
    notes += [f"not evaluated: {item.path}: {item.reason}" for item in pairing.skipped]
    notes += [
        f"not evaluated: {', '.join(map(str, paths))}: several files share one name"
        for paths in pairing.duplicates
    ]
    samples: list[Sample] = []
    for pair in pairing.pairs:
        try:
            samples += _pair_samples(pair, images_dir, scheme, model_name)
        except (DicomReadError, PairingError) as error:
            notes.append(f"not evaluated: {error}")
    return samples, notes


def _pair_samples(
    pair: Pair, images_dir: Path, scheme: LabelScheme, model_name: str
) -> list[Sample]:
    slices = read_slices(pair.image_path)
    try:
        raw = read_label_file(pair.label_path)
    except LabelError as error:
        raise PairingError(str(error)) from error
    mismatch = shape_mismatch(slices[0].shape, len(slices), raw.values.shape)
    if mismatch:
        raise PairingError(f"{pair.label_path}: {mismatch}")
    values = snap_lossy(raw.values, scheme)[0] if raw.is_lossy else raw.values
    unknown = sorted(set(np.unique(values).tolist()) - set(scheme.stored_values))
    if unknown:
        raise LabelError(
            f"{pair.label_path}: label values {unknown[:8]} are not in the label scheme of "
            f"{model_name} ({scheme.describe()}, as in its training data); label the test set "
            "the same way as the training set."
        )
    classes = scheme.to_classes(values, source=pair.label_path)
    frames = classes if classes.ndim == 3 else classes[np.newaxis]
    return [
        Sample(key=slice_key(image, images_dir), image=image, label=label)
        for image, label in zip(slices, frames, strict=True)
    ]


def _slice_rows(
    key: str,
    label: np.ndarray,
    truth: np.ndarray,
    spacing: tuple[float, float],
    roi_names: Sequence[str],
) -> list[dict[str, object]]:
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


def _summarise(per_slice: pd.DataFrame, roi_names: Sequence[str]) -> pd.DataFrame:
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
    fallback: SpacingFallback = SpacingFallback(),
    overwrite: bool = False,
) -> EvaluationResult:
    """Compare a model's segmentations with manual labels at each slice's native resolution.

    The manual labels are read with the model's own label values (``label_values`` in the
    model file), never re-guessed from the test labels. Spacing is resolved as by ``predict``
    and ``measure``: each file's PixelSpacing, else ``fallback`` (``--fov`` / ``--matrix``, or
    ``--pixels``), else an error naming the file.

    Dice and IoU per slice and ROI; the 95% Hausdorff distance in mm (an ROI missed entirely
    gives an infinite distance and is counted in ``missed``, not dropped); area error in mm²
    and %; per ROI the Bland–Altman bias and 95% limits of agreement (auto − manual) and the
    intraclass correlation ICC(3,1) (two-way mixed, consistency, single measures).

    Writes ``evaluation_per_slice.csv``, ``evaluation_summary.csv`` and ``bland_altman.png``.

    Raises:
        LabelError: a test label holds a value outside the model's label scheme.
        ConfigError: a slice has no spacing and no fallback was given, or the output is in use.
        PairingError: a folder is missing, or no test slice pairs with a readable label map.

    Example:
        >>> result = evaluate_model("model/sliceseg_best.pt", "phantom/test", "evaluation/")
        >>> result.summary["dice_mean"]
    """
    bundle = model if isinstance(model, Bundle) else load_bundle(model)
    images, labels = resolve_data_dirs(data_dir, images_dir=images_dir, labels_dir=labels_dir)
    samples, notes = load_test_samples(
        images, labels, model_label_scheme(bundle), model_name=str(bundle.source or "the model")
    )
    if not samples:
        first = f"; first problem: {notes[0]}" if notes else ""
        raise PairingError(
            f"{labels}: no labelled test slice to evaluate (pairing is by relative path without "
            f"suffix with {images}){first}"
        )
    spacings = [resolve_spacing(sample.image, fallback)[0] for sample in samples]
    unit = _unit(spacings)
    with output_run(out_dir, overwrite=overwrite) as out:
        predicted = predict_slices(
            bundle, [s.image for s in samples], device=device, tta=tta, progress=sys.stderr.isatty()
        )
        rows = []
        for sample, label, spacing in zip(samples, predicted, spacings, strict=True):
            rows += _slice_rows(
                sample.key, label, sample.label, spacing or (1.0, 1.0), bundle.roi_names
            )
        per_slice = pd.DataFrame(rows)
        summary = _summarise(per_slice, bundle.roi_names)
        files = _write(out, per_slice, summary, unit)
    rename = {c: _in_unit(c, unit) for c in [*per_slice.columns, *summary.columns]}
    return EvaluationResult(
        per_slice=per_slice.rename(columns=rename),
        summary=summary.rename(columns=rename),
        files=files,
        notes=notes,
        unit=unit,
    )


def _unit(spacings: Sequence[tuple[float, float] | None]) -> str:
    kinds = {spacing is None for spacing in spacings}
    if len(kinds) > 1:
        raise ConfigError(
            "some test slices have a pixel spacing and others do not; give --fov / --matrix so "
            "every slice is measured in mm."
        )
    return "pixels" if kinds == {True} else "mm"


def _write(out: Path, per_slice: pd.DataFrame, summary: pd.DataFrame, unit: str) -> list[Path]:
    files = [
        out / "evaluation_per_slice.csv",
        out / "evaluation_summary.csv",
        out / "bland_altman.png",
    ]
    rename = {c: _in_unit(c, unit) for c in [*per_slice.columns, *summary.columns]}
    with atomic_path(files[0]) as tmp:
        per_slice.rename(columns=rename).to_csv(tmp, index=False)
    with atomic_path(files[1]) as tmp:
        summary.rename(columns=rename).to_csv(tmp)
    plot_bland_altman(
        per_slice["area_auto_mm2"].to_numpy(),
        per_slice["area_manual_mm2"].to_numpy(),
        title=f"Automatic vs manual area ({'mm²' if unit == 'mm' else 'pixels'}), all ROIs",
        path=files[2],
        groups=per_slice["roi_name"].to_numpy(),
    )
    return files
