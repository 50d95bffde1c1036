"""The ``sliceseg`` command: one subcommand per workflow, no logic of its own.

Exit codes: 0 success; 1 ``check`` found the data unfit (a verdict); 2 a user error
(one line on stderr, no traceback); 3 ``predict`` / ``merge``: some series failed (listed in
``OUT/failed.csv``; the same command again retries them); 4 a bug in sliceseg (one line on
stderr naming the log file that holds the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sliceseg._version import __version__
from sliceseg.errors import ConfigError, SlicesegError

SOME_SERIES_FAILED = 3  # predict / merge: some series failed, the others are complete
BUG = 4  # an unexpected exception: a bug of ours, the traceback in a log file
_PRINTED_SLICES = 200  # predict prints the area table up to this many slices

if TYPE_CHECKING:
    from sliceseg.measure.areas import SpacingFallback
    from sliceseg.measure.tissue import TissueSettings
    from sliceseg.training.config import TrainConfig

Command = Callable[[argparse.Namespace], int]


def _cmd_info(args: argparse.Namespace) -> int:
    if args.model is not None:
        from sliceseg.inference.model_info import model_summary

        rows = model_summary(args.model)
        text = "\n".join(f"{name}: {value}" for name, value in rows.items())
        print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else text)
        return 0
    from sliceseg.system import system_info

    info = system_info()
    print(json.dumps(info.to_dict(), indent=2) if args.json else info.to_text())
    return 0


def _cmd_phantom(args: argparse.Namespace) -> int:
    from sliceseg.phantom.generate import generate_phantom

    summary = generate_phantom(
        Path(args.out_dir),
        train_subjects=args.train_subjects,
        test_subjects=args.test_subjects,
        slices_per_subject=args.slices,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=sys.stderr.isatty(),
    )
    print(
        f"Phantom written to {summary.out_dir}: {summary.n_train_slices} training slices in "
        f"{summary.train_dir}, {summary.n_test_slices} test slices in {summary.test_dir}, "
        f"true areas in {summary.truth_csv}."
    )
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from sliceseg.data.pairing import DataSource
    from sliceseg.data.samples import check_dataset

    source = DataSource.from_dirs(
        args.data_dir,
        images_dir=args.images,
        labels_dir=args.labels,
        num_labels=args.num_labels,
        unlabelled_slices=args.unlabelled_slices or "skip",
    )
    report = check_dataset(source, progress=sys.stderr.isatty() and not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0 if report.is_trainable else 1


def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the training settings the user typed on the command line (and only those)."""
    flags = {
        "data_dir": args.data_dir,
        "images_dir": args.images,
        "labels_dir": args.labels,
        "out_dir": getattr(args, "out", None),
        "model_filename": getattr(args, "model_filename", None),
        "arch": getattr(args, "arch", None),
        "input_shape": args.input_shape,
        "target_spacing_mm": getattr(args, "target_spacing", None),
        "num_labels": args.num_labels,
        "epochs": getattr(args, "epochs", None),
        "batch_size": args.batch_size,
        "num_workers": getattr(args, "num_workers", None),
        "learning_rate": getattr(args, "learning_rate", None),
        "dropout_rate": getattr(args, "dropout_rate", None),
        "loss": getattr(args, "loss", None),
        "augment": False if getattr(args, "no_augment", False) else None,
        "print_checkpoint": getattr(args, "print_checkpoint", None),
        "save_checkpoint": getattr(args, "save_checkpoint", None),
        "validation_fraction": getattr(args, "validation_fraction", None),
        "seed": args.seed,
        "max_minutes": getattr(args, "max_minutes", None),
        "device": getattr(args, "device", None),
        "overwrite": True if getattr(args, "overwrite", False) else None,
        "unlabelled_slices": getattr(args, "unlabelled_slices", None),
        "init_from": getattr(args, "init_from", None),
        "area_calibration": False if getattr(args, "no_area_calibration", False) else None,
        "normalisation": getattr(args, "normalisation", None),
        "validation_split": getattr(args, "validation_split", None),
        "view": getattr(args, "view", None),
    }
    return {name: value for name, value in flags.items() if value is not None}


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from sliceseg.training.config import load_config
    from sliceseg.training.init_from import model_settings

    given = _given_settings(args)
    if getattr(args, "init_from", None):  # the model defines the network unless flags say
        given = {**model_settings(args.init_from), **given}
    return load_config(args.config, **given)


def _cmd_preview(args: argparse.Namespace) -> int:
    from sliceseg.training.preview import preview_batch

    preview_batch(_train_config(args), path=Path(args.out))
    print(f"First augmented batch drawn in {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sliceseg.training.config import read_settings
    from sliceseg.training.loop import train

    if args.resume is None:
        result = train(_train_config(args))
    else:  # the checkpoint's settings, changed only by what was typed (or is in --config)
        given = {**(read_settings(args.config) if args.config else {}), **_given_settings(args)}
        result = train(resume=args.resume, overrides=given)
    print(
        f"Best model: {result.best_model} (validation Dice {result.best_val_dice:.3f}); "
        f"history: {result.history_csv}, {result.history_png}"
    )
    return 0


def _fallback(args: argparse.Namespace) -> SpacingFallback:
    from sliceseg.measure.areas import SpacingFallback

    return SpacingFallback.from_flags(args.fov, args.matrix, pixels_only=args.pixels)


def _tissue(args: argparse.Namespace) -> TissueSettings:
    from sliceseg.measure.tissue import TissueSettings

    defaults = TissueSettings()
    return TissueSettings(
        adipose_hu=tuple(args.adipose_hu) if args.adipose_hu else defaults.adipose_hu,
        muscle_hu=tuple(args.muscle_hu) if args.muscle_hu else defaults.muscle_hu,
        muscle_rois=tuple(_names(args.muscle_rois) or ()) if args.muscle_rois else None,
    )


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",")] if text else None


def _cmd_predict(args: argparse.Namespace) -> int:
    from sliceseg.engine.predictor import PredictOptions
    from sliceseg.inference.cohort import CohortOptions, predict_cohort
    from sliceseg.inference.records import RunSettings
    from sliceseg.inference.shards import parse_shard
    from sliceseg.report.exports import parse_exports

    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {args.workers}.")
    show = sys.stderr.isatty()
    run = predict_cohort(
        Path(args.model),
        Path(args.dicom_dir),
        Path(args.out),
        settings=RunSettings(
            roi_names=tuple(_names(args.roi_labels) or ()),
            tta=args.tta,
            fallback=_fallback(args),
            tissue=_tissue(args),
            keep_patient_info=args.keep_patient_info,
            exports=tuple(parse_exports(args.export)),
            visuals=args.visuals,
            report=not args.no_report,
        ),
        options=CohortOptions(
            predict=PredictOptions(device=args.device, batch_size=args.batch_size, progress=show),
            shard=parse_shard(args.shard),
            workers=args.workers,
            overwrite=args.overwrite,
        ),
        log=_progress,
    )
    for note in run.notes:
        print(f"warning: {note}", file=sys.stderr)
    for skipped in run.skipped:
        reason = skipped.reason.removeprefix(f"{skipped.path}: ")  # read errors name the file
        print(f"skipped {skipped.path}: {reason}", file=sys.stderr)
    is_small = run.merged is not None and len(run.merged.areas.series) <= _PRINTED_SLICES
    if is_small and run.merged is not None:
        print(run.merged.areas.to_text())
    for warning in run.warnings if is_small else []:
        print(f"warning: {warning}")
    if run.warnings and not is_small:
        print(f"{len(run.warnings)} warnings: see series.csv and report.html in {run.out_dir}/")
    print(run.describe())
    return SOME_SERIES_FAILED if run.failed else 0


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
    return SOME_SERIES_FAILED if len(merged.failed) else 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from sliceseg.inference.suggest import suggest_slices, suggestions_text, write_suggestions

    suggestions = suggest_slices(
        Path(args.model),
        Path(args.dicom_dir),
        n=args.n,
        labels_dir=Path(args.labels) if args.labels else None,
        spread=not args.no_spread,
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
    )
    print(suggestions_text(suggestions))
    if args.out:
        print(f"Saved {write_suggestions(Path(args.out), suggestions)}")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from sliceseg.inference.measure_folder import measure_label_folder

    table, paths, notes = measure_label_folder(
        Path(args.labels_dir),
        Path(args.dicoms),
        Path(args.out),
        roi_names=_names(args.roi_labels),
        fallback=_fallback(args),
        tissue=_tissue(args),
        keep_patient_info=args.keep_patient_info,
        overwrite=args.overwrite,
        unlabelled_slices=args.unlabelled_slices or "skip",
    )
    for note in notes:
        print(note, file=sys.stderr)
    print(table.to_text())
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sliceseg.inference.evaluate import evaluate_model

    result = evaluate_model(
        Path(args.model),
        Path(args.data_dir) if args.data_dir else None,
        Path(args.out),
        images_dir=args.images,
        labels_dir=args.labels,
        device=args.device,
        tta=args.tta,
        fallback=_fallback(args),
        overwrite=args.overwrite,
        unlabelled_slices=args.unlabelled_slices or "skip",
    )
    for note in result.notes:
        print(note, file=sys.stderr)
    print(result.to_text())
    print(f"Saved {', '.join(str(p) for p in result.files)}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from sliceseg.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes, overwrite=args.overwrite)
    return 0


def _add_data_args(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "data_dir", nargs=None if required else "?", help="folder with dicoms/ and labels/"
    )
    parser.add_argument("--images", help="DICOM folder (default DATA_DIR/dicoms)")
    parser.add_argument("--labels", help="label folder (default DATA_DIR/labels)")
    parser.add_argument(
        "--num-labels", type=int, help="number of ROIs K (checked against the data)"
    )
    _add_unlabelled_arg(parser)


def _add_unlabelled_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unlabelled-slices",
        choices=("skip", "background"),
        help="slices a label volume (.seg.nrrd, NIfTI, DICOM-SEG) leaves empty: skip them "
        "(default) or train on them as background",
    )


def _add_spacing_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fov",
        type=float,
        nargs="+",
        metavar="MM",
        help="field of view in mm (rows [cols]) for files without PixelSpacing",
    )
    parser.add_argument(
        "--matrix", type=int, nargs=2, metavar=("ROWS", "COLS"), help="acquisition matrix for --fov"
    )
    parser.add_argument(
        "--pixels", action="store_true", help="report pixel counts when a file has no spacing"
    )


def _add_measurement_args(parser: argparse.ArgumentParser) -> None:
    _add_spacing_args(parser)
    parser.add_argument(
        "--keep-patient-info",
        action="store_true",
        help="write PatientID / PatientName into csa_long.csv (and the report); off by default",
    )
    parser.add_argument(
        "--labels",
        dest="roi_labels",
        metavar="NAMES",
        help='ROI names, comma-separated: "vertebral body,right psoas major,..."',
    )
    _add_hu_range(parser, "--adipose-hu", "intramuscular adipose tissue range", "-190 -30")
    _add_hu_range(parser, "--muscle-hu", "muscle range for the radiodensity", "-29 150")
    parser.add_argument(
        "--muscle-rois",
        metavar="NAMES",
        help="CT: the muscle ROIs, comma-separated (default: names with psoas, multifidus, ...)",
    )


def _add_hu_range(parser: argparse.ArgumentParser, flag: str, what: str, default: str) -> None:
    help_text = f"CT: {what} in HU (default {default})"
    parser.add_argument(flag, type=float, nargs=2, metavar=("LOW", "HIGH"), help=help_text)


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    _add_data_args(parser)
    parser.add_argument("--config", help="TOML file of settings (flags override it)")
    parser.add_argument(
        "--input-shape",
        type=int,
        help="side in pixels of the crops the network sees, at the target spacing (default 160)",
    )
    parser.add_argument(
        "--target-spacing",
        type=float,
        metavar="MM",
        help="pixel spacing the model works at (default: the training slices' median)",
    )
    parser.add_argument("--batch-size", type=int, help="slices per step (default 4)")
    parser.add_argument("--seed", type=int, help="seed of every random draw (default 0)")


_OVERWRITE_HELP = "write into a folder that already holds outputs"
_MODEL_HELP = "a model file (<name>_best.pt)"
_DEVICE_HELP = "auto (default: CUDA when present), cpu or cuda"
_BATCH_HELP = "slices per forward pass (default 8)"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``sliceseg`` command."""
    parser = argparse.ArgumentParser(prog="sliceseg", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"sliceseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "info", help="system characteristics (RAM, GPU, device memory), or what a model file holds"
    )
    p.add_argument(
        "model", nargs="?", help="a model file: its network, spacing, post-processing, calibration"
    )
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("phantom", help="generate the synthetic lumbar phantom with known areas")
    p.add_argument("out_dir", help="folder to write train/, test/ and truth.csv into")
    # Many subjects with fewer slices each: neighbouring slices look alike, subjects do not.
    p.add_argument("--train-subjects", type=int, default=16, help="subjects in train/ (default 16)")
    p.add_argument("--test-subjects", type=int, default=4, help="subjects in test/ (default 4)")
    p.add_argument("--slices", type=int, default=10, help="slices per subject")
    p.add_argument("--seed", type=int, default=0, help="seed of the random subjects (default 0)")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser("check", help="pair images with labels and report what is wrong")
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("preview", help="draw the first augmented training batch")
    _add_train_args(p)
    p.add_argument("--out", default="preview.png", help="PNG to draw (default preview.png)")
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser("train", help="train a model (torchrun -m sliceseg train for many GPUs)")
    _add_train_args(p)
    p.add_argument("--out", help="output folder (default: model)")
    p.add_argument("--model-filename", help="stem of the files written (default: sliceseg)")
    p.add_argument("--arch", help="unet (default) or pyramid (the published network)")
    p.add_argument(
        "--epochs",
        type=int,
        help="passes over the training slices (default: until --max-minutes, the learning "
        "rate decaying over the budget; without a budget 100)",
    )
    p.add_argument(
        "--view",
        choices=("native", "whole", "wide"),
        help="native (default: crops at the median spacing), whole (a coarser spacing when "
        "needed, so that one crop shows a whole slice) or wide (70 %% of it); ignored with "
        "--target-spacing",
    )
    p.add_argument(
        "--validation-split",
        choices=("patient", "levels"),
        help="patient (default: whole patients held out) or levels (those patients' slices "
        "at levels no training slice shows, as a test on new levels)",
    )
    p.add_argument(
        "--normalisation",
        choices=("auto", "slice", "ct"),
        help="intensities: auto (default: CT's HU clipped and z-scored with the training "
        "set's numbers when every slice is CT, else each slice z-scored), slice or ct",
    )
    p.add_argument(
        "--learning-rate", type=float, help="initial learning rate, decays to 0 (default 3e-3)"
    )
    p.add_argument("--dropout-rate", type=float, help="dropout inside the network (default 0)")
    p.add_argument("--loss", help="dice_ce (default) or dice")
    p.add_argument("--num-workers", type=int, help="data-loader worker processes (default 0)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--no-area-calibration",
        action="store_true",
        help="keep the plain argmax (no background weight chosen on validation)",
    )
    p.add_argument("--print-checkpoint", type=int, help="print and validate every N epochs")
    p.add_argument("--save-checkpoint", type=int, help="save <name>_<epoch>.pt every M epochs")
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="share of patients held out for validation (default 0.2)",
    )
    p.add_argument("--max-minutes", type=float, help="stop cleanly before this wall-clock budget")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument(
        "--resume",
        help="continue the run of a <name>_<epoch>.pt checkpoint with its settings; "
        "flags given with it override them",
    )
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="fine-tune: start from this model's weights and network (same label scheme)",
    )
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "predict",
        help="segment a folder of DICOMs (a cohort: resumable, shardable) and measure every ROI",
        description="Exit codes: 0 every series done; 2 a user error; 3 some series failed "
        "(listed in OUT/failed.csv; run the same command again to retry them).",
    )
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("dicom_dir", help="folder of DICOM slices (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    _add_measurement_args(p)
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8, help=_BATCH_HELP)
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.add_argument(
        "--export",
        metavar="FORMATS",
        help="per-series files in OUT/exports/: seg (DICOM-SEG, carries the patient module), "
        "nifti, nrrd (3D Slicer .seg.nrrd), 'all' or 'none' (default: nifti,nrrd)",
    )
    p.add_argument(
        "--shard",
        metavar="K/N|auto",
        help="process shard K of N (K from 1) of the series, sorted by name; 'auto' reads a "
        "SLURM job array (SLURM_ARRAY_TASK_ID) or torchrun (RANK, WORLD_SIZE; LOCAL_RANK picks "
        "the GPU); then `sliceseg merge OUT` (default: every series, merged at the end)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="processes decoding DICOM ahead of the network (default: the CPUs this process "
        "may use, less one; 0 decodes in the main process)",
    )
    p.add_argument(
        "--visuals",
        choices=("auto", "all", "none"),
        default="auto",
        help="overlays, thumbnails, GIFs and area plots: all, none, or auto (default: all up "
        "to 500 slices; past that only each series' least confident and flagged slices)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty OUT, and redo series made by another model or settings "
        "(without it a rerun resumes: finished series are skipped)",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "merge", help="build OUT's cohort tables and report from its finished series (shards)"
    )
    p.add_argument("out", help="the --out of `sliceseg predict` (every shard's)")
    p.set_defaults(func=_cmd_merge)

    p = sub.add_parser("suggest", help="the unlabelled slices the model is least sure of")
    p.add_argument("model", help=_MODEL_HELP)
    p.add_argument("dicom_dir", help="folder of unlabelled DICOM slices (searched recursively)")
    p.add_argument("--n", type=int, default=20, help="how many slices (default 20)")
    p.add_argument("--labels", help="label folder: slices labelled there are left out")
    p.add_argument("--out", help="also write the list as a CSV")
    p.add_argument(
        "--no-spread", action="store_true", help="rank all slices together, not series in turns"
    )
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--batch-size", type=int, default=8, help=_BATCH_HELP)
    p.set_defaults(func=_cmd_suggest)

    p = sub.add_parser("measure", help="areas in mm² from existing label maps")
    p.add_argument("labels_dir", help="folder of label maps (or label volumes)")
    p.add_argument("--dicoms", required=True, help="the DICOM folder the labels belong to")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    _add_measurement_args(p)
    _add_unlabelled_arg(p)
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_measure)

    p = sub.add_parser("evaluate", help="Dice, HD95, Bland–Altman and ICC against manual labels")
    p.add_argument("model", help=_MODEL_HELP)
    _add_data_args(p)
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    _add_spacing_args(p)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="phantom → train → predict → areas vs truth, in minutes")
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget")
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sliceseg`` command and return its exit code."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except SlicesegError as error:
            print(f"error: {_one_line(error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; files already written are kept.", file=sys.stderr)
            return 130
        except OSError as error:
            if error.filename is None:
                return _report_bug(error, args, argv)
            # The file system refused (permissions, a file where a folder should be, disk full).
            print(
                f"error: {error.filename}: {error.strerror or _one_line(error)}; check the path, "
                "its permissions and the free disk space.",
                file=sys.stderr,
            )
            return 2
        except Exception as error:  # the last resort: a bug of ours, never a raw traceback
            return _report_bug(error, args, argv)


REPORT_HINT = "see 'Reporting a bug' in docs/usage.md"


def _report_bug(error: BaseException, args: argparse.Namespace, argv: list[str] | None) -> int:
    """Write the traceback to a log file and print one line saying where; return `BUG`."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"sliceseg-error-{stamp}-{os.getpid()}.log"
    command = " ".join(["sliceseg", *(sys.argv[1:] if argv is None else argv)])
    text = (
        f"command: {command}\nsliceseg {__version__}, Python {platform.python_version()}, "
        f"{platform.platform()}\n\n"
        + "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )
    log = None
    out = getattr(args, "out", None) or getattr(args, "out_dir", None)
    folders = [Path(out)] if out and Path(out).is_dir() else []
    for folder in [*folders, Path(tempfile.gettempdir())]:
        try:
            (folder / name).write_text(text, encoding="utf-8")
        except OSError:
            continue
        log = folder / name
        break
    where = f"the full traceback is in {log}" if log else "the traceback could not be written"
    print(
        f"internal error: `{args.command}` failed with {type(error).__name__}: "
        f"{_one_line(error)[:300]}. This is a bug in sliceseg {__version__}, not in your data; "
        f"{where}; please report it with that file ({REPORT_HINT}).",
        file=sys.stderr,
    )
    return BUG


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line, without the source line Python shows by default."""
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
