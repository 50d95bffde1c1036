"""Intensity normalisation: what the network sees of brightness (per slice, or CT's HU scale).

Two kinds, as nnU-Net chooses them by modality: MR (and anything that is not CT) is z-scored per
slice (`normalise_intensity`: the scale of an MR image has no physical meaning); CT keeps the
Hounsfield scale: HU are clipped to the 0.5–99.5 percentiles of the training set's foreground
(ROI pixels) and z-scored with that foreground's mean and standard deviation (nnU-Net's
``CTNormalization``), numbers chosen once on the training slices and stored in the model file
(`IntensityNormalisation`), so that predict applies exactly what training applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sliceseg.errors import BundleError, ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.measure.tissue import is_ct

__all__ = [
    "CLIP_PERCENTILES",
    "NORMALISATION_CHOICES",
    "PER_SLICE",
    "IntensityNormalisation",
    "choose_normalisation",
    "ct_normalisation",
    "normalise_intensity",
]

CLIP_PERCENTILES = (0.5, 99.5)
"""Percentiles that bound the intensities before the z-score (robust to a few hot pixels)."""

_FLAT_STD = 1e-6  # relative to the clipped range: below this a slice is treated as constant


def normalise_intensity(pixels: np.ndarray) -> np.ndarray:
    """Z-score one slice robustly: clip to the 0.5–99.5 percentiles, subtract mean, divide by std.

    Args:
        pixels: ``(rows, cols)`` intensities in modality units (any real dtype).

    Returns:
        ``(rows, cols)`` float32 with mean 0 and standard deviation 1 over the clipped slice;
        all zeros when the slice is (nearly) constant.

    Raises:
        ValueError: ``pixels`` is not 2D, is empty, or holds NaN or infinite values.

    Example:
        >>> out = normalise_intensity(np.arange(100.0).reshape(10, 10))
        >>> abs(float(out.mean())) < 1e-6, round(float(out.std()), 4)
        (True, 1.0)
    """
    array = np.asarray(pixels)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"normalise_intensity expects one (rows, cols) slice, got shape {array.shape}; "
            "normalise each slice separately."
        )
    values = array.astype(np.float64, copy=False)
    if not np.isfinite(values).all():
        raise ValueError(
            "normalise_intensity found NaN or infinite pixels; "
            "replace them (e.g. np.nan_to_num) first."
        )
    low, high = np.percentile(values, CLIP_PERCENTILES)
    clipped = np.clip(values, low, high)
    mean = clipped.mean()
    std = clipped.std()
    if std <= _FLAT_STD * max(high - low, abs(mean), 1.0):
        return np.zeros(array.shape, dtype=np.float32)
    return ((clipped - mean) / std).astype(np.float32)


PER_SLICE_NAME = "robust_zscore"
"""``ModelMetadata.normalisation`` of the per-slice z-score (every file before CT's)."""
CT_NAME = "ct_dataset"
"""``ModelMetadata.normalisation`` of the dataset-level HU clip and z-score."""
NORMALISATION_CHOICES = ("auto", "slice", "ct")
"""The ``normalisation`` setting: "auto" (CT when every training slice's (0008,0060) Modality
is CT, else per slice), "slice" (per slice, whatever the modality), "ct" (dataset HU)."""
CT_SAMPLES_PER_SLICE = 10_000
"""Foreground pixels taken from each slice for the CT statistics (evenly spaced)."""


@dataclass(frozen=True)
class IntensityNormalisation:
    """How a slice's intensities become the network's input.

    Attributes:
        name: `PER_SLICE_NAME` (robust z-score of each slice) or `CT_NAME`.
        clip: CT only: the ``(low, high)`` HU the pixels are clipped to.
        mean: CT only: subtracted after clipping (HU).
        std: CT only: divided by after subtracting (HU).
    """

    name: str = PER_SLICE_NAME
    clip: tuple[float, float] | None = None
    mean: float = 0.0
    std: float = 1.0

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Return ``(rows, cols)`` float32 network input of one slice in modality units."""
        if self.name == PER_SLICE_NAME:
            return normalise_intensity(pixels)
        low, high = self.clip if self.clip is not None else (-np.inf, np.inf)
        values = np.clip(np.asarray(pixels, dtype=np.float64), low, high)
        return ((values - self.mean) / self.std).astype(np.float32)

    def of_slice(self, image: Slice) -> np.ndarray:
        """Return the network input of a slice: the per-slice z-score of its brightness
        (``display_pixels``: MONOCHROME1 negated), or CT's of its HU (``pixels``)."""
        return self.apply(image.display_pixels if self.name == PER_SLICE_NAME else image.pixels)

    def describe(self) -> str:
        """One line for logs, reports and ``sliceseg info``: what a slice's intensities become.

        Example:
            >>> IntensityNormalisation("ct_dataset", (-120.0, 250.0), 40.0, 60.0).describe()
            ... # doctest: +ELLIPSIS
            "CT: HU clipped to [-120, 250], minus 40, divided by 60 (the training foreground's ...)"
        """
        low_pct, high_pct = CLIP_PERCENTILES
        percentiles = f"{low_pct:g}–{high_pct:g} percentiles"
        if self.name == PER_SLICE_NAME or self.clip is None:
            return (
                f"per-slice z-score: each slice clipped to its own {percentiles}, minus its "
                "mean, divided by its std"
            )
        low, high = self.clip
        return (
            f"CT: HU clipped to [{low:.4g}, {high:.4g}], minus {self.mean:.4g}, divided by "
            f"{self.std:.4g} (the training foreground's {percentiles}, mean and std)"
        )

    def to_dict(self) -> dict[str, Any] | None:
        """The model file's ``intensity`` entry (plain data); None for the per-slice z-score."""
        if self.name == PER_SLICE_NAME:
            return None
        clip = None if self.clip is None else [float(self.clip[0]), float(self.clip[1])]
        return {"clip": clip, "mean": float(self.mean), "std": float(self.std)}

    @classmethod
    def from_metadata(
        cls, name: str, params: Mapping[str, Any] | None, *, source: object = "the model"
    ) -> IntensityNormalisation:
        """Rebuild it from a model file's ``normalisation`` and ``intensity`` entries.

        Raises:
            BundleError: an unknown normalisation, or CT numbers missing.
        """
        if name == PER_SLICE_NAME:
            return cls()
        if name != CT_NAME or not params or "mean" not in params or "std" not in params:
            raise BundleError(
                f"{source}: intensity normalisation {name!r} with {dict(params or {})} is not one "
                f"this sliceseg knows ({PER_SLICE_NAME}, {CT_NAME} with mean and std); upgrade "
                "sliceseg or use the model with the version that wrote it."
            )
        clip = params.get("clip")
        return cls(
            name=CT_NAME,
            clip=None if clip is None else (float(clip[0]), float(clip[1])),
            mean=float(params["mean"]),
            std=float(params["std"]),
        )


PER_SLICE = IntensityNormalisation()
"""The per-slice robust z-score (MR, and every model file from before CT normalisation)."""


def ct_normalisation(
    pixels: Sequence[np.ndarray], labels: Sequence[np.ndarray]
) -> IntensityNormalisation:
    """nnU-Net's CT normalisation from training slices: foreground HU percentiles and moments.

    Args:
        pixels: per slice ``(rows, cols)`` HU (modality units).
        labels: per slice the label map on the same grid (foreground: > 0).

    Returns:
        Clip to the 0.5 / 99.5 percentiles of the foreground HU, then subtract their mean and
        divide by their standard deviation (both of the unclipped foreground, as nnU-Net). Up to
        `CT_SAMPLES_PER_SLICE` evenly spaced foreground pixels are taken from each slice; with
        no foreground at all, every pixel counts.

    Example:
        >>> norm = ct_normalisation([np.array([[0.0, 40.0], [60.0, -1000.0]])],
        ...                         [np.array([[1, 1], [1, 0]])])
        >>> round(norm.mean, 3), round(norm.std, 3)
        (33.333, 24.944)
    """
    chosen = [_foreground(p, lab) for p, lab in zip(pixels, labels, strict=True)]
    if not any(v.size for v in chosen):
        chosen = [np.asarray(p, dtype=np.float64).ravel() for p in pixels]
    values = np.concatenate(chosen) if chosen else np.zeros(0)
    if not values.size:
        raise ConfigError("CT normalisation needs training slices; none were given.")
    low, high = np.percentile(values, CLIP_PERCENTILES)
    std = float(values.std())
    return IntensityNormalisation(
        name=CT_NAME,
        clip=(float(low), float(high)),
        mean=float(values.mean()),
        std=std if std > _FLAT_STD * max(abs(float(high) - float(low)), 1.0) else 1.0,
    )


def _foreground(pixels: np.ndarray, label: np.ndarray) -> np.ndarray:
    values = np.asarray(pixels, dtype=np.float64)[np.asarray(label) > 0]
    if values.size > CT_SAMPLES_PER_SLICE:
        values = values[np.linspace(0, values.size - 1, CT_SAMPLES_PER_SLICE).astype(np.int64)]
    return values


def choose_normalisation(
    setting: str, modalities: Sequence[str], *, name: str = "normalisation"
) -> str:
    """Return the normalisation a run uses: `CT_NAME` or `PER_SLICE_NAME`.

    Args:
        setting: one of `NORMALISATION_CHOICES`.
        modalities: (0008,0060) Modality of every training slice.
        name: the setting as the message names it (``train`` passes its flag too).

    Raises:
        ConfigError: ``setting`` is not a choice; the message names ``name``.

    Example:
        >>> choose_normalisation("auto", ["CT", "CT"]), choose_normalisation("auto", ["MR"])
        ('ct_dataset', 'robust_zscore')
    """
    if setting not in NORMALISATION_CHOICES:
        raise ConfigError(
            f"{name} must be one of {', '.join(NORMALISATION_CHOICES)}, got {setting!r}."
        )
    is_ct_set = setting == "ct" or (
        setting == "auto" and bool(modalities) and all(map(is_ct, modalities))
    )
    return CT_NAME if is_ct_set else PER_SLICE_NAME
