"""Tests for sliceseg.inference.cohort_record: one ``cohort.json`` however shards start."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sliceseg.errors import ConfigError
from sliceseg.inference import cohort_record as module
from sliceseg.inference.cohort_record import check_out_dir as check
from sliceseg.inference.records import RunRecord, RunSettings

LEAN = RunSettings(roi_names=(), visuals="none", exports=(), report=False)


def interleaved(monkeypatch, out: Path, other: RunRecord, *, at: str, then: str = "") -> None:
    """Let shard B (``other``) check ``out`` and write ``cohort.json`` (and the file ``then``:
    its plan) in the moment shard A calls ``at`` (after it found no ``cohort.json``)."""
    step, started = getattr(module, at), []

    def b_meanwhile(path: Path):
        found = step(path)
        if not started and path.name in ("cohort.json", out.name):
            started.append("B")
            check(out, other, overwrite=False)  # B, all of it, between A's steps
            if then:
                (out / then).write_text("{}\n")
        return found

    monkeypatch.setattr(module, at, b_meanwhile)


class TestCheckOutDir:
    def test_of_two_shards_starting_at_once_with_other_settings_the_later_is_refused(
        self, tmp_path, monkeypatch
    ):
        """Shards 1/2 (no --tta) and 2/2 (--tta) started in the same moment: both found no
        cohort.json, both wrote theirs, the later one's stood and both ran, so half the
        series were made with settings cohort.json does not name."""
        mine = RunRecord("m.pt", "0" * 64, LEAN)
        other = RunRecord("m.pt", "0" * 64, dataclasses.replace(LEAN, tta=True))
        interleaved(monkeypatch, tmp_path, other, at="create_output_dir")  # A is about to write
        with pytest.raises(ConfigError) as refused:
            check(tmp_path, mine, overwrite=False)
        assert str(refused.value) == (
            f"{tmp_path}: its settings differ in --tta: it was made with tta=true, this run "
            "asks tta=false; use another --out, or pass --overwrite (overwrite=True) to redo "
            "every series."
        )
        assert json.loads((tmp_path / "cohort.json").read_text())["settings"]["tta"] is True
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.json"]

    def test_of_two_shards_starting_at_once_with_one_settings_both_go_on(
        self, tmp_path, monkeypatch
    ):
        """The same two shards with the same settings, the other one's plan written before
        this one looked for other files: it was refused as 'folder exists and is not empty',
        and had it gone on, its undo after a user error would remove the other's cohort.json
        (it returned "" as if it had created it)."""
        mine = RunRecord("m.pt", "0" * 64, LEAN)
        interleaved(monkeypatch, tmp_path, mine, at="read_json", then="input_series.json")
        assert check(tmp_path, mine, overwrite=False) is None  # left as the other wrote it
        written = json.loads((tmp_path / "cohort.json").read_text())
        assert written == mine.to_dict()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.json", "input_series.json"]
