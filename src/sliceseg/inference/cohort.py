"""Segment a cohort as a stream of series: planned from headers, resumable, sharded, pipelined.

The run plans from headers (`plan_cohort`), keeps this shard's series (`Shard.take`), skips the
series already finished with the same model, settings and inputs (`records.is_done`), and
streams the rest: worker processes decode series ahead (`decode_series`), the main process
runs the network on batches of slices that may span several small series (`Engine.labels`),
and a small pool of threads measures and writes each series into a temporary folder that is
renamed to ``OUT/series/<name>`` last, its ``record.json`` inside. A series that fails is
recorded in ``OUT/failed/<name>.json`` and the run goes on. Memory holds the series in flight,
never the cohort. An unsharded run then merges (`sliceseg.inference.merge.merge_cohort`).
"""

from __future__ import annotations

import concurrent.futures as futures
import functools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sliceseg.engine.predictor import PredictOptions
from sliceseg.errors import SlicesegError
from sliceseg.inference.attempts import RunAttempts, series_to_do
from sliceseg.inference.cohort_decode import (
    decode_and_prepare,
    decoded_series,
    default_workers,
    describe_workers,
)
from sliceseg.inference.cohort_network import Fail, bound_predict, cohort_engine
from sliceseg.inference.cohort_record import check_out_dir
from sliceseg.inference.cohort_series import (
    VISUALS,
    VISUALS_ALL_UP_TO,
    DecodedSeries,
    recover_folders,
    series_context,
    write_series,
)
from sliceseg.inference.merge import MergeResult, merge_cohort
from sliceseg.inference.records import (
    RunRecord,
    RunSettings,
    check_not_inputs,
    read_series_record,
    run_lock,
    undo_run_record,
)
from sliceseg.inference.shard_lock import shard_lock
from sliceseg.inference.shard_plan import check_shard_count, write_shard_plan
from sliceseg.inference.shards import Shard, shard_device
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.files import disk_full, file_sha256
from sliceseg.io.identity import series_name_key
from sliceseg.io.series_plan import CohortPlan, PlannedSeries, plan_cohort
from sliceseg.measure.spacing import SpacingFallback, with_fallback_spacing
from sliceseg.measure.tissue import check_muscle_rois
from sliceseg.measure.tissue_notes import recorded_tissue, tissue_lines
from sliceseg.models.bundle import Bundle, as_bundle
from sliceseg.system import select_device
from sliceseg.user_paths import user_path

__all__ = [
    "VISUALS",
    "VISUALS_ALL_UP_TO",
    "CohortOptions",
    "CohortRun",
    "default_workers",
    "predict_cohort",
]

_WRITE_THREADS = 2  # series written at once; the queue of finished series waits beyond 2×
_MAX_LINES = 20  # warnings and notes a run keeps per series for its printout
_BATCH_SLICES = 4  # × --batch-size: slices gathered over series, so each size fills its passes
_Unread = dict[str, list[SkippedFile]]  # series of which no file could be read: their files


@dataclass(frozen=True)
class CohortOptions:
    """How a cohort run is executed (nothing here changes its results).

    Attributes:
        predict: device, batch size, progress (``tta`` lives in `RunSettings`).
        shard: which series this process takes.
        workers: decoding processes; 0 decodes in the main process (no start, no copies, but
            a pixel decoder's crash ends the run, not one series); None: `default_workers`.
        overwrite: redo series made by another model or settings instead of refusing.
        merge: build the cohort tables at the end; None: when the shard is the whole run.
    """

    predict: PredictOptions = field(default_factory=PredictOptions)
    shard: Shard = field(default_factory=Shard)
    workers: int | None = None
    overwrite: bool = False
    merge: bool | None = None


@dataclass(frozen=True)
class CohortRun:
    """What `predict_cohort` did.

    Attributes:
        out_dir: the output folder.
        shard: the shard this process ran.
        planned: series in this shard.
        already_done: series skipped because a previous run finished them.
        finished: names of the series finished now.
        failed: (name, reason) of the series that failed now.
        skipped: input files left out (not DICOM, no image, unreadable), with the reason.
        merged: the cohort tables, when this run merged.
        seconds: wall time of the whole run.
        slices: slices segmented now.
        warnings: plausibility warnings of the series finished now.
        notes: exports not written; the series that lack tissue columns (no Modality, not in
            HU, not CT given CT options: one line each for the run, `tissue_lines`), of every
            series of its share (a resume: those done before too, from their records).
        unread: files left out on decoding (damaged pixels, a copy), each ``path: why``.
    """

    out_dir: Path
    shard: Shard
    planned: int
    already_done: int
    finished: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    merged: MergeResult | None = None
    seconds: float = 0.0
    slices: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line: what was done, what failed, where the outputs are."""
        text = (
            f"Segmented {self.slices} slices in {len(self.finished)} series"
            f" ({self.already_done} already done, {len(self.failed)} failed"
            + (f", listed in {self.out_dir / 'failed.csv'}" if self.failed and self.merged else "")
            + f") in {self.seconds:.1f} s; outputs in {self.out_dir}/"
        )
        if self.merged is not None:
            report = self.merged.report
            return f"{text} (report: {report})" if report else text
        merge = f"run `sliceseg merge {self.out_dir}` after every shard"
        return f"{text}; {self.shard.describe()}: {merge}"


def predict_cohort(
    model: Bundle | Path | str,
    dicom_dir: Path | str,
    out_dir: Path | str,
    *,
    settings: RunSettings | None = None,
    options: CohortOptions = CohortOptions(),
    log: Callable[[str], None] = print,
) -> CohortRun:
    """Segment every series under ``dicom_dir`` (this shard's share), resumably, into ``out_dir``.

    Writes ``OUT/series/<name>/`` per series (the layout of `sliceseg.inference.outputs`, plus
    ``record.json``), ``OUT/failed/<name>.json`` per failed series,
    ``OUT/unreadable/<name>.json`` per series of which no file could be read,
    ``OUT/cohort.json`` and ``OUT/input_series.json`` (the names of every series of the
    input: the merge leaves out finished series whose inputs were removed since); an unsharded
    run then writes ``csa.csv``, ``csa_long.csv``, ``series.csv``, ``failed.csv`` and
    ``report.html`` (`merge_cohort`).

    Args:
        model: a loaded bundle or a model file (its SHA-256 goes into the records).
        dicom_dir: the cohort's DICOM folder (recursive).
        out_dir: the output folder; a rerun into it resumes.
        settings: what shapes the results; ``roi_names`` empty means the model's.
        options: device, shard, workers, overwrite, merge.
        log: where progress lines go (one per event).

    Returns:
        What was done, skipped and failed.

    Raises:
        PairingError: the folder holds no DICOM image.
        ConfigError: ``out_dir`` was made by another model or settings (without overwrite),
            or holds other files; or every series failed on the same user error; or the
            device is unknown or absent (before ``out_dir`` is touched).
        BundleError: the model file is not a sliceseg model.

    Example:
        >>> run = predict_cohort("model/sliceseg_best.pt", "cohort/", "results/")
        >>> run.finished[:2], run.failed
    """
    start = time.perf_counter()
    bundle, record = _model_record(model, settings or RunSettings(roi_names=()), options)
    out, root = user_path(out_dir), user_path(dicom_dir)
    check_not_inputs(out, root)
    plan = plan_cohort(root, exclude=out)
    with run_lock(out, whole=options.shard.is_whole), shard_lock(out, options.shard):
        previous = check_out_dir(out, record, overwrite=options.overwrite)
        check_shard_count(out, options.shard)
        inputs = write_shard_plan(out, plan, options.shard, root=root)  # the merge's cohort
        mine = options.shard.take(plan.series)
        recover_folders(out, {s.name for s in mine})  # what a killed run left
        todo = series_to_do(out, mine, record, plan.root)
        log(_first_line(options, len(plan.series), len(mine), len(todo)))
        attempts = RunAttempts(out, plan.root)  # its failure and unreadable records, to take back
        finished, failed, unreadable = _stream(bundle, plan, todo, attempts, record, options, log)
        error = _one_user_error(finished, failed, len(mine) - len(todo))
        if error is not None and options.shard.is_whole:  # a shard's failures stay for the merge
            attempts.undo()
            undo_run_record(out, previous=previous, previous_inputs=inputs)
            raise error
        skipped = [*plan.skipped, *(f for files in unreadable.values() for f in files)]
        is_merge = options.merge if options.merge is not None else options.shard.is_whole
        merged = merge_cohort(out) if is_merge else None
        summaries = [summary for _, summary in finished]
        return CohortRun(
            out,
            options.shard,
            len(mine),
            len(mine) - len(todo),
            [name for name, _ in finished],
            [(name, _reason(error)) for name, error in failed],
            skipped,
            merged,
            time.perf_counter() - start,
            slices=sum(int(s["slices"]) for s in summaries),
            warnings=[w for s in summaries for w in s["warnings"]],
            notes=_notes(finished, merged, lambda: _done_summaries(out, mine, todo), record),
            unread=[n for s in summaries for n in s["skipped_files"]],
        )


def _notes(
    finished: Sequence[tuple[str, dict[str, Any]]],
    merged: MergeResult | None,
    done: Callable[[], Mapping[str, Mapping[str, Any]]],
    record: RunRecord,
) -> list[str]:
    """The exports not written now, then the run's one line each on the series that lack tissue
    columns (`tissue_lines`; each series' writer keeps quiet about them): those of the merged
    tables when the run merged (what csa.csv and report.html hold), else of every series of its
    share, those finished now and those ``done`` before (a resume)."""
    exports = [note for _, summary in finished for note in summary["export_notes"]]
    if merged is not None:
        return [*exports, *merged.tissue_notes]
    settings = record.settings
    summaries = {**done(), **dict(finished)}
    ordered = sorted(summaries, key=series_name_key)  # not as they ended
    found = {name: recorded_tissue(summaries[name]) for name in ordered}
    series = {name: tissue for name, tissue in found.items() if tissue is not None}
    return [*exports, *tissue_lines(series, settings.roi_names, settings.tissue)]


def _done_summaries(
    out: Path, mine: Sequence[PlannedSeries], todo: Sequence[PlannedSeries]
) -> dict[str, dict[str, Any]]:
    """The summaries in the records of the series of ``mine`` done before this run (whether a
    record holds the series' Modality, `recorded_tissue` decides)."""
    redone = {s.name for s in todo}
    found = {}
    for series in mine:
        stored = None if series.name in redone else read_series_record(out, series.name)
        summary = (stored or {}).get("summary")
        if isinstance(summary, dict):
            found[series.name] = summary
    return found


def _first_line(options: CohortOptions, planned: int, mine: int, todo: int) -> str:
    """What the run does, and who does it (`describe_workers`) when it has work."""
    workers = describe_workers(options.workers, options.predict.device, writers=_WRITE_THREADS)
    return (
        f"{options.shard.describe()}: {mine} of {planned} series; {mine - todo} series already "
        f"done, skipped; {todo} to do" + (f"; {workers}" if todo else "")
    )


def _model_record(
    model: Bundle | Path | str, settings: RunSettings, options: CohortOptions
) -> tuple[Bundle, RunRecord]:
    """Load the model (with the settings' ROI names) and describe it for the records; refuse a
    missing device before anything is written (a run that made nothing would leave a
    ``cohort.json`` refusing the next run's other settings)."""
    select_device(shard_device(options.predict.device))
    bundle = as_bundle(model)
    if settings.roi_names:
        bundle = bundle.with_roi_names(list(settings.roi_names))
    settings = replace(settings, roi_names=tuple(bundle.roi_names))
    check_muscle_rois(settings.tissue, settings.roi_names)  # before any series is predicted
    source = Path(bundle.source) if bundle.source else None
    digest = file_sha256(source) if source is not None and source.is_file() else "in-memory"
    return bundle, RunRecord(source.name if source else "in-memory", digest, settings)


def _one_user_error(
    finished: Sequence[tuple[str, dict[str, Any]]],
    failed: Sequence[tuple[str, Exception]],
    done: int,
) -> SlicesegError | None:
    """The error a whole run whose every series failed on one kind of user error raises as
    one (exit 2): the first series' by name (e.g. no PixelSpacing and no ``--fov``); else None.
    """
    if finished or done or not failed:
        return None
    errors = [error for _, error in sorted(failed, key=lambda item: series_name_key(item[0]))]
    first = errors[0]
    if isinstance(first, SlicesegError) and all(type(e) is type(first) for e in errors):
        return first
    return None


def _stream(
    bundle: Bundle,
    plan: CohortPlan,
    todo: Sequence[PlannedSeries],
    attempts: RunAttempts,
    record: RunRecord,
    options: CohortOptions,
    log: Callable[[str], None],
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, Exception]], _Unread]:
    """Decode ahead in workers, predict in batches here, write behind in threads (into
    ``attempts.out``, where ``attempts`` records the series that fail or have no readable file).

    Returns:
        The finished series (name, summary), the failed ones (name, error), and the series of
        which no file could be decoded, with their files (skipped, as damaged files always were).
    """
    finished: list[tuple[str, dict[str, Any]]] = []
    failed: list[tuple[str, Exception]] = []
    unreadable: _Unread = {}
    if not todo:
        return finished, failed, unreadable
    engine = cohort_engine(bundle, options.predict.device, tta=record.settings.tta)
    writing: deque[tuple[PlannedSeries, futures.Future[Any]]] = deque()
    context = series_context(attempts.out, plan, record, bundle, log)
    batch: list[DecodedSeries] = []
    fail = functools.partial(_fail, attempts=attempts, failed=failed, log=log)
    predict = bound_predict(engine, options.predict.batch_size, fail)

    def collect(block: bool) -> None:
        while writing and (block or writing[0][1].done() or len(writing) > 2 * _WRITE_THREADS):
            series, job = writing.popleft()
            _settle(series, job, finished, fail)

    with futures.ThreadPoolExecutor(_WRITE_THREADS) as writer:
        job = functools.partial(
            decode_and_prepare, fallback=record.settings.fallback, preparation=engine.preparation
        )
        for series, result in decoded_series(todo, options.workers, job):
            if not isinstance(result, Exception):
                result = _with_spacing(result, record.settings.fallback)
            if isinstance(result, Exception):
                fail(series, result)
                continue
            if not result.slices:  # every file damaged: skipped with its reason, not a failure
                _unreadable(result, attempts, unreadable, log)
                continue
            batch.append(result)
            if sum(len(d.slices) for d in batch) >= _BATCH_SLICES * options.predict.batch_size:
                for done in predict(batch):
                    writing.append((done.series, writer.submit(write_series, context, done)))
                batch = []
            collect(block=False)
        for done in predict(batch):
            writing.append((done.series, writer.submit(write_series, context, done)))
        collect(block=True)
    return finished, failed, unreadable


def _with_spacing(decoded: DecodedSeries, fallback: SpacingFallback) -> DecodedSeries | Exception:
    """Give slices without PixelSpacing the user's ``--fov`` / ``--matrix`` spacing as their
    own, so that the network sees them at the model's spacing (not only the areas)."""
    try:
        decoded.slices = [with_fallback_spacing(image, fallback) for image in decoded.slices]
    except SlicesegError as error:  # no spacing and no --fov: this series fails, as in measuring
        return error
    return decoded


def _settle(
    series: PlannedSeries,
    job: futures.Future[Any],
    finished: list[tuple[str, dict[str, Any]]],
    fail: Fail,
) -> None:
    try:
        finished.append((series.name, _brief(job.result())))
    except Exception as error:
        if disk_full(error) is not None:  # every later series would fail too: stop the run
            raise
        fail(series, error)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run keeps of a finished series (its record holds the rest): memory stays flat."""
    kept = ("warnings", "skipped_files", "export_notes")
    brief = {key: summary[key] for key in ("slices", "modality", "not_hu")}
    return brief | {key: summary[key][:_MAX_LINES] for key in kept}


def _reason(error: Exception) -> str:
    """An error in one line; not ours: its type first."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return reason if isinstance(error, SlicesegError) else f"{type(error).__name__}: {reason}"


def _fail(
    series: PlannedSeries,
    error: Exception,
    *,
    attempts: RunAttempts,
    failed: list[tuple[str, Exception]],
    log: Callable[[str], None],
) -> None:
    """Record a failed series (its reason in one line) and go on; the record names files
    under the input folder, the printed line as they were found."""
    reason = _reason(error)
    attempts.write_failure(series, reason)
    failed.append((series.name, error))
    log(f"warning: series {series.name} failed: {reason}")


def _unreadable(
    decoded: DecodedSeries, attempts: RunAttempts, unreadable: _Unread, log: Callable[[str], None]
) -> None:
    """Record a series none of whose files could be read (`write_unreadable`: so that a later
    merge does not take it for a series still to do), keep its files, and go on."""
    series = decoded.series
    attempts.write_unreadable(series, decoded.skipped)
    unreadable[series.name] = decoded.skipped
    log(f"series {series.name}: none of its {len(series.files)} file(s) could be read")
