"""The parser of every sub-command, and ``main``: run one, turn its end into an exit code."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from sliceseg._version import __version__
from sliceseg.cli.exits import (
    USER_ERROR,
    closed_pipe,
    interrupted,
    one_line,
    report_bug,
    show_warning,
    sigterm_as_interrupt,
)
from sliceseg.cli.info import add_info
from sliceseg.cli.measurement import add_evaluate, add_measure
from sliceseg.cli.phantom import add_demo, add_phantom
from sliceseg.cli.prediction import add_merge, add_predict, add_suggest
from sliceseg.cli.training import add_check, add_preview, add_reprofile, add_train
from sliceseg.errors import SlicesegError

if TYPE_CHECKING:
    from sliceseg.cli.options import Subcommands

__all__ = ["COMMANDS", "DESCRIPTION", "build_parser", "main"]

DESCRIPTION = "The ``sliceseg`` command: one subcommand per workflow, no logic of its own."
COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    add_info,
    add_phantom,
    add_check,
    add_preview,
    add_train,
    add_reprofile,
    add_predict,
    add_merge,
    add_suggest,
    add_measure,
    add_evaluate,
    add_demo,
)
"""Each adds one sub-command (its options and the function it runs), in the order of --help."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``sliceseg`` command."""
    parser = argparse.ArgumentParser(prog="sliceseg", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"sliceseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``sliceseg`` command and return its exit code."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(), sigterm_as_interrupt():
        warnings.showwarning = show_warning
        try:
            return int(args.func(args))
        except SlicesegError as error:
            print(f"error: {one_line(error)}", file=sys.stderr)
            return USER_ERROR
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (`kill`, a job's time limit)
            return interrupted(stop, args.command)
        except BrokenPipeError:  # the reader stopped (`| head`): its choice, not a bug
            return closed_pipe()
        except OSError as error:
            if error.filename is None:
                return report_bug(error, args, argv)
            # The file system refused (permissions, a file where a folder should be, disk full).
            print(
                f"error: {error.filename}: {error.strerror or one_line(error)}; check the path, "
                "its permissions and the free disk space.",
                file=sys.stderr,
            )
            return USER_ERROR
        except Exception as error:  # the last resort: a bug of ours, never a raw traceback
            return report_bug(error, args, argv)
