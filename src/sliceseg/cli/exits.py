"""How the command ends: its exit codes, a bug's log file, and warnings printed as one line."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

from sliceseg._version import __version__

__all__ = [
    "BUG",
    "CLOSED_PIPE",
    "INTERRUPTED",
    "REPORT_HINT",
    "SOME_INPUTS_FAILED",
    "TERMINATED",
    "USER_ERROR",
    "Terminated",
    "closed_pipe",
    "interrupted",
    "one_line",
    "report_bug",
    "show_warning",
    "sigterm_as_interrupt",
]

USER_ERROR = 2  # a SlicesegError or a refused file-system operation: one line, no traceback
SOME_INPUTS_FAILED = 3  # predict / merge: some series failed or (merge) are not finished;
# measure / evaluate: some label maps were left out; the others are complete
BUG = 4  # an unexpected exception: a bug of ours, the traceback in a log file
INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C
TERMINATED = 143  # 128 + SIGTERM: `kill`, or a batch job's time limit (SLURM, then SIGKILL)
CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader stopped (`| head`)
REPORT_HINT = "see 'Reporting a bug' in docs/usage.md"
# What the line of an interrupted command adds: how to go on from the files it kept.
_GOING_ON = {
    # a run stopped before its first checkpoint, or before training, names none above
    "train": "; where a checkpoint is named above, `sliceseg train --resume` with it goes on",
    "predict": "; the same command again goes on (the finished series are skipped)",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it ends as on Ctrl-C: a training run names
    its checkpoint, a series being written is removed (a subclass, so every ``except
    KeyboardInterrupt`` already handles it)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise `Terminated` on SIGTERM inside the block; the previous handler is put back after.

    Python's default ends the process at once, without a word or any clean-up. Only the main
    thread may set a handler: elsewhere (``main`` called from a thread) SIGTERM is left alone.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(stop: KeyboardInterrupt, command: str) -> int:
    """Say in one line that ``command`` was stopped and how to go on; return its exit code."""
    what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
    print(f"{what}; files already written are kept{_GOING_ON.get(command, '')}.", file=sys.stderr)
    return TERMINATED if isinstance(stop, Terminated) else INTERRUPTED


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
