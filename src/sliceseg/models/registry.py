"""The one table of model architectures: names, builders, defaults, and input-size rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from sliceseg.errors import ConfigError
from sliceseg.models.pyramid import PyramidNet, pyramid_defaults, pyramid_divisor
from sliceseg.models.unet import UNet, unet_defaults, unet_divisor


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture.

    Attributes:
        builder: ``builder(*, num_classes, input_size, **hyper) -> nn.Module``.
        defaults: ``defaults(input_size) -> dict`` of plain-data hyper-parameters.
        divisor: ``divisor(hyper) -> int``, what the input side must be divisible by.
        description: one line for listings and error messages.
    """

    builder: Callable[..., nn.Module]
    defaults: Callable[[int], dict[str, Any]]
    divisor: Callable[[dict[str, Any]], int]
    description: str


MODELS: dict[str, ModelSpec] = {
    "unet": ModelSpec(
        builder=UNet,
        defaults=unet_defaults,
        divisor=unet_divisor,
        description="compact nnU-Net-style 2D U-Net (default; fast on a CPU)",
    ),
    "pyramid": ModelSpec(
        builder=PyramidNet,
        defaults=pyramid_defaults,
        divisor=pyramid_divisor,
        description="published two-stage multi-scale pyramid of 2D V-Nets (Dourthe et al. 2021)",
    ),
}


def _spec(arch: str) -> ModelSpec:
    if arch not in MODELS:
        known = ", ".join(f"'{name}'" for name in MODELS)
        raise ConfigError(f"architecture {arch!r} is unknown; use one of {known}.")
    return MODELS[arch]


def default_hyperparameters(arch: str, *, input_size: int) -> dict[str, Any]:
    """Return the default hyper-parameters of ``arch`` for a model grid of side ``input_size``.

    Args:
        arch: a name in ``MODELS``.
        input_size: side of the square model grid in pixels.

    Returns:
        Plain data (ints, floats, bools, strings), stored in the model file so that
        ``build_model(arch, ..., **hyper)`` rebuilds the same network.

    Raises:
        ConfigError: unknown ``arch``, or an ``input_size`` the architecture cannot use.

    Example:
        >>> default_hyperparameters("pyramid", input_size=256)["base_channels"]
        16
    """
    return dict(_spec(arch).defaults(input_size))


def required_divisor(arch: str, hyper: dict[str, Any] | None = None) -> int:
    """Return what ``input_size`` must be divisible by for ``arch`` with ``hyper``.

    Args:
        arch: a name in ``MODELS``.
        hyper: hyper-parameters (missing ones take their defaults).

    Returns:
        The divisor (``2 ** (depth - 1)`` for the U-Net, ``2 ** levels`` for the pyramid).

    Raises:
        ConfigError: unknown ``arch``.

    Example:
        >>> required_divisor("pyramid", {})
        32
    """
    return int(_spec(arch).divisor(dict(hyper or {})))


def build_model(arch: str, *, num_classes: int, input_size: int, **hyper: Any) -> nn.Module:
    """Build a network: ``forward(x (B,1,S,S)) -> list[Tensor]``, element 0 the final logits.

    Args:
        arch: a name in ``MODELS``.
        num_classes: output classes C = K + 1 (background included).
        input_size: side S of the square model grid.
        **hyper: hyper-parameters overriding ``default_hyperparameters(arch, input_size=S)``.

    Returns:
        The model, in training mode. In training mode ``forward`` may add auxiliary logits
        (pyramid stage 1; U-Net deep supervision at ½ and ¼ resolution); in eval mode it
        returns a one-element list.

    Raises:
        ConfigError: unknown ``arch`` (lists the known ones), unknown hyper-parameter (lists
            the valid ones), a bad value, or an ``input_size`` the network cannot use.

    Example:
        >>> model = build_model("unet", num_classes=7, input_size=128)
    """
    spec = _spec(arch)
    defaults = spec.defaults(input_size)
    unknown = sorted(set(hyper) - set(defaults))
    if unknown:
        raise ConfigError(
            f"hyper-parameter(s) {', '.join(unknown)} unknown for '{arch}'; "
            f"valid ones: {', '.join(sorted(defaults))}."
        )
    return spec.builder(num_classes=num_classes, input_size=input_size, **{**defaults, **hyper})
