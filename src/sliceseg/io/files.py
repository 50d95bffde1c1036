"""Atomic file writes: a temporary name beside the target, then a rename; nothing half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sliceseg.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps the target's suffix so that writers which choose a format by suffix
    (imageio, matplotlib, pandas) work unchanged. On error the temporary file is removed and the
    target, if it existed, is left as it was.

    Example:
        >>> with atomic_path(tmp_path / "areas.csv") as tmp:
        ...     table.to_csv(tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp creates 0600; outputs are meant for colleagues, so give them the usual mode.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def prepare_output_dir(path: Path | str, *, overwrite: bool) -> Path:
    """Create an output folder, refusing to reuse a non-empty one unless ``overwrite`` is set.

    Raises:
        ConfigError: the folder exists and holds files, and ``overwrite`` is False.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another --out.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"{out}: folder exists and is not empty; choose another --out or pass --overwrite."
        )
    out.mkdir(parents=True, exist_ok=True)
    return out
