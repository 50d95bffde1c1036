"""Tests for sliceseg.inference.shard_plan: one plan per run, one shard count at a time."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sliceseg.errors import ConfigError
from sliceseg.inference import shard_plan
from sliceseg.inference.shard_lock import lock_path, shard_lock
from sliceseg.inference.shard_plan import check_shard_count, write_shard_plan
from sliceseg.inference.shards import Shard
from sliceseg.io.series_plan import CohortPlan, PlannedSeries

RUN = "SLURM array job 7"


def planned(root: Path, *names: str) -> CohortPlan:
    """A plan of series ``names`` (no files: only their names matter here)."""
    return CohortPlan(root, tuple(PlannedSeries(name, name, ()) for name in names), ())


def stored(out: Path) -> dict:
    return json.loads((out / "input_series.json").read_text())


class TestWriteShardPlan:
    def test_a_changed_plan_names_the_series_in_the_plan_order(self, tmp_path):
        """The refusal listed the added series in plain string order (``p10, p9``), unlike the
        plan, the tables and every other line (`series_name_key`)."""
        assert write_shard_plan(tmp_path, planned(tmp_path, "p1", "p2"), Shard(1, 2, run=RUN),
                                root=tmp_path) == ""  # fmt: skip
        later = planned(tmp_path, "p1", "p2", "p9", "p10")
        with pytest.raises(ConfigError, match=r": 2 series added \(p9, p10\); the 2 shards"):
            write_shard_plan(tmp_path, later, Shard(2, 2, run=RUN), root=tmp_path)
        assert stored(tmp_path)["series"] == ["p1", "p2"]

    def test_a_new_run_replaces_an_earlier_run_s_plan(self, tmp_path):
        old = planned(tmp_path, "p1")
        write_shard_plan(tmp_path, old, Shard(1, 2, run="SLURM array job 6"), root=tmp_path)
        before = (tmp_path / "input_series.json").read_text()
        new = planned(tmp_path, "p1", "p2")
        assert write_shard_plan(tmp_path, new, Shard(2, 2, run=RUN), root=tmp_path) == before
        assert (stored(tmp_path)["series"], stored(tmp_path)["run"]) == (["p1", "p2"], RUN)
        assert write_shard_plan(tmp_path, new, Shard(1, 2, run=RUN), root=tmp_path) is None
        assert sorted(p.name for p in tmp_path.iterdir()) == ["input_series.json"]

    @pytest.mark.parametrize("same", [True, False], ids=["same series", "other series"])
    def test_two_shards_replacing_an_earlier_plan_at_once_leave_one_plan(
        self, tmp_path, monkeypatch, same
    ):
        """Shards 1/2 and 2/2 of a new run both found the earlier run's plan, then each wrote
        its own: the later one's list stood, and the other shard split another list unseen."""
        write_shard_plan(tmp_path, planned(tmp_path, "p1"), Shard(1, 2, run="SLURM array job 6"),
                         root=tmp_path)  # fmt: skip
        a_started, a_wrote, judged = threading.Event(), threading.Event(), shard_plan._is_this_runs

        def is_this_runs(out, text, shard):  # B judges the old plan, then A writes its own
            verdict = judged(out, text, shard)
            if threading.current_thread().name == "B" and not a_started.is_set():
                a_started.set()
                write_shard_plan(tmp_path, planned(tmp_path, "p1", "p2"), Shard(1, 2, run=RUN),
                                 root=tmp_path)  # fmt: skip
                a_wrote.set()
            return verdict

        monkeypatch.setattr(shard_plan, "_is_this_runs", is_this_runs)
        names = ("p1", "p2") if same else ("p1", "p2", "p3")
        found: list[object] = []

        def shard_b() -> None:
            try:
                found.append(write_shard_plan(tmp_path, planned(tmp_path, *names),
                                              Shard(2, 2, run=RUN), root=tmp_path))  # fmt: skip
            except ConfigError as error:
                found.append(error)

        b = threading.Thread(target=shard_b, name="B")
        b.start()
        b.join(10)
        assert a_wrote.is_set() and stored(tmp_path)["series"] == ["p1", "p2"]  # A's stands
        if same:
            assert found == [None]
        else:
            assert isinstance(found[0], ConfigError)
            assert ": 1 series added (p3); the 2 shards of a run" in str(found[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["input_series.json"]


class TestCheckShardCount:
    def test_a_shard_of_another_count_is_refused_while_those_run(self, tmp_path):
        """``--shard 1/4`` and ``--shard 2/8`` into one folder: two counts split the series
        differently, and only the documentation said not to."""
        with shard_lock(tmp_path, Shard(1, 4)), shard_lock(tmp_path, Shard(3, 4)):
            with pytest.raises(ConfigError) as refused:
                check_shard_count(tmp_path, Shard(2, 8))
            check_shard_count(tmp_path, Shard(2, 4))  # the same count: one run
        assert str(refused.value) == (
            f"{tmp_path}: shards of 4 are running into it (shards 1/4, 3/4; lock file "
            f"{lock_path(tmp_path, Shard(1, 4))}), and this is shard 2/8: shards of 4 and of "
            "8 split the series differently, so a series could be taken twice at once. Give "
            "--shard K/4 as they do, or let them end, then run --shard K/8 for every K "
            "(finished series are skipped)."
        )
        check_shard_count(tmp_path, Shard(2, 8))  # they ended: the count may change
