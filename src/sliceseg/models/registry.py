"""The one table of model architectures: names, builders, defaults, and input-size rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from torch import nn

from sliceseg.errors import ConfigError
from sliceseg.models.blocks import NORMS
from sliceseg.models.pyramid import PyramidNet, pyramid_defaults, pyramid_divisor
from sliceseg.models.unet import UPSAMPLING, UNet, unet_defaults, unet_divisor


@dataclass(frozen=True)
class Rule:
    """What one hyper-parameter may be: an integer range, one of some choices, a rate or a flag.

    Attributes:
        kind: "int" (whole number in ``low..high``), "choice" (one of ``choices``), "rate"
            (a number in [0, 1)) or "flag" (true or false).
        low: smallest allowed integer.
        high: largest allowed integer, or None for no bound.
        choices: the allowed values of a "choice".
    """

    kind: str
    low: int = 0
    high: int | None = None
    choices: tuple[Any, ...] = ()

    def allowed(self) -> str:
        """Describe the allowed values, for messages (``"an integer in 2..7"``)."""
        if self.kind == "int":
            bound = f"{self.low}..{self.high}" if self.high is not None else f">= {self.low}"
            return f"an integer in {bound}"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        return "a number in [0, 1)" if self.kind == "rate" else "true or false"

    def accepts(self, value: Any) -> bool:
        """Return whether ``value`` is allowed (booleans are never numbers here)."""
        if self.kind == "flag":
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self.kind == "int":
            is_int = isinstance(value, int)
            return is_int and value >= self.low and (self.high is None or value <= self.high)
        if self.kind == "rate":
            return isinstance(value, (int, float)) and 0 <= value < 1
        return value in self.choices


@dataclass(frozen=True)
class Hyperparameters:
    """Hyper-parameters of one architecture as the user gave them; None means its default.

    Subclasses name the architecture (``arch``) and the rule of each field (``rules``); every
    given value is checked at construction, so a bad one is reported before any data is read.
    """

    arch: ClassVar[str] = ""
    rules: ClassVar[dict[str, Rule]] = {}

    def __post_init__(self) -> None:
        for name, given in self.to_dict().items():
            # a notebook's np.int64(8) is its value: checked as one, stored plain in the model
            # file (which `torch.load(weights_only=True)` opens only when it holds plain data)
            value = given.item() if isinstance(given, np.generic) else given
            object.__setattr__(self, name, value)
            rule = self.rules[name]
            if not rule.accepts(value):
                raise ConfigError(
                    f"hyperparameters.{name} of '{self.arch}' must be {rule.allowed()}, "
                    f"got {value!r}; fix it in the settings."
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the given values as plain data (the defaults are left out)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hyperparameters:
        """Build from plain data (a TOML table), refusing unknown names.

        Raises:
            ConfigError: a name is unknown (the message lists the valid ones) or a value bad.
        """
        unknown = sorted(set(data) - set(cls.rules))
        if unknown:
            raise ConfigError(
                f"hyper-parameter(s) {', '.join(unknown)} unknown for '{cls.arch}'; "
                f"valid ones: {', '.join(sorted(cls.rules))}."
            )
        return cls(**dict(data))

    def resolve(self, input_size: int, *, dropout_rate: float | None = None) -> dict[str, Any]:
        """Return every hyper-parameter for a grid of side ``input_size``, as ``build_model``
        takes them and the model file stores them.

        Args:
            input_size: side of the square model grid in pixels.
            dropout_rate: the run's dropout, used unless ``dropout_rate`` was given here.

        Raises:
            ConfigError: the combination is invalid for this grid (e.g. pyramid widths < 1).
        """
        values = {**default_hyperparameters(self.arch, input_size=input_size)}
        if dropout_rate is not None and "dropout_rate" in values:
            values["dropout_rate"] = dropout_rate
        values.update(self.to_dict())
        type(self)(**values)._check_combination(input_size)
        return values

    def _check_combination(self, input_size: int) -> None:
        """Check rules between fields of fully resolved values (none by default)."""


@dataclass(frozen=True)
class UNetHyperparameters(Hyperparameters):
    """U-Net hyper-parameters (see `UNet`); None takes ``unet_defaults``.

    Example:
        >>> UNetHyperparameters(depth=4).resolve(64)["depth"]
        4
    """

    arch: ClassVar[str] = "unet"
    rules: ClassVar[dict[str, Rule]] = {
        "base_channels": Rule("int", low=8),
        "depth": Rule("int", low=2, high=7),
        "max_channels": Rule("int", low=8),
        "deep_supervision": Rule("flag"),
        "dropout_rate": Rule("rate"),
        "norm": Rule("choice", choices=NORMS),
        "upsample": Rule("choice", choices=UPSAMPLING),
    }

    base_channels: int | None = None
    depth: int | None = None
    max_channels: int | None = None
    deep_supervision: bool | None = None
    dropout_rate: float | None = None
    norm: str | None = None
    upsample: str | None = None

    def _check_combination(self, input_size: int) -> None:
        if (self.max_channels or 0) < (self.base_channels or 0):
            raise ConfigError(
                f"hyperparameters.max_channels of 'unet' must be >= base_channels "
                f"({self.base_channels}), got {self.max_channels}; raise max_channels."
            )


@dataclass(frozen=True)
class PyramidHyperparameters(Hyperparameters):
    """Pyramid hyper-parameters (see `PyramidNet`); None takes ``pyramid_defaults``.

    Example:
        >>> PyramidHyperparameters().resolve(256)["base_channels"]
        16
    """

    arch: ClassVar[str] = "pyramid"
    rules: ClassVar[dict[str, Rule]] = {
        "base_channels": Rule("int", low=1),
        "levels": Rule("int", low=2, high=7),
        "kernel_size": Rule("choice", choices=(3, 5)),
        "dropout_rate": Rule("rate"),
        "norm": Rule("choice", choices=NORMS),
    }

    base_channels: int | None = None
    levels: int | None = None
    kernel_size: int | None = None
    dropout_rate: float | None = None
    norm: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """How to build one architecture.

    Attributes:
        builder: ``builder(*, num_classes, input_size, **hyper) -> nn.Module``.
        defaults: ``defaults(input_size) -> dict`` of plain-data hyper-parameters.
        divisor: ``divisor(hyper) -> int``, what the input side must be divisible by.
        description: one line for listings and error messages.
        hyperparameters: the typed settings class of the architecture.
    """

    builder: Callable[..., nn.Module]
    defaults: Callable[[int], dict[str, Any]]
    divisor: Callable[[dict[str, Any]], int]
    description: str
    hyperparameters: type[Hyperparameters]


MODELS: dict[str, ModelSpec] = {
    "unet": ModelSpec(
        builder=UNet,
        defaults=unet_defaults,
        divisor=unet_divisor,
        description="compact nnU-Net-style 2D U-Net (default; fast on a CPU)",
        hyperparameters=UNetHyperparameters,
    ),
    "pyramid": ModelSpec(
        builder=PyramidNet,
        defaults=pyramid_defaults,
        divisor=pyramid_divisor,
        description="published two-stage multi-scale pyramid of 2D V-Nets (Dourthe et al. 2021)",
        hyperparameters=PyramidHyperparameters,
    ),
}


def _spec(arch: str) -> ModelSpec:
    if arch not in MODELS:
        known = ", ".join(f"'{name}'" for name in MODELS)
        raise ConfigError(f"architecture {arch!r} is unknown; use one of {known}.")
    return MODELS[arch]


def parse_hyperparameters(
    arch: str, data: Mapping[str, Any] | Hyperparameters | None = None
) -> Hyperparameters:
    """Return the typed hyper-parameters of ``arch`` from plain data (a TOML table) or as given.

    Args:
        arch: a name in ``MODELS``.
        data: given values (missing ones take the architecture's defaults), or typed ones.

    Returns:
        The architecture's `Hyperparameters` subclass, every given value checked.

    Raises:
        ConfigError: unknown ``arch``, a name unknown for it (lists the valid ones), typed
            values of another architecture, or a value out of range (names the allowed range).

    Example:
        >>> parse_hyperparameters("unet", {"depth": 4}).to_dict()
        {'depth': 4}
    """
    kind = _spec(arch).hyperparameters
    if isinstance(data, Hyperparameters):
        if not isinstance(data, kind):
            raise ConfigError(
                f"hyperparameters are for '{data.arch}' but arch is '{arch}'; give "
                f"{kind.__name__} or a plain table."
            )
        return data
    return kind.from_dict(data or {})


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


def context_channels(context_slices: int) -> int:
    """Input channels of a network that sees ``context_slices`` neighbours on each side."""
    return 1 + 2 * int(context_slices)


def build_model(
    arch: str, *, num_classes: int, input_size: int, in_channels: int = 1, **hyper: Any
) -> nn.Module:
    """Build a network: ``forward(x (B,I,S,S)) -> list[Tensor]``, element 0 the final logits.

    Args:
        arch: a name in ``MODELS``.
        num_classes: output classes C = K + 1 (background included).
        input_size: side S of the square model grid.
        in_channels: input channels I: 1, or ``1 + 2k`` for a 2.5D model
            (`context_channels`).
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
    return spec.builder(
        num_classes=num_classes,
        input_size=input_size,
        in_channels=in_channels,
        **{**defaults, **hyper},
    )
