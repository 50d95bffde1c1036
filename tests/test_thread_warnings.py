"""Tests for sliceseg.thread_warnings: warnings silenced or recorded in one thread only."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from conftest import warning_from_another_thread
from sliceseg.thread_warnings import recorded, silenced

SRC = Path(__file__).resolve().parents[1] / "src" / "sliceseg"


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught]


def test_silenced_drops_this_thread_s_warnings_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warning_from_another_thread("theirs") as pause, silenced():
            warnings.warn("mine", UserWarning, stacklevel=1)
            pause()
    assert _messages(caught) == ["theirs"]


def test_silenced_with_a_category_drops_only_that_category():
    """A cohort's writer silences the DICOM-SEG renaming warning the run said once; the other
    warnings of its series are still shown."""

    class Said(UserWarning):
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warning_from_another_thread("theirs") as pause, silenced(Said):
            warnings.warn("said by the run", Said, stacklevel=1)
            warnings.warn("mine", UserWarning, stacklevel=1)
            pause()
    assert sorted(_messages(caught)) == ["mine", "theirs"]


def test_recorded_keeps_this_thread_s_warnings_each_time_and_no_other_s():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # shown once: the block still records each one
        with warning_from_another_thread("theirs") as pause, recorded() as mine:
            for _ in range(2):
                warnings.warn("mine", UserWarning, stacklevel=1)
            pause()
    assert _messages(mine) == ["mine", "mine"]
    assert [w.category for w in mine] == [UserWarning, UserWarning]
    assert _messages(caught) == ["theirs"]


def test_the_innermost_block_decides_and_outer_filters_do_not_reach_in():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as `-W error`: the blocks' own choice wins inside
        with recorded() as outer:
            warnings.warn("outer", UserWarning, stacklevel=1)
            with silenced():
                warnings.warn("dropped", UserWarning, stacklevel=1)
            with recorded() as inner:
                warnings.warn("inner", UserWarning, stacklevel=1)
            warnings.warn("said again", UserWarning, stacklevel=1)
        with pytest.raises(UserWarning, match="after the blocks"):
            warnings.warn("after the blocks", UserWarning, stacklevel=1)
    assert _messages(outer) == ["outer", "said again"]
    assert _messages(inner) == ["inner"]


def test_no_module_changes_the_process_wide_warning_filters():
    """`catch_warnings` swaps the filters of every thread: only the command's outermost block
    (entered before any thread starts) may use it; the rest uses `silenced` / `recorded`."""
    found = [
        path.relative_to(SRC).as_posix()
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "thread_warnings.py"
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"catch_warnings\(|simplefilter\(|filterwarnings\(", line)
    ]
    assert found == ["cli/command.py"]
