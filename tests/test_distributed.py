"""Tests for sliceseg.training.distributed: torchrun's variables read once, sums over the ranks,
and the epoch's training Dice from every rank's pixels.

Two ranks' hand-made counts of one ROI: rank 0 finds all of its 100 ROI pixels (tp 100, Dice
1), rank 1 misses all of its 10 (fn 10, Dice 0). The mean of their Dice is 0.5; the Dice of the
epoch's 110 ROI pixels is 2·100 / (2·100 + 0 + 10) = 200/210.
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

RANK_COUNTS = ([[100], [0], [0]], [[0], [0], [10]])  # tp, fp, fn of ROI 1, per rank
POOLED_DICE = 200 / 210


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


def test_one_process_sums_and_means_nothing():
    context = DistributedContext()
    counts = np.array(RANK_COUNTS[0], dtype=np.int64)
    assert context.summed(counts) is counts
    assert context.mean(0.25) == 0.25


def test_the_epochs_training_dice_pools_every_ranks_pixels(monkeypatch):
    """``train_dice`` was the mean of the ranks' Dice (0.5 here), not the epoch's Dice."""
    rank_stats = [
        SimpleNamespace(
            loss=0.5 + rank,
            dice_loss=0.25 + rank,
            dice=1.0 - rank,  # each rank's own Dice, from its counts
            counts=np.array(counts, dtype=np.int64),
            seconds=1.0,
        )
        for rank, counts in enumerate(RANK_COUNTS)
    ]
    # rank 1's tensor of the same call, by rank 0's: what all_reduce adds on rank 0
    second = {
        (0.5,): [1.5],
        (0.25,): [1.25],
        (1.0,): [0.0],
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
    assert (row["loss"], row["dice_loss"]) == (pytest.approx(1.0), pytest.approx(0.75))


CHILD = textwrap.dedent(
    """
    import json, numpy as np, torch
    from sliceseg.training.distributed import close_distributed, init_distributed
    from sliceseg.training.steps import pooled_dice
    context = init_distributed(torch.device("cpu"))
    summed = context.summed(np.array({counts}[context.rank], dtype=np.int64))
    print(json.dumps({{"rank": context.rank, "counts": summed.tolist(),
                      "dtype": str(summed.dtype), "dice": pooled_dice(summed),
                      "mean": context.mean(float(context.rank))}}))
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
    counts, so every rank's training Dice is the epoch's pooled one."""
    env = {
        **os.environ,
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "OMP_NUM_THREADS": "1",
    }
    script = CHILD.format(counts=list(RANK_COUNTS))
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
        assert result["mean"] == 0.5
