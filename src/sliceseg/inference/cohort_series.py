"""One series of a cohort, from its label maps to its finished folder: measured, drawn, renamed.

`write_series` measures the series (`measure_with_confidence`, plausibility warnings), writes
its folder with `sliceseg.inference.outputs.write_outputs` under a temporary name beside
``OUT/series/<name>``, puts ``record.json`` in it and renames it last, so that a series folder
is whole or absent. ``--visuals`` decides its pictures (`visual_mode`, `choose_visuals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg.engine.model_info import model_summary
from sliceseg.errors import UnwritableError
from sliceseg.inference.attempts import forget_attempts
from sliceseg.inference.confidence import measure_with_confidence, slice_confidence
from sliceseg.inference.familiarity import (
    PredictionLook,
    SeriesVerdict,
    check_series,
    model_profile,
    neighbour_spacing_line,
    unlike_line,
    warn_unchecked,
    with_familiarity,
)
from sliceseg.inference.outputs import Visuals, write_outputs
from sliceseg.inference.predict import Prediction
from sliceseg.inference.records import RunRecord, series_dir, series_record
from sliceseg.io.dicom import SkippedFile, Slice
from sliceseg.io.dicom_seg import SegmentLabelWarning, renamed_segments
from sliceseg.io.files import TEMP_PREFIX, atomic_write_text, disk_full
from sliceseg.io.identity import slice_key, slices_series_names, top_series_name
from sliceseg.io.series_plan import CohortPlan, PlannedSeries
from sliceseg.measure.areas import AreaTable
from sliceseg.measure.familiarity import TrainingProfile
from sliceseg.measure.plausibility import area_warnings, sided_pairs_from_names, warned_slice
from sliceseg.measure.series_verdict import Verdict
from sliceseg.measure.summary_rows import SUMMARY_ROWS
from sliceseg.measure.tissue import modality_values
from sliceseg.measure.tissue_notes import TissueWarning
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.models.bundle import Bundle
from sliceseg.thread_warnings import silenced

_MODEL_LOCK = threading.Lock()

__all__ = [
    "VISUALS",
    "VISUALS_ALL_UP_TO",
    "DecodedSeries",
    "SeriesContext",
    "choose_visuals",
    "recover_folders",
    "series_context",
    "visual_mode",
    "write_series",
]

VISUALS = ("auto", "all", "none")
"""``--visuals``: auto (every slice up to `VISUALS_ALL_UP_TO`, else flagged ones), all, none."""

VISUALS_ALL_UP_TO = 500
"""Planned slices up to which ``--visuals auto`` draws every slice, GIFs and area plots; past it,
only the slices named by a warning and the least confident slice of each series of 2+ slices
(of a one-slice series only when it is unlike the training data) are drawn, and no GIF or plot
(a 100,000-slice run would otherwise spend most of its time drawing)."""


@dataclass
class DecodedSeries:
    """One series between decoding and writing."""

    series: PlannedSeries
    slices: list[Slice]
    skipped: list[SkippedFile]
    labels: list[np.ndarray] = field(default_factory=list)
    confidence: list[np.ndarray] = field(default_factory=list)
    spaced: SpacedTensors | None = None  # prepared for the network (by a worker)
    features: list[np.ndarray | None] = field(default_factory=list)  # from the network's passes


def visual_mode(visuals: str, planned_slices: int) -> str:
    """``auto`` becomes ``all`` for small runs and ``flagged`` for large ones."""
    if visuals != "auto":
        return visuals
    return "all" if planned_slices <= VISUALS_ALL_UP_TO else "flagged"


@dataclass(frozen=True)
class SeriesContext:
    """What every series' writer needs (``profile``: the model's training profile, read once;
    None: the model file has none)."""

    out: Path
    root: Path
    record: RunRecord
    visuals: str
    bundle: Bundle
    profile: TrainingProfile | None = None


def series_context(
    out: Path, plan: CohortPlan, record: RunRecord, bundle: Bundle, log: Callable[[str], None]
) -> SeriesContext:
    """What every series' writer needs; says once what concerns them all: the ROI names
    DICOM-SEG changes (`renamed_segments`) and what the model file cannot check (no training
    profile or Modality: `warn_unchecked`; a damaged profile: `model_profile`), which
    `write_series` is silent about (a writer
    thread's warning is shown again for every series: the thread-local filters reset Python's
    "once")."""
    if "seg" in record.settings.exports:
        for line in renamed_segments(record.settings.roi_names):
            log(f"warning: {line}")
    visuals = visual_mode(record.settings.visuals, plan.num_slices)
    profile = model_profile(bundle, say_damage=True)
    warn_unchecked(bundle)
    return SeriesContext(out, plan.root, record, visuals, bundle, profile)


def write_series(context: SeriesContext, decoded: DecodedSeries) -> dict[str, Any]:
    """Measure one series and write it whole: a temporary folder, renamed last."""
    settings = context.record.settings
    names = list(settings.roi_names)
    keys = [slice_key(image, context.root) for image in decoded.slices]
    confidence = np.asarray(decoded.confidence)
    with silenced(TissueWarning):  # the run says it once for all its series (`modality`, `not_hu`)
        areas = measure_with_confidence(decoded.labels, decoded.slices, keys, settings, confidence)
    areas, unlike = _familiarity(context, decoded, keys, areas)
    warnings = _warnings(context, decoded, areas, names)
    series = decoded.series
    predictions = [
        Prediction(image=image, label=label, key=key)
        for image, label, key in zip(decoded.slices, decoded.labels, keys, strict=True)
    ]
    unlike_lines = [unlike_line(series.name, unlike)] if unlike and unlike.is_flagged else []
    final = series_dir(context.out, series.name)
    with _temporary_folder(final) as temporary, silenced(SegmentLabelWarning):  # said by the run
        _animations, _report, exported = write_outputs(
            temporary,
            predictions,
            areas,
            warnings,
            [f.relative_to_input(context.root) for f in decoded.skipped],  # as the records
            roi_names=names,
            settings=_report_settings(context, series) if _has_report(context) else None,
            unlike_training=unlike_lines,
            exports=settings.exports,
            series_names=slices_series_names(
                decoded.slices,
                keys,
                root_name=top_series_name(context.root),
                series_name=series.name,
            ),
            progress=False,
            visuals=choose_visuals(
                context.visuals, keys, decoded.confidence, warnings, unlike_lines
            ),
        )
        warnings = [*unlike_lines, *warnings]  # unlike the training data: the first warning
        summary = _summary(areas, decoded.confidence, warnings, decoded.skipped)
        summary["modality"] = list(modality_values(s.modality for s in decoded.slices))
        summary["not_hu"] = " ".join(t.not_hu for t in areas.tissue if t.not_hu)  # `hu_problem`
        summary["unlike_training"] = None if unlike is None else unlike.describe()
        summary["export_notes"] = [note for e in exported for note in e.notes]  # no path
        data = series_record(context.record, series, context.root, summary)
        atomic_write_text(temporary / "record.json", json.dumps(data, indent=1) + "\n")
        _replace_folder(temporary, final)
    forget_attempts(context.out, series.name)
    return summary


def _warnings(
    context: SeriesContext, decoded: DecodedSeries, areas: AreaTable, names: list[str]
) -> list[str]:
    """A 2.5D model's line on the series' slice spacing (if any), then the areas' warnings."""
    pairs = sided_pairs_from_names(names)
    found = area_warnings(areas.wide, roi_names=names, sided_pairs=pairs, series=areas.series)
    meta = context.bundle.metadata
    spacing = neighbour_spacing_line(decoded.series.name, decoded.slices, meta)
    return [spacing, *found] if spacing else found


def _familiarity(
    context: SeriesContext, decoded: DecodedSeries, keys: Sequence[str], areas: AreaTable
) -> tuple[AreaTable, Verdict | None]:
    """The series judged against the model's training profile (None without one: the run
    says so once, `series_context`), and its tables with the ``unlike_training`` column. The
    network's inputs and features come from the prediction (`PredictionLook`); only slices it
    has no features of are looked at."""
    if context.profile is None:
        return areas, None
    inputs = decoded.spaced.images if decoded.spaced is not None else ()
    seen = PredictionLook(inputs, decoded.features)
    with _MODEL_LOCK:  # a look at the network: one writer thread at a time
        verdict = check_series(
            context.bundle, decoded.slices, decoded.labels, profile=context.profile, seen=seen
        )
    assert verdict is not None  # the profile is given
    item = SeriesVerdict(1, keys[0], keys[-1], len(keys), verdict)
    return with_familiarity(areas, [item], leave_out=False), verdict


def _has_report(context: SeriesContext) -> bool:
    return context.record.settings.report and context.visuals != "none"


def _report_settings(context: SeriesContext, series: PlannedSeries) -> dict[str, object]:
    return {
        **model_summary(context.bundle),
        "series": series.name,
        "test-time augmentation": "yes" if context.record.settings.tta else "no",
    }


def choose_visuals(
    mode: str,
    keys: Sequence[str],
    confidence: Sequence[np.ndarray],
    warnings: Sequence[str],
    unlike: Sequence[str] = (),
) -> Visuals:
    """The pictures of one series for ``--visuals`` (after ``auto`` is resolved).

    ``flagged`` draws the slices a warning is about (its ``"<key>: "``, exactly) and the least
    confident slice of a series of 2+ slices or of one unlike the training data (``unlike``: its
    lines, empty when it is not).
    A one-slice series (an L3-like cohort) is thus drawn only when something flags it: else a
    cohort would draw every slice. ``all`` draws every slice, and a GIF and an area plot only for
    a series of 2+ slices (one frame and one point show nothing the overlay does not).
    """
    if mode == "all":
        return Visuals(animations=len(keys) > 1, figures=len(keys) > 1)
    if mode == "none":
        return Visuals(keys=frozenset(), animations=False, figures=False)
    names = set(keys)
    chosen = {key for warning in warnings if (key := warned_slice(warning, names))}
    scores = slice_confidence(np.asarray(confidence)) if len(confidence) else np.zeros(0)
    if (len(keys) > 1 or unlike) and len(scores) and np.isfinite(scores).any():
        chosen.add(keys[int(np.nanargmin(scores))])
    return Visuals(keys=frozenset(chosen), animations=False, figures=False)


def _summary(
    areas: AreaTable,
    confidence: Sequence[np.ndarray],
    warnings: Sequence[str],
    skipped: Sequence[SkippedFile],
) -> dict[str, Any]:
    """The series' row of ``series.csv``: slices, per ROI mean/std/n, lowest confidence,
    warnings."""
    per_slice = areas.per_slice
    rois = list(per_slice.columns)
    summary_rows = areas.wide.loc[list(SUMMARY_ROWS), rois].to_numpy(dtype=float)
    mean, std, n = (dict(zip(rois, values, strict=True)) for values in summary_rows)
    scores = slice_confidence(np.asarray(confidence)) if len(confidence) else np.zeros(0)
    return {  # the series' own summary rows: one definition of its mean and std
        "slices": len(per_slice),
        "unit": areas.unit,
        "mean": {name: _number(mean[name]) for name in rois},
        "std": {name: _number(std[name]) for name in rois},
        "n": {name: int(n[name]) for name in rois},  # slices with the ROI
        "lowest_confidence": _number(np.nanmin(scores)) if len(scores) else None,
        "warnings": list(warnings),
        "skipped_files": [s.describe() for s in skipped],
    }


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


@contextlib.contextmanager
def _temporary_folder(final: Path) -> Iterator[Path]:
    """An empty folder beside ``final`` (hidden: TEMP_PREFIX + name + .pid) to write it in,
    removed when writing fails: a failed series leaves no half-written copy taking space (a
    full disk) until the next run's `recover_folders`.

    Raises:
        UnwritableError: the disk or quota is full (`disk_full`), naming ``final``.
    """
    temporary = final.parent / f"{TEMP_PREFIX}{final.name}.{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir(parents=True)
        yield temporary
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        full = disk_full(error)
        if full is None:
            raise
        reason = full.strerror or str(full)
        raise UnwritableError(  # the folder it would have been, not the hidden one
            f"{final}: cannot write the series' outputs ({reason}); free space on its disk, "
            "then run the same command again (the finished series are skipped).",
            path=str(final),
            reason=reason,
        ) from error


_ASIDE = ".old"  # an older series folder moved aside: TEMP_PREFIX + name + _ASIDE + .pid


def _replace_folder(temporary: Path, final: Path) -> None:
    """Put a finished series in place: an older folder is moved aside first, then removed
    (`recover_folders` mends a run killed in between)."""
    if final.exists():
        aside = final.parent / f"{TEMP_PREFIX}{final.name}{_ASIDE}.{os.getpid()}"
        os.replace(final, aside)
        os.replace(temporary, final)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(temporary, final)


def recover_folders(out: Path, names: Collection[str]) -> None:
    """Mend what a killed run left of these series' folders (never another shard's).

    A folder moved aside whose replacement never arrived goes back in place (whole: it was a
    finished series; resuming then judges it as any other), one whose replacement arrived is
    removed, and so are unfinished temporary folders.
    """
    for stale in sorted(series_dir(out, "").glob(f"{TEMP_PREFIX}*")):
        stem = stale.name.removeprefix(TEMP_PREFIX).rsplit(".", 1)[0]
        name = stem.removesuffix(_ASIDE)
        if stem.endswith(_ASIDE) and name in names:
            final = series_dir(out, name)
            if final.exists():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                os.replace(stale, final)
        elif stem in names:
            shutil.rmtree(stale, ignore_errors=True)
