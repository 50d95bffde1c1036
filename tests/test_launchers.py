"""Tests for sliceseg.launchers: torchrun's and a SLURM array's variables, read all or none."""

from __future__ import annotations

import pytest

from sliceseg.errors import ConfigError, LauncherError
from sliceseg.launchers import (
    SLURM_ARRAY,
    TORCHRUN,
    TorchrunRanks,
    launch_id,
    launcher_numbers,
    listed,
    local_world_size,
    torchrun_ranks,
)


class TestLaunchId:
    @pytest.mark.parametrize(
        ("env", "expected"),
        [
            ({"SLURM_ARRAY_JOB_ID": "812", "SLURM_JOB_ID": "815", "SLURM_STEP_ID": "0"},
             "SLURM array job 812"),  # every task of the array, a requeued one too
            ({"SLURM_JOB_ID": "90", "SLURM_STEP_ID": "3", "TORCHELASTIC_RUN_ID": "x"},
             "SLURM job step 90.3"),
            ({"SLURM_JOB_ID": "90", "SLURM_STEP_ID": "4294967291"}, ""),  # the batch script
            ({"SLURM_JOB_ID": "90", "TORCHELASTIC_RUN_ID": "ab12"}, "torchrun run ab12"),
            ({"RANK": "0", "WORLD_SIZE": "2"}, ""),
        ],
    )  # fmt: skip
    def test_what_the_processes_of_one_launch_share(self, env, expected):
        assert launch_id(env) == expected


class TestTorchrunRanks:
    def test_what_torchrun_sets(self):
        env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}
        assert torchrun_ranks(env) == TorchrunRanks(rank=5, world_size=8, local_rank=1)

    def test_without_local_rank_the_first_gpu(self):
        assert torchrun_ranks({"RANK": "1", "WORLD_SIZE": "2"}) == TorchrunRanks(1, 2, 0)

    @pytest.mark.parametrize(
        "env", [{}, {"LOCAL_RANK": "1"}, {"RANK": "", "WORLD_SIZE": ""}, {"HOME": "/root"}]
    )
    def test_not_launched_by_torchrun(self, env):
        assert torchrun_ranks(env) is None

    def test_reads_the_processs_environment_by_default(self, monkeypatch):
        monkeypatch.setenv("RANK", "0")
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.delenv("LOCAL_RANK", raising=False)
        assert torchrun_ranks() == TorchrunRanks(0, 3, 0)

    @pytest.mark.parametrize(
        ("env", "given", "missing"),
        [({"RANK": "1"}, "RANK", "WORLD_SIZE"), ({"WORLD_SIZE": "2", "LOCAL_RANK": "0"},
         "WORLD_SIZE", "RANK")],
    )  # fmt: skip
    def test_half_set_says_which_are_set_and_which_missing(self, env, given, missing):
        with pytest.raises(LauncherError) as caught:
            torchrun_ranks(env)
        error = caught.value
        assert isinstance(error, ConfigError)  # one line from the CLI, exit 2
        assert (error.given, error.missing, error.names) == ((given,), (missing,), TORCHRUN)
        assert error.found == f"{given} is set but {missing} is not"
        assert str(error) == (
            f"{given} is set but {missing} is not: torchrun sets RANK and WORLD_SIZE together; "
            f"launch with torchrun, or unset {given}."
        )

    @pytest.mark.parametrize(
        ("env", "found"),
        [({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not a whole number"),
         ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "gpu0"},
          "LOCAL_RANK='gpu0' is not a whole number")],
    )  # fmt: skip
    def test_a_value_that_is_not_a_number(self, env, found):
        with pytest.raises(LauncherError) as caught:
            torchrun_ranks(env)
        assert (caught.value.found, caught.value.missing) == (found, ())


class TestLauncherNumbers:
    def test_all_in_order(self):
        env = dict(zip(SLURM_ARRAY, "31415", strict=True))  # ID, MIN, MAX, COUNT, STEP
        assert launcher_numbers(SLURM_ARRAY, env, launcher="sbatch --array") == (3, 1, 4, 1, 5)

    def test_none_set(self):
        assert launcher_numbers(SLURM_ARRAY, {"SLURM_JOB_ID": "7"}, launcher="sbatch") is None

    def test_a_part_names_every_one_set_and_missing(self):
        env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MAX": "4"}
        with pytest.raises(LauncherError) as caught:
            launcher_numbers(SLURM_ARRAY, env, launcher="sbatch --array")
        assert caught.value.given == ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MAX")
        assert caught.value.found == (
            "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_MAX are set but SLURM_ARRAY_TASK_MIN, "
            "SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_STEP are not"
        )


class TestLocalWorldSize:
    def test_what_torchrun_sets_and_unset(self):
        assert local_world_size({"LOCAL_WORLD_SIZE": "4"}) == 4
        assert local_world_size({}) is None
        assert local_world_size({"LOCAL_WORLD_SIZE": ""}) is None  # empty counts as unset

    @pytest.mark.parametrize(
        ("text", "found"),
        [("x", "LOCAL_WORLD_SIZE='x' is not a whole number"),
         ("0", "LOCAL_WORLD_SIZE='0' is not a whole number ≥ 1"),
         ("-2", "LOCAL_WORLD_SIZE='-2' is not a whole number ≥ 1")],
    )  # fmt: skip
    def test_a_malformed_value_is_one_line(self, text, found):
        """rank_cpus read 'x' and '0' as one process: a rank took every CPU of the machine."""
        with pytest.raises(LauncherError) as caught:
            local_world_size({"LOCAL_WORLD_SIZE": text})
        assert caught.value.found == found
        assert str(caught.value).startswith(f"{found}: torchrun sets it")
        assert str(caught.value).endswith("launch with torchrun, or unset it.")
        assert "\n" not in str(caught.value)


def test_listed():
    assert listed(["A"]) == "A is"
    assert listed(["A", "B"]) == "A and B are"
    assert listed(["A", "B", "C"], verb=False) == "A, B and C"
