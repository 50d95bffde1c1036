"""How the command ends: its exit codes, a bug's log file, and warnings printed as one line."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import tempfile
import traceback
from pathlib import Path

from sliceseg._version import __version__

__all__ = [
    "BUG",
    "CLOSED_PIPE",
    "REPORT_HINT",
    "SOME_INPUTS_FAILED",
    "USER_ERROR",
    "closed_pipe",
    "one_line",
    "report_bug",
    "show_warning",
]

USER_ERROR = 2  # a SlicesegError or a refused file-system operation: one line, no traceback
SOME_INPUTS_FAILED = 3  # predict / merge: some series failed or (merge) are not finished;
# measure / evaluate: some label maps were left out; the others are complete
BUG = 4  # an unexpected exception: a bug of ours, the traceback in a log file
CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader stopped (`| head`)
REPORT_HINT = "see 'Reporting a bug' in docs/usage.md"


def closed_pipe() -> int:
    """Stop writing to a stdout whose reader went away, quietly; return `CLOSED_PIPE`."""
    # Python flushes stdout again at exit: /dev/null takes that, so nothing more is raised. A
    # stream without a file descriptor (a notebook's) has nothing to flush.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return CLOSED_PIPE


def report_bug(error: BaseException, args: argparse.Namespace, argv: list[str] | None) -> int:
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
        f"{one_line(error)[:300]}. This is a bug in sliceseg {__version__}, not in your data; "
        f"{where}; please report it with that file ({REPORT_HINT}).",
        file=sys.stderr,
    )
    return BUG


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print a warning as one line, without the source line Python shows by default."""
    print(f"warning: {one_line(message)}", file=sys.stderr)


def one_line(value: object) -> str:
    """Return ``value``'s text on one line (its type's name when it has none)."""
    return " ".join(str(value).split()) or type(value).__name__
