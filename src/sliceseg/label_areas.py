"""The ``sliceseg measure`` workflow: areas of existing label maps (hand-made or predicted) with
their DICOMs; no model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sliceseg.dataset.check import count_left_out
from sliceseg.dataset.left_out import LeftOutFiles, leave_out_unusable
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.samples import load_usable_samples
from sliceseg.dataset.source import DataSource
from sliceseg.errors import PairingError
from sliceseg.io.dicom_folder import order_slices
from sliceseg.io.identity import series_key, series_name_key, used_series_names
from sliceseg.io.output_folders import output_run
from sliceseg.io.roi_values import parse_roi_names
from sliceseg.io.series_plan import plan_cohort, planned_series_names
from sliceseg.io.tables import write_failed
from sliceseg.measure.areas import AreaTable, measure_areas
from sliceseg.measure.spacing import SpacingFallback
from sliceseg.measure.tissue import TissueSettings
from sliceseg.progress_bars import shows_progress

_NOT_MEASURED = "not measured"  # how a note on a label map left out begins


def left_out(notes: Sequence[str]) -> int:
    """Label maps the notes of `measure_label_folder` say were not measured.

    Example:
        >>> left_out(["not measured: CT_small: image is 128×128 but the label is 100×100 ..."])
        1
    """
    return count_left_out(notes, _NOT_MEASURED)


def measure_label_folder(
    labels_dir: Path | str,
    dicom_dir: Path | str,
    out_dir: Path | str,
    *,
    roi_names: str | Sequence[str] | None = None,
    fallback: SpacingFallback = SpacingFallback(),
    tissue: TissueSettings = TissueSettings(),
    keep_patient_info: bool = False,
    overwrite: bool = False,
    unlabelled_slices: str = "skip",
    log: Callable[[str], None] | None = None,
) -> tuple[AreaTable, tuple[Path, Path, Path], list[str]]:
    """Measure every ROI of existing label maps at their DICOM's native resolution.

    Label maps pair with DICOMs by relative path without suffix, exactly as for training, so
    manual and automatic areas of the same slices can be compared. A file that cannot be
    measured (an unreadable DICOM or label map, a label without a DICOM or on another grid, a
    value above the ROI count, a slice without a usable spacing) is left out with one ``not
    measured:`` note naming it and the fix, and listed in ``failed.csv``; the others are
    measured.

    Args:
        labels_dir: folder of label maps (.png, .npy, .tif, .jpg) or label volumes per series
            (.seg.nrrd, .nrrd, .seg.nhdr, .nhdr, .nii, .nii.gz, DICOM-SEG).
        dicom_dir: folder of the DICOMs they belong to.
        out_dir: where ``csa.csv``, ``csa_long.csv`` and ``failed.csv`` go.
        roi_names: names of ROIs 1..K (default: ``labels.txt`` beside the labels, or "ROI k").
        fallback: spacing for files without PixelSpacing.
        tissue: CT thresholds of the muscle composition in ``csa_long.csv``.
        keep_patient_info: add PatientID / PatientName to ``csa_long.csv`` (off by default).
        overwrite: allow writing into a non-empty ``out_dir``.
        unlabelled_slices: slices a label volume leaves empty: "skip" or "background" (0 mm²).
        log: called with each note as soon as the files are read (the CLI prints them), so
            that a refusal after reading (mixed units, output folder in use) still shows them.

    Returns:
        ``(table, (csa.csv, csa_long.csv, failed.csv), notes)``, the table naming each series
        and ordering the slices as ``predict`` does (`AreaTable.named`, `order_slices`);
        ``failed.csv`` lists the files left out (`FAILED_COLUMNS`, a header only when none);
        one note per problem, ``not measured: ...`` for files left out (`left_out` counts
        them), ``warning: ...`` for the rest.

    Raises:
        PairingError: no label map pairs with a DICOM, or none of them can be measured.
        ConfigError: slices in pixels (``--pixels``) beside slices in mm², output folder in use
            or inside ``labels_dir`` or ``dicom_dir``.

    Example:
        >>> table, paths, notes = measure_label_folder("manual/", "scans/", "areas/")
    """
    roi_names = parse_roi_names(roi_names) if roi_names is not None else None
    source = DataSource.from_dirs(
        images_dir=dicom_dir,
        labels_dir=labels_dir,
        num_labels=len(roi_names) if roi_names else None,
        roi_names=roi_names,
        unlabelled_slices=unlabelled_slices,
    )
    source.refuse_output_inside(out_dir)  # its tables would be read back as label maps
    samples, left_out_files = _measurable(source, fallback, log=log)
    report = left_out_files.report
    names = list(roi_names) if roi_names else list(report.roi_names)
    plan = plan_cohort(source.images_dir, exclude=source.labels_dir)
    series = planned_series_names(plan, [s.image for s in samples], [s.key for s in samples])
    samples = _in_predict_order(samples, series)
    table = measure_areas(
        [s.label for s in samples],
        [s.image for s in samples],
        names,
        names=[s.key for s in samples],
        fallback=fallback,
        keep_patient_info=keep_patient_info,
        tissue=tissue,
    )
    table = table.named(list(used_series_names([s.image for s in samples], series).values()))
    failed = left_out_files.failed_table(plan)
    with output_run(out_dir, overwrite=overwrite) as out:
        paths = (*table.save(out), write_failed(failed, out))
    return table, paths, left_out_files.lines


def _measurable(
    source: DataSource, fallback: SpacingFallback, *, log: Callable[[str], None] | None
) -> tuple[list[Sample], LeftOutFiles]:
    """The samples that can be measured and the files left out (their lines given to ``log``
    before any refusal).

    Raises:
        PairingError: none can be measured.
    """
    samples, report = load_usable_samples(source, progress=shows_progress())
    samples, report = leave_out_unusable(samples, report, fallback)
    left_out_files = LeftOutFiles(report, _NOT_MEASURED, fallback, unlabelled_use=_NOT_MEASURED)
    for note in left_out_files.lines:
        if log is not None:
            log(note)
    if not samples:
        raise PairingError(left_out_files.refusal("measure", source))
    return samples, left_out_files


def _in_predict_order(samples: Sequence[Sample], series: Mapping[str, str]) -> list[Sample]:
    """The samples in the order `sliceseg predict`'s tables give their slices: series by name
    (``series``: per `series_key`), in `series_name_key` as `plan_cohort` sorts them, and each
    series' slices by `order_slices` (InstanceNumber, then position, then name), not by their
    files' names."""
    rank = {id(image): i for i, image in enumerate(order_slices([s.image for s in samples]))}
    order = {key: series_name_key(name) for key, name in series.items()}
    return sorted(samples, key=lambda s: (order[series_key(s.image)], rank[id(s.image)]))
