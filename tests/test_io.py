"""Atomic writes keep the old file on failure and give outputs normal permissions."""

import os
import stat

import pytest

from sliceseg.errors import ConfigError
from sliceseg.io.files import atomic_path, atomic_write_text, prepare_output_dir


def test_failed_write_keeps_the_old_file(tmp_path):
    target = atomic_write_text(tmp_path / "a.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.csv"]


def test_outputs_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_non_empty_output_folder_needs_overwrite(tmp_path):
    (tmp_path / "f.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not empty; choose another --out or pass --overwrite"):
        prepare_output_dir(tmp_path, overwrite=False)
    assert prepare_output_dir(tmp_path, overwrite=True) == tmp_path
