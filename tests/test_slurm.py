"""A real SLURM job array: ``predict --shard auto`` as 2 array tasks, a dependent ``merge``.

The cluster (munged, slurmctld, slurmd on this machine, `slurm_cluster`) needs slurm-wlm, munge
and root; elsewhere the test is skipped with the reason (CI installs them in ``.ci/run``).
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest

from cohort_runs import (
    SLICESEG,
    assert_same_tables,
    assert_split_once,
    cohort_input,
    run_sliceseg,
)
from slurm_cluster import slurm_cluster, why_unavailable

pytestmark = pytest.mark.slow


def _job_script(path: Path, *command: str | Path) -> Path:
    """A batch script running ``command`` with one torch thread, from this test's interpreter."""
    line = shlex.join(str(part) for part in command)
    path.write_text(f"#!/bin/bash\nset -euo pipefail\nexport OMP_NUM_THREADS=1\n{line}\n")
    path.chmod(0o755)
    return path


def test_job_array_and_dependent_merge_equal_one_run(tiny_model, tiny_phantom, tmp_path):
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cohort = cohort_input(tiny_phantom, tmp_path / "cohort")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_sliceseg("predict", tiny_model, cohort, "--out", single, "--visuals", "none")

    predict = _job_script(
        tmp_path / "predict.sh",
        *SLICESEG, "predict", tiny_model, cohort, "--out", sharded,
        "--shard", "auto", "--workers", "1", "--visuals", "none",
    )  # fmt: skip
    merge = _job_script(tmp_path / "merge.sh", *SLICESEG, "merge", sharded)
    here = f"--chdir={tmp_path}"
    start = time.monotonic()
    with slurm_cluster(tmp_path / "slurm") as cluster:
        # The jobs inherit sbatch's environment (--export=ALL): this interpreter's, without SLURM_*.
        array = cluster.sbatch(
            predict, "--array=0-1", "--cpus-per-task=1", here, "--output=predict-%A_%a.out"
        )
        merged = cluster.sbatch(
            merge, f"--dependency=afterany:{array}", here, "--output=merge-%j.out"
        )
        states = cluster.wait([array, merged], timeout=300)
    elapsed = time.monotonic() - start
    predicted = "\n".join(p.read_text() for p in sorted(tmp_path.glob("predict-*.out")))
    merge_log = (tmp_path / f"merge-{merged}.out").read_text()
    expected = {f"{array}_0", f"{array}_1", merged}
    assert set(states) == expected, states
    assert all(state == ("COMPLETED", "0:0") for state in states.values()), (
        f"{states}\n{predicted}\n{merge_log}"
    )
    assert_split_once(predicted, "SLURM", cohort)
    series, slices = (
        len({p.parent for p in cohort.rglob("*.dcm")}),
        len(list(cohort.rglob("*.dcm"))),
    )
    assert f"Merged {series} series ({slices} slices), 0 failed" in merge_log, merge_log
    assert_same_tables(sharded, single)
    print(f"SLURM array of 2 + merge: {elapsed:.1f} s", file=sys.stderr)
