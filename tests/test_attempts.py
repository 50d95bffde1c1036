"""Tests for sliceseg.inference.attempts: a run's failure and unreadable records, taken back."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sliceseg.inference.attempts import (
    RunAttempts,
    failure_path,
    unreadable_path,
    write_failure,
    write_unreadable,
)
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.series_plan import PlannedSeries

P01, P02, P03 = (PlannedSeries(f"1.2.{i}", f"p0{i}", ()) for i in (1, 2, 3))
DAMAGED = [SkippedFile(Path("p01/a.dcm"), "p01/a.dcm: cannot decode pixel data")]


def records(out: Path) -> dict[str, tuple[bytes, int]]:
    """Every record file under ``out``: its bytes and mtime (ns)."""
    return {
        p.relative_to(out).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*.json"))
    }


class TestRunAttempts:
    def test_undo_puts_back_an_earlier_run_s_records_as_they_were(self, tmp_path):
        """A run ending on a user error took back its failure records only: the unreadable
        ones stayed, and an earlier run's records it had written over or removed were lost."""
        # an earlier run's records
        write_failure(tmp_path, P01, "p01.dcm: no PixelSpacing; give --fov", root=tmp_path)
        write_unreadable(tmp_path, P02, DAMAGED, root=tmp_path)
        for path in (failure_path(tmp_path, "p01"), unreadable_path(tmp_path, "p02")):
            os.utime(path, ns=(10**18, 10**18))  # older than anything the run writes
        before = records(tmp_path)
        attempts = RunAttempts(tmp_path, tmp_path)
        attempts.write_unreadable(P01, DAMAGED)  # removes p01's failure record
        attempts.write_unreadable(P02, DAMAGED)  # writes over p02's
        attempts.write_failure(P03, "RuntimeError: disk full")
        attempts.write_unreadable(P03, DAMAGED)  # the second attempt: kept as before the first
        assert sorted(records(tmp_path)) == [
            "unreadable/p01.json",
            "unreadable/p02.json",
            "unreadable/p03.json",
        ]
        attempts.undo()
        assert records(tmp_path) == before

    def test_undo_of_a_first_run_leaves_no_record_folder(self, tmp_path):
        attempts = RunAttempts(tmp_path, tmp_path)
        attempts.write_failure(P01, "p01.dcm: no PixelSpacing; give --fov")
        attempts.write_unreadable(P02, DAMAGED)
        attempts.undo()
        assert list(tmp_path.iterdir()) == []


class TestKilledWrites:
    def test_the_next_run_removes_the_temporary_records_of_killed_writes_only(self, tmp_path):
        """A record write killed before its rename left its hidden temporary file in
        ``OUT/failed/`` or ``OUT/unreadable/``, and nothing ever removed it; a live
        process's (another shard writing now) or another host's must stay."""
        import socket

        from sliceseg.io.files import TEMP_PREFIX

        write_failure(tmp_path, P01, "RuntimeError: disk full", root=tmp_path)
        here, dead = socket.gethostname(), 2**22 + 7  # above Linux's pid_max: no such process
        names = {
            "killed": f"{TEMP_PREFIX}p02.{here}-{dead}~abc123de.json",
            "older sliceseg": f"{TEMP_PREFIX}p03.abc123de.json",
            "live": f"{TEMP_PREFIX}p04.{here}-{os.getpid()}~abc123de.json",
            "other host": f"{TEMP_PREFIX}p05.elsewhere.cluster-{dead}~abc123de.json",
        }
        for folder in ("failed", "unreadable"):
            for name in names.values():
                (tmp_path / folder).mkdir(exist_ok=True)
                (tmp_path / folder / name).write_text("{}")
        RunAttempts(tmp_path, tmp_path)  # made at a run's start (`predict_cohort`)
        kept = {names["live"], names["other host"]}
        assert {p.name for p in (tmp_path / "failed").iterdir()} == {"p01.json", *kept}
        assert {p.name for p in (tmp_path / "unreadable").iterdir()} == kept

    def test_a_record_s_temporary_file_names_its_process(self, tmp_path, monkeypatch):
        """So that `clear_killed_attempts` can tell a killed write's file from a live one's."""
        import socket

        import sliceseg.io.files as files

        seen = []

        def replace(source, target):
            seen.append(Path(source).name)
            raise KeyboardInterrupt  # as a kill before the rename, nothing caught

        monkeypatch.setattr(files.os, "replace", replace)
        with contextlib.suppress(KeyboardInterrupt):
            write_failure(tmp_path, P01, "RuntimeError: disk full", root=tmp_path)
        owner = f".{socket.gethostname()}-{os.getpid()}~"
        assert len(seen) == 1 and seen[0].startswith(f"{files.TEMP_PREFIX}p01{owner}")
