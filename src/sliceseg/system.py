"""System characteristics (RAM, CPU, GPU, device memory), the choice of the torch device, and
the CPUs and torch threads a process takes (a torchrun rank's share)."""

from __future__ import annotations

import math
import os
import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch

from sliceseg._version import __version__
from sliceseg.errors import ConfigError, LauncherError
from sliceseg.launchers import local_world_size

GIB = 1024**3
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


@dataclass(frozen=True)
class SystemInfo:
    """What this machine offers for training, as in the user manual's "System Characteristics".

    Attributes:
        ram_total_gib: installed memory in GiB.
        ram_available_gib: memory available to new processes in GiB.
        cpu_model: the processor's name ("unknown" when the system does not say).
        cpu_logical_cores: logical cores of the machine (hyper-threads included).
        cpu_usable_cores: the logical cores this process may run on (its CPU affinity, as a
            SLURM job or ``taskset`` sets it), or None where the system does not say.
        torch_version: the installed PyTorch version.
        torch_threads: the torch threads a run on the CPU takes (`rank_threads`: fewer than
            torch's own count under a cgroup CPU quota or as a torchrun rank), or None where
            not known.
        python_version: the running Python's version.
        sliceseg_version: the installed sliceseg version.
        gpu_enabled: a CUDA GPU is usable by torch.
        gpu_count: number of CUDA GPUs.
        device_name: name of CUDA GPU 0, or None without one.
        device_memory_total_gib: memory of GPU 0 in GiB, or None.
        device_memory_used_gib: memory of GPU 0 in use (by every process) in GiB, or None.
        device_memory_free_gib: free memory of GPU 0 in GiB, or None.
        mps_available: Apple-silicon GPU (MPS) usable by torch.
        ram_limit_gib: the memory limit of this process's control group (a SLURM job's
            ``--mem``, a container's), when it is below the installed memory; else None.
    """

    ram_total_gib: float
    ram_available_gib: float
    cpu_model: str
    cpu_logical_cores: int
    torch_version: str
    gpu_enabled: bool
    gpu_count: int = 0
    device_name: str | None = None
    device_memory_total_gib: float | None = None
    device_memory_used_gib: float | None = None
    device_memory_free_gib: float | None = None
    mps_available: bool = False
    cpu_usable_cores: int | None = None
    ram_limit_gib: float | None = None
    torch_threads: int | None = None
    python_version: str = ""
    sliceseg_version: str = ""

    def to_text(self) -> str:
        """Return the characteristics as a few human-readable lines.

        Example:
            >>> print(system_info().to_text())
            Available RAM: 21.3 GiB of 23.4 GiB
            CPU: Intel(R) Xeon(R) ... (2 logical cores)
            GPU enabled: no (training runs on the CPU)
            PyTorch: 2.13.0+cpu (2 threads on the CPU) | Python 3.11.9 | sliceseg 0.1.0
        """
        ram = f"Available RAM: {self.ram_available_gib:.1f} GiB of {self.ram_total_gib:.1f} GiB"
        if self.ram_limit_gib is not None:
            ram += f" (this process may use {self.ram_limit_gib:.1f} GiB: its cgroup's limit)"
        lines = [
            ram,
            f"CPU: {self.cpu_model} ({self._cores()})",
            self._gpu_line(),
            self._versions_line(),
        ]
        return "\n".join(lines)

    def _versions_line(self) -> str:
        threads = self.torch_threads
        line = f"PyTorch: {self.torch_version}"
        if threads is not None:
            line += f" ({threads} thread{'' if threads == 1 else 's'} on the CPU)"
        if self.python_version:
            line += f" | Python {self.python_version}"
        return line + (f" | sliceseg {self.sliceseg_version}" if self.sliceseg_version else "")

    def _cores(self) -> str:
        usable = self.cpu_usable_cores
        if usable is None or usable == self.cpu_logical_cores:
            return f"{self.cpu_logical_cores} logical cores"
        return f"{usable} of {self.cpu_logical_cores} logical cores usable by this process"

    def _gpu_line(self) -> str:
        if not self.gpu_enabled:
            extra = "; Apple MPS GPU available, use --device mps" if self.mps_available else ""
            return f"GPU enabled: no (training runs on the CPU{extra})"
        count = f" (1 of {self.gpu_count} GPUs)" if self.gpu_count > 1 else ""
        line = f"GPU enabled: yes | Device: {self.device_name}{count}"
        if self.device_memory_total_gib is not None:
            line += (
                f" | Device memory: total {self.device_memory_total_gib:.1f} GiB, "
                f"used {self.device_memory_used_gib:.1f} GiB, "
                f"free {self.device_memory_free_gib:.1f} GiB"
            )
        return line

    def to_dict(self) -> dict[str, object]:
        """Return the characteristics as JSON-able plain data."""
        return asdict(self)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            text = cpuinfo.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        match = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return " ".join(match.group(1).split())
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int | None:
    """The cores of the CPU affinity (SLURM, ``taskset``), fewer under a cgroup CPU quota
    (``docker --cpus 2``, a Kubernetes CPU limit), which lets the process run on every core
    but only for that many cores' time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return None
    quota = cgroup_cpu_limit()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def usable_cpus() -> int:
    """The CPUs this process may use (`_usable_cores`: its affinity, fewer under a cgroup CPU
    quota); off Linux, the machine's. What default worker and thread counts start from: more
    than the quota only take turns on it (a ``docker --cpus 2`` on 64 cores thrashed).

    Example:
        >>> usable_cpus()  # in a container started with --cpus 2  # doctest: +SKIP
        2
    """
    cores = _usable_cores()
    return cores if cores is not None else os.cpu_count() or 1


def cgroup_cpu_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> float | None:
    """The CPU quota of this process's control group in cores (v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the lowest of its group and those above),
    or None: no quota, or not on Linux.

    Example:
        >>> cgroup_cpu_limit(Path("/proc/self/cgroup"))  # doctest: +SKIP
        2.0
    """
    return _cgroup_limit(
        proc_cgroup, root, "cpu", lambda group: _ratio(group / "cpu.max"), _cfs_quota
    )


def _ratio(path: Path) -> float | None:
    """cgroup v2 ``cpu.max``: "QUOTA PERIOD" in µs, or "max PERIOD" (no quota)."""
    try:
        quota, period = path.read_text(encoding="utf-8").split()[:2]
        return int(quota) / int(period) if int(period) > 0 and int(quota) > 0 else None
    except (OSError, ValueError):
        return None


def _cfs_quota(group: Path) -> float | None:
    """cgroup v1: ``cpu.cfs_quota_us`` (-1: no quota) over ``cpu.cfs_period_us``."""
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
        period = int((group / "cpu.cfs_period_us").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """The memory limit in bytes of this process's control group (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``), or None: no limit, or not on Linux.

    The lowest limit of the group and the groups above it: a SLURM job's ``--mem`` is set on
    ``job_N``, and its processes run in ``job_N/step_0/user/task_0``, whose own file says "max".

    Example:
        >>> cgroup_memory_limit(Path("/proc/self/cgroup"))  # doctest: +SKIP
        17179869184
    """
    found = _cgroup_limit(
        proc_cgroup,
        root,
        "memory",
        lambda group: _limit_file(group / "memory.max"),
        lambda group: _limit_file(group / "memory.limit_in_bytes"),
    )
    return None if found is None else int(found)  # exact: limits are far below 2**53 bytes


def _cgroup_limit(
    proc_cgroup: Path,
    root: Path,
    controller: str,
    read_v2: Callable[[Path], float | None],
    read_v1: Callable[[Path], float | None],
) -> float | None:
    """The lowest limit ``read_v2`` (cgroup v2) or ``read_v1`` (v1: in the ``controller``'s
    own hierarchy) finds in this process's group or a group above it."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        place = path.strip().lstrip("/")
        if hierarchy == "0" and not controllers:  # v2: one unified hierarchy
            found = _lowest_limit(root, place, read_v2)
        elif controller in controllers.split(","):  # v1: the controller's own
            found = _lowest_limit(root / controller, place, read_v1)
        else:
            continue
        if found is not None:
            return found
    return None


def _lowest_limit(root: Path, place: str, read: Callable[[Path], float | None]) -> float | None:
    """The lowest limit of the group at ``place`` below ``root`` and of every group above it
    (a child never gets more than its parents allow)."""
    parts = Path(place).parts
    limits = [read(root.joinpath(*parts[:depth])) for depth in range(len(parts) + 1)]
    return min((limit for limit in limits if limit is not None), default=None)


def _limit_file(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.isdigit():  # "max": no limit
        return None
    value = int(text)
    return value if value < 2**60 else None  # v1 says "no limit" with a huge number


def _limit_below(limit: int | None, total: int) -> float | None:
    """The limit in GiB when it is below the installed memory (else it limits nothing)."""
    return limit / GIB if limit is not None and limit < total else None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _cpu_threads() -> int:
    """The torch threads training or predicting on the CPU takes (`rank_threads`, else torch's
    own count); torch's own count where LOCAL_WORLD_SIZE is malformed (a run refuses that)."""
    try:
        return rank_threads("cpu") or torch.get_num_threads()
    except LauncherError:
        return torch.get_num_threads()


def system_info() -> SystemInfo:
    """Collect RAM, CPU, GPU, torch threads and versions of this machine.

    Returns:
        A frozen :class:`SystemInfo`; device fields are None when no CUDA GPU is usable.

    Example:
        >>> info = system_info()
        >>> info.gpu_enabled
        False
    """
    memory = psutil.virtual_memory()
    gpu_enabled = torch.cuda.is_available()
    fields: dict[str, object] = {}
    if gpu_enabled:
        fields["gpu_count"] = torch.cuda.device_count()
        fields["device_name"] = torch.cuda.get_device_name(0)
        try:
            free, total = torch.cuda.mem_get_info(0)
        except RuntimeError:  # a busy or exclusive-mode GPU may refuse a new context
            pass
        else:
            fields["device_memory_total_gib"] = total / GIB
            fields["device_memory_used_gib"] = (total - free) / GIB
            fields["device_memory_free_gib"] = free / GIB
    return SystemInfo(
        ram_total_gib=memory.total / GIB,
        ram_available_gib=memory.available / GIB,
        cpu_model=_cpu_model(),
        cpu_logical_cores=psutil.cpu_count(logical=True) or 1,
        cpu_usable_cores=_usable_cores(),
        torch_version=torch.__version__,
        gpu_enabled=gpu_enabled,
        mps_available=_mps_available(),
        ram_limit_gib=_limit_below(cgroup_memory_limit(), memory.total),
        torch_threads=_cpu_threads(),
        python_version=platform.python_version(),
        sliceseg_version=__version__,
        **fields,  # type: ignore[arg-type]
    )


def select_device(preference: str = "auto") -> torch.device:
    """Turn a device setting into a torch device, checking that the hardware is there.

    Args:
        preference: "auto" (CUDA GPU when there is one, else the CPU), "cpu", "cuda",
            "cuda:N" (GPU number N) or "mps" (Apple silicon).

    Returns:
        The torch device to train or predict on.

    Raises:
        ConfigError: the name is unknown, or the requested GPU is not present.

    Example:
        >>> select_device("cpu")
        device(type='cpu')
    """
    name = str(preference).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise ConfigError(f"device {preference!r}: no CUDA GPU found; use --device cpu.")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {preference!r}: only {torch.cuda.device_count()} CUDA GPU(s) found "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}); choose one of those."
            )
        return torch.device("cuda", index)
    if name == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps': no Apple MPS GPU found; use --device cpu.")
        return torch.device("mps")
    raise ConfigError(f"unknown device {preference!r}; choose one of: {', '.join(DEVICE_CHOICES)}.")


def rank_cpus(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """The CPUs of this process (`usable_cpus`: its affinity and cgroup CPU
    quota, or ``cpus``), shared evenly among the processes torchrun started on this machine
    (``LOCAL_WORLD_SIZE``); at least one.

    Raises:
        LauncherError: LOCAL_WORLD_SIZE is not a whole number ≥ 1 (`local_world_size`).

    Example:
        >>> rank_cpus({"LOCAL_WORLD_SIZE": "4"}, cpus=16)
        4
    """
    env = os.environ if environ is None else environ
    if cpus is None:
        cpus = usable_cpus()
    return max(1, cpus // (local_world_size(env) or 1))


def rank_threads(
    device: str, environ: Mapping[str, str] | None = None, cpus: int | None = None
) -> int | None:
    """Torch threads for a process predicting or training on the CPU: a torchrun rank's share
    (`rank_cpus`); outside torchrun, the CPUs this process may use (``cpus``, else
    `usable_cpus`) where they are fewer than torch's own count, which ignores
    a cgroup CPU quota (``docker --cpus 2`` on 64 cores: 32 threads taking turns on 2).

    None (torch's own choice stands) on a GPU, when the user set ``OMP_NUM_THREADS`` (under
    torchrun: to anything but 1, since torchrun itself sets 1 when it is unset), or outside
    torchrun when torch's count already fits.

    Raises:
        LauncherError: LOCAL_WORLD_SIZE is not a whole number ≥ 1 (`local_world_size`).

    Example:
        >>> rank_threads("cpu", {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}, cpus=16)
        8
    """
    env = os.environ if environ is None else environ
    if device != "cpu":
        return None
    if local_world_size(env) is None:
        if "OMP_NUM_THREADS" in env:
            return None
        usable = usable_cpus() if cpus is None else cpus
        return usable if usable < torch.get_num_threads() else None
    if env.get("OMP_NUM_THREADS", "1") != "1":
        return None
    return rank_cpus(env, cpus)
