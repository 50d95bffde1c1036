"""An exponential moving average of the weights over training steps (Polyak averaging).

The average is what validation judges and what the model files hold: it smooths the step-to-step
noise of the last epochs, which a small training set and a short budget leave large. The
batch-norm statistics are averaged with the weights they belong to.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The running average of a model's parameters and buffers.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the first
    hundred steps' random start does not linger in a short run.

    Args:
        model: the trained model (not wrapped); its current weights start the average.
        decay: weight of the old average at each step, in (0, 1).

    Example:
        >>> net = nn.Linear(1, 1, bias=False)
        >>> _ = net.weight.data.fill_(1.0)
        >>> average = WeightAverage(net, decay=0.5)
        >>> _ = net.weight.data.fill_(0.0)
        >>> average.update(net)  # the first update's decay is 0.1
        >>> round(float(average.model.weight), 6)
        0.1
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    def restart(self, model: nn.Module) -> None:
        """Start the average again from ``model``'s current weights."""
        self.model.load_state_dict(model.state_dict())
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current parameters and buffers."""
        decay = self.current_decay()
        averaged = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = averaged[name]
            if target.is_floating_point():
                target.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:  # counters (batch norm's batches tracked): the latest
                target.copy_(value)
        self.updates += 1

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the average from a checkpoint: ``{"weights": ..., "updates": n}``."""
        self.model.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
