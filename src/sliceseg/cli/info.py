"""``sliceseg info``: the system's characteristics, or what a model file holds."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from sliceseg.user_paths import user_path

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands

__all__ = ["add_info"]


def add_info(sub: Subcommands) -> None:
    """Add ``sliceseg info [MODEL] [--json]``."""
    p = sub.add_parser(
        "info",
        help="system characteristics (RAM, CPU, GPU, torch threads, versions), or what a model "
        "file holds",
    )
    p.add_argument(
        "model",
        nargs="?",
        type=user_path,
        help="a model file: its network, training, spacing, normalisation, post-processing, "
        "calibration",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.model is not None:
        from sliceseg.engine.model_info import model_summary

        rows = model_summary(args.model)
        text = "\n".join(f"{name}: {value}" for name, value in rows.items())
        print(json.dumps(rows, indent=2, ensure_ascii=False) if args.json else text)
        return 0
    from sliceseg.system import system_info

    info = system_info()
    print(json.dumps(info.to_dict(), indent=2) if args.json else info.to_text())
    return 0
