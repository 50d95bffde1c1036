"""``torchrun --nproc_per_node=2`` on CPU: ``predict --shard auto`` per rank, then ``merge``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cohort_runs import (
    assert_same_tables,
    assert_split_once,
    clean_env,
    cohort_input,
    run_sliceseg,
)

pytestmark = pytest.mark.slow


def test_two_ranks_then_merge_equal_one_run(tiny_model, tiny_phantom, tmp_path):
    cohort = cohort_input(tiny_phantom, tmp_path / "cohort")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_sliceseg("predict", tiny_model, cohort, "--out", single, "--visuals", "none")

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    predict = ["predict", tiny_model, cohort, "--out", sharded, "--shard", "auto", "--workers", "1"]
    done = subprocess.run(
        [*torchrun, "-m", "sliceseg", *map(str, predict), "--visuals", "none"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"torchrun exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert_split_once(done.stdout + done.stderr, "torchrun", cohort)
    run_sliceseg("merge", sharded)
    assert_same_tables(sharded, single)
