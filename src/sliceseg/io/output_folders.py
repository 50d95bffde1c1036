"""Output folders: created or refused in one line, reused only with ``--overwrite``, and marked
incomplete while a run writes into them, so that a killed run can be rerun in place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sliceseg.errors import ConfigError
from sliceseg.io.files import TEMP_PREFIX, unwritable_reason
from sliceseg.user_paths import user_path

# Present in an output folder while a run writes into it; a folder still marked after the run was
# killed may be reused by a rerun without --overwrite.
_INCOMPLETE_MARKER = ".sliceseg-incomplete"
OVERWRITE = "--overwrite (overwrite=True)"
"""How a refusal names the way to replace an output: the flag, and the argument in Python."""


def prepare_output_dir(path: Path | str, *, overwrite: bool, argument: str = "--out") -> Path:
    """Create an output folder, refusing to reuse a non-empty one unless ``overwrite`` is set.

    Args:
        path: the folder.
        overwrite: allow a non-empty folder.
        argument: how the refusals name the caller's argument for the folder: ``--out``, or
            ``OUT_DIR (out_dir)`` for a command that takes it positionally.

    Raises:
        ConfigError: as `refuse_used_output_dir` and `create_output_dir`.
    """
    out = refuse_used_output_dir(path, overwrite=overwrite, argument=argument)
    return create_output_dir(out, argument=argument)


def refuse_used_output_dir(path: Path | str, *, overwrite: bool, argument: str = "--out") -> Path:
    """Refuse an output folder `prepare_output_dir` would refuse, without creating it: a run
    that checks its data afterwards leaves no empty folder behind when the data is refused.

    Returns:
        The folder, ``~`` expanded.

    Raises:
        ConfigError: a file stands at ``path``, or the folder holds files and ``overwrite`` is
            False (a folder an interrupted run marked incomplete is reused).
    """
    out = user_path(path)
    if out.exists() and not out.is_dir():
        raise not_a_folder(out, argument)
    is_interrupted = (out / _INCOMPLETE_MARKER).is_file()
    if out.is_dir() and any(out.iterdir()) and not overwrite and not is_interrupted:
        raise folder_in_use(out, argument)
    return out


def not_a_folder(out: Path, argument: str = "--out") -> ConfigError:
    """The refusal of an output folder where a file stands."""
    return ConfigError(f"{out}: exists and is not a folder; choose another {argument}.")


def folder_in_use(out: Path, argument: str = "--out") -> ConfigError:
    """The refusal of an output folder that holds files, without ``--overwrite``."""
    return ConfigError(
        f"{out}: folder exists and is not empty; choose another {argument} or pass {OVERWRITE}."
    )


def refuse_existing_file(path: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing output file (``--out``) unless ``overwrite`` is set.

    Raises:
        ConfigError: ``path`` exists and ``overwrite`` is False.
    """
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass {OVERWRITE} or give another --out.")


def create_output_dir(out: Path, *, argument: str = "--out") -> Path:
    """Create ``out`` (and its parents) or say in one line why it cannot be (``argument``: as
    `prepare_output_dir`).

    Raises:
        ConfigError: a file stands in the way, or the OS refuses (permissions, disk).
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"{out}: cannot create the output folder ({unwritable_reason(out, error)}); choose "
            f"another {argument}."
        ) from error
    return out


@contextlib.contextmanager
def output_run(path: Path | str, *, overwrite: bool) -> Iterator[Path]:
    """Prepare an output folder (see `prepare_output_dir`) and mark it incomplete until done.

    The marker file ``.sliceseg-incomplete`` stays when the run fails or is killed, so that the
    same command can be run again into that folder without ``--overwrite``; the rerun first
    removes the temporary files the killed run left behind. Every output is written atomically,
    so no final file is ever half-written; the marker says that some may be missing.

    Raises:
        ConfigError: as `prepare_output_dir`.

    Example:
        >>> with output_run("results/", overwrite=False) as out:
        ...     table.save(out)
    """
    out = prepare_output_dir(path, overwrite=overwrite)
    marker = out / _INCOMPLETE_MARKER
    if marker.is_file():
        for stale in out.rglob(f"{TEMP_PREFIX}*"):
            if stale.is_file():
                stale.unlink()
    marker.write_text(
        "sliceseg is writing into this folder, or a run was interrupted; run it again.\n",
        encoding="utf-8",
    )
    yield out
    marker.unlink()
