"""Atomic file writes: a temporary name beside the target, then a rename; nothing half-written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil

from sliceseg.errors import ConfigError, UnwritableError

# Temporary files of atomic writes start with this (hidden, so readers skip them: `is_finished`);
# a run that was killed may leave some behind, and a rerun in the same folder removes them.
TEMP_PREFIX = ".sliceseg-tmp."
_OWNER_END = "~"  # ends "<host>-<pid>" in a temporary file's name (no host name holds it)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file keeps the target's suffix so that writers which choose a format by suffix
    (imageio, matplotlib, pandas) work unchanged. On error the temporary file is removed and the
    target, if it existed, is left as it was.

    Inside a folder that is itself temporary (a name starting with `TEMP_PREFIX`, such as a
    cohort series being written, which is renamed into place whole) the target is written
    directly: no reader sees it before the folder's rename, and a file of its own would cost
    a one-slice series several file-system operations (removed on error all the same).

    Example:
        >>> with atomic_path(tmp_path / "areas.csv") as tmp:
        ...     write_csv(table, tmp)  # sliceseg.io.tables
    """
    target = file_target(path)
    if in_temporary_folder(target):
        yield from _direct_path(target)
        return
    tmp = temporary_beside(target)
    try:
        with _writing(target, tmp):
            yield tmp
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_target(path: Path | str) -> Path:
    """``path`` as the file an output is written to, refused when it is a folder (check it
    before a long computation whose result goes there).

    Raises:
        ConfigError: ``path`` is a folder.
    """
    target = Path(path)
    if target.is_dir():  # else the rename fails naming the temporary file, not the user's path
        raise ConfigError(f"{target}: a folder, not a file; give the path of the file to write.")
    return target


@contextlib.contextmanager
def _writing(target: Path, written: Path) -> Iterator[None]:
    """Say in one line which output could not be written, and the fix.

    A full disk (ENOSPC) or a quota fails a write with an `OSError` that names no file, which
    the command line took for a bug of ours (exit 4); an error naming another file (an input
    read inside the block) is left as it is.

    Raises:
        UnwritableError: the file system refused to write ``target`` (``written``: the path
            the block writes to, itself or its temporary file).
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None and str(error.filename) not in (str(written), str(target)):
            raise
        reason = error.strerror or str(error)
        raise UnwritableError(
            f"{target}: cannot write it ({reason}); free space on its disk, or choose another "
            "output folder, and run the command again.",
            path=str(target),
            reason=reason,
        ) from error


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(error: BaseException) -> OSError | None:
    """The full disk (ENOSPC) or quota (EDQUOT) behind ``error`` (itself or what it was raised
    from, as `UnwritableError`), or None: a cause no later output of the run can escape.

    Example:
        >>> disk_full(OSError(errno.ENOSPC, "No space left on device")).strerror
        'No space left on device'
    """
    found: BaseException | None = error
    while found is not None:
        if isinstance(found, OSError) and found.errno in _DISK_FULL:
            return found
        found = found.__cause__
    return None


def named_text(file: Path | IO[bytes], name: Path) -> IO[str]:
    """Open UTF-8 text (newlines as written) over ``file`` (a path: opened for writing; else an
    unbuffered binary file), naming ``name`` in the error of its opening or a write that names
    no file (a full disk's), so that the `atomic_path` of ``name`` reports it as its own.

    With two atomic writes open at once, the inner one claimed the outer one's unnamed error
    (or the other way round). Open every file inside all the `atomic_path` blocks, so that each
    is written out before any is renamed into place: all land, or none.

    Example:
        >>> with atomic_path(out / "a.csv") as a_tmp, atomic_path(out / "b.csv") as b_tmp:
        ...     with named_text(a_tmp, out / "a.csv") as a, named_text(b_tmp, out / "b.csv") as b:
        ...         _ = a.write("x"), b.write("y")
    """
    try:  # closed with the text file it returns
        raw = open(file, "wb", buffering=0) if isinstance(file, Path) else file  # noqa: SIM115
    except OSError as error:
        _name_in(error, name)
        raise
    named = _NamedWrites(raw, name)
    buffered = io.BufferedRandom(named) if raw.readable() else io.BufferedWriter(named)
    return io.TextIOWrapper(buffered, encoding="utf-8", newline="")


def _name_in(error: OSError, name: Path | str) -> None:
    """Make ``error`` name ``name`` when it names no file."""
    if error.filename is None:
        error.filename = str(name)


class _NamedWrites(io.RawIOBase):
    """An unbuffered file that names ``name`` in an OSError of a write that names no file."""

    def __init__(self, raw: IO[bytes], name: Path) -> None:
        super().__init__()
        self._raw, self._name = raw, str(name)

    def readable(self) -> bool:
        return self._raw.readable()

    def writable(self) -> bool:
        return self._raw.writable()

    def seekable(self) -> bool:
        return self._raw.seekable()

    def fileno(self) -> int:
        return self._raw.fileno()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        try:
            return self._raw.write(data)
        except OSError as error:
            _name_in(error, self._name)
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def in_temporary_folder(path: Path) -> bool:
    """True when a folder above ``path`` is a temporary one (named ``TEMP_PREFIX...``).

    Example:
        >>> in_temporary_folder(Path("out/series/.sliceseg-tmp.p01.123/csa.csv"))
        True
    """
    return any(part.startswith(TEMP_PREFIX) for part in path.parent.parts)


def _direct_path(target: Path) -> Iterator[Path]:
    """`atomic_path` inside a temporary folder: the target itself, removed if the block fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _writing(target, target):
            yield target
    except BaseException:
        target.unlink(missing_ok=True)
        raise


_UMASK_LOCK = threading.Lock()


def _current_umask() -> int:
    """The process's umask. Reading it means setting it: one thread at a time, or two writer
    threads could leave it at 0 (every later file world-writable)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def files_together(folder: Path, names: tuple[str, ...]) -> Iterator[Path]:
    """Yield a hidden temporary folder inside ``folder`` to write the files ``names`` in; when
    the block succeeds each is renamed onto its name in ``folder``, and each of ``names`` not
    written is removed there (an earlier run's, which would sit beside the new ones).

    So that files that belong together (a cohort's tables and report) appear together: a
    failing block leaves the earlier ones all as they were, never some new beside some old.

    Example:
        >>> with files_together(out, ("a.csv", "b.csv")) as tmp:
        ...     write_csv(a, tmp / "a.csv"); write_csv(b, tmp / "b.csv")
    """
    clear_killed_stages(folder)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f"{_TOGETHER}{_owner()}.", dir=folder))
    except OSError as error:
        raise ConfigError(
            f"{folder}: cannot write here ({unwritable_reason(folder, error)}); choose another "
            "output path."
        ) from error
    try:
        try:
            yield stage
        except UnwritableError as error:  # name the output, not the hidden folder
            if Path(error.path).parent != stage:
                raise
            target = str(folder / Path(error.path).name)
            message = str(error).replace(error.path, target, 1)
            raise UnwritableError(message, path=target, reason=error.reason) from error
        with signals_held():  # Ctrl-C or SIGTERM between two renames mixed old and new files
            for name in names:
                if (stage / name).is_file():
                    os.replace(stage / name, folder / name)
                else:
                    (folder / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


_HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then act on the first as it would
    have (`sliceseg.cli.exits.sigterm_as_interrupt`: raise there), so that a few quick file
    operations that belong together all happen. Only the main thread receives signals: in
    others, and for ``kill -9``, nothing is held.
    """
    is_python = all(signal.getsignal(number) is not None for number in _HELD)
    if threading.current_thread() is not threading.main_thread() or not is_python:
        yield  # (a handler not set from Python could not be put back)
        return
    caught: list[tuple[int, Any]] = []

    def hold(number: int, frame: Any) -> None:
        caught.append((number, frame))

    previous = {number: signal.signal(number, hold) for number in _HELD}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for got, frame in caught[:1]:
            handler = previous[signal.Signals(got)]
            if callable(handler):
                handler(got, frame)
            elif handler == signal.SIG_DFL:  # the process ends, as it would have
                signal.raise_signal(got)


def temporary_beside(target: Path) -> Path:
    """Create an empty hidden file beside ``target``, named for this process (so that a run
    killed before removing it leaves one that `clear_killed_writes` removes).

    Raises:
        ConfigError: the folder cannot be written to.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{target.stem}.{_owner()}{_OWNER_END}",
            suffix=target.suffix,
            dir=target.parent,
        )
    except OSError as error:
        raise ConfigError(
            f"{target}: cannot write here ({unwritable_reason(target.parent, error)}); choose "
            "another output path."
        ) from error
    os.close(fd)
    # mkstemp creates 0600; outputs are meant for colleagues, so give them the usual mode.
    os.chmod(name, 0o666 & ~_current_umask())
    return Path(name)


_TOGETHER = f"{TEMP_PREFIX}together."  # + "<host>-<pid>." + mkdtemp's random end


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def clear_killed_stages(folder: Path) -> list[Path]:
    """Remove the hidden folders of `files_together` calls in ``folder`` whose process was
    killed (`_is_killed`). Returns those removed.

    Example:
        >>> clear_killed_stages(Path("out"))  # a merge killed by SIGKILL left one
        [PosixPath('out/.sliceseg-tmp.together.node7-4242.k2j3_a9x')]
    """
    removed = []
    for stage in sorted(folder.glob(f"{_TOGETHER}*")):
        if _is_killed(stage.name.removeprefix(_TOGETHER).rpartition(".")[0]):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    return removed


def clear_killed_writes(folder: Path) -> list[Path]:
    """Remove the temporary files that `atomic_path` writes in ``folder`` killed before their
    rename left (`_is_killed`: never a live one's, nor another host's). Returns those removed.

    Example:
        >>> clear_killed_writes(Path("out/failed"))  # a run killed by SIGKILL left one
        [PosixPath('out/failed/.sliceseg-tmp.p01.node7-4242~k2j3_a9x.json')]
    """
    removed = []
    for path in sorted(folder.glob(f"{TEMP_PREFIX}*")):
        head, mark, _ = path.name.rpartition(_OWNER_END)  # ".sliceseg-tmp.<stem>.<owner>"
        if path.is_file() and _is_killed(head if mark else "", within=True):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _is_killed(owner: str, *, within: bool = False) -> bool:
    """True when ``owner`` ("<host>-<pid>", or a text ending with ".<host>-<pid>" when
    ``within``) names a process of this host no longer running, or is "" (a name from before
    sliceseg named the process); never this process, a live one, or another host's (whether
    it still runs cannot be told from here)."""
    if not owner:
        return True
    host, _, pid = owner.rpartition("-")
    here = socket.gethostname()
    if not pid.isdigit() or not (host.endswith(f".{here}") if within else host == here):
        return False
    return int(pid) != os.getpid() and not psutil.pid_exists(int(pid))


def is_finished(path: Path) -> bool:
    """True when ``path`` names a finished output: not hidden, as the temporary files and
    folders of writes are (`TEMP_PREFIX`; a killed run may leave one, whole or cut off).

    Example:
        >>> is_finished(Path("out/failed/.sliceseg-tmp.p01.node7-4242~k2j3_a9x.json"))
        False
    """
    return not path.name.startswith(".")


def finished_outputs(folder: Path, pattern: str = "*") -> list[Path]:
    """The finished outputs (`is_finished`) in ``folder`` matching ``pattern``, by name."""
    return sorted(p for p in folder.glob(pattern) if is_finished(p))


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


def unwritable_reason(folder: Path, error: OSError) -> str:
    """Say why ``folder`` cannot be created or written: a file in its way, or the OS's reason."""
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            return f"{part} is a file, not a folder"
    return f"{error.strerror or error}: {error.filename}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
