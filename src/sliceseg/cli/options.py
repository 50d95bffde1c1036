"""Options several commands share (data folders, spacing fallback, measurement), read once."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from typing import TypeAlias

    from sliceseg.measure.spacing import SpacingFallback
    from sliceseg.measure.tissue import TissueSettings

    Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
    """The sub-command table of ``build_parser``, which each command module adds to."""

__all__ = [
    "BATCH_HELP",
    "DEVICE_HELP",
    "MODEL_HELP",
    "OVERWRITE_HELP",
    "add_data_args",
    "add_measurement_args",
    "add_spacing_args",
    "add_unlabelled_arg",
    "names",
    "spacing_fallback",
    "tissue_settings",
]

OVERWRITE_HELP = "write into a folder that already holds outputs"
MODEL_HELP = "a model file (<name>_best.pt)"
DEVICE_HELP = "auto (default: CUDA when present), cpu, cuda, cuda:N (GPU number N) or mps (Apple)"
BATCH_HELP = "slices per forward pass (default 8)"


def add_data_args(
    parser: argparse.ArgumentParser,
    *,
    required: bool = False,
    use: str = "train on them as background",
    checked_against: str = "the data",
) -> None:
    """Add DATA_DIR, ``--images``, ``--labels``, ``--num-labels`` and ``--unlabelled-slices``
    (``use``: what the command does with a volume's empty slices; ``checked_against``: what
    ``--num-labels`` is checked against)."""
    parser.add_argument(
        "data_dir",
        nargs=None if required else "?",
        type=user_path,
        help="folder with dicoms/ and labels/",
    )
    parser.add_argument("--images", type=user_path, help="DICOM folder (default DATA_DIR/dicoms)")
    parser.add_argument("--labels", type=user_path, help="label folder (default DATA_DIR/labels)")
    parser.add_argument(
        "--num-labels", type=int, help=f"number of ROIs K (checked against {checked_against})"
    )
    add_unlabelled_arg(parser, use=use)


def add_unlabelled_arg(
    parser: argparse.ArgumentParser, *, use: str = "train on them as background"
) -> None:
    """Add ``--unlabelled-slices``: what a label volume's empty slices are (``use``: what the
    command does with them)."""
    parser.add_argument(
        "--unlabelled-slices",
        choices=("skip", "background"),
        help="slices a label volume (.seg.nrrd, NIfTI, DICOM-SEG) leaves empty: skip them "
        f"(default) or {use}",
    )


def add_spacing_args(parser: argparse.ArgumentParser, *, with_pixels: bool = True) -> None:
    """Add ``--fov``, ``--matrix`` and (``with_pixels``) ``--pixels``: the spacing of files
    without one."""
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
    if with_pixels:
        parser.add_argument(
            "--pixels", action="store_true", help="report pixel counts when a file has no spacing"
        )


def add_measurement_args(parser: argparse.ArgumentParser) -> None:
    """Add the spacing fallback, patient info, ROI names and the CT tissue ranges."""
    add_spacing_args(parser)
    parser.add_argument(
        "--keep-patient-info",
        action="store_true",
        help="write PatientID / PatientName into csa_long.csv (and the report); off by default",
    )
    # --labels is the label folder in check / train / evaluate / suggest; kept here as an alias
    # so that existing command lines still run.
    parser.add_argument(
        "--roi-names",
        "--labels",
        dest="roi_labels",
        metavar="NAMES",
        help='ROI names, comma-separated: "vertebral body,right psoas major,..." '
        "(--labels: the older name of --roi-names)",
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


def spacing_fallback(args: argparse.Namespace) -> SpacingFallback:
    """Return the spacing of files without one, from ``--fov``, ``--matrix`` and ``--pixels``;
    ``--matrix`` alone, which changes nothing, is refused rather than ignored."""
    from sliceseg.errors import ConfigError
    from sliceseg.measure.spacing import SpacingFallback

    if args.matrix and not args.fov:
        raise ConfigError(
            f"--matrix {' '.join(map(str, args.matrix))} without --fov changes nothing; give "
            "--fov MM [MM] with it, or leave --matrix out."
        )

    # a command without --pixels measures nothing: a slice without spacing stays as it is
    pixels_only = getattr(args, "pixels", True)
    return SpacingFallback.from_flags(args.fov, args.matrix, pixels_only=pixels_only)


def tissue_settings(args: argparse.Namespace) -> TissueSettings:
    """Return the CT tissue settings, the defaults changed by the flags given."""
    from sliceseg.measure.tissue import TissueSettings

    defaults = TissueSettings()
    return TissueSettings(
        adipose_hu=tuple(args.adipose_hu) if args.adipose_hu else defaults.adipose_hu,
        muscle_hu=tuple(args.muscle_hu) if args.muscle_hu else defaults.muscle_hu,
        muscle_rois=tuple(names(args.muscle_rois) or ()) if args.muscle_rois else None,
    )


def names(text: str | None) -> list[str] | None:
    """Split a comma-separated list of names (None when not given)."""
    return [n.strip() for n in text.split(",")] if text else None
