"""Segment a folder of DICOMs and write label maps, overlays, animations, areas and the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sliceseg.engine.model_info import model_summary
from sliceseg.engine.predictor import PredictOptions
from sliceseg.errors import PairingError
from sliceseg.inference.confidence import ConfidenceCollector, measure_with_confidence
from sliceseg.inference.familiarity import (
    SeriesVerdict,
    always_present_rois,
    check_run,
    neighbour_spacing_line,
    unlike_line,
    warn_unchecked,
    with_familiarity,
)
from sliceseg.inference.outputs import overlay_path, write_outputs
from sliceseg.inference.predict import Prediction, predict_slices
from sliceseg.inference.records import RunSettings
from sliceseg.io.dicom import SkippedFile, Slice
from sliceseg.io.dicom_folder import DicomScan, scan_dicom_folder
from sliceseg.io.identity import (
    series_key,
    series_name_key,
    slice_key,
    slices_series_names,
    top_series_name,
    used_series_names,
)
from sliceseg.io.output_folders import output_run
from sliceseg.measure.areas import AreaTable
from sliceseg.measure.plausibility import area_warnings, sided_pairs_from_names
from sliceseg.measure.spacing import SpacingFallback, with_fallback_spacing
from sliceseg.measure.tissue import TissueSettings, check_muscle_rois
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.progress_bars import shows_progress
from sliceseg.report.exports import DEFAULT_EXPORTS, SeriesExport, parse_exports
from sliceseg.user_paths import user_path


@dataclass(frozen=True)
class SegmentationRun:
    """What ``predict_folder`` produced.

    Attributes:
        out_dir: the output folder.
        predictions: one per slice, in series order.
        areas: the area table (also saved as ``csa.csv`` / ``csa_long.csv``).
        skipped: files in the input folder that were not segmented, with the reason.
        animations: one GIF per series.
        report: the HTML report, or None when not asked for.
        warnings: plausibility warnings on the areas.
        exports: per series, the DICOM-SEG / NIfTI / .seg.nrrd files written under ``exports/``.
        familiarity: per series, whether it is unlike the training data (empty when the model
            file has no training profile); flagged series lead ``warnings``.
    """

    out_dir: Path
    predictions: list[Prediction] = field(repr=False)  # every slice's pixels: not for a repr
    areas: AreaTable
    skipped: list[SkippedFile]
    animations: list[Path]
    report: Path | None
    warnings: list[str]
    exports: list[SeriesExport] = field(default_factory=list)
    familiarity: list[SeriesVerdict] = field(default_factory=list)

    @property
    def overlays(self) -> list[Path]:
        """Each slice's overlay picture (``overlays/<key>.jpg``), in the order of ``predictions``.

        Example:
            >>> Image(filename=str(run.overlays[0]))  # in a notebook
        """
        return [overlay_path(self.out_dir, p.key) for p in self.predictions]

    def describe(self) -> str:
        """What was segmented and where the tables and report are, then each file left out as
        ``sliceseg predict`` prints it (``skipped <file>: why``, the file named once).

        Example:
            >>> print(run.describe())  # in a notebook
            Segmented 40 slices into results (areas: results/csa.csv; report: results/report.html)
        """
        report = f"; report: {self.report}" if self.report else ""
        areas = self.out_dir / "csa.csv"
        done = (
            f"Segmented {len(self.predictions)} slices into {self.out_dir} (areas: {areas}{report})"
        )
        return "\n".join([done, *(f"skipped {s.describe()}" for s in self.skipped)])

    def warnings_text(self) -> str:
        """The warnings on the areas, one ``warning: ...`` line each as ``sliceseg predict``
        prints them (series unlike the training data first), or a line saying there are none."""
        if not self.warnings:
            return "No warnings on the areas."
        return "\n".join(f"warning: {warning}" for warning in self.warnings)


def predict_folder(
    model: Bundle | Path | str,
    dicom_dir: Path | str,
    out_dir: Path | str,
    *,
    roi_names: str | Sequence[str] | None = None,
    device: str = "auto",
    batch_size: int = 8,
    tta: bool = False,
    fallback: SpacingFallback = SpacingFallback(),
    tissue: TissueSettings = TissueSettings(),
    keep_patient_info: bool = False,
    overwrite: bool = False,
    report: bool = True,
    exports: str | Sequence[str] = DEFAULT_EXPORTS,
    progress: bool | None = None,
) -> SegmentationRun:
    """Segment every DICOM under a folder and write everything a user publishes from.

    Writes ``labels/<key>.png`` (pixel value = ROI number), ``overlays/<key>.jpg``,
    ``thumbnails/<key>.jpg``, ``segmentation.gif`` (one per series), ``csa.csv``,
    ``csa_long.csv`` (both with a ``confidence`` column, see `sliceseg.inference.confidence`),
    ``areas.png`` (``areas_<series>.png`` / ``segmentation_<series>.gif`` per series when there
    are several, named as the tables and exports name them), ``report.html`` and,
    per series, ``exports/<series>.nii.gz`` / ``.seg.nrrd`` / ``.seg.dcm`` (see ``exports``).

    Args:
        model: a loaded bundle or the path of a model file.
        dicom_dir: folder searched recursively; files are recognised as DICOM by content.
        out_dir: output folder; must be empty or new unless ``overwrite``.
        roi_names: names replacing the model's (their count must match).
        device: "auto", "cpu" or "cuda".
        batch_size: slices per forward pass.
        tta: test-time augmentation.
        fallback: spacing for files without PixelSpacing.
        tissue: CT thresholds of the muscle composition in ``csa_long.csv``.
        keep_patient_info: write PatientID / PatientName into ``csa_long.csv`` and the report;
            without it no output names the patient.
        overwrite: allow writing into a non-empty ``out_dir``.
        report: write ``report.html``.
        exports: formats written per series under ``exports/``: "seg" (``<series>.seg.dcm``,
            DICOM-SEG; it carries the patient module of its source images, as the standard
            requires), "nifti" (``<series>.nii.gz``), "nrrd" (``<series>.seg.nrrd``, 3D Slicer);
            default nifti and nrrd, which hold no patient data. A string is read as ``--export``
            reads it: ``"seg,nifti"``, ``"all"``, ``"none"``.
        progress: show progress bars (default: in a terminal or a Jupyter notebook).

    Returns:
        The predictions, the area table and the paths written.

    Raises:
        PairingError: the folder holds no readable DICOM.
        ConfigError: bad ``roi_names`` count, an unknown export format or
            ``tissue.muscle_rois`` name, missing spacing without fallback, output in use.
        BundleError: the model file is not a sliceseg model.

    Example:
        >>> run = predict_folder("model/sliceseg_best.pt", "scans/", "results/")
        >>> print(run.areas.to_text())
    """
    formats = parse_exports(exports)  # a bad name fails before any work, not after predicting
    show = shows_progress() if progress is None else progress
    predicting = PredictOptions(device=device, batch_size=batch_size, tta=tta, progress=show)
    bundle = as_bundle(model)
    if roi_names is not None:
        bundle = bundle.with_roi_names(roi_names)
    check_muscle_rois(tissue, bundle.roi_names)  # before any slice is predicted
    root = user_path(dicom_dir)
    scan, series_names = _scan_inputs(root, fallback, progress=show)
    measuring = RunSettings(
        tuple(bundle.roi_names),
        fallback=fallback,
        tissue=tissue,
        keep_patient_info=keep_patient_info,
    )
    with output_run(out_dir, overwrite=overwrite) as out:
        return _segment_into(
            out,
            bundle,
            scan,
            root,
            series_names,
            predicting=predicting,
            measuring=measuring,
            report=report,
            exports=formats,
        )


def _segment_into(
    out: Path,
    bundle: Bundle,
    scan: DicomScan,
    root: Path,
    series_names: Mapping[str, str],
    *,
    predicting: PredictOptions,
    measuring: RunSettings,
    report: bool,
    exports: Sequence[str],
) -> SegmentationRun:
    """Everything after the inputs are read: segment, measure, judge, write into ``out``
    (``series_names``: `_scan_inputs`' names, which the tables, warnings and files take)."""
    names = bundle.roi_names
    predictions, areas = _predict_and_measure(
        bundle, scan.slices, root, predicting=predicting, measuring=measuring
    )
    areas, verdicts = _check_familiarity(bundle, predictions, areas)
    series = list(used_series_names(scan.slices, series_names).values())  # of series 1, 2, ...
    unlike = [unlike_line(series[v.series - 1], v.verdict) for v in verdicts if v.is_flagged]
    warnings = _neighbour_lines(bundle, predictions, areas, series) + _area_warnings(areas, names)
    areas = areas.named(series)
    identified = scan.slices if measuring.keep_patient_info else []
    settings = _report_settings(bundle, root, predicting.tta, identified)
    animations, report_path, exported = write_outputs(
        out,
        predictions,
        areas,
        warnings,
        scan.skipped,
        roi_names=names,
        settings=settings if report else None,
        unlike_training=unlike,
        exports=exports,
        series_names=series_names,
        progress=predicting.progress,
    )
    found = (unlike + warnings, exported, verdicts)  # series unlike the training data first
    return SegmentationRun(
        out, predictions, areas, list(scan.skipped), animations, report_path, *found
    )


def _neighbour_lines(
    bundle: Bundle, predictions: Sequence[Prediction], areas: AreaTable, series: Sequence[str]
) -> list[str]:
    """A 2.5D model's warnings on series whose slice spacing is not its training one
    (``series``: the names of series 1, 2, ...)."""
    numbers = list(areas.series) or [1] * len(predictions)  # as _check_familiarity groups
    groups: dict[int, list[Prediction]] = {}
    for prediction, number in zip(predictions, numbers, strict=True):
        groups.setdefault(number, []).append(prediction)
    lines = []
    for number, members in groups.items():
        slices = [p.image for p in members]
        line = neighbour_spacing_line(series[number - 1], slices, bundle.metadata)
        lines += [line] if line else []
    return lines


def _area_warnings(areas: AreaTable, names: Sequence[str]) -> list[str]:
    pairs = sided_pairs_from_names(names)
    return area_warnings(areas.wide, roi_names=names, sided_pairs=pairs, series=areas.series)


def _check_familiarity(
    bundle: Bundle, predictions: Sequence[Prediction], areas: AreaTable
) -> tuple[AreaTable, list[SeriesVerdict]]:
    """Judge each series against the model's training profile and modality; mark the tables
    (unchanged for a model file without a profile; what it cannot check is said once)."""
    series = list(areas.series) or [1] * len(predictions)
    verdicts = check_run(
        bundle,
        [p.image for p in predictions],
        [p.label for p in predictions],
        [p.key for p in predictions],
        series,
    )
    warn_unchecked(bundle)
    if verdicts is None:
        return areas, []
    return with_familiarity(areas, verdicts), verdicts


def _scan_inputs(
    root: Path, fallback: SpacingFallback, *, progress: bool
) -> tuple[DicomScan, dict[str, str]]:
    """Read the folder, its series in the order of their names, and name them (per
    `series_key`: `_series_names`); fail on no DICOM or on missing spacing before any work is
    done.

    A slice without PixelSpacing takes the user's ``--fov`` / ``--matrix`` spacing as its own,
    so that resampling to the model's spacing, areas and exports all use it.
    """
    scan = scan_dicom_folder(root, progress=progress)
    if not scan.slices:
        raise PairingError(
            f"{root}: no readable DICOM files found"
            + (f" ({len(scan.skipped)} other files skipped)" if scan.skipped else "")
            + "; point to the folder holding the .dcm slices."
        )
    slices = [with_fallback_spacing(image, fallback) for image in scan.slices]
    names = _series_names(slices, root)
    # series in the order of their names, as a cohort takes them (`plan_cohort`): read in
    # SeriesInstanceUID order, sub05 could come before sub04
    slices.sort(key=lambda image: series_name_key(names[series_key(image)]))  # stable: within too
    return DicomScan(slices=slices, skipped=scan.skipped), names


def _series_names(slices: Sequence[Slice], root: Path) -> dict[str, str]:
    """Per `series_key`, the series' name as ``sliceseg predict`` (`plan_cohort`) gives it:
    series that share a folder take ``_2``, ``_3``, ... in the order of their files' paths,
    not of their SeriesInstanceUIDs (the order the slices are read in)."""
    keys = [slice_key(image, root) for image in slices]
    return slices_series_names(slices, keys, root_name=top_series_name(root))  # "." too


def _predict_and_measure(
    bundle: Bundle,
    images: Sequence[Slice],
    root: Path,
    *,
    predicting: PredictOptions,
    measuring: RunSettings,
) -> tuple[list[Prediction], AreaTable]:
    """Segment the slices and measure them; the table carries each slice's confidence."""
    confidence = ConfidenceCollector(always_present_rois(bundle))
    labels = predict_slices(
        bundle,
        images,
        on_probabilities=confidence,
        device=predicting.device,
        batch_size=predicting.batch_size,
        tta=predicting.tta,
        progress=predicting.progress,
    )
    predictions = [
        Prediction(image=image, label=label, key=slice_key(image, root))
        for image, label in zip(images, labels, strict=True)
    ]
    keys = [p.key for p in predictions]
    areas = measure_with_confidence(labels, images, keys, measuring, confidence.per_roi)
    return predictions, areas


def _report_settings(
    bundle: Bundle, root: Path, tta: bool, identified: Sequence[Slice]
) -> dict[str, object]:
    patients = sorted({f"{s.patient_name} ({s.patient_id})" for s in identified})
    return {
        **({"patients": "; ".join(patients)} if patients else {}),
        **model_summary(bundle),
        "input folder": str(root),
        "test-time augmentation": "yes" if tta else "no",
    }
