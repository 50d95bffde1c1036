"""``sliceseg check``, ``preview`` and ``train``: a labelled dataset checked, its first batch
drawn, a model trained on it (``torchrun -m sliceseg train`` for many GPUs)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sliceseg.cli.options import DEVICE_HELP, add_data_args
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands

__all__ = [
    "add_check",
    "add_preview",
    "add_reprofile",
    "add_train",
    "given_settings",
    "user_settings",
]


def add_check(sub: Subcommands) -> None:
    """Add ``sliceseg check DATA_DIR [--json]``."""
    p = sub.add_parser("check", help="pair images with labels and report what is wrong")
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_check)


def add_preview(sub: Subcommands) -> None:
    """Add ``sliceseg preview DATA_DIR --out PNG``."""
    p = sub.add_parser("preview", help="draw the first augmented training batch")
    _add_train_args(p)
    p.add_argument(
        "--out",
        default="preview.png",
        type=user_path,
        help="picture to draw: .png, .jpg, .pdf, .svg, ... (default preview.png)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out when it exists (an earlier preview); without it a file is kept",
    )
    p.set_defaults(func=_cmd_preview)


def add_train(sub: Subcommands) -> None:
    """Add ``sliceseg train DATA_DIR``: what to train, then how."""
    p = sub.add_parser(
        "train",
        help="train a model (torchrun -m sliceseg train for many GPUs)",
        description="How long: --epochs N epochs; with --max-minutes and no --epochs, until "
        "the budget (the learning rate decaying over it); with neither, 100 epochs.",
    )
    _add_train_args(p)
    _add_what_to_train(p)
    _add_how_to_train(p)
    p.set_defaults(func=_cmd_train)


def add_reprofile(sub: Subcommands) -> None:
    """Add ``sliceseg reprofile MODEL DATA_DIR [--out PATH]``."""
    p = sub.add_parser(
        "reprofile",
        help="give a model trained by an older sliceseg today's 'unlike the training data' checks",
    )
    p.add_argument("model", type=user_path, help="the model file (sliceseg_best.pt)")
    p.add_argument(
        "data_dir", type=user_path, help="the training folder it was trained on (dicoms/, labels/)"
    )
    p.add_argument("--images", type=user_path, help="DICOM folder (default DATA_DIR/dicoms)")
    p.add_argument("--labels", type=user_path, help="label folder (default DATA_DIR/labels)")
    p.add_argument(
        "--out", type=user_path, help="the new model file (default MODEL_reprofiled.pt beside it)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out when it exists")
    p.set_defaults(func=_cmd_reprofile)


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    """The options ``preview`` and ``train`` share."""
    add_data_args(parser)
    parser.add_argument(
        "--config", type=user_path, help="TOML file of settings (flags override it)"
    )
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
    _add_batch_args(parser)


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    """The rest of what shapes the training batches, so that ``preview`` takes it as ``train``
    does: view, neighbours, split, intensities, augmentation, the ``--init-from`` model."""
    p.add_argument(
        "--view",
        choices=("auto", "native", "whole", "wide"),
        help="auto (default: wide when a crop at the median spacing would show under 40 %% of "
        "a slice, as on a 512² CT, else native), native (crops at the median spacing), whole "
        "(a coarser spacing when needed, so that one crop shows a whole slice) or wide (70 %% "
        "of it); ignored with --target-spacing",
    )
    p.add_argument(
        "--context-slices",
        type=int,
        metavar="K",
        help="2.5D: the network also sees the K slices on either side of each slice in its "
        "series (0..3, default 0; put the series' unlabelled DICOMs beside the labelled ones)",
    )
    p.add_argument(
        "--validation-split",
        choices=("patient", "levels"),
        help="patient (default: whole patients held out) or levels (those patients' slices "
        "at levels no training slice shows, as a test on new levels)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="share of patients held out for validation (default 0.2)",
    )
    p.add_argument(
        "--normalisation",
        choices=("auto", "slice", "ct"),
        help="intensities: auto (default: CT's HU clipped and z-scored with the training "
        "set's numbers when every slice is CT, else each slice z-scored), slice or ct",
    )
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--init-from",
        type=user_path,
        metavar="MODEL",
        help="fine-tune: start from this model's weights and network (same label scheme)",
    )


def _add_what_to_train(p: argparse.ArgumentParser) -> None:
    """Output, network and length."""
    p.add_argument("--out", type=user_path, help="output folder (default: model)")
    p.add_argument("--model-filename", help="stem of the files written (default: sliceseg)")
    p.add_argument("--arch", help="unet (default) or pyramid (the published network)")
    p.add_argument(
        "--epochs",
        type=int,
        help="passes over the training slices (default: until --max-minutes, the learning "
        "rate decaying over the budget; without a budget 100)",
    )


def _add_how_to_train(p: argparse.ArgumentParser) -> None:
    """Optimisation, checkpoints, budget, device, and the checkpoint to resume."""
    p.add_argument(
        "--learning-rate", type=float, help="initial learning rate, decays to 0 (default 3e-3)"
    )
    p.add_argument(
        "--dropout-rate",
        type=float,
        help="dropout inside the network (default: the architecture's own, the pyramid's "
        "published 0.2, none in the U-Net)",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        metavar="D",
        help="validate and save a moving average of the weights, D per step (default "
        "0.998; 0: the weights as trained)",
    )
    p.add_argument("--loss", help="dice_ce (default), dice or ce")
    p.add_argument("--num-workers", type=int, help="data-loader worker processes (default 0)")
    # both at once contradict each other: refused in words rather than the last one winning
    calibration = p.add_mutually_exclusive_group()
    calibration.add_argument(
        "--area-calibration",
        action="store_true",
        help="choose, per ROI, a background weight on validation that makes its areas unbiased",
    )
    calibration.add_argument(
        "--no-area-calibration",
        action="store_true",
        help="keep the plain argmax (the default; overrides a settings file's true)",
    )
    p.add_argument(
        "--print-checkpoint", type=int, help="print and validate every N epochs (default 10)"
    )
    p.add_argument(
        "--save-checkpoint", type=int, help="save <name>_<epoch>.pt every M epochs (default 50)"
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="wall-clock budget in minutes: training stops cleanly within it and, without "
        "--epochs, runs until it (default: no budget, 100 epochs)",
    )
    p.add_argument("--device", help=DEVICE_HELP)
    _add_where_to_start(p)


def _add_where_to_start(p: argparse.ArgumentParser) -> None:
    """``--resume`` a checkpoint, or ``--overwrite`` to start over (``--init-from`` shapes the
    batch too: `_add_batch_args`)."""
    p.add_argument(
        "--resume",
        type=user_path,
        help="continue the run of a <name>_<epoch>.pt checkpoint with its settings; "
        "flags given with it override them",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a folder that holds outputs: an earlier run's checkpoints, best "
        "model, settings and history of the same --model-filename there are removed",
    )


def given_settings(args: argparse.Namespace) -> dict[str, Any]:
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
        "ema_decay": getattr(args, "ema_decay", None),
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
        "area_calibration": _area_calibration(args),
        "normalisation": getattr(args, "normalisation", None),
        "validation_split": getattr(args, "validation_split", None),
        "view": getattr(args, "view", None),
        "context_slices": getattr(args, "context_slices", None),
    }
    return {name: value for name, value in flags.items() if value is not None}


def user_settings(args: argparse.Namespace, *, leave_out: Sequence[str] = ()) -> dict[str, Any]:
    """Return the training settings the user gave: the ``--config`` file's, then the flags'
    (but those named in ``leave_out``: a flag of the same name that means something else).

    Each counts as given, even at its default value: a run with ``--init-from`` takes the
    rest of its network from the model file and refuses one of these at another value (as a
    notebook's `TrainConfig.given_names`), a resumed one takes the rest from its checkpoint;
    the training layer does both (`train`, `preview_batch`).
    """
    from sliceseg.training.settings_file import read_settings

    flags = {k: v for k, v in given_settings(args).items() if k not in leave_out}
    return {**(read_settings(args.config) if args.config else {}), **flags}


def _cmd_check(args: argparse.Namespace) -> int:
    from sliceseg.dataset.samples import check_dataset
    from sliceseg.dataset.source import DataSource

    source = DataSource.from_dirs(
        args.data_dir,
        images_dir=args.images,
        labels_dir=args.labels,
        num_labels=args.num_labels,
        unlabelled_slices=args.unlabelled_slices or "skip",
    )
    report = check_dataset(source, progress=shows_progress() and not args.json)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.to_text())
    return 0 if report.is_trainable else 1


def _cmd_preview(args: argparse.Namespace) -> int:
    from sliceseg.training.preview import preview_batch

    # preview's --out / --overwrite are its picture's, not a training run's out_dir / overwrite
    settings = user_settings(args, leave_out=("out_dir", "overwrite"))
    preview_batch(overrides=settings, path=Path(args.out), overwrite=args.overwrite)
    print(f"First augmented batch drawn in {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sliceseg.training.loop import train

    # a resumed run: the checkpoint's settings, changed only by what was given
    result = train(resume=args.resume, overrides=user_settings(args))
    dice, epoch = result.best_val_dice, f"epoch {result.best_epoch} of {result.epochs_completed}"
    chosen = (
        f"{epoch}, validation Dice {dice:.3f}"
        if dice == dice  # NaN: no validation slice held an ROI, or none were kept
        else f"{epoch}: no validation Dice to choose by, the last epoch's"
    )
    print(
        f"Best model: {result.best_model} ({chosen}); history: {result.history_csv}, "
        f"{result.history_png}"
    )
    return 0


def _cmd_reprofile(args: argparse.Namespace) -> int:
    from sliceseg.training.reprofile import reprofile

    done = reprofile(
        args.model,
        args.data_dir,
        args.out,
        images_dir=args.images,
        labels_dir=args.labels,
        overwrite=args.overwrite,
        progress=shows_progress(),
    )
    print(
        f"Stored the training data's profile (version {done.profile.to_dict()['version']}, "
        f"{done.profile.num_slices} training and {done.validation_slices} validation slices) "
        f"in {done.path}; {args.model} is unchanged. Predict with the new file to get every "
        "check of 'unlike the training data'."
    )
    return 0


def _area_calibration(args: argparse.Namespace) -> bool | None:
    """``--area-calibration`` / ``--no-area-calibration`` (never both: the parser refuses
    them together), else None."""
    if getattr(args, "no_area_calibration", False):
        return False
    return True if getattr(args, "area_calibration", False) else None
