"""``sliceseg measure`` and ``evaluate``: areas from existing labels, a model against them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sliceseg.cli.exits import SOME_INPUTS_FAILED
from sliceseg.cli.options import (
    DEVICE_HELP,
    MODEL_HELP,
    OVERWRITE_HELP,
    add_data_args,
    add_measurement_args,
    add_spacing_args,
    add_unlabelled_arg,
    names,
    spacing_fallback,
    tissue_settings,
)
from sliceseg.errors import ConfigError
from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands

__all__ = ["add_evaluate", "add_measure"]


def add_measure(sub: Subcommands) -> None:
    """Add ``sliceseg measure LABELS_DIR --dicoms DIR --out OUT``."""
    p = sub.add_parser("measure", help="areas in mm² from existing label maps")
    p.add_argument("labels_dir", type=user_path, help="folder of label maps (or label volumes)")
    p.add_argument(
        "--dicoms", required=True, type=user_path, help="the DICOM folder the labels belong to"
    )
    p.add_argument("--out", required=True, type=user_path, help="output folder (new or empty)")
    add_measurement_args(p)
    add_unlabelled_arg(p, use="measure them as background (0 mm² for every ROI)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_cmd_measure)


def add_evaluate(sub: Subcommands) -> None:
    """Add ``sliceseg evaluate MODEL DATA_DIR --out OUT``."""
    p = sub.add_parser("evaluate", help="Dice, HD95, Bland–Altman and ICC against manual labels")
    p.add_argument("model", type=user_path, help=MODEL_HELP)
    add_data_args(p, use="score them as background (every ROI absent)", checked_against="the model")
    p.add_argument("--out", required=True, type=user_path, help="output folder (new or empty)")
    add_spacing_args(p)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--tta", action="store_true", help="test-time augmentation")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_measure(args: argparse.Namespace) -> int:
    from sliceseg.label_areas import left_out, measure_label_folder

    table, paths, notes = measure_label_folder(
        Path(args.labels_dir),
        Path(args.dicoms),
        Path(args.out),
        roi_names=names(args.roi_labels),
        fallback=spacing_fallback(args),
        tissue=tissue_settings(args),
        keep_patient_info=args.keep_patient_info,
        overwrite=args.overwrite,
        unlabelled_slices=args.unlabelled_slices or "skip",
        log=_note,
    )
    print(table.to_text())
    print(f"Saved {', '.join(str(p) for p in paths)}")
    return _finished(left_out(notes), "not measured", paths[-1])


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sliceseg.inference.evaluate import evaluate_model
    from sliceseg.models.bundle import load_bundle

    model = load_bundle(Path(args.model))
    _check_num_labels(args.num_labels, model.roi_names, args.model)
    result = evaluate_model(
        model,
        Path(args.data_dir) if args.data_dir else None,
        Path(args.out),
        images_dir=args.images,
        labels_dir=args.labels,
        device=args.device,
        tta=args.tta,
        fallback=spacing_fallback(args),
        overwrite=args.overwrite,
        unlabelled_slices=args.unlabelled_slices or "skip",
        log=_note,
    )
    print(result.to_text())
    print(f"Saved {', '.join(str(p) for p in result.files)}")
    return _finished(result.left_out, "not evaluated", result.files[-1])


def _check_num_labels(num_labels: int | None, roi_names: Sequence[str], model: Path) -> None:
    """Refuse a ``--num-labels`` the model contradicts: the test labels are read with the
    model's own label values, so the flag can only confirm the model's count."""
    if num_labels is not None and num_labels != len(roi_names):
        raise ConfigError(
            f"--num-labels {num_labels}: the model {model} has {len(roi_names)} ROIs "
            f"({', '.join(roi_names)}) and reads the test labels with its own label values; "
            f"leave --num-labels out or give {len(roi_names)}."
        )


def _note(line: str) -> None:
    """Print a note of the reading (a warning, a file left out) as soon as it is known: a
    refusal after it (mixed units, output folder in use) must not swallow it."""
    print(line, file=sys.stderr, flush=True)


def _finished(left: int, what: str, failed_csv: Path) -> int:
    """Exit 0, or `SOME_INPUTS_FAILED` with one line saying where the files left out are listed."""
    if not left:
        return 0
    print(
        f"finished with failures: {left} problem(s) left files out (the `{what}:` lines "
        f"above, listed in {failed_csv}); the other files are in the tables.",
        file=sys.stderr,
    )
    return SOME_INPUTS_FAILED
