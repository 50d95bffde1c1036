"""A network's deepest features: per channel, the mean of its coarsest activation map.

Distance-based out-of-distribution detectors (Mahalanobis distance on a classifier's
penultimate features, Lee et al. 2018; for segmentation networks the bottleneck, as in
González et al. 2022) describe what a network "saw" in training by the statistics of its
deepest features. For any of our networks the deepest features are the output of the module
that finishes last among those whose output has the smallest spatial size (the U-Net's last
encoder stage; the pyramid's first-stage bottleneck). Each slice gives one vector: that map
averaged over space (global average pooling), so slices of any size compare.

`deepest_features` runs the network only until that module: the rest of the forward pass is
skipped. `FeatureTap` instead takes the same features from passes that run anyway (the
prediction's own), so that they cost nothing. The hooks act only in the thread that placed
them, so threads may share one network.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FeatureTap",
    "deepest_features",
    "deepest_module",
    "input_channels",
    "padded_shape",
    "pooled",
]


class _Reached(Exception):
    """Raised by the hook to stop the forward pass once the deepest features are taken."""


def deepest_module(network: nn.Module, *, side: int = 64) -> nn.Module:
    """Return the module whose output is the network's deepest feature map.

    A probe pass on a ``side × side`` zero image records, in order of completion, every
    module's output shape; the last to finish among the smallest spatial outputs wins.

    Args:
        network: any model taking ``(B, I, S, S)`` (in eval mode; I from its first
            convolution, `input_channels`).
        side: the probe's side in pixels (a multiple of the network's divisor).

    Example:
        >>> layer = deepest_module(build_model("unet", num_classes=3, input_size=64).eval())
    """
    finished: list[tuple[int, nn.Module]] = []
    mine = threading.get_ident()  # another thread may run the same network meanwhile

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if threading.get_ident() != mine:
            return
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            finished.append((int(output.shape[2] * output.shape[3]), module))

    handles = [m.register_forward_hook(record) for m in network.modules() if m is not network]
    try:
        with torch.inference_mode():
            probe = torch.zeros(1, input_channels(network), side, side)
            network(probe.to(_device_of(network)))
    finally:
        for handle in handles:
            handle.remove()
    smallest = min(area for area, _ in finished)
    return [module for area, module in finished if area == smallest][-1]


def input_channels(network: nn.Module) -> int:
    """The channels a network takes: its first convolution's (1 when it has none)."""
    first = next((m for m in network.modules() if isinstance(m, nn.Conv2d)), None)
    return 1 if first is None else int(first.in_channels)


def deepest_features(
    network: nn.Module,
    images: Sequence[torch.Tensor],
    *,
    divisor: int,
    layer: nn.Module | None = None,
) -> np.ndarray:
    """Return each image's deepest features, averaged over space.

    Args:
        network: the model, in eval mode.
        images: per slice ``(I, R, C)`` normalised intensities at the model's spacing.
        divisor: the sides are padded (with the slice's minimum) up to a multiple of this.
        layer: the module to read (default :func:`deepest_module`).

    Returns:
        ``(slices, channels)`` float64.

    Example:
        >>> feats = deepest_features(model.eval(), [torch.zeros(1, 64, 64)], divisor=16)
    """
    target = layer if layer is not None else deepest_module(network, side=4 * divisor)
    taken: list[torch.Tensor] = []
    mine = threading.get_ident()

    def take(_module: nn.Module, _inputs: object, output: object) -> None:
        if threading.get_ident() != mine:
            return
        assert isinstance(output, torch.Tensor)  # deepest_module chose a tensor output
        taken.append(pooled(output))
        raise _Reached

    handle = target.register_forward_hook(take)
    device = _device_of(network)
    try:
        with torch.inference_mode():
            for image in images:
                with contextlib.suppress(_Reached):
                    network(_padded(image, divisor).unsqueeze(0).to(device))
    finally:
        handle.remove()
    if not taken:
        return np.zeros((0, 0))
    return torch.cat(taken).double().numpy()


def pooled(output: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` float32 on the CPU: a ``(B, C, H, W)`` feature map averaged over space."""
    return output.float().mean(dim=(2, 3)).cpu()


def padded_shape(shape: Sequence[int], divisor: int) -> tuple[int, int]:
    """The ``(rows, cols)`` `deepest_features` runs a slice of this ``(…, rows, cols)`` shape at.

    Example:
        >>> padded_shape((1, 50, 70), 16)
        (64, 80)
    """
    return (-(-int(shape[-2]) // divisor) * divisor, -(-int(shape[-1]) // divisor) * divisor)


class FeatureTap:
    """While open, the pooled deepest features (`pooled`) of every forward pass of a network
    in the opening thread, one ``(B, C)`` tensor per pass in ``taken``; passes run in full.

    Example:
        >>> with FeatureTap(deepest_module(network)) as tap:
        ...     network(images)
        >>> tap.taken[0].shape  # (batch, channels)
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.taken: list[torch.Tensor] = []
        self._thread = threading.get_ident()
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def __enter__(self) -> FeatureTap:
        self._thread = threading.get_ident()
        self._handle = self.layer.register_forward_hook(self._take)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _take(self, _module: nn.Module, _inputs: object, output: object) -> None:
        if threading.get_ident() == self._thread and isinstance(output, torch.Tensor):
            self.taken.append(pooled(output))


def _padded(image: torch.Tensor, divisor: int) -> torch.Tensor:
    rows, cols = image.shape[-2:]
    pad_r, pad_c = (-rows) % divisor, (-cols) % divisor
    if not (pad_r or pad_c):
        return image
    low = float(image.min())
    return F.pad(image, (pad_c // 2, pad_c - pad_c // 2, pad_r // 2, pad_r - pad_r // 2), value=low)


def _device_of(network: nn.Module) -> torch.device:
    parameter = next(network.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
