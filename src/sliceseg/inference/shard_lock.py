"""One process per shard: a lock file in the output folder naming the host and process holding it.

``OUT/.sliceseg-lock.shard-K-of-N`` is created when a run of shard K of N (1 of 1: a run of
every series) starts and removed when it ends; a second process of the same shard (a SLURM
requeue while the first still runs, a command started twice) is refused in one line naming
the holder and the file. The holder keeps an ``flock`` on it (released by the system when the
process ends, ``kill -9`` too) and refreshes its mtime every minute, so that a lock left by a
process that is gone does not block for ever: on the same host, a lock whose ``flock`` is free
or whose process no longer runs is taken over; on another host (whether its process runs cannot
be told from here, and some cluster file systems lock per node) one not refreshed for
`STALE_AFTER_S` is, by the file system's clock (a file touched now: hosts' clocks differ). A
stale lock is taken over by moving it aside first, so that of two processes that both found it
stale, one takes it and the other is refused. The folder's own lock
(`sliceseg.inference.records.run_lock`) keeps a run of every series apart from shards.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from sliceseg.errors import ConfigError
from sliceseg.inference.shards import Shard
from sliceseg.io.files import temporary_beside

__all__ = ["STALE_AFTER_S", "create_whole", "live_shards", "lock_path", "move_aside", "shard_lock"]

_LOCK_PREFIX = ".sliceseg-lock.shard-"  # hidden: never an output (`sliceseg.io.files.is_finished`)
STALE_AFTER_S = 600.0
"""Another host's lock not refreshed for this long is taken as its process's, which is gone."""
_REFRESH_S = 60.0  # how often the holder touches its lock (well under STALE_AFTER_S)
_STARTING_S = 60.0  # an empty lock this young: its creator is filling it in


def lock_path(out: Path, shard: Shard) -> Path:
    """``OUT/.sliceseg-lock.shard-K-of-N``: the lock of ``shard``.

    Example:
        >>> lock_path(Path("out"), Shard(2, 4)).name
        '.sliceseg-lock.shard-2-of-4'
    """
    return out / f"{_LOCK_PREFIX}{shard.index}-of-{shard.count}"


@contextlib.contextmanager
def shard_lock(out: Path, shard: Shard) -> Iterator[None]:
    """Hold the lock of ``shard`` in the (existing) folder ``out`` while the block runs.

    Raises:
        ConfigError: a live process (or one of another host refreshed less than
            `STALE_AFTER_S` ago) holds it; the message names it, the file and how to clear it.
    """
    if not out.is_dir():  # `cohort_record.check_out_dir` says why
        yield
        return
    path = lock_path(out, shard)
    fd = _acquire(path, shard)
    stop = threading.Event()
    refresher = threading.Thread(target=_refresh, args=(path, stop), daemon=True)
    refresher.start()
    try:
        yield
    finally:
        stop.set()
        refresher.join()
        with contextlib.suppress(OSError):
            path.unlink()  # while the flock is still held: no one else took it since
        os.close(fd)


def live_shards(out: Path, count: int | None = None) -> list[Shard]:
    """The shards of ``count`` (of every count: None) whose lock a live process holds now
    (`shard_lock`), by count and index."""
    now = functools.cache(lambda: _file_system_now(out))  # one probe a call, when one is needed
    found = []
    for path in out.glob(f"{_LOCK_PREFIX}*-of-{count or '*'}"):
        numbers = re.fullmatch(r"(\d+)-of-(\d+)", path.name.removeprefix(_LOCK_PREFIX))
        if numbers and 1 <= int(numbers[1]) <= int(numbers[2]) and _held_by_another(path, now):
            found.append(Shard(int(numbers[1]), int(numbers[2])))
    return sorted(found, key=lambda shard: (shard.count, shard.index))


def _held_by_another(path: Path, now: Callable[[], float]) -> bool:
    """True when a live process other than this one holds the lock at ``path`` (``now``: the
    file system's time, `_file_system_now`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        locked = _flock(fd, exclusive=False)  # a shared one: it needs no write access
        if locked is None:
            return True
        return _is_alive(_holder(fd), locked=locked, age_s=_age_s(fd, now()))
    finally:
        os.close(fd)  # releases a flock taken only to look


def _acquire(path: Path, shard: Shard) -> int:
    """Create (or open), lock and fill in the lock file; refuse when another process holds it."""
    for _ in range(3):  # the file was removed or replaced meanwhile: look at the new one
        try:  # created here: no one holds it (another may be looking: wait for its flock)
            fd, created = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, created = os.open(path, os.O_RDWR), False
            except FileNotFoundError:
                continue
        locked = _flock(fd, wait=created)
        holder = {} if created else _holder(fd)
        is_held = locked is None or (
            not created
            and _is_alive(holder, locked=locked, age_s=_age_s(fd, _file_system_now(path.parent)))
        )
        if is_held:
            os.close(fd)
            raise ConfigError(_held_message(path, shard, holder))
        if not created:  # stale: taken over by whoever moves it aside first, then created anew
            move_aside(fd, path)
        if not created or not _is_current(fd, path):
            os.close(fd)
            continue
        mine = json.dumps({**_this_process(), "shard": f"{shard.index}/{shard.count}"})
        os.pwrite(fd, (mine + "\n").encode(), 0)
        return fd
    raise ConfigError(f"{path}: the lock of {_what(shard)} keeps being replaced; run again.")


def create_whole(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless a file is there: a hard link of a finished
    temporary file, so that no one reads half of it and, of processes creating it at once
    (shards starting together: their plan, ``cohort.json``), exactly one does.

    Returns:
        True when this call created it; False when a file was there (left as it was). Where
        the file system has no hard links, it is replaced, as an atomic write does: True.

    Raises:
        ConfigError: the folder cannot be written to (`temporary_beside`).
    """
    mine = temporary_beside(path)
    try:
        mine.write_text(text, encoding="utf-8")
        try:
            os.link(mine, path)  # fails when a file is there: never half of one, nor two
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links (none there)
            os.replace(mine, path)
        return True
    finally:
        mine.unlink(missing_ok=True)


def move_aside(fd: int, path: Path) -> bool:
    """Move the file ``fd`` has open away from ``path``, to take its place: of processes that
    both judged it (a stale lock, another run's plan), one moves it; another finds it gone, or
    finds it moved the file the first one created since, and puts that back.

    Returns:
        True when this process moved the file ``fd`` has open (then removed).
    """
    aside = temporary_beside(path)
    try:
        os.rename(path, aside)
        if os.stat(aside).st_ino == os.fstat(fd).st_ino:
            return True
        _put_back(aside, path)
        return False
    except FileNotFoundError:  # another process moved it first
        return False
    finally:
        aside.unlink(missing_ok=True)


def _put_back(aside: Path, path: Path) -> None:
    """Put a file moved to ``aside`` back at ``path``, unless yet another was created there."""
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links
        os.rename(aside, path)


def _flock(fd: int, *, exclusive: bool = True, wait: bool = False) -> bool | None:
    """Take a ``flock``: True when taken, False where the file system has none, None when
    another process holds it (``wait``: until it lets go)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return False
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return None
    except OSError:
        return False
    return True


def _is_current(fd: int, path: Path) -> bool:
    """True when ``fd`` is still the file at ``path`` (its holder may have removed it)."""
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except OSError:
        return False


def _holder(fd: int) -> dict[str, Any]:
    """What the lock file says of its holder ({} when empty or damaged)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _age_s(fd: int, now: float) -> float:
    """Seconds since the lock was last refreshed, by the clock of the file system that holds
    it (``now``: `_file_system_now`): the hosts' own clocks may differ by minutes."""
    return now - os.fstat(fd).st_mtime


def _file_system_now(folder: Path) -> float:
    """The time the file system in ``folder`` gives a file touched now, as `_refresh` touches
    a lock (a network file system's server sets it); this host's clock where it cannot."""
    try:
        probe = temporary_beside(folder / "clock")
    except ConfigError:  # a folder this process cannot write to: it only looks
        return time.time()
    try:
        os.utime(probe)
        return probe.stat().st_mtime
    except OSError:
        return time.time()
    finally:
        probe.unlink(missing_ok=True)


def _is_alive(holder: Mapping[str, Any], *, locked: bool, age_s: float) -> bool:
    """Whether the holder a lock file names may still run (``locked``: its flock was free)."""
    if not holder.get("pid"):  # just created, not filled in yet (or by a process killed then)
        return age_s < _STARTING_S
    if holder.get("host") != socket.gethostname():
        return age_s < STALE_AFTER_S
    if locked:  # a live holder on this host would hold the flock
        return False
    try:
        started = psutil.Process(int(holder["pid"])).create_time()
    except (psutil.Error, ValueError, TypeError):
        return False
    return abs(started - float(holder.get("started") or 0)) < 1  # not a reused pid


def _this_process() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
    }


def _refresh(path: Path, stop: threading.Event) -> None:
    """Touch the lock until ``stop``: another host takes a lock not refreshed as stale."""
    while not stop.wait(_REFRESH_S):
        with contextlib.suppress(OSError):
            os.utime(path)


def _what(shard: Shard) -> str:
    return "a run of every series" if shard.is_whole else f"shard {shard.index}/{shard.count}"


def _held_message(path: Path, shard: Shard, holder: Mapping[str, Any]) -> str:
    """The one line refusing a second process of ``shard``."""
    started = holder.get("started")
    since = (
        f", since {datetime.datetime.fromtimestamp(float(started)).isoformat(' ', 'seconds')}"
        if isinstance(started, (int, float))
        else ""
    )
    who = f"pid {holder['pid']} on host {holder.get('host')}{since}" if holder else "a process"
    stale = (
        f"; a lock of another host counts as stale {STALE_AFTER_S / 60:.0f} minutes after "
        "its last refresh"
        if holder and holder.get("host") != socket.gethostname()
        else ""
    )
    return (
        f"{path.parent}: {_what(shard)} is already running ({who}; lock file {path}); two "
        "processes of one shard would write the same series: let it end, or stop it first. "
        f"If it no longer runs (a failed node), delete {path} and run again{stale}."
    )
