"""A compact 2D U-Net in the nnU-Net spirit: the default, sized to train fast on a CPU.

Each level is conv–norm–LeakyReLU twice; the encoder halves the resolution with a strided
convolution, the decoder doubles it with a transposed convolution (or bilinear + 1×1 conv) and
concatenates the skip connection. Optional deep-supervision heads read the two next-coarser
decoder levels (½ and ¼ resolution) in training mode.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sliceseg.models.blocks import (
    NORMS,
    ConvNormAct,
    check_choice,
    check_input,
    check_input_size,
    check_int,
    check_rate,
)

UPSAMPLING: tuple[str, ...] = ("transpose", "bilinear")


def unet_defaults(input_size: int) -> dict[str, Any]:
    """Return the default U-Net hyper-parameters, chosen by measurement (docs/benchmarks.md).

    Base 8, depth 5 (widths 8…128, 0.49 M parameters, 1.5 GFLOPs per 256² slice) trains
    13–17× faster than the published pyramid at 256 on 2 CPU cores and reached a mean Dice of
    0.97 on a 6-ROI lumbar phantom at 128 after 75 s of training; base 16 was 3× slower and
    no better in the same time. Raise ``base_channels`` for harder data and a GPU.

    Batch norm (was instance norm): on the real-MR benchmark it trained about 20 % more epochs
    in the same CPU time and reached a higher Dice; in eval mode it folds into the convolutions
    and makes the network size-free, so ``predict`` runs whole slices in one pass (2.3× the
    instance-norm U-Net's slices/s at 256², docs/benchmarks.md).

    Args:
        input_size: side of the square model grid; the defaults do not depend on it, but a
            grid too small for five levels gets fewer.

    Returns:
        Plain data: ``base_channels``, ``depth``, ``max_channels``, ``deep_supervision``,
        ``dropout_rate``, ``norm``, ``upsample``.
    """
    depth = 5
    while depth > 2 and input_size // 2 ** (depth - 1) < 4:
        depth -= 1
    return {
        "base_channels": 8,
        "depth": depth,
        "max_channels": 256,
        "deep_supervision": True,
        "dropout_rate": 0.0,
        "norm": "batch",
        "upsample": "transpose",
    }


def unet_divisor(hyper: dict[str, Any]) -> int:
    """Return what the input side must be divisible by: ``2 ** (depth - 1)``."""
    return 2 ** (int(hyper.get("depth", 5)) - 1)


class _UNetEncoder(nn.Module):
    """The contracting path: returns the features of every level, finest first."""

    def __init__(
        self, widths: list[int], *, norm: str, dropout_rate: float, in_channels: int = 1
    ) -> None:
        super().__init__()
        stages = []
        for level, width in enumerate(widths):
            previous = in_channels if level == 0 else widths[level - 1]
            stride = 1 if level == 0 else 2
            layers: list[nn.Module] = [
                ConvNormAct(previous, width, stride=stride, norm=norm),
                ConvNormAct(width, width, norm=norm),
            ]
            if dropout_rate > 0 and level == len(widths) - 1:
                layers.append(nn.Dropout2d(dropout_rate))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class _UpBlock(nn.Module):
    """Double the resolution, concatenate the skip, then two conv–norm–act units."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: str, upsample: str) -> None:
        super().__init__()
        if upsample == "transpose":
            self.up: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_channels, out_channels, 1),
            )
        self.convs = nn.Sequential(
            ConvNormAct(2 * out_channels, out_channels, norm=norm),
            ConvNormAct(out_channels, out_channels, norm=norm),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class _UNetDecoder(nn.Module):
    """The expanding path: returns the decoder features, finest first."""

    def __init__(self, widths: list[int], *, norm: str, upsample: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _UpBlock(widths[level + 1], widths[level], norm=norm, upsample=upsample)
            for level in reversed(range(len(widths) - 1))
        )

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        x = features[-1]
        outputs = []
        for block, skip in zip(self.blocks, reversed(features[:-1]), strict=True):
            x = block(x, skip)
            outputs.append(x)
        return outputs[::-1]


class UNet(nn.Module):
    """2D U-Net: ``forward(x (B,1,S,S)) -> [logits (B,C,S,S), *deep-supervision logits]``.

    Args:
        num_classes: output classes C = K + 1 (background included).
        input_size: side of the square model grid; checked against the depth.
        base_channels: channels at the first level (≥ 8), doubled at every level.
        depth: number of resolution levels (2..7); the input must be divisible by
            ``2 ** (depth - 1)``.
        max_channels: cap on the channels of any level.
        deep_supervision: add 1×1 heads at the ½ and ¼ decoder levels (training mode only).
        dropout_rate: channel dropout after the bottleneck (0 disables it).
        norm: "instance", "batch", "group" or "none".
        upsample: "transpose" (2×2 transposed conv) or "bilinear" (bilinear + 1×1 conv).
        in_channels: input channels: 1, or ``1 + 2k`` for a 2.5D model (k neighbours a side).

    Raises:
        ConfigError: a hyper-parameter is out of range, or ``input_size`` does not suit ``depth``.

    Example:
        >>> model = UNet(num_classes=7, input_size=64, base_channels=8, depth=4)
        >>> [tuple(o.shape) for o in model(torch.zeros(2, 1, 64, 64))]
        [(2, 7, 64, 64), (2, 7, 32, 32), (2, 7, 16, 16)]
    """

    arch = "unet"

    def __init__(
        self,
        *,
        num_classes: int,
        input_size: int,
        base_channels: int = 8,
        depth: int = 5,
        max_channels: int = 256,
        deep_supervision: bool = True,
        dropout_rate: float = 0.0,
        norm: str = "batch",
        upsample: str = "transpose",
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        check_int(num_classes, name="num_classes", minimum=2)
        check_int(in_channels, name="in_channels", minimum=1)
        check_int(base_channels, name="base_channels", minimum=8)
        check_int(depth, name="depth", minimum=2, maximum=7)
        check_int(max_channels, name="max_channels", minimum=base_channels)
        check_choice(norm, name="norm", choices=NORMS)
        check_choice(upsample, name="upsample", choices=UPSAMPLING)
        dropout_rate = check_rate(dropout_rate, name="dropout_rate")
        self.divisor = 2 ** (depth - 1)
        self.in_channels = in_channels
        check_input_size(input_size, divisor=self.divisor, arch=self.arch)
        widths = [min(base_channels * 2**level, max_channels) for level in range(depth)]
        self.widths = widths
        self.encoder = _UNetEncoder(
            widths, norm=norm, dropout_rate=dropout_rate, in_channels=in_channels
        )
        self.decoder = _UNetDecoder(widths, norm=norm, upsample=upsample)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        levels = range(1, min(3, depth - 1)) if deep_supervision else range(0)
        self.aux_heads = nn.ModuleList(nn.Conv2d(widths[lv], num_classes, 1) for lv in levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Segment a batch.

        Args:
            x: images (B, I, H, W), H and W divisible by ``2 ** (depth - 1)``.

        Returns:
            ``[logits (B, C, H, W)]`` in eval mode; in training mode followed by the deep
            supervision logits at (H/2, W/2) and (H/4, W/4).

        Raises:
            ConfigError: the batch has the wrong shape.
        """
        check_input(x, divisor=self.divisor, arch=self.arch, in_channels=self.in_channels)
        decoded = self.decoder(self.encoder(x))
        outputs = [self.head(decoded[0])]
        if self.training:
            outputs += [head(decoded[i + 1]) for i, head in enumerate(self.aux_heads)]
        return outputs
