"""``sliceseg predict``, ``merge`` and ``suggest``: a model on new DICOMs, a cohort's tables,
the slices to label next."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sliceseg.cli.exits import SOME_INPUTS_FAILED
from sliceseg.cli.options import (
    BATCH_HELP,
    DEVICE_HELP,
    MODEL_HELP,
    add_measurement_args,
    add_spacing_args,
    names,
    spacing_fallback,
    tissue_settings,
)
from sliceseg.errors import ConfigError
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands
    from sliceseg.inference.cohort import CohortRun
    from sliceseg.inference.merge import MergeResult

__all__ = ["PRINTED_SLICES", "add_merge", "add_predict", "add_suggest"]

PRINTED_SLICES = 200  # predict prints the area table up to this many slices


def add_predict(sub: Subcommands) -> None:
    """Add ``sliceseg predict MODEL DICOM_DIR --out OUT``."""
    p = sub.add_parser(
        "predict",
        help="segment a folder of DICOMs (a cohort: resumable, shardable) and measure every ROI",
        description="Exit codes: 0 every series done; 2 a user error; 3 some series failed "
        "(listed in OUT/failed.csv; run the same command again to retry them) or, when it "
        "merges, some series of the input are not finished (named in one line).",
    )
    p.add_argument("model", type=user_path, help=MODEL_HELP)
    p.add_argument(
        "dicom_dir", type=user_path, help="folder of DICOM slices (searched recursively)"
    )
    p.add_argument("--out", required=True, type=user_path, help="output folder (new or empty)")
    add_measurement_args(p)
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8, help=BATCH_HELP)
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument(
        "--export",
        metavar="FORMATS",
        help="per-series files in OUT/series/<series>/exports/: seg (DICOM-SEG, carries the "
        "patient module), nifti, nrrd (3D Slicer .seg.nrrd), 'all' or 'none' (default: "
        "nifti,nrrd)",
    )
    _add_cohort_args(p)
    p.set_defaults(func=_cmd_predict)


def _add_cohort_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        metavar="K/N|auto",
        help="process shard K of N (K from 1) of the series, sorted by name; 'auto' reads a "
        "SLURM job array (SLURM_ARRAY_TASK_ID) or torchrun (RANK, WORLD_SIZE; LOCAL_RANK picks "
        "the GPU); then `sliceseg merge OUT` (default: every series, merged at the end)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="processes decoding DICOM ahead of the network (default: the CPUs this process "
        "may use, less one, and none on 2 CPUs or fewer; 0 decodes in the main process, which "
        "is faster on small machines but does not contain a crash of a pixel decoder: it ends "
        "the run, where with 1 or more only that series fails)",
    )
    parser.add_argument(
        "--visuals",
        choices=("auto", "all", "none"),
        default="auto",
        help="overlays, thumbnails, GIFs and area plots: all, none, or auto (default: all up "
        "to 500 slices; past that only the slices a warning names and the least confident "
        "slice of each series of 2+ slices or unlike the training data: a one-slice series "
        "is drawn only when flagged)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty OUT, and redo series made by another model or settings "
        "(without it a rerun resumes: finished series are skipped)",
    )


def add_merge(sub: Subcommands) -> None:
    """Add ``sliceseg merge OUT``."""
    p = sub.add_parser(
        "merge",
        help="build OUT's cohort tables and report from its finished series (shards)",
        description="Exit codes: 0 every series of the input finished (or had no readable "
        "file); 2 a user error; 3 some series failed (OUT/failed.csv) or are not finished yet "
        "(named in one line: run the predict command, or each shard, again, then merge).",
    )
    p.add_argument("out", type=user_path, help="the --out of `sliceseg predict` (every shard's)")
    p.set_defaults(func=_cmd_merge)


def add_suggest(sub: Subcommands) -> None:
    """Add ``sliceseg suggest MODEL DICOM_DIR``."""
    p = sub.add_parser(
        "suggest",
        help="the unlabelled slices the model is least sure of",
        description="Files without PixelSpacing: give the --fov (and --matrix) given to "
        "`sliceseg predict`, so that the network sees them at the same scale and the "
        "confidences agree; without it they are taken to be at the model's spacing.",
    )
    p.add_argument("model", type=user_path, help=MODEL_HELP)
    p.add_argument(
        "dicom_dir", type=user_path, help="folder of unlabelled DICOM slices (searched recursively)"
    )
    p.add_argument("--n", type=int, default=20, help="how many slices (default 20)")
    p.add_argument(
        "--labels", type=user_path, help="label folder: slices labelled there are left out"
    )
    p.add_argument("--out", type=user_path, help="also write the list as a CSV")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out when it exists (an earlier list); without it a file is kept",
    )
    p.add_argument(
        "--no-spread", action="store_true", help="rank all slices together, not series in turns"
    )
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8, help=BATCH_HELP)
    add_spacing_args(p, with_pixels=False)
    p.set_defaults(func=_cmd_suggest)


def _cmd_predict(args: argparse.Namespace) -> int:
    from sliceseg.engine.predictor import PredictOptions
    from sliceseg.inference.cohort import CohortOptions, predict_cohort
    from sliceseg.inference.records import RunSettings
    from sliceseg.inference.shards import parse_shard
    from sliceseg.report.exports import parse_exports

    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {args.workers}.")
    show = shows_progress()
    shard = parse_shard(args.shard)
    if shard.note:
        _progress(shard.note)
    run = predict_cohort(
        Path(args.model),
        Path(args.dicom_dir),
        Path(args.out),
        settings=RunSettings(
            roi_names=tuple(names(args.roi_labels) or ()),
            tta=args.tta,
            fallback=spacing_fallback(args),
            tissue=tissue_settings(args),
            keep_patient_info=args.keep_patient_info,
            exports=tuple(parse_exports(args.export)),
            visuals=args.visuals,
            report=not args.no_report,
        ),
        options=CohortOptions(
            predict=PredictOptions(device=args.device, batch_size=args.batch_size, progress=show),
            shard=shard,
            workers=args.workers,
            overwrite=args.overwrite,
        ),
        log=_progress,
    )
    _print_run(run)
    incomplete = run.merged is not None and not run.merged.is_complete
    return SOME_INPUTS_FAILED if run.failed or incomplete else 0


def _print_run(run: CohortRun) -> None:
    """Print the run's notes, skipped files, areas and warnings (a small run's in full)."""
    for note in [*run.notes, *(run.merged.notes if run.merged is not None else ())]:
        print(f"warning: {note}", file=sys.stderr)
    for skipped in [*(s.describe() for s in run.skipped), *run.unread]:
        print(f"skipped {skipped}", file=sys.stderr)
    is_small = run.merged is not None and run.merged.slices <= PRINTED_SLICES
    if is_small and run.merged is not None and run.merged.counts:  # none: every series failed
        print(run.merged.areas.to_text())
    for warning in run.warnings if is_small else []:
        print(f"warning: {warning}")
    if run.warnings and not is_small:
        print(_where_warnings_are(run))
    print(run.describe())
    if run.merged is not None and not is_small:  # a small run's line is under its table
        _print_overall(run.merged)


def _where_warnings_are(run: CohortRun) -> str:
    """The line pointing to a large run's warnings: in the cohort's series.csv (and report.html
    unless ``--no-report``), which a shard leaves to `sliceseg merge`."""
    count = f"{len(run.warnings)} warnings"
    if run.merged is None:
        return f"{count}: series.csv lists them once `sliceseg merge {run.out_dir}` has run."
    where = "series.csv and report.html" if run.merged.report else "series.csv"
    return f"{count}: see {where} in {run.out_dir}/"


def _print_overall(merged: MergeResult) -> None:
    """Say which series csa.csv's overall rows leave out, when the table is not printed."""
    from sliceseg.measure.summary_rows import overall_line

    line = overall_line(merged.overall_note, of=str(merged.out_dir / "csa.csv"))
    if line:
        print(line)


def _progress(line: str) -> None:
    """A cohort's progress on stdout; its warnings (a failed series) on stderr."""
    print(line, file=sys.stderr if line.startswith("warning: ") else sys.stdout, flush=True)


def _cmd_merge(args: argparse.Namespace) -> int:
    from sliceseg.inference.merge import merge_cohort

    merged = merge_cohort(Path(args.out))
    slices = int(merged.series["slices"].sum())
    print(
        f"Merged {len(merged.series)} series ({slices} slices), {len(merged.failed)} failed; "
        f"tables in {merged.out_dir}/" + (f" (report: {merged.report})" if merged.report else "")
    )
    for note in [*merged.tissue_notes, *merged.notes]:  # as predict says them
        print(f"warning: {note}", file=sys.stderr)
    _print_overall(merged)
    return 0 if merged.is_complete else SOME_INPUTS_FAILED


def _cmd_suggest(args: argparse.Namespace) -> int:
    from sliceseg.inference.suggest import (
        suggest_slices,
        suggestions_target,
        suggestions_text,
        write_suggestions,
    )

    if args.out:  # refused now, not after predicting every slice
        suggestions_target(args.out, overwrite=args.overwrite)
    suggestions = suggest_slices(
        Path(args.model),
        Path(args.dicom_dir),
        n=args.n,
        labels_dir=Path(args.labels) if args.labels else None,
        spread=not args.no_spread,
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
        fallback=spacing_fallback(args),
    )
    if suggestions:  # none: suggest_slices said why in one line
        print(suggestions_text(suggestions))
    if args.out:
        print(f"Saved {write_suggestions(args.out, suggestions, overwrite=args.overwrite)}")
    return 0
