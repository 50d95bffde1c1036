"""Tests for sliceseg.inference.shards: ``--shard K/N`` and ``--shard auto`` from SLURM or torchrun.

The expected shards are worked out by hand from what SLURM and torchrun set: an array
``--array=0-3`` runs tasks 0..3 with MIN=0, MAX=3, COUNT=4, STEP=1; torchrun numbers ranks
0..N-1.
"""

from __future__ import annotations

import pytest

from sliceseg.errors import ConfigError, LauncherError
from sliceseg.inference.shards import Shard, parse_shard, shard_device
from sliceseg.system import rank_cpus, rank_threads


def array_task(task: int, low: int, high: int, step: int = 1, **count: int) -> dict[str, str]:
    """What sbatch sets in task ``task`` of ``--array=low-high:step`` (``count``: a list's)."""
    numbers = {"ID": task, "MIN": low, "MAX": high, "STEP": step}
    numbers["COUNT"] = count.get("count", (high - low) // step + 1)
    return {f"SLURM_ARRAY_TASK_{name}": str(value) for name, value in numbers.items()}


class TestParseShardAuto:
    @pytest.mark.parametrize(
        ("task", "low", "high", "expected"),
        [
            ("0", "0", "3", Shard(1, 4, "SLURM")),  # --array=0-3, first task
            ("2", "0", "3", Shard(3, 4, "SLURM")),
            ("3", "0", "3", Shard(4, 4, "SLURM")),
            ("1", "1", "2", Shard(1, 2, "SLURM")),  # --array=1-2 counts from 1
            ("2", "1", "2", Shard(2, 2, "SLURM")),
            ("7", "7", "7", Shard(1, 1, "SLURM")),  # an array of one task
        ],
    )
    def test_slurm_array(self, task, low, high, expected):
        assert parse_shard("auto", array_task(int(task), int(low), int(high))) == expected

    def test_slurm_array_count(self):
        assert parse_shard("auto", array_task(11, 10, 14)) == Shard(2, 5, "SLURM")

    @pytest.mark.parametrize(
        ("left_out", "given", "missing"),
        [(["SLURM_ARRAY_TASK_MIN"], "SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MAX, "
          "SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_STEP are", "SLURM_ARRAY_TASK_MIN is"),
         (["SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP"],
          "SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are",
          "SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX and SLURM_ARRAY_TASK_STEP are"),
         (["SLURM_ARRAY_TASK_ID"], "SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_MAX, "
          "SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_STEP are", "SLURM_ARRAY_TASK_ID is")],
    )  # fmt: skip
    def test_a_part_of_an_arrays_variables_is_refused_naming_the_rest(
        self, left_out, given, missing
    ):
        """COUNT without MIN was counted from 0: task 2 of --array=2-4 took shard 3 of 3, and
        tasks 3 and 4 were refused, so the series of shards 1 and 2 were never done."""
        env = {k: v for k, v in array_task(2, 2, 4).items() if k not in left_out}
        with pytest.raises(ConfigError) as caught:
            parse_shard("auto", env)
        assert str(caught.value) == (
            f"--shard auto: {given} set but {missing} not: run it as a task of an sbatch "
            "--array job, which sets SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, "
            "SLURM_ARRAY_TASK_MAX, SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_STEP, or give "
            "--shard K/N."
        )

    def test_every_task_of_an_array_gets_a_different_shard(self):
        shards = [parse_shard("auto", array_task(task, 1, 6)) for task in range(1, 7)]
        assert [s.index for s in shards] == [1, 2, 3, 4, 5, 6]
        assert {s.count for s in shards} == {6}

    def test_a_task_outside_the_array_says_how_to_retry(self):
        """`--array=3,7` (retrying two tasks) gives MIN 3, MAX 7, COUNT 2: no shard layout fits.
        The line said that task 3 "is not one of the 2 tasks of --array=3-4"."""
        for task in (3, 7):  # 3 would otherwise take shard 1/2: half of every series
            with pytest.raises(ConfigError) as error:
                parse_shard("auto", array_task(task, 3, 7, count=2))
            assert str(error.value) == (
                f"--shard auto: SLURM_ARRAY_TASK_ID={task} is one of a list of 2 tasks from 3 "
                "to 7, not a range (a list such as --array=3,7 cannot say which shards they "
                "were); to retry, run the whole array again (finished series are skipped), or "
                "give --shard K/N."
            )

    def test_slurm_stepped_array(self):
        # --array=0-10:2 runs 0, 2, 4, 6, 8, 10: task 4 is the 3rd
        assert parse_shard("auto", array_task(4, 0, 10, 2)) == Shard(3, 6, "SLURM")

    @pytest.mark.parametrize(
        ("rank", "world", "expected"),
        [("0", "2", Shard(1, 2, "torchrun")), ("1", "2", Shard(2, 2, "torchrun")),
         ("3", "8", Shard(4, 8, "torchrun"))],
    )  # fmt: skip
    def test_torchrun_rank_and_world_size(self, rank, world, expected):
        env = {"RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": rank}
        assert parse_shard("auto", env) == expected

    def test_slurm_array_wins_over_a_single_process_torchrun(self):
        env = array_task(1, 0, 1) | {"RANK": "0", "WORLD_SIZE": "1"}
        assert parse_shard("auto", env) == Shard(2, 2, "SLURM")

    def test_an_array_of_torchrun_nodes_gives_every_rank_its_own_shard(self):
        # --array=0-2 of 2-rank torchrun jobs: 6 shards, task t rank r -> t·2 + r + 1
        seen = []
        for task in range(3):
            for rank in range(2):
                env = array_task(task, 0, 2) | {"RANK": str(rank), "WORLD_SIZE": "2"}
                seen.append(parse_shard("auto", env))
        assert [s.index for s in seen] == [1, 2, 3, 4, 5, 6]
        assert {s.count for s in seen} == {6}
        assert seen[3].describe() == "shard 4/6 (SLURM × torchrun)"

    def test_a_slurm_job_that_is_not_an_array_leaves_torchrun_in_charge(self):
        env = {"SLURM_JOB_ID": "123", "SLURM_PROCID": "0", "RANK": "1", "WORLD_SIZE": "4"}
        assert parse_shard("auto", env) == Shard(2, 4, "torchrun")

    def test_neither_runs_every_series_as_one_shard(self):
        shard = parse_shard("auto", {"HOME": "/root"})
        assert (shard.index, shard.count, shard.is_whole) == (1, 1, True)

    @pytest.mark.parametrize(
        ("env", "given", "missing"),
        [({"RANK": "1"}, "RANK", "WORLD_SIZE"), ({"WORLD_SIZE": "4"}, "WORLD_SIZE", "RANK"),
         ({"RANK": "1", "LOCAL_RANK": "1"} | array_task(0, 0, 1), "RANK", "WORLD_SIZE")],
    )  # fmt: skip
    def test_rank_without_world_size_is_refused(self, env, given, missing):
        """RANK without WORLD_SIZE ran every series as one shard: on every rank, N times."""
        with pytest.raises(ConfigError) as caught:
            parse_shard("auto", env)
        assert str(caught.value) == (
            f"--shard auto: {given} is set but {missing} is not: run it under torchrun, which "
            "sets RANK and WORLD_SIZE, or give --shard K/N."
        )

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"RANK": "one", "WORLD_SIZE": "2"}, r"RANK='one' is not a whole number"),
            (array_task(2, 0, 3) | {"SLURM_ARRAY_TASK_MAX": "x"}, r"SLURM_ARRAY_TASK_MAX='x'"),
            ({"SLURM_ARRAY_TASK_ID": "2"},
             r"SLURM_ARRAY_TASK_ID is set but .* are not: .*, or give --shard K/N\.$"),
            (array_task(5, 0, 1), r"SLURM_ARRAY_TASK_ID=5 is not one of the 2 tasks"),
            ({"RANK": "2", "WORLD_SIZE": "2"}, r"--shard 3/2"),
        ],
    )  # fmt: skip
    def test_bad_launcher_variables_are_one_line_errors(self, env, message):
        with pytest.raises(ConfigError, match=message) as caught:
            parse_shard("auto", env)
        assert "\n" not in str(caught.value)


class TestParseShardText:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("1/4", Shard(1, 4, "--shard")), ("4/4", Shard(4, 4, "--shard")),
         (" 2 / 3 ", Shard(2, 3, "--shard")), ("1/1", Shard(1, 1, "--shard"))],
    )  # fmt: skip
    def test_k_of_n(self, text, expected):
        assert parse_shard(text, {}) == expected

    def test_no_flag_is_one_shard_whatever_the_environment(self):
        assert parse_shard(None, {"RANK": "1", "WORLD_SIZE": "2"}) == Shard()

    @pytest.mark.parametrize(
        ("text", "message"),
        [("0/4", r"1 ≤ K ≤ N"), ("5/4", r"--shard 5/4"), ("1/0", r"--shard 1/0"),
         ("1-4", r"expected K/N"), ("auto2", r"expected K/N"), ("", r"expected K/N")],
    )  # fmt: skip
    def test_malformed_values_are_one_line_errors(self, text, message):
        with pytest.raises(ConfigError, match=message) as caught:
            parse_shard(text, {})
        assert "\n" not in str(caught.value)


def torchrun_rank(rank: int, world: int = 4) -> dict[str, str]:
    """What torchrun sets in rank ``rank`` of ``world`` on one machine."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}


class TestShardDevice:
    def test_local_rank_picks_the_gpu(self, monkeypatch):
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        assert shard_device("auto", torchrun_rank(1)) == "cuda:1"
        assert shard_device("auto", torchrun_rank(3)) == "cuda:1"  # 4 ranks on 2 GPUs

    def test_an_explicit_device_is_kept(self, monkeypatch):
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert shard_device("cpu", torchrun_rank(1)) == "cpu"
        assert shard_device("cuda:0", torchrun_rank(1)) == "cuda:0"

    def test_without_cuda_or_torchrun_auto_stays(self, monkeypatch):
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert shard_device("auto", {}) == "auto"
        assert shard_device("auto", {"LOCAL_RANK": "1"}) == "auto"  # torchrun sets RANK too
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        assert shard_device("auto", torchrun_rank(1)) == "auto"

    def test_half_of_torchruns_variables_is_refused_as_by_shard_auto(self, monkeypatch):
        """RANK without WORLD_SIZE was ignored here (and LOCAL_RANK='x' too) though
        ``--shard auto`` and ``train`` refuse it: one reading of torchrun's variables now."""
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.raises(LauncherError) as caught:
            shard_device("auto", {"RANK": "1", "LOCAL_RANK": "1"})
        assert str(caught.value) == (
            "RANK is set but WORLD_SIZE is not: torchrun sets RANK and WORLD_SIZE together; "
            "launch with torchrun, or unset RANK."
        )
        with pytest.raises(LauncherError, match=r"^LOCAL_RANK='x' is not a whole number: "):
            shard_device("auto", torchrun_rank(1) | {"LOCAL_RANK": "x"})


class TestRankThreads:
    def test_torchrun_ranks_share_the_cpus(self):
        # torchrun sets OMP_NUM_THREADS=1 for every rank when the user did not set it
        env = {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "RANK": "0"}
        assert rank_threads("cpu", env, cpus=16) == 8
        assert rank_threads("cpu", {"LOCAL_WORLD_SIZE": "3"}, cpus=16) == 5  # 16 // 3
        assert rank_threads("cpu", {"LOCAL_WORLD_SIZE": "4"}, cpus=2) == 1  # at least one

    def test_the_users_threads_a_gpu_and_no_torchrun_are_left_alone(self):
        assert rank_threads("cpu", {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "3"}, 16) is None
        assert rank_threads("cuda", {"LOCAL_WORLD_SIZE": "2"}, cpus=16) is None
        import torch

        fits = torch.get_num_threads()  # torch's own count, no more than the usable CPUs
        assert rank_threads("cpu", {}, cpus=fits) is None

    def test_decoding_workers_share_the_same_cpus(self):
        assert rank_cpus({"LOCAL_WORLD_SIZE": "4"}, cpus=16) == 4
        assert rank_cpus({}, cpus=16) == 16

    def test_a_cgroup_cpu_quota_caps_the_workers_and_threads(self, monkeypatch):
        """Issue found by review: ``docker --cpus 2`` on a 64-core host: `info` said 2, but
        predict's defaults read the affinity alone (63 decoding workers, 32 torch threads)."""
        import torch

        from sliceseg import system
        from sliceseg.inference import cohort_decode

        monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
        monkeypatch.setattr(system, "cgroup_cpu_limit", lambda: 2.0)
        threads = torch.get_num_threads()
        torch.set_num_threads(32)  # torch's own count on such a host
        try:
            assert rank_threads("cpu", {}) == 2
            assert rank_threads("cpu", {"OMP_NUM_THREADS": "4"}) is None  # the user's choice
        finally:
            torch.set_num_threads(threads)
        assert rank_cpus({}) == 2 and rank_cpus({"LOCAL_WORLD_SIZE": "2"}) == 1
        assert cohort_decode.default_workers() == 0  # 2 CPUs: the main process decodes
        monkeypatch.setattr(system, "cgroup_cpu_limit", lambda: 8.5)  # a fraction: its core too
        assert rank_cpus({}) == 9 and cohort_decode.default_workers() == 8

    @pytest.mark.parametrize("text", ["x", "0"])
    def test_a_malformed_local_world_size_is_refused(self, text):
        """It was read as one process: every rank took all of the machine's CPUs."""
        expected = rf"^LOCAL_WORLD_SIZE='{text}' is not a whole number"
        with pytest.raises(LauncherError, match=expected):
            rank_cpus({"LOCAL_WORLD_SIZE": text}, cpus=6)
        with pytest.raises(LauncherError, match=expected):
            rank_threads("cpu", {"LOCAL_WORLD_SIZE": text, "OMP_NUM_THREADS": "1"}, cpus=6)


class TestShardAutoOddLaunches:
    def test_an_array_of_one_task_runs_the_whole_cohort_and_says_how_to_retry_one(self):
        """``sbatch --array=3`` (to retry task 3 of an earlier ``--array=0-3``) ran the whole
        cohort as shard 1/1 without a word: not the retry the user meant."""
        shard = parse_shard("auto", array_task(3, 3, 3))
        assert (shard.index, shard.count) == (1, 1)
        assert shard.note == (
            "--shard auto: a SLURM array of one task (3): running the whole cohort as one shard "
            "(finished series are skipped); to rerun only task 3 of an earlier array, give "
            "--shard K/N with K = 3 - its first task + 1 and N its task count (e.g. --shard 4/4 "
            "for --array=0-3)."
        )
        retry, task = parse_shard("4/4"), parse_shard("auto", array_task(3, 0, 3))
        assert (retry.index, retry.count) == (task.index, task.count) == (4, 4)
        assert task.note == ""

    def test_the_cli_prints_the_one_task_arrays_line(self, monkeypatch, capsys):
        from sliceseg.cli import main
        from sliceseg.inference import cohort

        def stop(*args, **kwargs):
            raise ConfigError("stopped here")

        monkeypatch.setattr(cohort, "predict_cohort", stop)
        for name, value in array_task(0, 0, 0).items():
            monkeypatch.setenv(name, value)
        assert main(["predict", "m.pt", "in", "--out", "out", "--shard", "auto"]) == 2
        assert capsys.readouterr().out.startswith(
            "--shard auto: a SLURM array of one task (0): running the whole cohort as one shard"
        )

    @staticmethod
    def srun_task(rank: int, tasks: int, step: str = "0") -> dict[str, str]:
        """What ``srun -n tasks`` sets in task ``rank`` of job step ``step`` (as seen in Slurm
        22.05: ``sbatch -n 2`` gives its batch script SLURM_NTASKS=2 and SLURM_PROCID=0 but no
        SLURM_STEP_ID; an ``srun -n 2`` in it gives each task SLURM_STEP_ID=0,
        SLURM_STEP_NUM_TASKS=2 and its SLURM_PROCID)."""
        return {
            "SLURM_STEP_ID": step,
            "SLURM_PROCID": str(rank),
            "SLURM_NTASKS": str(tasks),
            "SLURM_STEP_NUM_TASKS": str(tasks),
        }

    def test_the_tasks_of_an_srun_step_take_a_shard_each(self):
        """``srun -n 4 sliceseg predict --shard auto`` (no array, no torchrun): every task ran
        the whole cohort."""
        shards = [parse_shard("auto", self.srun_task(rank, 4)) for rank in range(4)]
        assert shards == [Shard(k, 4, "srun") for k in (1, 2, 3, 4)]
        assert parse_shard("auto", self.srun_task(1, 2, step="12")).describe() == "shard 2/2 (srun)"

    @pytest.mark.parametrize(
        "step",
        [
            None,  # a batch script where Slurm sets no SLURM_STEP_ID
            "4294967291",  # its batch step (SLURM_BATCH_SCRIPT)
            "4294967290",  # salloc's interactive step
            "batch",
        ],
    )
    def test_a_batch_script_of_many_tasks_is_not_a_step_of_them(self, step):
        env = self.srun_task(0, 4, step or "")
        assert parse_shard("auto", env) == Shard()

    def test_one_task_of_srun_and_torchrun_in_an_srun_step_leave_the_rest_in_charge(self):
        assert parse_shard("auto", self.srun_task(0, 1)) == Shard()
        torchrun = {"RANK": "5", "WORLD_SIZE": "8"}  # one torchrun per node, ranks span them
        assert parse_shard("auto", {**self.srun_task(1, 2), **torchrun}) == Shard(6, 8, "torchrun")

    def test_an_srun_step_in_an_array_task_splits_the_task_s_share(self):
        env = {**array_task(1, 0, 1), **self.srun_task(2, 3)}
        assert parse_shard("auto", env) == Shard(6, 6, "SLURM × srun")

    def test_a_step_without_its_task_count_is_refused_naming_it(self):
        env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "1"}
        with pytest.raises(ConfigError, match=r"SLURM_STEP_NUM_TASKS") as caught:
            parse_shard("auto", env)
        assert "\n" not in str(caught.value)


def test_a_shard_names_its_launch_however_it_was_given():
    """So that the shards of one SLURM array split the same series (`shard_plan`)."""
    env = {**array_task(1, 0, 1), "SLURM_ARRAY_JOB_ID": "812"}
    assert parse_shard("auto", env).run == "SLURM array job 812"
    assert parse_shard("2/2", env).run == "SLURM array job 812"
    assert parse_shard("2/2", {}).run == ""


@pytest.mark.parametrize(
    ("env", "launch"),
    [
        (TestShardAutoOddLaunches.srun_task(1, 4),
         "srun started this process as one of 4 (--shard auto would make it shard 2/4)"),
        ({"RANK": "0", "WORLD_SIZE": "2"}, "torchrun started this process as one of 2 "
         "(--shard auto would make it shard 1/2)"),
    ],
)  # fmt: skip
def test_a_task_of_several_without_shard_takes_every_series_and_says_so(env, launch):
    """``srun -n 4 sliceseg predict`` without --shard: every task planned the whole cohort,
    and nothing said why three of them were refused (or all four ran, on per-node locks)."""
    shard = parse_shard(None, env)
    assert shard == Shard() and shard.is_whole
    assert shard.note == (
        f"no --shard: {launch}; it takes every series, and the others into the same --out are "
        "refused while it runs; to split the series among them, give --shard auto (then "
        "`sliceseg merge OUT`)."
    )
    assert parse_shard(None, TestShardAutoOddLaunches.srun_task(0, 1)).note == ""
    assert parse_shard(None, {"RANK": "1"}).note == ""  # a part: only --shard auto refuses it
