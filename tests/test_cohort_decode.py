"""Tests for sliceseg.inference.cohort_decode: how many decoding workers a run starts."""

from __future__ import annotations

import pytest

from sliceseg.inference import cohort_decode


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 0), (3, 2), (8, 7)])
def test_default_workers_leave_small_machines_to_the_main_process(monkeypatch, cpus, workers):
    """On 2 CPUs or fewer the network's threads fill the cores: no worker; above, one CPU is
    kept for the network and the rest decode."""
    monkeypatch.setattr(cohort_decode, "rank_cpus", lambda: cpus)
    assert cohort_decode.default_workers() == workers
