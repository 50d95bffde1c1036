"""``sliceseg phantom`` and ``sliceseg demo``: the synthetic dataset, and the whole flow on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sliceseg.cli.options import OVERWRITE_HELP
from sliceseg.progress_bars import shows_progress
from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands

__all__ = ["add_demo", "add_phantom"]


def add_phantom(sub: Subcommands) -> None:
    """Add ``sliceseg phantom OUT_DIR``."""
    p = sub.add_parser("phantom", help="generate the synthetic lumbar phantom with known areas")
    p.add_argument(
        "out_dir", type=user_path, help="folder to write train/, test/ and truth.csv into"
    )
    # Many subjects with fewer slices each: neighbouring slices look alike, subjects do not.
    p.add_argument("--train-subjects", type=int, default=16, help="subjects in train/ (default 16)")
    p.add_argument("--test-subjects", type=int, default=4, help="subjects in test/ (default 4)")
    p.add_argument("--slices", type=int, default=10, help="slices per subject (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random subjects (default 0)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_cmd_phantom)


def add_demo(sub: Subcommands) -> None:
    """Add ``sliceseg demo``."""
    p = sub.add_parser("demo", help="phantom → train → predict → areas vs truth, in minutes")
    p.add_argument(
        "--out", default="demo_output", type=user_path, help="output folder (default demo_output)"
    )
    p.add_argument(
        "--minutes", type=float, default=6.0, help="training budget in minutes (default 6)"
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=_cmd_demo)


def _cmd_phantom(args: argparse.Namespace) -> int:
    from sliceseg.phantom.generate import generate_phantom

    summary = generate_phantom(
        Path(args.out_dir),
        train_subjects=args.train_subjects,
        test_subjects=args.test_subjects,
        slices_per_subject=args.slices,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=shows_progress(),
    )
    print(
        f"Phantom written to {summary.out_dir}: {summary.n_train_slices} training slices in "
        f"{summary.train_dir}, {summary.n_test_slices} test slices in {summary.test_dir}, "
        f"true areas in {summary.truth_csv}."
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from sliceseg.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes, overwrite=args.overwrite)
    return 0
