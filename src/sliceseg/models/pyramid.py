"""The published two-stage multi-scale pyramid 2D network, the reference we measure against.

Written from the description in Dourthe et al., "Automated Segmentation of Spinal Muscles From
Upright Open MRI Using a Multiscale Pyramid 2D Convolutional Neural Network" (Spine 2021), after
Roth et al. 2018 ("A multi-scale pyramid of 3D fully convolutional networks for abdominal
multi-organ segmentation"):

- stage 1, a V-Net-like encoder–decoder, segments the image downsampled ×2 (2×2 average);
- its softmax, upsampled ×2 (bilinear), is concatenated with the full-resolution image and fed
  to stage 2, an identical network with ``1 + C`` input channels;
- the loss is taken on both stages (stage 1's logits are upsampled to full resolution).

Each V-Net level is a residual block of ``kernel_size``×``kernel_size`` convolutions (5×5 as in
V-Net, Milletari et al. 2016) with PReLU; per level 1, 1, 2, 3, 3 convolutions in the encoder and
2, 2, 1, 1 in the decoder (V-Net's counts); dilation 2 in the two deepest encoder levels;
2×2 stride-2 convolutions down, 2×2 stride-2 transposed convolutions up; channel dropout in the
two deepest encoder levels and the two decoder levels fed by them. Widths scale with the input
as published: ``input_size / 16`` at the first level, doubled per level (256 → 16 … 256).
BatchNorm follows each convolution, as in V-Net's public implementations.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sliceseg.errors import ConfigError
from sliceseg.models.blocks import (
    NORMS,
    check_choice,
    check_input,
    check_input_size,
    check_int,
    check_rate,
    make_norm,
)


def pyramid_defaults(input_size: int) -> dict[str, Any]:
    """Return the published pyramid hyper-parameters for a square grid of side ``input_size``.

    Args:
        input_size: side of the model grid; the first-level width is ``input_size // 16``.

    Returns:
        Plain data: ``base_channels``, ``levels``, ``kernel_size``, ``dropout_rate``, ``norm``.
        Below ``input_size`` 16 the width is 0 and ``PyramidNet`` refuses it, unless
        ``base_channels`` is overridden.
    """
    return {
        "base_channels": input_size // 16,
        "levels": 5,
        "kernel_size": 5,
        "dropout_rate": 0.2,
        "norm": "batch",
    }


def pyramid_divisor(hyper: dict[str, Any]) -> int:
    """Return what the input side must be divisible by: ``2 * 2 ** (levels - 1)``."""
    return 2 * 2 ** (int(hyper.get("levels", 5)) - 1)


class _ConvAct(nn.Sequential):
    """Convolution (same padding, optional dilation), normalisation and PReLU."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel_size: int, dilation: int, norm: str):
        super().__init__(
            nn.Conv2d(
                in_ch,
                out_ch,
                kernel_size,
                padding=dilation * (kernel_size - 1) // 2,
                dilation=dilation,
                bias=norm == "none",
            ),
            make_norm(norm, out_ch),
            nn.PReLU(out_ch),
        )


class _ResidualBlock(nn.Module):
    """``n`` conv–norm–PReLU units with a residual connection: ``PReLU(convs(x) + x)``."""

    def __init__(self, channels: int, n: int, *, kernel_size: int, dilation: int, norm: str):
        super().__init__()
        self.convs = nn.Sequential(
            *(
                _ConvAct(channels, channels, kernel_size=kernel_size, dilation=dilation, norm=norm)
                for _ in range(n)
            )
        )
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + x)


def _resample(conv: nn.Module, channels: int, norm: str, dropout: float) -> nn.Sequential:
    layers = [nn.Dropout2d(dropout)] if dropout > 0 else []
    return nn.Sequential(*layers, conv, make_norm(norm, channels), nn.PReLU(channels))


class _VNet2d(nn.Module):
    """One stage of the pyramid: a 2D V-Net returning logits at its input's resolution.

    Args:
        in_channels: 1 for stage 1, ``1 + num_classes`` for stage 2.
        num_classes: output classes C.
        widths: channels per level, finest first.
        kernel_size: 3 or 5.
        dropout_rate: channel dropout in the deep levels.
        norm: see ``make_norm``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: list[int],
        *,
        kernel_size: int,
        dropout_rate: float,
        norm: str,
    ) -> None:
        super().__init__()
        deep = len(widths) - 2
        self.input_conv = _ConvAct(
            in_channels, widths[0], kernel_size=kernel_size, dilation=1, norm=norm
        )
        self.input_skip = nn.Conv2d(in_channels, widths[0], 1)
        self.input_act = nn.PReLU(widths[0])
        self.downs, self.encoder = nn.ModuleList(), nn.ModuleList()
        for level in range(1, len(widths)):
            drop = dropout_rate if level >= deep else 0.0
            down = nn.Conv2d(widths[level - 1], widths[level], 2, stride=2, bias=norm == "none")
            self.downs.append(_resample(down, widths[level], norm, drop))
            dilation = 2 if level >= max(deep, 2) else 1
            self.encoder.append(
                _ResidualBlock(
                    widths[level],
                    min(level, 3),
                    kernel_size=kernel_size,
                    dilation=dilation,
                    norm=norm,
                )
            )
        self.ups, self.decoder = nn.ModuleList(), nn.ModuleList()
        channels = widths[-1]
        for level in reversed(range(len(widths) - 1)):
            drop = dropout_rate if level >= deep - 1 else 0.0
            up = nn.ConvTranspose2d(channels, widths[level], 2, stride=2, bias=norm == "none")
            self.ups.append(_resample(up, widths[level], norm, drop))
            channels = 2 * widths[level]
            self.decoder.append(
                _ResidualBlock(
                    channels, 2 if level >= 2 else 1, kernel_size=kernel_size, dilation=1, norm=norm
                )
            )
        self.head = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_act(self.input_conv(x) + self.input_skip(x))
        skips = [x]
        for down, block in zip(self.downs, self.encoder, strict=True):
            x = block(down(x))
            skips.append(x)
        skips.pop()
        for up, block in zip(self.ups, self.decoder, strict=True):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


class PyramidNet(nn.Module):
    """Two-stage multi-scale pyramid: ``forward(x) -> [stage-2 logits, stage-1 logits]``.

    Args:
        num_classes: output classes C = K + 1 (background included).
        input_size: side of the square model grid.
        base_channels: first-level width (published: ``input_size // 16``), doubled per level.
        levels: resolution levels of each V-Net (published: 5).
        kernel_size: 5 (V-Net) or 3.
        dropout_rate: channel dropout in the deep levels.
        norm: "batch" (default), "instance", "group" or "none".
        in_channels: input channels: 1, or ``1 + 2k`` for a 2.5D model (k neighbours a side).

    Raises:
        ConfigError: widths < 1, a bad hyper-parameter, or ``input_size`` not divisible by
            ``2 * 2 ** (levels - 1)`` (the half-resolution stage halves ``levels - 1`` times).

    Example:
        >>> model = PyramidNet(num_classes=7, input_size=64, base_channels=4)
        >>> [tuple(o.shape) for o in model(torch.zeros(2, 1, 64, 64))]
        [(2, 7, 64, 64), (2, 7, 64, 64)]
    """

    arch = "pyramid"

    def __init__(
        self,
        *,
        num_classes: int,
        input_size: int,
        base_channels: int,
        levels: int = 5,
        kernel_size: int = 5,
        dropout_rate: float = 0.2,
        norm: str = "batch",
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        check_int(num_classes, name="num_classes", minimum=2)
        check_int(in_channels, name="in_channels", minimum=1)
        if isinstance(base_channels, int) and base_channels < 1:
            raise ConfigError(
                f"pyramid channel widths would be < 1 (base_channels {base_channels}, published "
                f"as input_size / 16 = {input_size}/16); use input_size >= 32 or set "
                "base_channels >= 1."
            )
        check_int(base_channels, name="base_channels", minimum=1)
        check_int(levels, name="levels", minimum=2, maximum=7)
        check_choice(kernel_size, name="kernel_size", choices=(3, 5))
        check_choice(norm, name="norm", choices=NORMS)
        dropout_rate = check_rate(dropout_rate, name="dropout_rate")
        self.divisor = 2 * 2 ** (levels - 1)
        self.in_channels = in_channels
        check_input_size(input_size, divisor=self.divisor, arch=self.arch)
        self.widths = [base_channels * 2**level for level in range(levels)]
        self.stage1 = _VNet2d(
            in_channels,
            num_classes,
            self.widths,
            kernel_size=kernel_size,
            dropout_rate=dropout_rate,
            norm=norm,
        )
        self.stage2 = _VNet2d(
            in_channels + num_classes,
            num_classes,
            self.widths,
            kernel_size=kernel_size,
            dropout_rate=dropout_rate,
            norm=norm,
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Segment a batch.

        Args:
            x: images (B, I, H, W), H and W divisible by ``2 * 2 ** (levels - 1)``.

        Returns:
            ``[stage-2 logits (B, C, H, W)]`` in eval mode; in training mode followed by the
            stage-1 logits upsampled to (H, W).

        Raises:
            ConfigError: the batch has the wrong shape.
        """
        check_input(x, divisor=self.divisor, arch=self.arch, in_channels=self.in_channels)
        coarse = self.stage1(F.avg_pool2d(x, 2))
        probs = F.interpolate(
            torch.softmax(coarse, dim=1), scale_factor=2, mode="bilinear", align_corners=False
        )
        fine = self.stage2(torch.cat([x, probs], dim=1))
        if not self.training:
            return [fine]
        coarse = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
        return [fine, coarse]
