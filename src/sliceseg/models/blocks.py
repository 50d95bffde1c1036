"""Small building blocks shared by the networks: conv–norm–activation, norms, and checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import torch
from torch import nn

from sliceseg.errors import ConfigError

Choice = TypeVar("Choice", str, int)

NORMS: tuple[str, ...] = ("instance", "batch", "group", "none")


class AveragingBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose running statistics start as the plain average of the first batches.

    PyTorch's running mean and variance start at 0 and 1 and move by ``momentum`` (0.1) per
    batch, so after a few steps the eval-mode network (what is validated, saved and predicts)
    is far from the one trained: a 2-step model predicted background everywhere. Here batch
    ``n`` counts ``max(1/n, momentum)``: the first ten batches are averaged equally, then the
    usual exponential average takes over. Same parameters and buffers as ``nn.BatchNorm2d``
    (model files are interchangeable; a resumed run continues from ``num_batches_tracked``).
    """

    def __init__(self, channels: int, *, momentum: float = 0.1) -> None:
        super().__init__(channels, momentum=momentum)
        self.base_momentum = momentum
        self._seen: int | None = None  # batches tracked, read once from the buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            if self._seen is None:  # one device read per run, not per step
                tracked = self.num_batches_tracked
                self._seen = 0 if tracked is None else int(tracked)
            self._seen += 1
            self.momentum = max(self.base_momentum, 1.0 / self._seen)
        return super().forward(x)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._seen = None  # re-read after loading a checkpoint
        super()._load_from_state_dict(*args, **kwargs)


def make_norm(kind: str, channels: int) -> nn.Module:
    """Return a 2D normalisation layer.

    Args:
        kind: one of ``NORMS``: "instance" (affine InstanceNorm, nnU-Net's choice), "batch"
            (:class:`AveragingBatchNorm2d`),
            "group" (8 groups, or fewer when ``channels`` is not divisible by 8), "none".
        channels: number of feature channels.

    Returns:
        The layer (``nn.Identity`` for "none").

    Raises:
        ConfigError: ``kind`` is not one of ``NORMS``.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "batch":
        return AveragingBatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm {kind!r} is unknown; use one of {', '.join(NORMS)}.")


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation and LeakyReLU(0.01): the nnU-Net unit.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: 2 to halve the resolution (strided-convolution downsampling).
        norm: see ``make_norm``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: str) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=norm == "none"),
            make_norm(norm, out_channels),
            nn.LeakyReLU(0.01, inplace=True),
        )


def check_int(value: object, *, name: str, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int after checking it lies in ``[minimum, maximum]``.

    Args:
        value: the hyper-parameter value as given.
        name: its name, for the message.
        minimum: smallest allowed value.
        maximum: largest allowed value, or None for no bound.

    Returns:
        The value.

    Raises:
        ConfigError: not an integer, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}.")
    return value


def check_rate(value: object, *, name: str) -> float:
    """Return a probability in ``[0, 1)``.

    Raises:
        ConfigError: not a number in ``[0, 1)``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a number in [0, 1), got {value!r}.")
    return float(value)


def check_choice(value: Choice, *, name: str, choices: Iterable[Choice]) -> Choice:
    """Return ``value`` when it is one of ``choices``.

    Raises:
        ConfigError: not one of ``choices``; the message lists them.
    """
    options = tuple(choices)
    if value not in options:
        known = ", ".join(str(option) for option in options)
        raise ConfigError(f"{name} {value!r} is unknown; use one of {known}.")
    return value


def check_input(x: torch.Tensor, *, divisor: int, arch: str, in_channels: int = 1) -> None:
    """Check a batch is ``(B, in_channels, H, W)`` with ``H`` and ``W`` divisible by ``divisor``.

    Args:
        x: the model's input batch.
        divisor: what the network's downsampling needs the sides to be divisible by.
        arch: the architecture's name, for the message.
        in_channels: the channels the network takes (1, or ``1 + 2k`` for a 2.5D model).

    Raises:
        ConfigError: wrong rank, channel count, or side length.
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        hint = (
            "add the channel axis with x[:, None]"
            if in_channels == 1
            else (f"give each slice with its {in_channels // 2} neighbours on either side")
        )
        raise ConfigError(
            f"'{arch}' expects images of shape (B, {in_channels}, H, W), got "
            f"{tuple(x.shape)}; {hint}."
        )
    height, width = x.shape[-2:]
    if height % divisor or width % divisor:
        raise ConfigError(
            f"'{arch}' input size {height}×{width} is not divisible by {divisor}; "
            f"resize or pad to a multiple of {divisor}."
        )


def check_input_size(input_size: int, *, divisor: int, arch: str) -> None:
    """Check the model grid side ``input_size`` suits a network needing ``divisor``.

    Raises:
        ConfigError: not a positive multiple of ``divisor``; the message names the nearest
            valid sizes.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ConfigError(f"input_size must be a positive integer, got {input_size!r}.")
    if input_size % divisor:
        below = (input_size // divisor) * divisor
        raise ConfigError(
            f"input size {input_size} is not divisible by {divisor}, which the '{arch}' "
            f"network needs; use {below or divisor} or {below + divisor}."
        )
