"""Batched, on-device augmentation: one affine warp per sample, then intensity changes.

The habit is "sample at random, apply deterministically": :func:`sample_augmentation` draws every
random number from an explicit CPU ``torch.Generator`` into an :class:`AugmentationDraw`, and
:func:`apply_augmentation` is a pure function of (batch, draw). Drawing on the CPU makes a run
reproducible on any device.

Conventions:
    - Geometry acts in the normalised coordinates of ``F.affine_grid`` (``x`` right, ``y`` down,
      ``align_corners=False``). A positive rotation turns the image counter-clockwise as
      displayed (row 0 at the top): +90° equals ``torch.rot90(x, k=1, dims=(-2, -1))``.
    - Image content is flipped left/right first, then warped (shrunk per axis about the centre),
      rotated about the centre, and finally cropped (zoomed in); a smooth elastic displacement,
      when drawn, is added to the sampling grid in output pixels.
    - Images are padded with each image's own minimum (its background); labels with 0.
    - Labels are resampled by nearest neighbour only: a value absent from the input never appears
      (0 may appear through padding).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from sliceseg.augment.params import AugmentParams
from sliceseg.augment.pixels import ELASTIC_SALT, blur, elastic_offsets, swap_labels, warp

__all__ = [
    "AugmentParams",
    "AugmentationDraw",
    "affine_matrices",
    "apply_augmentation",
    "augment_batch",
    "sample_augmentation",
]


@dataclass(frozen=True)
class AugmentationDraw:
    """The random numbers of one batch's augmentation, one entry per sample (neutral = off).

    Attributes:
        theta: ``(B, 2, 3)`` float32 matrices for ``F.affine_grid(align_corners=False)``: output
            coordinates to input coordinates, combining flip, warp, rotation and crop.
        flip: ``(B,)`` bool, samples mirrored left/right (the mirror is already in ``theta``;
            this decides where labels are swapped by ``flip_pairs``).
        gamma: ``(B,)`` gamma on each image's min–max range; 1 = off.
        contrast: ``(B,)`` factor on the deviation from the image mean; 1 = off.
        brightness: ``(B,)`` added shift; 0 = off.
        noise_std: ``(B,)`` standard deviation of added Gaussian noise; 0 = off.
        blur_sigma_px: ``(B,)`` Gaussian blur sigma in pixels; 0 = off.
        noise_seed: seed of the CPU generator that makes the noise field (and, salted, the
            elastic displacements).
        flip_pairs: label pairs swapped in flipped samples.
        image_shape: ``(H, W)`` the matrices were built for (rotation depends on the aspect);
            None means square.
        elastic: ``(B,)`` bool, samples deformed smoothly; None = none.
        elastic_spacing_px: control points' distance in pixels.
        elastic_magnitude_px: standard deviation of a control point's displacement in pixels.

    Example:
        >>> draw = AugmentationDraw.identity(4)
        >>> draw = dataclasses.replace(draw, theta=affine_matrices(4, rotation_deg=90.0))
    """

    theta: torch.Tensor
    flip: torch.Tensor
    gamma: torch.Tensor
    contrast: torch.Tensor
    brightness: torch.Tensor
    noise_std: torch.Tensor
    blur_sigma_px: torch.Tensor
    noise_seed: int = 0
    flip_pairs: tuple[tuple[int, int], ...] = ()
    image_shape: tuple[int, int] | None = None
    elastic: torch.Tensor | None = None
    elastic_spacing_px: float = 24.0
    elastic_magnitude_px: float = 0.0

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return int(self.theta.shape[0])

    def active(self) -> dict[str, torch.Tensor]:
        """Return, per transform name, a ``(B,)`` bool tensor of the samples it changes."""
        identity = torch.eye(2, 3, dtype=self.theta.dtype, device=self.theta.device)
        is_elastic = torch.zeros_like(self.flip)
        if self.elastic is not None and self.elastic_magnitude_px > 0:
            is_elastic = self.elastic.to(torch.bool)
        return {
            "geometry": (self.theta != identity).any(dim=(1, 2)) | is_elastic,
            "elastic": is_elastic,
            "flip": self.flip,
            "gamma": self.gamma != 1,
            "contrast": self.contrast != 1,
            "brightness": self.brightness != 0,
            "noise": self.noise_std > 0,
            "blur": self.blur_sigma_px > 0,
        }

    def to(self, device: torch.device | str) -> AugmentationDraw:
        """Return the draw with its tensors on ``device``."""
        tensors = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **tensors)

    @classmethod
    def identity(
        cls,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        image_shape: tuple[int, int] | None = None,
    ) -> AugmentationDraw:
        """Return a draw that leaves a batch of ``batch_size`` samples unchanged."""
        ones = torch.ones(batch_size, device=device)
        zeros = torch.zeros(batch_size, device=device)
        return cls(
            theta=torch.eye(2, 3, device=device).expand(batch_size, 2, 3).clone(),
            flip=torch.zeros(batch_size, dtype=torch.bool, device=device),
            gamma=ones,
            contrast=ones.clone(),
            brightness=zeros,
            noise_std=zeros.clone(),
            blur_sigma_px=zeros.clone(),
            image_shape=None if image_shape is None else (int(image_shape[0]), int(image_shape[1])),
        )


def affine_matrices(
    batch_size: int,
    *,
    rotation_deg: torch.Tensor | float = 0.0,
    scale_xy: torch.Tensor | tuple[float, float] = (1.0, 1.0),
    crop_fraction: torch.Tensor | float = 1.0,
    crop_centre_xy: torch.Tensor | tuple[float, float] = (0.0, 0.0),
    flip: torch.Tensor | bool = False,
    image_shape: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Build ``F.affine_grid`` matrices from fixed transform parameters (pure, no randomness).

    Content is flipped (``x → -x``), shrunk by ``scale_xy`` about the centre, rotated
    counter-clockwise by ``rotation_deg`` about the centre, then the window of side
    ``crop_fraction`` centred at ``crop_centre_xy`` (normalised coordinates) is zoomed to full size.

    Args:
        batch_size: B; scalar arguments are broadcast to it.
        rotation_deg: ``(B,)`` or scalar, counter-clockwise as displayed.
        scale_xy: ``(B, 2)`` or a pair, size factors along x (columns) and y (rows).
        crop_fraction: ``(B,)`` or scalar in (0, 1]; 1 = no crop.
        crop_centre_xy: ``(B, 2)`` or a pair, crop window centre in [-1, 1].
        flip: ``(B,)`` bool or scalar, mirror left/right.
        image_shape: ``(H, W)`` of the batch, so that rotations keep angles on non-square images;
            None means square.
        device: where the result goes.

    Returns:
        ``(B, 2, 3)`` float32, output to input normalised coordinates.

    Example:
        >>> theta = affine_matrices(1, rotation_deg=90.0)
        >>> theta.round().tolist()
        [[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]
    """
    f64 = torch.float64
    angle = torch.deg2rad(torch.as_tensor(rotation_deg, dtype=f64).cpu().expand(batch_size))
    scale = torch.as_tensor(scale_xy, dtype=f64).cpu().expand(batch_size, 2)
    fraction = torch.as_tensor(crop_fraction, dtype=f64).cpu().expand(batch_size)
    centre = torch.as_tensor(crop_centre_xy, dtype=f64).cpu().expand(batch_size, 2)
    mirror = torch.as_tensor(flip).cpu().expand(batch_size)
    height, width = (1, 1) if image_shape is None else image_shape
    # theta = Flip · Warp⁻¹ · Rotation · Crop: an output point is first placed in the crop window,
    # then rotated back, un-shrunk and mirrored to find where to sample the input. The rotation
    # is conjugated by diag(W, H) so that it turns pixels, not the normalised [-1, 1] square.
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack(
        [
            torch.stack([cos, -sin * (height / width)], 1),
            torch.stack([sin * (width / height), cos], 1),
        ],
        dim=1,
    )  # (B, 2, 2)
    linear = rotation * fraction[:, None, None]
    shift = (rotation @ centre[:, :, None])[:, :, 0]
    row_factor = torch.stack(
        [(1.0 - 2.0 * mirror.to(torch.float64)) / scale[:, 0], 1.0 / scale[:, 1]], 1
    )
    theta = torch.cat([linear, shift[:, :, None]], dim=2) * row_factor[:, :, None]
    return theta.to(device=device, dtype=torch.float32)


def sample_augmentation(
    batch_size: int,
    params: AugmentParams,
    *,
    generator: torch.Generator,
    device: torch.device | str | None = None,
    image_shape: tuple[int, int] | None = None,
) -> AugmentationDraw:
    """Draw one batch's augmentation parameters from ``generator``.

    The same number of random values is drawn whatever the settings, so switching one transform
    off does not change the others' draws.

    Args:
        batch_size: B.
        params: the settings.
        generator: a CPU ``torch.Generator`` (reproducible on every device).
        device: where the draw's tensors go (the batch's device).
        image_shape: ``(H, W)`` of the batch; None means square.

    Returns:
        The :class:`AugmentationDraw`.

    Raises:
        ValueError: ``batch_size`` is negative or ``generator`` is not on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> draw = sample_augmentation(16, AugmentParams(), generator=g, image_shape=(128, 128))
    """
    if batch_size < 0:
        raise ValueError(f"batch_size must be ≥ 0, got {batch_size}.")
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU torch.Generator (got one on {generator.device}); "
            "draws are made on the CPU so that results match across devices."
        )
    draws = _Uniforms(
        torch.rand((batch_size, 19), generator=generator, dtype=torch.float64), params
    )
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    theta, flip = _geometry(draws, params, image_shape)
    elastic = None
    if params.elastic:  # from the noise seed, salted: the other draws stay as they were
        salted = torch.Generator().manual_seed(noise_seed ^ ELASTIC_SALT)
        elastic = torch.rand(batch_size, generator=salted, dtype=torch.float64) < params.aug_prob
    draw = AugmentationDraw(
        theta=theta,
        flip=flip,
        gamma=draws.intensity(9, 10, "gamma_range", 1.0),
        contrast=draws.intensity(11, 12, "contrast_range", 1.0),
        brightness=draws.intensity(13, 14, "brightness_range", 0.0),
        noise_std=draws.intensity(15, 16, "noise_std_range", 0.0),
        blur_sigma_px=draws.intensity(17, 18, "blur_sigma_range", 0.0),
        noise_seed=noise_seed,
        flip_pairs=params.flip_pairs or (),
        image_shape=None if image_shape is None else (int(image_shape[0]), int(image_shape[1])),
        elastic=elastic,
        elastic_spacing_px=params.elastic_spacing,
        elastic_magnitude_px=params.elastic_magnitude,
    )
    return draw if device is None else draw.to(device)


@dataclass(frozen=True)
class _Uniforms:
    """One batch's uniform draws, (B, 19) in [0, 1): a fixed column per random decision."""

    u: torch.Tensor
    params: AugmentParams

    def on(self, column: int, enabled: bool) -> torch.Tensor:
        return (self.u[:, column] < self.params.aug_prob) & enabled

    def within(self, column: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * self.u[:, column]

    def intensity(self, active_col: int, value_col: int, name: str, neutral: float) -> torch.Tensor:
        bounds = getattr(self.params, name)
        if bounds is None or not self.params.intensity:
            return torch.full((len(self.u),), neutral, dtype=torch.float32)
        if name == "gamma_range":  # log-uniform: γ and 1/γ equally likely
            value = torch.exp(self.within(value_col, math.log(bounds[0]), math.log(bounds[1])))
        else:
            value = self.within(value_col, *bounds)
        return torch.where(self.on(active_col, True), value, neutral).to(torch.float32)


def _geometry(
    draws: _Uniforms, params: AugmentParams, image_shape: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's affine matrices and left/right flips from the geometric columns 0..8."""
    rotation_deg = draws.within(1, -params.rot_range, params.rot_range) * draws.on(
        0, params.rotation
    )
    warp = torch.stack(
        [draws.within(3, params.warp_range, 1.0), draws.within(4, params.warp_range, 1.0)], 1
    )
    warp = torch.where(draws.on(2, params.warping)[:, None], warp, torch.ones_like(warp))
    is_cropped = draws.on(5, params.cropping)
    fraction = torch.where(is_cropped, torch.tensor(params.crop_range, dtype=torch.float64), 1.0)
    centre = (2.0 * draws.u[:, 6:8] - 1.0) * (1.0 - fraction)[:, None]
    flip = draws.on(8, params.flip_pairs is not None)
    theta = affine_matrices(
        len(draws.u),
        rotation_deg=rotation_deg,
        scale_xy=warp,
        crop_fraction=fraction,
        crop_centre_xy=centre,
        flip=flip,
        image_shape=image_shape,
    )
    return theta, flip


def apply_augmentation(
    images: torch.Tensor, labels: torch.Tensor, draw: AugmentationDraw
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a draw to a batch: one affine resampling for all samples, then intensity on images.

    Pure and deterministic; samples the draw leaves neutral are returned bit for bit.

    Args:
        images: ``(B, C, H, W)`` floating tensor (normally ``C = 1``).
        labels: ``(B, H, W)`` integer label maps on the same grid.
        draw: from :func:`sample_augmentation` (or built by hand) for this batch.

    Returns:
        ``(images, labels)`` with the input shapes, dtypes and device.

    Raises:
        ValueError: shapes do not match each other or the draw.

    Example:
        >>> images, labels = torch.rand(2, 1, 8, 8), torch.zeros(2, 8, 8, dtype=torch.int64)
        >>> same = apply_augmentation(images, labels, AugmentationDraw.identity(2))
    """
    _check_batch(images, labels, draw)
    draw = draw.to(images.device)
    active = draw.active()
    flags = torch.stack(list(active.values())).any(dim=1).tolist()  # one device sync
    is_any = dict(zip(active, flags, strict=True))
    if is_any["geometry"]:
        offsets = None
        if is_any["elastic"]:
            assert draw.elastic is not None  # is_any says so
            offsets = elastic_offsets(
                images,
                draw.elastic,
                seed=draw.noise_seed,
                spacing_px=draw.elastic_spacing_px,
                magnitude_px=draw.elastic_magnitude_px,
            )
        images, labels = warp(images, labels, draw.theta, active["geometry"], offsets)
    if is_any["flip"] and draw.flip_pairs:
        labels = swap_labels(labels, draw.flip, draw.flip_pairs)
    per_sample = (-1,) + (1,) * (images.ndim - 1)
    if is_any["gamma"]:
        low = images.amin(dim=(-2, -1), keepdim=True)
        span = images.amax(dim=(-2, -1), keepdim=True) - low
        unit = ((images - low) / span.clamp_min(1e-12)).clamp(0.0, 1.0)
        # exp(γ·log u) is 3× faster than pow with a per-sample exponent on CPU; log 0 → 0
        power = torch.log(unit).mul_(draw.gamma.to(images.dtype).view(per_sample)).exp_()
        gamma = power * span + low
        images = torch.where(active["gamma"].view(per_sample), gamma, images)
    if is_any["contrast"]:
        mean = images.mean(dim=(-2, -1), keepdim=True)
        contrast = (images - mean) * draw.contrast.to(images.dtype).view(per_sample) + mean
        images = torch.where(active["contrast"].view(per_sample), contrast, images)
    if is_any["brightness"]:
        images = images + draw.brightness.to(images.dtype).view(per_sample)
    if is_any["blur"]:
        blurred = blur(images, draw.blur_sigma_px)
        images = torch.where(active["blur"].view(per_sample), blurred, images)
    if is_any["noise"]:
        cpu = torch.Generator().manual_seed(draw.noise_seed)
        noise = torch.randn(images.shape, generator=cpu).to(images.device, images.dtype)
        noisy = images + noise * draw.noise_std.to(images.dtype).view(per_sample)
        images = torch.where(active["noise"].view(per_sample), noisy, images)
    return images, labels


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    params: AugmentParams,
    *,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw and apply one augmentation to a batch, on the batch's device.

    Args:
        images: ``(B, I, H, W)`` float images (normalised intensities).
        labels: ``(B, H, W)`` int64 label maps.
        params: the settings.
        generator: a CPU ``torch.Generator`` (seeded once per run).

    Returns:
        The augmented ``(images, labels)``.

    Raises:
        ValueError: shapes do not match, or ``generator`` is not on the CPU.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> images, labels = torch.rand(4, 1, 64, 64), torch.zeros(4, 64, 64, dtype=torch.int64)
        >>> images, labels = augment_batch(images, labels, AugmentParams(), generator=g)
    """
    draw = sample_augmentation(
        int(images.shape[0]),
        params,
        generator=generator,
        device=images.device,
        image_shape=(int(images.shape[-2]), int(images.shape[-1])),
    )
    return apply_augmentation(images, labels, draw)


def _check_batch(images: torch.Tensor, labels: torch.Tensor, draw: AugmentationDraw) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating (B, C, H, W) tensor, "
            f"got {tuple(images.shape)} {images.dtype}."
        )
    if (
        labels.ndim != 3
        or labels.is_floating_point()
        or labels.shape
        != (
            images.shape[0],
            *images.shape[-2:],
        )
    ):
        raise ValueError(
            f"labels must be integer (B, H, W) = {(images.shape[0], *images.shape[-2:])}, "
            f"got {tuple(labels.shape)} {labels.dtype}."
        )
    if draw.batch_size != images.shape[0]:
        raise ValueError(
            f"the draw is for {draw.batch_size} samples, the batch has {images.shape[0]}."
        )
    if draw.image_shape is not None and tuple(draw.image_shape) != tuple(images.shape[-2:]):
        raise ValueError(
            f"the draw was made for images of {draw.image_shape}, the batch is "
            f"{tuple(images.shape[-2:])}; pass image_shape to sample_augmentation."
        )
