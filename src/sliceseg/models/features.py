"""A network's deepest features: per channel, the mean of its coarsest activation map.

Distance-based out-of-distribution detectors (Mahalanobis distance on a classifier's
penultimate features, Lee et al. 2018; for segmentation networks the bottleneck, as in
González et al. 2022) describe what a network "saw" in training by the statistics of its
deepest features. For any of our networks the deepest features are the output of the module
that finishes last among those whose output has the smallest spatial size (the U-Net's last
encoder stage; the pyramid's first-stage bottleneck). Each slice gives one vector: that map
averaged over the slice's body (`sliceseg.measure.slice_traits.body_mask` of the network
input, each map cell weighted by its share of body), so slices of any size compare and the
background a scanner frames around the body does not move it (a clean series framed more
tightly than every training series was flagged by the plain mean over space, which profiles
before version 5 used and still get: ``pooling``).

`deepest_features` runs the network only until that module: the rest of the forward pass is
skipped. `FeatureTap` instead takes the same features from passes that run anyway (the
prediction's own), so that they cost nothing. The hooks act only in the thread that placed
them, so threads may share one network.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sliceseg.measure.feature_pooling import BODY_POOLING, checked_pooling
from sliceseg.measure.slice_traits import body_mask

__all__ = [
    "FeatureTap",
    "body_weights",
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
    pooling: str = BODY_POOLING,
) -> np.ndarray:
    """Return each image's deepest features, averaged over its body (or the whole slice).

    Args:
        network: the model, in eval mode.
        images: per slice ``(I, R, C)`` normalised intensities at the model's spacing.
        divisor: the sides are padded (with the slice's minimum) up to a multiple of this.
        layer: the module to read (default :func:`deepest_module`).
        pooling: ``BODY_POOLING`` or ``SLICE_POOLING`` (a profile's `feature_pooling`).

    Returns:
        ``(slices, channels)`` float64.

    Example:
        >>> feats = deepest_features(model.eval(), [torch.zeros(1, 64, 64)], divisor=16)
    """
    target = layer if layer is not None else deepest_module(network, side=4 * divisor)
    tap = FeatureTap(target, pooling=pooling)
    device = _device_of(network)
    with torch.inference_mode(), tap:
        for image in images:
            batch = _padded(image, divisor).unsqueeze(0)
            with contextlib.suppress(_Reached), tap.watching(batch, stop=True):
                network(batch.to(device))
    if not tap.taken:
        return np.zeros((0, 0))
    return torch.cat(tap.taken).double().numpy()


def pooled(output: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, C)`` float32 on the CPU: a ``(B, C, H, W)`` feature map averaged over space, each
    cell weighted by ``weights`` ``(B, 1, H, W)`` when given (`body_weights`; a slice without
    body: the plain mean)."""
    output = output.float()
    if weights is None:
        return output.mean(dim=(2, 3)).cpu()
    weights = weights.to(output.device, output.dtype)
    total = weights.sum(dim=(2, 3))
    plain = output.mean(dim=(2, 3))
    weighted = (output * weights).sum(dim=(2, 3)) / total.clamp_min(1e-12)
    return torch.where(total > 0, weighted, plain).cpu()


def body_weights(inputs: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, 1, h, w)``: per network input ``(B, I, H, W)`` the share of body (`body_mask` of
    its centre channel) in each cell of a ``size`` = ``(h, w)`` feature map."""
    centre = inputs[:, inputs.shape[1] // 2].detach().float().cpu().numpy()
    masks = np.stack([body_mask(image) for image in centre]).astype(np.float32)
    return F.adaptive_avg_pool2d(torch.from_numpy(masks)[:, None], (int(size[0]), int(size[1])))


def padded_shape(shape: Sequence[int], divisor: int) -> tuple[int, int]:
    """The ``(rows, cols)`` `deepest_features` runs a slice of this ``(…, rows, cols)`` shape at.

    Example:
        >>> padded_shape((1, 50, 70), 16)
        (64, 80)
    """
    return (-(-int(shape[-2]) // divisor) * divisor, -(-int(shape[-1]) // divisor) * divisor)


class FeatureTap:
    """While open, the pooled deepest features (`pooled`) of the first forward pass of a
    network in the opening thread after each `watching` (given that pass's input), one
    ``(B, C)`` tensor per pass in ``taken`` (``B``: the rows watched).

    Example:
        >>> with FeatureTap(deepest_module(network)) as tap, tap.watching(images):
        ...     network(images)
        >>> tap.taken[0].shape  # (batch, channels)
    """

    def __init__(self, layer: nn.Module, *, pooling: str = BODY_POOLING) -> None:
        self.layer = layer
        self.pooling = checked_pooling(pooling)
        self.taken: list[torch.Tensor] = []
        self._thread = threading.get_ident()
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._inputs: torch.Tensor | None = None
        self._stop = False
        self._rows: Sequence[int] | None = None

    @contextlib.contextmanager
    def watching(
        self, inputs: torch.Tensor, *, stop: bool = False, rows: Sequence[int] | None = None
    ) -> Iterator[FeatureTap]:
        """Take the features of the next pass, whose input is ``inputs`` (later passes, such
        as test-time augmentation's views, are not taken); ``stop``: end that pass there;
        ``rows``: pool only these rows of the batch (None: all; finding a slice's body is
        what pooling costs, `body_weights`)."""
        self._inputs, self._stop, self._rows = inputs, stop, rows
        try:
            yield self
        finally:
            self._inputs = None

    def __enter__(self) -> FeatureTap:
        self._thread = threading.get_ident()
        self._handle = self.layer.register_forward_hook(self._take)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _take(self, _module: nn.Module, _inputs: object, output: object) -> None:
        inputs = self._inputs
        if threading.get_ident() != self._thread or inputs is None:
            return
        assert isinstance(output, torch.Tensor)  # deepest_module chose a tensor output
        if self._rows is not None:
            inputs, output = inputs[list(self._rows)], output[list(self._rows)]
        body = self.pooling == BODY_POOLING
        self.taken.append(pooled(output, body_weights(inputs, output.shape[2:]) if body else None))
        self._inputs = None
        if self._stop:
            raise _Reached


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
