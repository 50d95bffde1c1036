"""Multi-process training context: PyTorch's own DistributedDataParallel, launched by torchrun."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from sliceseg.errors import ConfigError, LauncherError
from sliceseg.launchers import torchrun_ranks
from sliceseg.system import rank_threads


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank, 0 for the process that prints and writes.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for the one process that prints and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op when single-process)."""
        if self.is_distributed:
            dist.barrier()

    def broadcast_flag(self, flag: bool) -> bool:
        """Return rank 0's value of ``flag`` on every rank (e.g. "stop now")."""
        if not self.is_distributed:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(tensor, src=0)
        return bool(tensor.item() > 0.5)

    def summed(self, values: np.ndarray) -> np.ndarray:
        """Return the element-wise sum of ``values`` over all ranks, in their shape and dtype
        (int64 pixel counts sum exactly); ``values`` itself is left as it is."""
        if not self.is_distributed:
            return values
        tensor = torch.tensor(values, device=self.device)  # a copy: all_reduce works in place
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def gather_floats(self, value: float) -> list[float]:
        """Return every rank's ``value``, in rank order."""
        if not self.is_distributed:
            return [value]
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        gathered = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return [float(t.item()) for t in gathered]


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun; else return a single-process context.

    NCCL is used on CUDA, gloo on the CPU. Each CUDA rank takes the GPU of its LOCAL_RANK. On
    the CPU the torch threads are those `predict` takes (`rank_threads`): a torchrun rank's share
    of the machine's CPUs (torchrun's own OMP_NUM_THREADS=1 left one thread per rank), and no
    more than a cgroup CPU quota allows.

    Raises:
        ConfigError: only one of RANK and WORLD_SIZE is set (torchrun sets both): each
            process would train the whole run into the same folder; or one is not a number
            (LOCAL_WORLD_SIZE too).
    """
    try:
        ranks = torchrun_ranks()
        threads = rank_threads(device.type)
    except LauncherError as error:
        raise ConfigError(
            f"{error.found}: start several training processes with torchrun (it sets both), or "
            "unset it for one process."
        ) from None
    if threads is not None:
        torch.set_num_threads(threads)
    if ranks is None or ranks.world_size <= 1:
        return DistributedContext(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(
        rank=ranks.rank, world_size=ranks.world_size, local_rank=ranks.local_rank, device=device
    )


def close_distributed(context: DistributedContext) -> None:
    """Leave the process group if this process joined one."""
    if context.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def parameter_checksum(model: torch.nn.Module) -> float:
    """Return a checksum of a model's parameters (to check ranks ended identical)."""
    with torch.no_grad():
        return float(
            sum((p.detach().double() * (i + 1)).sum() for i, p in enumerate(model.parameters()))
        )
