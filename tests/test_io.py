"""Atomic writes keep the old file on failure and give outputs normal permissions."""

import errno
import os
import re
import signal
import stat

import pytest

from conftest import full_disk_on_write
from sliceseg.cli.exits import Terminated, sigterm_as_interrupt
from sliceseg.errors import ConfigError
from sliceseg.io import files
from sliceseg.io.files import (
    TEMP_PREFIX,
    atomic_path,
    atomic_write_text,
    files_together,
    named_text,
)
from sliceseg.io.output_folders import prepare_output_dir


def test_failed_write_keeps_the_old_file(tmp_path):
    target = atomic_write_text(tmp_path / "a.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_inside_a_temporary_folder_the_target_is_written_directly(tmp_path, monkeypatch):
    """A cohort series' folder is renamed into place whole: its files need no temporary file
    of their own (which costs a one-slice series several file-system operations), and a failed
    write leaves nothing behind."""
    import tempfile

    def no_temporary_file(*args, **kwargs):
        raise AssertionError("a temporary file inside a temporary folder")

    monkeypatch.setattr(tempfile, "mkstemp", no_temporary_file)
    folder = tmp_path / f"{TEMP_PREFIX}p01.123" / "exports"
    with atomic_path(folder / "csa.csv") as path:
        assert path == folder / "csa.csv"
        path.write_text("a,b\n")
    assert (folder / "csa.csv").read_text() == "a,b\n"
    with pytest.raises(RuntimeError), atomic_path(folder / "half.csv") as path:
        path.write_text("half")
        raise RuntimeError("boom")
    assert sorted(p.name for p in folder.iterdir()) == ["csa.csv"]
    with pytest.raises(AssertionError, match="temporary file"):
        atomic_write_text(tmp_path / "final.csv", "x")  # elsewhere: atomic as before


@pytest.mark.parametrize("full", ["outer", "inner"])
def test_a_full_disk_names_the_one_of_two_open_files_it_failed(tmp_path, monkeypatch, full):
    """Two atomic writes open at once (the merged csa.csv and csa_long.csv): a full disk's
    error names no file, so the inner write took the outer one's failure for its own. Neither
    file is replaced: both are written out before either is renamed."""
    for name in ("outer", "inner"):
        atomic_write_text(tmp_path / f"{name}.csv", "old\n")
    full_disk_on_write(monkeypatch, f"{TEMP_PREFIX}{full}.")
    expected = rf"{full}\.csv: cannot write it \(No space left on device\); free space"
    outer, inner = tmp_path / "outer.csv", tmp_path / "inner.csv"
    with (
        pytest.raises(ConfigError, match=expected),
        atomic_path(outer) as outer_tmp,
        atomic_path(inner) as inner_tmp,
        named_text(outer_tmp, outer) as outer_file,
        named_text(inner_tmp, inner) as inner_file,
    ):
        outer_file.write("new\n")
        inner_file.write("new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner.csv", "outer.csv"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"old\n"}


@pytest.mark.parametrize("folder", ["", f"{TEMP_PREFIX}p01.123"])
def test_a_full_disk_names_the_file_and_the_fix(tmp_path, folder):
    """A full disk fails a write with an OSError that names no file: the command line took it
    for a bug of ours (exit 4, "internal error"); an input's error inside the block stays."""
    target = atomic_write_text(tmp_path / folder / "a.csv", "old")
    expected = r"a\.csv: cannot write it \(No space left on device\); free space on its disk"
    with pytest.raises(ConfigError, match=expected), atomic_path(target) as path:
        path.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if folder:  # written directly there, removed when the write fails
        assert not target.exists()
    else:
        assert target.read_text() == "old"
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "b.csv"):
        (tmp_path / "an input.csv").read_text()


def test_outputs_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_writer_threads_leave_the_umask_as_it_was(tmp_path, monkeypatch):
    """Reading the umask sets it for a moment; threads writing at once (a cohort's writers)
    must not leave it at 0. A slow os.umask widens the moment so that a race shows."""
    import threading
    import time

    real_umask = os.umask

    def slow_umask(mask: int) -> int:
        time.sleep(0.001)
        return real_umask(mask)

    old = real_umask(0o022)
    monkeypatch.setattr(os, "umask", slow_umask)
    try:
        threads = [
            threading.Thread(
                target=lambda n=n: [
                    atomic_write_text(tmp_path / f"{n}_{i}.txt", "x") for i in range(20)
                ]
            )
            for n in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        left = real_umask(old)
    assert left == 0o022
    assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {0o644}


def test_non_empty_output_folder_needs_overwrite(tmp_path):
    """The refusal names the flag and, for a notebook's call, the argument that overrides it."""
    (tmp_path / "f.txt").write_text("keep")
    expected = "not empty; choose another --out or pass --overwrite (overwrite=True)."
    with pytest.raises(ConfigError, match=re.escape(expected)):
        prepare_output_dir(tmp_path, overwrite=False)
    assert prepare_output_dir(tmp_path, overwrite=True) == tmp_path


def test_a_sigterm_among_the_renames_of_files_together_lands_them_all(tmp_path, monkeypatch):
    """SIGTERM (a job's time limit) arriving after the first of a merge's renames ended it
    there: a new csa.csv beside the earlier merge's series.csv, the rest of the new ones
    removed with the hidden folder. The renames now finish, then the run ends as terminated."""
    for name in ("a.csv", "b.csv", "c.csv"):
        atomic_write_text(tmp_path / name, "old")
    real = os.replace

    def replace_then_sigterm(source, target):
        real(source, target)
        signal.raise_signal(signal.SIGTERM)

    names = ("a.csv", "b.csv", "c.csv")
    with (
        sigterm_as_interrupt(),
        pytest.raises(Terminated),
        files_together(tmp_path, names) as stage,
    ):
        for name in names:
            (stage / name).write_text("new")
        monkeypatch.setattr(files.os, "replace", replace_then_sigterm)
    monkeypatch.undo()
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == dict.fromkeys(names, "new")
