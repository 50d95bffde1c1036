"""Evaluate a model on labelled slices: overlap, surface distance, and agreement of areas."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sliceseg.dataset.check import CheckReport, count_left_out
from sliceseg.dataset.context import context_pool
from sliceseg.dataset.left_out import LeftOutFiles, leave_out_unusable
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.problems import Problem
from sliceseg.dataset.samples import load_usable_samples
from sliceseg.dataset.source import DataSource
from sliceseg.errors import ConfigError, PairingError
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path
from sliceseg.io.output_folders import output_run
from sliceseg.io.roi_values import NOT_IN_SCHEME, LabelScheme
from sliceseg.io.series_plan import CohortPlan, plan_cohort
from sliceseg.io.tables import write_csv, write_failed
from sliceseg.measure.areas import area_mm2
from sliceseg.measure.metrics import (
    bland_altman,
    dice_per_class,
    hausdorff95_mm,
    icc,
    iou_per_class,
)
from sliceseg.measure.spacing import (
    SpacingFallback,
    pixels_beside_mm_message,
    with_fallback_spacing,
)
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.progress_bars import shows_progress
from sliceseg.report.plots import plot_bland_altman

_ICC_KIND = "3,1"
_NOT_EVALUATED = "not evaluated"  # how a note on a test file left out begins
_UNLABELLED_USE = (  # what evaluate does with a test DICOM without a label map
    f"{_NOT_EVALUATED}; a model trained with --context-slices reads them as neighbours"
)


@dataclass(frozen=True)
class EvaluationResult:
    """Per-slice metrics, the per-ROI summary and the files written.

    Attributes:
        per_slice: one row per slice and ROI (dice, iou, hd95_mm, areas and their error,
            ``missed`` and ``false_positive``).
        summary: one row per ROI: mean Dice / IoU, median finite HD95, area error,
            Bland–Altman, ICC(3,1), and the counts of slices ``missed`` (manual ROI, none
            predicted) and ``false_positive`` (ROI predicted, none in the manual labels).
            Two counts say what the means are over: ``slices``, those with a manual area (the
            area error, Bland–Altman and ICC), and ``dice_slices``, those with the ROI in
            either map (Dice and IoU: a false positive's 0 included).
        files: the CSV and PNG files written.
        notes: one line per test file left out (unreadable, unpaired, wrong shape, a value
            the model does not know), and
            warnings (e.g. too few areas for the Bland–Altman plot).
        unit: "mm", or "pixels" with ``--pixels`` (then the ``_mm`` / ``_mm2`` columns are
            named ``_px`` / ``_px2``).
    """

    per_slice: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    unit: str = "mm"

    @property
    def left_out(self) -> int:
        """Test files the notes say were left out (``not evaluated: ...``)."""
        return count_left_out(self.notes, _NOT_EVALUATED)

    def to_text(self) -> str:
        """Return the summary as aligned text."""
        columns = [
            "slices",
            "dice_slices",
            "dice_mean",
            "iou_mean",
            "hd95_mm_median",
            "area_error_pct_mean_abs",
            "ba_bias_mm2",
            "ba_loa_low_mm2",
            "ba_loa_high_mm2",
            "icc_3_1",
            "missed",
            "false_positive",
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
    source: DataSource,
    scheme: LabelScheme,
    *,
    model_name: str = "the model",
    fallback: SpacingFallback = SpacingFallback(),
) -> tuple[list[Sample], CheckReport]:
    """Read a labelled test set with the model's own label scheme, never a guessed one.

    Args:
        source: the test data (label maps or label volumes, as for training).
        scheme: the model's label values (`model_label_scheme`).
        model_name: the model file, named in messages.
        fallback: spacing for files without PixelSpacing; a slice it gives none is left out.

    Returns:
        ``(samples, report)``: the usable slices (labels 0..K), and the check's report with
        an error per problem that left files out (unreadable, unpaired, duplicated, on another
        grid, a value outside the model's scheme, no usable spacing: `leave_out_unusable`).

    Raises:
        PairingError: a folder does not exist.
    """
    given = dataclasses.replace(source, label_values=scheme.stored_values)
    samples, report = load_usable_samples(given, progress=shows_progress())
    problems = [_in_model_terms(p, scheme, model_name) for p in report.problems]
    report = dataclasses.replace(report, problems=problems)
    return leave_out_unusable(samples, report, fallback)


def _in_model_terms(problem: Problem, scheme: LabelScheme, model_name: str) -> Problem:
    """A label map's value outside the scheme, said as the model's: the scheme is its training
    data's, so the fix is to label the test set the same way, not to raise num_labels."""
    if problem.kind != "label_values" or NOT_IN_SCHEME not in problem.message:
        return problem
    found = problem.message.split(NOT_IN_SCHEME)[0]  # "<file>: values [9] in 16 pixels"
    message = (
        f"{found} are not in the label scheme of the model {model_name} ({scheme.describe()}, "
        "the values of its training data); label the test set the same way as the training set."
    )
    return dataclasses.replace(problem, message=message)


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
                "false_positive": bool(pred_mask.any() and not true_mask.any()),
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
                "dice_slices": int(part["dice"].notna().sum()),  # absent from both: no Dice
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
                    kind=_ICC_KIND,
                )
                if len(present) >= 2
                else np.nan,
                "missed": int(part["missed"].sum()),
                "false_positive": int(part["false_positive"].sum()),
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
    unlabelled_slices: str = "skip",
    log: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Compare a model's segmentations with manual labels at each slice's native resolution.

    The manual labels are read with the model's own label values (``label_values`` in the
    model file), never re-guessed from the test labels. Spacing is resolved as by ``predict``
    and ``measure``: each file's PixelSpacing, else ``fallback`` (``--fov`` / ``--matrix``, or
    ``--pixels``), else an error naming the file.

    Dice and IoU per slice and ROI; the 95% Hausdorff distance in mm (an ROI missed entirely
    gives an infinite distance and is counted in ``missed``, not dropped; an ROI drawn on a
    slice whose manual labels lack it likewise, in ``false_positive``); area error in mm²
    and %; per ROI the Bland–Altman bias and 95% limits of agreement (auto − manual) and the
    intraclass correlation ICC(3,1) (two-way mixed, consistency, single measures).

    The summary's ``slices`` counts the slices with a manual area (what the area error,
    Bland–Altman and ICC are over); ``dice_slices`` those with the ROI in either map (what
    ``dice_mean``, ``dice_std`` and ``iou_mean`` are over, false positives' Dice 0 included).

    Writes ``evaluation_per_slice.csv``, ``evaluation_summary.csv``, ``bland_altman.png``
    (the summary's pairs, each slice and ROI with a manual area; with fewer than 2 a note
    says it is not drawn) and ``failed.csv`` (the test files left out, one line each with
    why: unreadable, unpaired, on another grid, a value outside the model's label scheme, no
    usable spacing; the others are evaluated).

    Args:
        model: a loaded model, or the path of a model file.
        data_dir: the test folder (``dicoms/`` and ``labels/``), or None with both
            ``images_dir`` and ``labels_dir``.
        out_dir: where the CSVs and the plot go.
        images_dir: DICOM folder, when not ``data_dir/dicoms``.
        labels_dir: label folder, when not ``data_dir/labels``.
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        tta: average over small rotations and zooms (4× slower).
        fallback: spacing for files without PixelSpacing.
        overwrite: allow writing into a non-empty ``out_dir``.
        unlabelled_slices: slices a label volume leaves empty: "skip" or "background".
        log: called with each note as soon as it is known (the CLI prints them), so that a
            refusal after reading (mixed units, output folder in use) still shows them.

    Returns:
        An `EvaluationResult`: ``per_slice`` and ``summary`` DataFrames, the files written
        and the notes.

    Raises:
        ConfigError: slices in pixels (``--pixels``) beside slices in mm², the output is in
            use, or it lies in the DICOM or the label folder.
        PairingError: a folder is missing, or no test slice pairs with a readable label map.

    Example:
        >>> result = evaluate_model("model/sliceseg_best.pt", "phantom/test", "evaluation/")
        >>> result.summary["dice_mean"]
    """
    bundle = as_bundle(model)
    source = DataSource.from_dirs(
        data_dir,
        images_dir=images_dir,
        labels_dir=labels_dir,
        unlabelled_slices=unlabelled_slices,
    )
    source.refuse_output_inside(out_dir)
    samples, notes, failed, plan = _labelled_test_set(bundle, source, fallback=fallback, log=log)
    images = [with_fallback_spacing(sample.image, fallback) for sample in samples]  # all spaced
    spacings = [image.spacing_mm for image in images]  # the user's, where a file has none
    unit = _unit(images)
    k = bundle.metadata.context_slices  # a 2.5D model also reads the unlabelled neighbours
    pool = context_pool(samples, plan, k) if k else []
    with output_run(out_dir, overwrite=overwrite) as out:
        predicted = predict_slices(
            bundle,
            images,
            device=device,
            tta=tta,
            progress=shows_progress(),
            context_pool=pool,
        )
        per_slice = _per_slice_table(samples, predicted, spacings, bundle.roi_names)
        summary = _summarise(per_slice, bundle.roi_names)
        files, plot_notes = _write(out, per_slice, summary, unit)
        files.append(write_failed(failed, out))
    _tell(log, plot_notes)  # the notes of the reading went to it before
    rename = {c: _in_unit(c, unit) for c in [*per_slice.columns, *summary.columns]}
    return EvaluationResult(
        per_slice=per_slice.rename(columns=rename),
        summary=summary.rename(columns=rename),
        files=files,
        notes=[*notes, *plot_notes],
        unit=unit,
    )


def _labelled_test_set(
    bundle: Bundle,
    source: DataSource,
    *,
    fallback: SpacingFallback,
    log: Callable[[str], None] | None,
) -> tuple[list[Sample], list[str], pd.DataFrame, CohortPlan]:
    """The test slices read with the model's label scheme, the notes (given to ``log`` before
    any refusal), ``failed.csv``'s table of the files left out, and the DICOM folder's plan
    (one header pass: it names the series there and holds a 2.5D model's neighbours).

    Raises:
        PairingError: no slice is usable (`LeftOutFiles.refusal`: why, said once).
    """
    samples, report = load_test_samples(
        source,
        model_label_scheme(bundle),
        model_name=str(bundle.source or "in memory"),
        fallback=fallback,
    )
    left_out_files = LeftOutFiles(report, _NOT_EVALUATED, fallback, _UNLABELLED_USE)
    notes = left_out_files.lines
    _tell(log, notes)
    if not samples:
        raise PairingError(left_out_files.refusal("evaluate", source))
    plan = plan_cohort(source.images_dir, exclude=source.labels_dir)
    return samples, notes, left_out_files.failed_table(plan), plan


def _tell(log: Callable[[str], None] | None, notes: Sequence[str]) -> None:
    """Give each note to ``log``, if any."""
    if log is not None:
        for note in notes:
            log(note)


def _per_slice_table(
    samples: Sequence[Sample],
    predicted: Sequence[np.ndarray],
    spacings: Sequence[tuple[float, float] | None],
    roi_names: Sequence[str],
) -> pd.DataFrame:
    """One row per slice and ROI; a slice without spacing (``--pixels``) is measured in pixels."""
    rows = []
    for sample, label, spacing in zip(samples, predicted, spacings, strict=True):
        rows += _slice_rows(sample.key, label, sample.label, spacing or (1.0, 1.0), roi_names)
    return pd.DataFrame(rows)


def _unit(images: Sequence[Slice]) -> str:
    """ "mm", or "pixels" when no slice has a spacing (``--pixels``).

    Raises:
        ConfigError: some slices have a spacing and others not (names a file of each).
    """
    first: dict[bool, Slice] = {}
    for image in images:
        first.setdefault(image.spacing_mm is None, image)
    if len(first) > 1:
        raise ConfigError(pixels_beside_mm_message(first[True], first[False], slices="test slices"))
    return "pixels" if True in first else "mm"


def _write(
    out: Path, per_slice: pd.DataFrame, summary: pd.DataFrame, unit: str
) -> tuple[list[Path], list[str]]:
    """Write the tables and the Bland–Altman plot; return the files and a note on the plot.

    The plot draws the pairs of the summary's bias and limits: each slice and ROI with a
    manual area (an ROI absent from both maps is no measurement).
    """
    files = [
        out / "evaluation_per_slice.csv",
        out / "evaluation_summary.csv",
        out / "bland_altman.png",
    ]
    rename = {c: _in_unit(c, unit) for c in [*per_slice.columns, *summary.columns]}
    with atomic_path(files[0]) as tmp:
        write_csv(per_slice.rename(columns=rename), tmp, index=False)
    with atomic_path(files[1]) as tmp:
        write_csv(summary.rename(columns=rename), tmp)
    pairs = per_slice[per_slice["area_manual_mm2"] > 0]
    if len(pairs) < 2:
        files[2].unlink(missing_ok=True)  # an earlier run's (--overwrite) is not this one's
        return files[:2], [
            f"warning: {files[2].name} not drawn: a Bland–Altman plot needs at least 2 slices × "
            f"ROIs with a manual area, the test set has {len(pairs)}."
        ]
    plot_bland_altman(
        pairs["area_auto_mm2"].to_numpy(),
        pairs["area_manual_mm2"].to_numpy(),
        title=f"Automatic vs manual area ({'mm²' if unit == 'mm' else 'pixels'}), all ROIs",
        path=files[2],
        groups=pairs["roi_name"].to_numpy(),
    )
    return files, []
