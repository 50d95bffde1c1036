"""Shared helpers of the cohort tests: a small multi-series input, CLI runs, table equality."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

SLICESEG = [sys.executable, "-m", "sliceseg"]
MERGED_TABLES = ("csa.csv", "csa_long.csv")
# Variables a launcher sets; a reference run must not inherit them from the shell running pytest.
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without SLURM's or torchrun's variables, one torch thread."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("SLURM_") and name not in LAUNCHER_VARIABLES
    }
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def cohort_input(phantom: Path, folder: Path) -> Path:
    """Copy every DICOM of ``phantom`` (train and test) into ``folder``: one series per subject."""
    for split in ("train", "test"):
        source = phantom / split / "dicoms"
        if source.is_dir():
            shutil.copytree(source, folder, dirs_exist_ok=True)
    return folder


def run_sliceseg(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``sliceseg ARGS`` in a fresh process; fail the test with its output unless it exits 0."""
    done = subprocess.run(
        [*SLICESEG, *map(str, args)],
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    command = " ".join(map(str, args))
    assert done.returncode == 0, (
        f"sliceseg {command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout + done.stderr


def sorted_table(path: Path) -> pd.DataFrame:
    """A CSV with its rows in a canonical order (sorted by every column), index dropped."""
    table = pd.read_csv(path)
    return table.sort_values(list(table.columns), kind="stable").reset_index(drop=True)


def assert_same_tables(merged: Path, single: Path) -> None:
    """``csa.csv`` and ``csa_long.csv`` of two output folders hold the same rows (any order)."""
    for name in MERGED_TABLES:
        left, right = sorted_table(merged / name), sorted_table(single / name)
        assert len(left) > 0, f"{merged / name} is empty"
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-5, obj=name)


def shares(output: str, source: str) -> dict[int, tuple[int, int, int]]:
    """Per shard K, from the lines of ``predict`` runs: (N, series of this shard, all series).

    ``predict`` logs e.g. "shard 1/2 (SLURM): 2 of 4 series; 0 series already done, ...".
    """
    found = re.findall(rf"shard (\d+)/(\d+) \({source}\): (\d+) of (\d+) series", output)
    return {int(k): (int(n), int(mine), int(total)) for k, n, mine, total in found}


def segmented(output: str) -> tuple[int, int]:
    """Slices and series segmented, summed over the "Segmented S slices in M series" lines."""
    found = re.findall(r"Segmented (\d+) slices in (\d+) series", output)
    return sum(int(s) for s, _ in found), sum(int(m) for _, m in found)


def assert_split_once(output: str, source: str, cohort: Path) -> None:
    """Two shards from ``source`` each took a part, and together every series exactly once.

    The truth is counted from the files: one series per subject folder, one slice per file.
    """
    series = sorted({p.parent for p in cohort.rglob("*.dcm")})
    slices = len(list(cohort.rglob("*.dcm")))
    parts = shares(output, source)
    assert sorted(parts) == [1, 2], f"expected shards 1/2 and 2/2 from {source}:\n{output}"
    assert all(n == 2 and total == len(series) for n, _, total in parts.values()), parts
    assert all(mine > 0 for _, mine, _ in parts.values()), parts
    assert sum(mine for _, mine, _ in parts.values()) == len(series), parts
    assert segmented(output) == (slices, len(series)), output
