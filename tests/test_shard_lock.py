"""Tests for sliceseg.inference.shard_lock: one process per shard, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from sliceseg.errors import ConfigError
from sliceseg.inference import shard_lock as locks
from sliceseg.inference.shard_lock import STALE_AFTER_S, live_shards, lock_path, shard_lock
from sliceseg.inference.shards import Shard

HOST = socket.gethostname()


def dead_pid() -> int:
    """The pid of a process that has ended (a shard killed with kill -9)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(done.stdout)


def take(out: Path, shard: Shard) -> None:
    """Take the lock of ``shard`` and let it go."""
    with shard_lock(out, shard):
        pass


def left_lock(out: Path, shard: Shard, *, host: str, pid: int, age_s: float = 0) -> Path:
    """A lock file as a process that ended without removing it left it, ``age_s`` old."""
    path = lock_path(out, shard)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": 1e9, "shard": "x"}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


class TestShardLock:
    def test_a_second_process_of_one_shard_is_refused_naming_the_holder_and_the_file(
        self, tmp_path
    ):
        """Two processes of shard 2/4 (a SLURM requeue while the first still ran) both wrote
        the same series: nothing kept them apart."""
        path = tmp_path / ".sliceseg-lock.shard-2-of-4"
        with shard_lock(tmp_path, Shard(2, 4)):
            holder = json.loads(path.read_text())
            assert (holder["host"], holder["pid"]) == (HOST, os.getpid())
            with pytest.raises(ConfigError) as refused:
                take(tmp_path, Shard(2, 4))
            with shard_lock(tmp_path, Shard(3, 4)):  # another shard of the run goes on
                assert live_shards(tmp_path, 4) == [Shard(2, 4), Shard(3, 4)]
        message = str(refused.value)
        assert message.startswith(
            f"{tmp_path}: shard 2/4 is already running (pid {os.getpid()} on host {HOST}, since "
        )
        assert message.endswith(
            f"lock file {path}); two processes of one shard would write the same series: let "
            f"it end, or stop it first. If it no longer runs (a failed node), delete {path} "
            "and run again."
        )
        assert "\n" not in message and not path.exists()  # removed when the holder ended

    def test_a_live_process_holding_the_lock_is_seen_by_others(self, tmp_path):
        code = (
            "import sys, time; from pathlib import Path\n"
            "from sliceseg.inference.shard_lock import shard_lock\n"
            "from sliceseg.inference.shards import Shard\n"
            "with shard_lock(Path(sys.argv[1]), Shard(1, 2)):\n"
            "    print('held', flush=True); time.sleep(60)\n"
        )
        holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert live_shards(tmp_path, 2) == [Shard(1, 2)]
            with pytest.raises(ConfigError, match=rf"shard 1/2 is already running \(pid "
                               rf"{holder.pid} on host "):  # fmt: skip
                take(tmp_path, Shard(1, 2))
        finally:
            holder.kill()  # kill -9: the lock file stays, its flock goes
            holder.wait()
        assert lock_path(tmp_path, Shard(1, 2)).exists()
        assert live_shards(tmp_path, 2) == []
        with shard_lock(tmp_path, Shard(1, 2)):  # taken over, not blocked for ever
            assert json.loads(lock_path(tmp_path, Shard(1, 2)).read_text())["pid"] == os.getpid()

    def test_a_lock_of_a_dead_process_of_this_host_is_taken_over(self, tmp_path, monkeypatch):
        """Also where the file system has no flock: the pid no longer runs."""
        monkeypatch.setattr(locks, "_flock", lambda fd, **how: False)
        left_lock(tmp_path, Shard(1, 3), host=HOST, pid=dead_pid())
        take(tmp_path, Shard(1, 3))
        started = psutil.Process().create_time()
        path = left_lock(tmp_path, Shard(1, 3), host=HOST, pid=os.getpid())
        path.write_text(json.dumps({"host": HOST, "pid": os.getpid(), "started": started}))
        with pytest.raises(ConfigError, match=r"shard 1/3 is already running"):
            take(tmp_path, Shard(1, 3))  # that pid runs: no flock to tell more

    def test_another_host_s_lock_blocks_until_it_is_stale(self, tmp_path):
        path = left_lock(tmp_path, Shard(2, 2), host="node7", pid=4242, age_s=30)
        with pytest.raises(ConfigError) as refused:
            take(tmp_path, Shard(2, 2))
        assert str(refused.value).endswith(
            f"delete {path} and run again; a lock of another host counts as stale 10 minutes "
            "after its last refresh."
        )
        assert "(pid 4242 on host node7, since 2001-09-0" in str(refused.value)
        left_lock(tmp_path, Shard(2, 2), host="node7", pid=4242, age_s=STALE_AFTER_S + 1)
        with shard_lock(tmp_path, Shard(2, 2)):
            assert json.loads(path.read_text())["host"] == HOST

    def test_a_run_of_every_series_is_named_so(self, tmp_path):
        running = r": a run of every series is already running"
        with shard_lock(tmp_path, Shard()), pytest.raises(ConfigError, match=running):
            take(tmp_path, Shard(1, 1, "--shard"))

    def test_an_empty_lock_is_a_process_starting_until_it_is_old(self, tmp_path):
        """Tasks started at once on two nodes (whose file system locks per node) both took an
        empty lock file as free, between its creation and its holder filling it in."""
        path = lock_path(tmp_path, Shard(1, 2))
        path.write_text("")
        with pytest.raises(ConfigError, match=r"shard 1/2 is already running \(a process; "):
            take(tmp_path, Shard(1, 2))
        os.utime(path, (time.time() - 61, time.time() - 61))
        take(tmp_path, Shard(1, 2))


class TestStaleTakeover:
    def test_two_takers_of_one_stale_lock_leave_one_holder(self, tmp_path, monkeypatch):
        """Tasks on two nodes (whose file system locks per node, or not at all) both found
        another host's lock stale and both wrote themselves into it: both ran shard 1/2."""
        monkeypatch.setattr(locks, "_flock", lambda fd, **how: False)
        path = left_lock(tmp_path, Shard(1, 2), host="node7", pid=4242, age_s=STALE_AFTER_S + 1)
        b_judged, a_holds = threading.Event(), threading.Event()
        judged = locks._is_alive
        names = {}

        def is_alive(holder, *, locked, age_s):  # the worst order: B judges, A takes, B goes on
            is_b = threading.current_thread().name == "B"
            if holder.get("host") == "node7" and not is_b:
                b_judged.wait(5)
            verdict = judged(holder, locked=locked, age_s=age_s)
            if holder.get("host") == "node7" and is_b:
                b_judged.set()
                a_holds.wait(5)
            return verdict

        def taker(name: str) -> None:
            try:
                names[name] = locks._acquire(path, Shard(1, 2))
            except ConfigError as error:
                names[name] = error
            finally:
                if name == "A":
                    a_holds.set()

        monkeypatch.setattr(locks, "_is_alive", is_alive)
        b = threading.Thread(target=taker, args=("B",), name="B")
        b.start()
        taker("A")
        b.join(10)
        assert isinstance(names["A"], int)
        assert os.fstat(names["A"]).st_ino == path.stat().st_ino  # A's lock is the one there
        assert isinstance(names["B"], ConfigError)
        assert str(names["B"]).startswith(f"{tmp_path}: shard 1/2 is already running (pid ")
        assert json.loads(path.read_text())["host"] == HOST
        assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing left aside
        os.close(names["A"])


class TestClockSkew:
    def test_a_live_lock_of_another_host_is_not_stale_by_a_clock_ahead(self, tmp_path, monkeypatch):
        """A host whose clock ran 15 minutes ahead took another host's lock, refreshed a
        minute ago by the file system's clock, as stale and ran the same shard again."""
        path = left_lock(tmp_path, Shard(2, 4), host="node7", pid=4242, age_s=60)
        ahead = time.time() + 15 * 60
        monkeypatch.setattr(locks.time, "time", lambda: ahead)
        with pytest.raises(
            ConfigError, match=r"shard 2/4 is already running \(pid 4242 on host node7"
        ):
            take(tmp_path, Shard(2, 4))
        assert live_shards(tmp_path, 4) == [Shard(2, 4)]
        assert json.loads(path.read_text())["pid"] == 4242

    def test_a_stale_lock_of_another_host_is_stale_by_a_clock_behind(self, tmp_path, monkeypatch):
        left_lock(tmp_path, Shard(2, 4), host="node7", pid=4242, age_s=STALE_AFTER_S + 60)
        behind = time.time() - 15 * 60
        monkeypatch.setattr(locks.time, "time", lambda: behind)
        assert live_shards(tmp_path, 4) == []
        take(tmp_path, Shard(2, 4))
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no clock probe left

    def test_live_shards_probes_the_file_system_clock_once_a_call(self, tmp_path, monkeypatch):
        """Looking at four locks of another host created and removed a clock probe file per
        lock (every shard of a large array looks at every lock of its run)."""
        for index in (1, 2, 3):
            left_lock(tmp_path, Shard(index, 8), host="node7", pid=4242, age_s=60 * index)
        left_lock(tmp_path, Shard(4, 8), host="node7", pid=4242, age_s=STALE_AFTER_S + 60)
        probes: list[Path] = []
        probe = locks.temporary_beside

        def counted(target: Path) -> Path:
            probes.append(target)
            return probe(target)

        monkeypatch.setattr(locks, "temporary_beside", counted)
        assert live_shards(tmp_path, 8) == [Shard(1, 8), Shard(2, 8), Shard(3, 8)]
        assert probes == [tmp_path / "clock"]
        probes.clear()
        assert live_shards(tmp_path, 2) == []  # no lock looked at: no probe
        assert probes == []
