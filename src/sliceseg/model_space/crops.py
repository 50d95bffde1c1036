"""Training crops: ``S × S`` windows of slices at the target spacing, a share centred on an ROI.

The network trains on crops of ``input_shape`` pixels a side at the model's spacing, as nnU-Net
trains on patches: a slice larger than the crop is seen a part at a time (a different part each
epoch), a smaller one whole, centred and padded with each channel's own minimum (its background:
`sliceseg.model_space.padding`). A share of the crops (``foreground_fraction``, nnU-Net: 1/3) is
centred on a pixel of an ROI, so that small ROIs are seen often; the rest lie anywhere in the
slice. Which ROI (``foreground_balance``): "slice" draws one of the ROIs present in the crop's
own slice; "roi" draws one of the training set's ROIs, each equally often, and moves the crop to
a slice that holds it, so an ROI present on a quarter of the slices is seen as often as one on
every slice (2D slices hold few of a volume's ROIs, unlike nnU-Net's 3D cases).

Every random number comes from one CPU ``torch.Generator`` (five per crop with "slice", six with
"roi", whatever is decided), so a run is reproducible and a resumed run continues the sequence.

Example:
    >>> crops = CropDataset(spaced, size=160, generator=torch.Generator().manual_seed(0))
    >>> image, label = crops[0]
    >>> image.shape, label.shape
    (torch.Size([1, 160, 160]), torch.Size([160, 160]))
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, get_worker_info

from sliceseg.errors import ConfigError
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.model_space.padding import background

__all__ = [
    "FOREGROUND_BALANCES",
    "FOREGROUND_FRACTION",
    "CropDataset",
    "crop_origin_range",
    "extract_crop",
    "first_crops",
]

FOREGROUND_FRACTION = 1.0 / 3.0
"""Default share of crops centred on an ROI pixel (nnU-Net's oversampling of foreground)."""

FOREGROUND_BALANCES = ("slice", "roi")
"""How a foreground crop picks its ROI: among its slice's ROIs, or every ROI equally often."""


def crop_origin_range(length: int, size: int) -> tuple[int, int]:
    """Return the lowest and highest origin of a ``size`` crop along an axis of ``length``.

    A crop never leaves a slice that is larger than it; a smaller slice sits centred in it
    (the origin is then negative: the crop is padded around the slice), as in nnU-Net.

    Example:
        >>> crop_origin_range(300, 160), crop_origin_range(100, 160)
        ((0, 140), (-30, -30))
    """
    if length >= size:
        return 0, length - size
    centred = -((size - length) // 2)
    return centred, centred


def extract_crop(
    image: torch.Tensor,
    label: torch.Tensor,
    origin: tuple[int, int],
    size: int,
    *,
    pad_value: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the ``size × size`` window at ``origin`` (may lie partly outside), padding around.

    Args:
        image: ``(I, H, W)`` intensities.
        label: ``(H, W)`` integer label map.
        origin: ``(row, col)`` of the crop's top-left pixel in slice coordinates.
        size: side of the crop.
        pad_value: image value outside the slice: one number, or one per channel ``(I, 1, 1)``
            (`background`, what training pads with); labels are 0 there.

    Returns:
        ``(image (I, S, S), label (S, S))``: every channel of ``image``.
    """
    fill = torch.as_tensor(pad_value, dtype=image.dtype, device=image.device)
    out_image = fill.expand(image.shape[0], size, size).clone()
    out_label = label.new_zeros((size, size))
    spans = [_overlap(o, size, n) for o, n in zip(origin, label.shape, strict=True)]
    (src_r, dst_r), (src_c, dst_c) = spans
    out_image[:, dst_r, dst_c] = image[:, src_r, src_c]
    out_label[dst_r, dst_c] = label[src_r, src_c]
    return out_image, out_label


class CropDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A fresh random crop of slice ``i`` each time item ``i`` is read.

    Args:
        data: labelled slices at the target spacing.
        size: side of the crops (``input_shape``).
        foreground_fraction: share of crops centred on a pixel of an ROI (one ROI drawn, then
            one of its pixels); a slice without ROIs gets a random crop ("slice" balance).
        foreground_balance: "slice" (the ROI drawn among those present in slice ``i``) or
            "roi" (drawn among every ROI of ``data``, then a slice holding it replaces ``i``).
        generator: CPU generator of the crops (in a data-loader worker, a generator seeded from
            the worker's seed is used instead, so workers never repeat each other).

    Raises:
        ConfigError: ``size`` < 1, ``foreground_fraction`` outside [0, 1], an unknown
            ``foreground_balance``, or no labels.
    """

    def __init__(
        self,
        data: SpacedTensors,
        *,
        size: int,
        foreground_fraction: float = FOREGROUND_FRACTION,
        foreground_balance: str = "slice",
        generator: torch.Generator,
    ) -> None:
        if data.labels is None:
            raise ConfigError("CropDataset needs labelled slices (samples_to_spacing).")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"crop size must be a whole number ≥ 1, got {size!r}.")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(
                f"foreground_fraction must be in [0, 1], got {foreground_fraction!r}."
            )
        if foreground_balance not in FOREGROUND_BALANCES:
            raise ConfigError(
                f"foreground_balance must be one of {', '.join(FOREGROUND_BALANCES)}, got "
                f"{foreground_balance!r}."
            )
        self.images, self.labels = data.images, data.labels
        self.balance = foreground_balance
        self.size, self.foreground_fraction = size, float(foreground_fraction)
        self.generator = generator
        self.pad_values = [background(image) for image in self.images]  # each channel's own
        self.present = [[int(v) for v in label.unique() if v > 0] for label in self.labels]
        self.holders = _slices_holding(self.present)
        self.rois = sorted(self.holders)
        self.foreground_crops = 0
        self.crops = 0
        self._worker_generator: torch.Generator | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        draws = 6 if self.balance == "roi" else 5
        u = torch.rand(draws, generator=self._generator(), dtype=torch.float64).tolist()
        centre = None
        if u[0] < self.foreground_fraction:
            index, roi = self._foreground_roi(index, u[1], u[-1])
            centre = None if roi is None else self._pixel_of(index, roi, u[2])
        label = self.labels[index]
        origin = tuple(
            _origin(length, self.size, draw, None if centre is None else centre[axis])
            for axis, (length, draw) in enumerate(zip(label.shape, u[3:5], strict=True))
        )
        self.crops += 1
        self.foreground_crops += centre is not None
        return extract_crop(
            self.images[index],
            label,
            (origin[0], origin[1]),
            self.size,
            pad_value=self.pad_values[index],
        )

    @property
    def measured_foreground_share(self) -> float:
        """Share of the crops drawn so far (in this process) that were centred on an ROI."""
        return self.foreground_crops / self.crops if self.crops else math.nan

    def _foreground_roi(self, index: int, u_roi: float, u_slice: float) -> tuple[int, int | None]:
        """The slice and ROI a foreground crop centres on (None: the slice holds no ROI)."""
        if self.balance == "roi" and self.rois:
            roi = self.rois[_pick(u_roi, len(self.rois))]
            if roi not in self.present[index]:
                index = self.holders[roi][_pick(u_slice, len(self.holders[roi]))]
            return index, roi
        present = self.present[index]
        return index, present[_pick(u_roi, len(present))] if present else None

    def _pixel_of(self, index: int, roi: int, u_pixel: float) -> tuple[int, int]:
        pixels = (self.labels[index] == roi).nonzero()
        row, col = pixels[_pick(u_pixel, len(pixels))].tolist()
        return int(row), int(col)

    def _generator(self) -> torch.Generator:
        info = get_worker_info()
        if info is None:
            return self.generator
        if self._worker_generator is None:
            self._worker_generator = torch.Generator().manual_seed(int(info.seed))
        return self._worker_generator


def _pick(draw: float, count: int) -> int:
    """Index in ``[0, count)`` from a uniform draw in ``[0, 1)``."""
    return min(int(draw * count), count - 1)


def _slices_holding(present: list[list[int]]) -> dict[int, list[int]]:
    """Per ROI value, the indices of the slices whose label map holds it."""
    holders: dict[int, list[int]] = {}
    for index, rois in enumerate(present):
        for roi in rois:
            holders.setdefault(roi, []).append(index)
    return holders


def _origin(length: int, size: int, draw: float, centre: int | None) -> int:
    low, high = crop_origin_range(length, size)
    if centre is not None:
        return min(max(centre - size // 2, low), high)
    return low + min(int(draw * (high - low + 1)), high - low)


def _overlap(origin: int, size: int, length: int) -> tuple[slice, slice]:
    """Source and destination index ranges of the window at ``origin`` over ``[0, length)``."""
    start, stop = max(origin, 0), min(origin + size, length)
    if stop <= start:
        return slice(0, 0), slice(0, 0)
    return slice(start, stop), slice(start - origin, stop - origin)


def first_crops(
    data: SpacedTensors,
    *,
    size: int,
    count: int,
    foreground_fraction: float = FOREGROUND_FRACTION,
    foreground_balance: str = "slice",
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One crop of each of the first ``count`` slices, from a generator of their own.

    For pictures of what the network sees (the first batch, ``sliceseg preview``): training's
    own random draws are left untouched.

    Returns:
        ``(images (N, 1, S, S), labels (N, S, S))``.
    """
    crops = CropDataset(
        data,
        size=size,
        foreground_fraction=foreground_fraction,
        foreground_balance=foreground_balance,
        generator=torch.Generator().manual_seed(seed),
    )
    pairs = [crops[i] for i in range(min(count, len(crops)))]
    if not pairs:
        return torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.int64)
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
