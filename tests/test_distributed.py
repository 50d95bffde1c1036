"""Tests for sliceseg.training.distributed: torchrun's variables read once, sums over the ranks,
and the epoch's training Dice and losses from every rank's pixels and slices.

Two ranks' hand-made counts of one ROI: rank 0 finds all of its 100 ROI pixels (tp 100, Dice
1), rank 1 misses all of its 10 (fn 10, Dice 0). The mean of their Dice is 0.5; the Dice of the
epoch's 110 ROI pixels is 2·100 / (2·100 + 0 + 10) = 200/210.

Their losses: rank 0 trained on 6 slices at a mean loss of 0.5 (Dice loss 0.25), rank 1 on 2
at 1.5 (1.25). The mean of their means is 1.0 (0.75); the mean over the epoch's 8 slices is
(6·0.5 + 2·1.5) / 8 = 0.75 ((6·0.25 + 2·1.25) / 8 = 0.5).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sliceseg.errors import ConfigError
from sliceseg.training import loop
from sliceseg.training.config import TrainConfig
from sliceseg.training.distributed import DistributedContext, init_distributed
from sliceseg.training.steps import EpochStats, train_one_epoch

RANK_COUNTS = ([[100], [0], [0]], [[0], [0], [10]])  # tp, fp, fn of ROI 1, per rank
POOLED_DICE = 200 / 210
RANK_LOSSES = ((0.5, 0.25, 6), (1.5, 1.25, 2))  # loss, Dice loss, slices, per rank
POOLED_LOSSES = (0.75, 0.5)


def test_a_rank_that_is_not_a_number_is_one_line(monkeypatch):
    """int('one') was a ValueError's traceback (exit 4, "a bug")."""
    monkeypatch.setenv("RANK", "one")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as raised:
        init_distributed(torch.device("cpu"))
    assert str(raised.value) == (
        "RANK='one' is not a whole number: start several training processes with torchrun (it "
        "sets both), or unset it for one process."
    )


@pytest.fixture
def torch_threads():
    """Give back torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch, cores: int, quota: float | None) -> None:
    from sliceseg import system

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(system, "cgroup_cpu_limit", lambda: quota)
    for name in ("OMP_NUM_THREADS", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_training_keeps_to_a_cgroup_cpu_quota(monkeypatch, torch_threads):
    """`docker --cpus 2` on 64 cores: predict took 2 threads, training torch's 32 (taking turns
    on 2 cores)."""
    _machine(monkeypatch, cores=64, quota=2.0)
    torch.set_num_threads(32)
    init_distributed(torch.device("cpu"))
    assert torch.get_num_threads() == 2


def test_a_torchrun_rank_on_the_cpu_takes_its_share_of_the_cores(monkeypatch, torch_threads):
    """torchrun sets OMP_NUM_THREADS=1 when unset: each rank trained on one thread of 8 cores."""
    _machine(monkeypatch, cores=8, quota=None)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    torch.set_num_threads(1)
    init_distributed(torch.device("cpu"))
    assert torch.get_num_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice stands
    torch.set_num_threads(3)
    init_distributed(torch.device("cpu"))
    assert torch.get_num_threads() == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "0")
    with pytest.raises(ConfigError, match=r"^LOCAL_WORLD_SIZE='0' is not a whole number ≥ 1"):
        init_distributed(torch.device("cpu"))


def test_one_process_sums_and_means_nothing():
    context = DistributedContext()
    counts = np.array(RANK_COUNTS[0], dtype=np.int64)
    assert context.summed(counts) is counts


def test_the_epochs_training_dice_and_losses_pool_every_ranks_pixels_and_slices(monkeypatch):
    """``train_dice`` was the mean of the ranks' Dice (0.5 here), not the epoch's Dice;
    ``loss`` and ``dice_loss`` the mean of the ranks' means (1.0 and 0.75 here)."""
    rank_stats = [
        EpochStats(
            loss=loss,
            dice_loss=dice_loss,
            counts=np.array(counts, dtype=np.int64),
            seconds=1.0,
            samples=samples,
        )
        for (loss, dice_loss, samples), counts in zip(RANK_LOSSES, RANK_COUNTS, strict=True)
    ]
    # rank 1's tensor of the same call, by rank 0's: what all_reduce adds on rank 0
    second = {
        (3.0, 1.5, 6.0): rank_stats[1].loss_sums(),
        (100, 0, 0): rank_stats[1].counts,
    }

    def all_reduce(tensor: torch.Tensor, *args: object, **kwargs: object) -> None:
        other = second[tuple(tensor.flatten().tolist())]
        tensor += torch.as_tensor(np.asarray(other), dtype=tensor.dtype).reshape(tensor.shape)

    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    monkeypatch.setattr(loop, "train_one_epoch", lambda *args, **kwargs: rank_stats[0])
    session = SimpleNamespace(
        config=TrainConfig(),
        context=DistributedContext(rank=0, world_size=2),
        optimizer=SimpleNamespace(param_groups=[{}]),
        sampler=None,
        **dict.fromkeys(["network", "loader", "loss_fn", "dice_loss_fn", "scaler"]),
        data=SimpleNamespace(num_classes=2, roi_names=("muscle",)),
        after_step=None,
        augment_params=None,
        generators={"augment": None},
    )
    row, _stats = loop.train_epoch(session, 1, SimpleNamespace(elapsed=lambda: 0.0))  # type: ignore[arg-type]
    assert row["train_dice"] == pytest.approx(POOLED_DICE)
    assert (row["loss"], row["dice_loss"]) == pytest.approx(POOLED_LOSSES)


def test_a_ranks_losses_weigh_each_batch_by_its_slices():
    """A last batch of 1 slice counted as much as one of 4 (mean of batch means 2.5)."""

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
            return [torch.cat([images, -images], dim=1) * self.scale]

    def slices_as_loss(outputs: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return outputs[0].sum() * 0 + len(labels)  # a batch of n slices: loss n

    images, labels = torch.ones(5, 1, 4, 4), torch.zeros(5, 4, 4, dtype=torch.long)
    batches = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    model = Logits()
    stats = train_one_epoch(model, batches, slices_as_loss, slices_as_loss,  # type: ignore[arg-type]
                            torch.optim.SGD(model.parameters(), lr=0.0), device=torch.device("cpu"),
                            num_classes=2, augment=None)  # fmt: skip
    assert stats.samples == 5
    assert (stats.loss, stats.dice_loss) == (pytest.approx(3.4), pytest.approx(3.4))  # 17 / 5


CHILD = textwrap.dedent(
    """
    import json, numpy as np, torch
    from sliceseg.training.distributed import close_distributed, init_distributed
    from sliceseg.training.steps import EpochStats, pooled_dice, pooled_losses
    context = init_distributed(torch.device("cpu"))
    summed = context.summed(np.array({counts}[context.rank], dtype=np.int64))
    loss, dice_loss, samples = {losses}[context.rank]
    stats = EpochStats(loss, dice_loss, summed, 1.0, samples)
    print(json.dumps({{"rank": context.rank, "counts": summed.tolist(),
                      "dtype": str(summed.dtype), "dice": pooled_dice(summed),
                      "losses": pooled_losses(context.summed(stats.loss_sums()))}}))
    close_distributed(context)
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_ranks_sum_their_counts_exactly():
    """Two real processes (gloo, as torchrun on the CPU): every rank gets the summed int64
    counts, so every rank's training Dice is the epoch's pooled one, and so are its losses."""
    env = {
        **os.environ,
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    script = CHILD.format(counts=list(RANK_COUNTS), losses=list(RANK_LOSSES))
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env | {"RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [process.communicate(timeout=120) for process in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    results = [json.loads(out.strip().splitlines()[-1]) for out, _err in outputs]
    for rank, result in enumerate(results):
        assert result["rank"] == rank
        assert result["counts"] == [[100], [0], [10]]
        assert result["dtype"] == "int64"
        assert result["dice"] == pytest.approx(POOLED_DICE)
        assert result["losses"] == pytest.approx(list(POOLED_LOSSES))
