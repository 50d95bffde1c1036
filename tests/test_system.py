"""Tests for sliceseg.system: system characteristics and device choice."""

from __future__ import annotations

import json
import platform
import re

import psutil
import pytest
import torch

from sliceseg._version import __version__
from sliceseg.errors import ConfigError
from sliceseg.system import (
    GIB,
    SystemInfo,
    cgroup_cpu_limit,
    cgroup_memory_limit,
    select_device,
    system_info,
)


class _Memory:
    def __init__(self, total: int, available: int) -> None:
        self.total, self.available = total, available


needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


class TestSystemInfo:
    def test_ram_numbers_match_psutil(self):
        text = system_info().to_text()
        match = re.search(r"Available RAM: ([\d.]+) GiB of ([\d.]+) GiB", text)
        assert match, text
        available, total = (float(v) for v in match.groups())
        memory = psutil.virtual_memory()
        assert total == pytest.approx(memory.total / GIB, abs=0.051)
        # available memory moves while other processes run; allow a little drift
        assert available == pytest.approx(memory.available / GIB, abs=0.5)
        assert available <= total

    def test_cpu_line_names_cores(self):
        text = system_info().to_text()
        assert f"{psutil.cpu_count(logical=True)} logical cores" in text  # of the machine

    def test_cpu_line_names_the_cores_this_process_may_use(self, monkeypatch):
        """A SLURM job of 4 CPUs on a 64-core node: `info` said 64 cores, which `--workers` and
        torch threads cannot use."""
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 64)
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {8, 9, 10, 11}, raising=False)
        info = system_info()
        assert "(4 of 64 logical cores usable by this process)" in info.to_text()
        assert info.to_dict()["cpu_usable_cores"] == 4 and info.cpu_logical_cores == 64

    @pytest.mark.parametrize(
        ("cgroup", "files", "limit"),
        [
            ("0::/slurm/job_7\n", {"slurm/job_7/memory.max": "8589934592\n"}, 8 * GIB),
            ("0::/\n", {"memory.max": "max\n"}, None),
            (
                "12:cpu,cpuacct:/x\n9:memory:/slurm/uid_0/job_7\n",
                {"memory/slurm/uid_0/job_7/memory.limit_in_bytes": "4294967296\n"},
                4 * GIB,
            ),
            ("9:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),
            ("9:memory:/gone\n", {}, None),
            (  # SLURM sets --mem on the job; its tasks' own groups say "max"
                "0::/system.slice/slurmstepd.scope/job_7/step_0/user/task_0\n",
                {
                    "memory.max": "max\n",
                    "system.slice/slurmstepd.scope/job_7/memory.max": "8589934592\n",
                    "system.slice/slurmstepd.scope/job_7/step_0/memory.max": "max\n",
                    "system.slice/slurmstepd.scope/job_7/step_0/user/task_0/memory.max": "max\n",
                },
                8 * GIB,
            ),
            (  # v1: the step's 4 GiB is below the job's 8 GiB
                "9:memory:/slurm/uid_0/job_7/step_0/task_0\n",
                {
                    "memory/slurm/uid_0/job_7/memory.limit_in_bytes": "8589934592\n",
                    "memory/slurm/uid_0/job_7/step_0/memory.limit_in_bytes": "4294967296\n",
                    "memory/slurm/uid_0/job_7/step_0/task_0/memory.limit_in_bytes": (
                        "9223372036854771712\n"
                    ),
                },
                4 * GIB,
            ),
        ],
    )
    def test_the_cgroups_memory_limit_is_read(self, tmp_path, cgroup, files, limit):
        """cgroup v2 (a SLURM job's --mem), none ("max"), v1, v1's "no limit" number, none; a
        limit set on a group above the process's own."""
        (tmp_path / "cgroup").write_text(cgroup)
        for name, text in files.items():
            (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "fs" / name).write_text(text)
        assert cgroup_memory_limit(tmp_path / "cgroup", tmp_path / "fs") == limit

    @pytest.mark.parametrize(
        ("cgroup", "files", "cores"),
        [
            ("0::/docker/abc\n", {"docker/abc/cpu.max": "200000 100000\n"}, 2.0),
            ("0::/docker/abc\n", {"cpu.max": "max 100000\n"}, None),
            (
                "4:cpu,cpuacct:/kubepods/pod1/c1\n",
                {
                    "cpu/kubepods/pod1/cpu.cfs_quota_us": "150000\n",
                    "cpu/kubepods/pod1/cpu.cfs_period_us": "100000\n",
                    "cpu/kubepods/pod1/c1/cpu.cfs_quota_us": "-1\n",
                    "cpu/kubepods/pod1/c1/cpu.cfs_period_us": "100000\n",
                },
                1.5,
            ),
        ],
    )
    def test_the_cgroups_cpu_quota_is_read(self, tmp_path, cgroup, files, cores):
        """v2 (`docker --cpus 2`), none ("max"), v1 set on the pod above the container."""
        (tmp_path / "cgroup").write_text(cgroup)
        for name, text in files.items():
            (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "fs" / name).write_text(text)
        assert cgroup_cpu_limit(tmp_path / "cgroup", tmp_path / "fs") == cores

    def test_cpu_line_counts_a_cpu_quota(self, monkeypatch):
        """`docker --cpus 2` on a 64-core machine: every core in the affinity, 2 cores' time;
        `info` said 64 cores."""
        monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 64)
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
        monkeypatch.setattr("sliceseg.system.cgroup_cpu_limit", lambda: 1.5)
        assert "(2 of 64 logical cores usable by this process)" in system_info().to_text()

    def test_info_says_the_jobs_memory_limit(self, monkeypatch):
        """A SLURM job given 8 GiB on a 512 GiB node: `info` showed only the node's memory."""
        monkeypatch.setattr("sliceseg.system.cgroup_memory_limit", lambda: 8 * GIB)
        monkeypatch.setattr(psutil, "virtual_memory", lambda: _Memory(512 * GIB, 400 * GIB))
        text = system_info().to_text()
        assert text.splitlines()[0] == (
            "Available RAM: 400.0 GiB of 512.0 GiB (this process may use 8.0 GiB: its "
            "cgroup's limit)"
        )
        monkeypatch.setattr("sliceseg.system.cgroup_memory_limit", lambda: 1024 * GIB)
        assert system_info().ram_limit_gib is None  # above the installed memory: no limit

    def test_says_the_torch_threads_a_cpu_run_takes_and_the_versions(self, monkeypatch):
        """`docker --cpus 2` on 64 cores: torch's own count is 64, a run on the CPU takes 2;
        `info` named no thread count, nor the Python or sliceseg version."""
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)), raising=False)
        monkeypatch.setattr("sliceseg.system.cgroup_cpu_limit", lambda: 2.0)
        monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
        for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
            monkeypatch.delenv(name, raising=False)
        info = system_info()
        assert info.to_text().splitlines()[-1] == (
            f"PyTorch: {torch.__version__} (2 threads on the CPU) | "
            f"Python {platform.python_version()} | sliceseg {__version__}"
        )
        assert (info.torch_threads, info.sliceseg_version) == (2, __version__)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stands: torch's count
        assert system_info().torch_threads == 64

    @needs_no_gpu
    def test_no_gpu_says_cpu(self):
        info = system_info()
        assert not info.gpu_enabled
        assert info.device_name is None
        assert "GPU enabled: no (training runs on the CPU" in info.to_text()

    def test_gpu_line_has_device_memory(self):
        info = SystemInfo(
            ram_total_gib=64.0,
            ram_available_gib=60.0,
            cpu_model="test cpu",
            cpu_logical_cores=16,
            torch_version="2.13.0",
            gpu_enabled=True,
            gpu_count=1,
            device_name="NVIDIA H100 80GB HBM3",
            device_memory_total_gib=79.1,
            device_memory_used_gib=0.5,
            device_memory_free_gib=78.6,
        )
        assert (
            "GPU enabled: yes | Device: NVIDIA H100 80GB HBM3 | Device memory: total 79.1 GiB, "
            "used 0.5 GiB, free 78.6 GiB"
        ) in info.to_text()

    def test_to_dict_is_json(self):
        data = json.loads(json.dumps(system_info().to_dict()))
        assert data["torch_version"] == torch.__version__
        assert set(data) >= {"ram_total_gib", "gpu_enabled", "device_memory_free_gib"}


class TestSelectDevice:
    def test_cpu(self):
        assert select_device("cpu") == torch.device("cpu")

    def test_auto(self):
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert select_device().type == expected

    @needs_no_gpu
    def test_cuda_without_gpu(self):
        with pytest.raises(ConfigError, match="no CUDA GPU found; use --device cpu"):
            select_device("cuda")

    def test_unknown_name_lists_choices(self):
        with pytest.raises(ConfigError, match=r"unknown device 'tpu'; choose one of: auto, cpu"):
            select_device("tpu")
