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


def _documented_script(path: Path, model: Path, cohort: Path, out: Path) -> Path:
    """docs/usage.md's ``cohort.sbatch`` from ``set -euo pipefail`` on, for this test's model,
    input and output, with this interpreter for the ``sliceseg`` of its virtual environment."""
    usage = (Path(__file__).parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    block = usage.split("`cohort.sbatch`", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    body = block[block.index("set -euo pipefail") :]
    lines = [line for line in body.splitlines() if not line.startswith("source ")]
    text = "\n".join(["#!/bin/bash", "export OMP_NUM_THREADS=1", *lines, ""])
    for old, new in (
        ("sliceseg predict", f"{shlex.join(SLICESEG)} predict"),
        ("model/sliceseg_best.pt", str(model)),
        ("/data/cohort", str(cohort)),
        ("/scratch/cohort", str(out)),
    ):
        assert old in text, f"{old!r} not in the documented script:\n{text}"
        text = text.replace(old, new)
    path.write_text(text)
    path.chmod(0o755)
    return path


def test_the_documented_script_cancelled_says_so_and_its_resubmission_completes(
    tiny_model, tiny_phantom, tmp_path
):
    """At a time limit (or scancel) SLURM sends SIGTERM to every process of the job, and kills
    what is left as soon as the batch script's shell ends: the shell ran sliceseg as a child
    and died at once, so sliceseg was killed 10 ms later, without its line or exit 143. The
    documented script `exec`s sliceseg, which then ends as on Ctrl-C within SLURM's KillWait."""
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    cohort = cohort_input(tiny_phantom, tmp_path / "cohort")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_sliceseg("predict", tiny_model, cohort, "--out", single)
    script = _documented_script(tmp_path / "cohort.sbatch", tiny_model, cohort, sharded)
    options = ("--array=0-1", "--cpus-per-task=1", f"--chdir={tmp_path}")
    with slurm_cluster(tmp_path / "slurm") as cluster:
        array = cluster.sbatch(script, *options, "--output=first-%A_%a.out")
        logs = [tmp_path / f"first-{array}_{task}.out" for task in (0, 1)]
        deadline = time.monotonic() + 120
        while not all(log.is_file() and "series already done" in log.read_text() for log in logs):
            assert time.monotonic() < deadline, cluster.logs()
            time.sleep(0.05)
        cluster.command("scancel", array)
        states = cluster.wait([array], timeout=120)
        first = "\n".join(log.read_text() for log in logs)
        again = cluster.sbatch(script, *options, "--output=again-%A_%a.out")
        cluster.wait([again], timeout=300)
    assert (
        first.count(
            "terminated (SIGTERM); files already written are kept; the same command again goes on "
            "(the finished series are skipped)."
        )
        == 2
    ), f"{states}\n{first}"
    assert {state[1] for state in states.values()} == {"143:0"}, states
    run_sliceseg("merge", sharded)
    assert_same_tables(sharded, single)
