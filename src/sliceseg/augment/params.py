"""The user manual's augmentation settings, validated once and convertible to plain data."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sliceseg.errors import ConfigError

Range = tuple[float, float]

_RANGE_LIMITS: dict[str, tuple[float, float, str]] = {
    # name: (lowest allowed, highest allowed, what an identity value is)
    "gamma_range": (1e-3, 10.0, "1 = unchanged"),
    "contrast_range": (0.0, 10.0, "1 = unchanged"),
    "brightness_range": (-10.0, 10.0, "0 = unchanged"),
    "noise_std_range": (0.0, 10.0, "0 = no noise"),
    "blur_sigma_range": (0.0, 8.0, "0 = no blur"),
}


@dataclass(frozen=True)
class AugmentParams:
    """The user manual's augmentation settings; each enabled transform is drawn per sample.

    Intensities are in normalised units (standard deviations of the slice), sizes in pixels.

    Attributes:
        aug_prob: probability that each enabled transform is applied to a sample, in [0, 1].
        rotation: rotate about the image centre.
        rot_range: largest rotation in degrees; the angle is uniform in ``[-rot_range, rot_range]``.
        warping: shrink each axis independently about the centre.
        warp_range: smallest scale factor; each axis scale is uniform in ``[warp_range, 1]``.
        cropping: crop a square window at a random position and resize it to full size (zoom in).
        crop_range: side of the crop window as a fraction of the image side, in (0, 1].
        elastic: deform smoothly: a random displacement at control points ``elastic_spacing``
            pixels apart, interpolated bicubically over the image (new shapes of the same
            anatomy, for sets with few subjects).
        elastic_spacing: distance between the control points in pixels, in [4, 256].
        elastic_magnitude: standard deviation of a control point's displacement along each
            axis in pixels, in [0, 20].
        intensity: apply the intensity transforms below (each with ``aug_prob``).
        gamma_range: gamma, log-uniform in the range, applied on each image's min–max range.
        contrast_range: factor on the deviation from each image's mean.
        brightness_range: shift added to the intensities.
        noise_std_range: standard deviation of added Gaussian noise.
        blur_sigma_range: Gaussian blur sigma in pixels.
        flip_pairs: left/right flipping, only when given: label pairs swapped by a flip, e.g.
            ``((2, 3), (4, 5))`` for left/right muscles; ``()`` flips without swapping. None
            (default) never flips, because labels are sided.

    A range set to None switches that intensity transform off.

    Raises:
        ConfigError: a value is out of range; the message names the setting and the bad value.

    Example:
        >>> params = AugmentParams(aug_prob=0.3, rot_range=15.0, flip_pairs=((2, 3),))
        >>> AugmentParams.from_dict(params.to_dict()) == params
        True
    """

    aug_prob: float = 0.5
    rotation: bool = True
    rot_range: float = 10.0
    warping: bool = True
    warp_range: float = 0.9
    cropping: bool = True
    crop_range: float = 0.85
    elastic: bool = False
    elastic_spacing: float = 24.0
    elastic_magnitude: float = 2.0
    intensity: bool = True
    # nnU-Net's range; on real MR it beat (0.8, 1.25) across scanners' contrasts (benchmarks.md)
    gamma_range: Range | None = (0.7, 1.5)
    contrast_range: Range | None = (0.75, 1.25)
    brightness_range: Range | None = (-0.1, 0.1)
    noise_std_range: Range | None = (0.0, 0.1)
    blur_sigma_range: Range | None = (0.5, 1.0)
    flip_pairs: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("rotation", "warping", "cropping", "elastic", "intensity"):
            set_(self, name, _parse_bool(getattr(self, name), name=name))
        set_(self, "aug_prob", _parse_number(self.aug_prob, name="aug_prob", low=0.0, high=1.0))
        set_(
            self, "rot_range", _parse_number(self.rot_range, name="rot_range", low=0.0, high=180.0)
        )
        for name in ("warp_range", "crop_range"):
            value = _parse_number(getattr(self, name), name=name, low=0.0, high=1.0)
            if value == 0.0:
                raise ConfigError(f"{name} must be in (0, 1], got 0; 1 means unchanged.")
            set_(self, name, value)
        for name, low, high in (("elastic_spacing", 4.0, 256.0), ("elastic_magnitude", 0.0, 20.0)):
            set_(self, name, _parse_number(getattr(self, name), name=name, low=low, high=high))
        for name, (low, high, hint) in _RANGE_LIMITS.items():
            set_(
                self,
                name,
                _parse_range(getattr(self, name), name=name, low=low, high=high, hint=hint),
            )
        set_(self, "flip_pairs", _parse_flip_pairs(self.flip_pairs))

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as plain data (lists, numbers, booleans, None)."""
        data = dataclasses.asdict(self)
        for name in _RANGE_LIMITS:
            data[name] = None if data[name] is None else list(data[name])
        if self.flip_pairs is not None:
            data["flip_pairs"] = [list(pair) for pair in self.flip_pairs]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AugmentParams:
        """Build settings from plain data, accepting the manual's spelling of the names.

        Keys are matched ignoring case, spaces, hyphens and camelCase (``"Rot range"``,
        ``"rotRange"`` and ``"rot_range"`` are the same); booleans may be ``"yes"``/``"false"``.

        Raises:
            ConfigError: a name is unknown (the message lists the valid names) or a value is bad.
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            name = _canonical_key(str(key))
            if name not in valid:
                raise ConfigError(
                    f"unknown augmentation setting {key!r}; valid settings: {', '.join(valid)}."
                )
            kwargs[name] = value
        return cls(**kwargs)


def _canonical_key(key: str) -> str:
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key.strip())
    return re.sub(r"[\s\-]+", "_", snake).lower()


def _parse_bool(value: Any, *, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "on", "1"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "no", "off", "0"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}.")


def _parse_number(value: Any, *, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{name} must be a number in [{low:g}, {high:g}], got {value!r}."
        ) from error
    if isinstance(value, bool) or not low <= number <= high:  # also refuses NaN
        raise ConfigError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}.")
    return number


def _parse_range(value: Any, *, name: str, low: float, high: float, hint: str) -> Range | None:
    """Canonical ``(lower, upper)`` within ``[low, high]``, or None (transform off)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name} must be a pair (lower, upper) or None, got {value!r} ({hint}).")
    lower = _parse_number(value[0], name=name, low=low, high=high)
    upper = _parse_number(value[1], name=name, low=low, high=high)
    if lower > upper or (name == "gamma_range" and lower <= 0):
        raise ConfigError(
            f"{name} must be (lower, upper) with lower ≤ upper, got {value!r} ({hint})."
        )
    return (lower, upper)


def _parse_flip_pairs(value: Any) -> tuple[tuple[int, int], ...] | None:
    if value is None:
        return None
    message = (
        f"flip_pairs must be pairs of different ROI labels ≥ 1, each label in one pair only, "
        f"e.g. ((2, 3), (4, 5)); got {value!r}."
    )
    try:
        pairs = tuple((int(a), int(b)) for a, b in value)
        originals = [v for pair in value for v in pair]
    except (TypeError, ValueError) as error:
        raise ConfigError(message) from error
    labels = [v for pair in pairs for v in pair]
    is_whole = all(not isinstance(v, bool) and float(v) == int(v) for v in originals)
    if not is_whole or min(labels, default=1) < 1 or len(set(labels)) != len(labels):
        raise ConfigError(message)
    return pairs
