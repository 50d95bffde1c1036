"""Samples and slices in the model's space as tensors: at the target spacing, or on the old grid.

Training and prediction both pass here: each slice is first brought to the canonical in-plane
orientation (:mod:`sliceseg.model_space.orientation`; image and label by the same exact
flip/transpose,
spacing permuted with them), then normalised and either resampled to the model's target spacing
in mm (:class:`SpacedTensors`, one tensor per slice, any size: models with a target spacing) or
squeezed onto the square model grid (:class:`GridTensors`: models without a target spacing).
The reorientation of every slice is kept so predictions can be undone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.split import patient_groups
from sliceseg.io.dicom import Slice
from sliceseg.io.identity import series_key
from sliceseg.io.neighbours import slice_neighbours
from sliceseg.model_space.grid import GridGeometry, fit_geometry, image_to_grid, label_to_grid
from sliceseg.model_space.intensity import PER_SLICE, IntensityNormalisation, normalise_intensity
from sliceseg.model_space.orientation import Reorientation, orient_slice, reorientations_for
from sliceseg.model_space.resample import (
    SpacingGeometry,
    median_spacing,
    resample_image,
    resample_label,
    spacing_geometry,
)


@dataclass(frozen=True)
class GridTensors:
    """Images (N, 1, S, S) float32 and labels (N, S, S) int64 on the model grid.

    Attributes:
        images: normalised intensities, zero-padded around each slice's resized extent.
        labels: ROI numbers 0..K (nearest-neighbour resampled), or None for unlabelled slices.
        geometries: how each slice sits on the grid, to map predictions back.
        keys: the sample keys (relative paths) in order.
        reorientations: how each slice was brought to the canonical orientation before its
            geometry (undo it after ``probabilities_from_grid`` to reach the DICOM's grid).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    geometries: tuple[GridGeometry, ...]
    keys: tuple[str, ...]
    reorientations: tuple[Reorientation, ...]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def slice_to_grid(image: Slice, input_size: int) -> tuple[torch.Tensor, GridGeometry]:
    """Normalise one slice and place it on the square model grid, aspect kept, as stored.

    Orientation is the caller's business: pass a slice from
    :func:`~sliceseg.model_space.orientation.orient_slice` to work in the canonical orientation.

    Returns:
        ``(tensor (1, S, S), geometry)``.
    """
    geometry = fit_geometry(image.shape, input_size)
    pixels = torch.from_numpy(np.ascontiguousarray(normalise_intensity(image.display_pixels)))
    return image_to_grid(pixels, geometry).reshape(1, input_size, input_size), geometry


def slices_to_grid(
    images: Sequence[Slice],
    input_size: int,
    *,
    reorientations: Sequence[Reorientation] | None = None,
) -> GridTensors:
    """Place unlabelled slices on the model grid (for prediction), in canonical orientation.

    Args:
        images: the slices.
        input_size: side ``S`` of the model grid.
        reorientations: one per slice; by default chosen by
            :func:`~sliceseg.model_space.orientation.reorientations_for` (which warns once per
            series); pass ``[IDENTITY] * n`` to keep the slices as stored.

    Returns:
        Images ``(N, 1, S, S)``, no labels, with each slice's geometry and reorientation.

    Raises:
        ValueError: ``reorientations`` does not have one entry per slice.
    """
    changes = _reorientations(images, reorientations)
    oriented = [orient_slice(s, r) for s, r in zip(images, changes, strict=True)]
    if not oriented:
        return GridTensors(torch.zeros(0, 1, input_size, input_size), None, (), (), ())
    tensors, geometries = zip(*(slice_to_grid(s, input_size) for s in oriented), strict=True)
    return GridTensors(
        images=torch.stack(tensors),
        labels=None,
        geometries=tuple(geometries),
        keys=tuple(s.name for s in images),
        reorientations=tuple(changes),
    )


def samples_to_grid(
    samples: Sequence[Sample],
    input_size: int,
    *,
    reorientations: Sequence[Reorientation] | None = None,
) -> GridTensors:
    """Place labelled samples on the model grid (for training and validation).

    Image and label go through the same exact flip/transpose to the canonical orientation,
    so a label never moves relative to its image (and is never interpolated).

    Args:
        samples: the labelled slices.
        input_size: side ``S`` of the model grid.
        reorientations: one per sample, as for :func:`slices_to_grid`.

    Raises:
        ValueError: ``reorientations`` does not have one entry per sample.

    Example:
        >>> grid = samples_to_grid(samples, 128)
        >>> grid.images.shape, grid.labels.shape
        (torch.Size([N, 1, 128, 128]), torch.Size([N, 128, 128]))
    """
    changes = _reorientations([s.image for s in samples], reorientations)
    if not samples:
        return GridTensors(
            images=torch.zeros(0, 1, input_size, input_size),
            labels=torch.zeros(0, input_size, input_size, dtype=torch.int64),
            geometries=(),
            keys=(),
            reorientations=(),
        )
    images, labels, geometries = [], [], []
    for sample, change in zip(samples, changes, strict=True):
        tensor, geometry = slice_to_grid(orient_slice(sample.image, change), input_size)
        label = torch.from_numpy(change.apply(np.asarray(sample.label)).astype(np.int64))
        images.append(tensor)
        labels.append(label_to_grid(label, geometry).reshape(input_size, input_size))
        geometries.append(geometry)
    return GridTensors(
        images=torch.stack(images),
        labels=torch.stack(labels).to(torch.int64),
        geometries=tuple(geometries),
        keys=tuple(s.key for s in samples),
        reorientations=tuple(changes),
    )


@dataclass(frozen=True)
class SpacedTensors:
    """Slices at the model's target spacing: one tensor per slice, each its own size.

    Attributes:
        images: per slice ``(1 + 2k, R, C)`` float32 normalised intensities at the target
            spacing (``k`` neighbours on each side for a 2.5D model, the slice in the middle).
        labels: per slice ``(R, C)`` int64 ROI numbers (nearest neighbour), or None.
        geometries: how each slice was resampled, to map predictions back.
        keys: the sample keys (relative paths) or slice names, in order.
        reorientations: how each slice was brought to the canonical orientation first.
        target_spacing_mm: the ``(row, col)`` spacing every slice was resampled to.
        series: per slice its series (`series_key`: SeriesInstanceUID, else its folder), what
            the training profile leaves out whole (empty where not known: a subset picked for
            prediction).
        patients: per labelled slice its patient as the validation split groups it
            (`patient_groups`: PatientID, else subject folder, else series), what the area
            calibration's held-out halves keep whole (empty for unlabelled slices).
    """

    images: tuple[torch.Tensor, ...]
    labels: tuple[torch.Tensor, ...] | None
    geometries: tuple[SpacingGeometry, ...]
    keys: tuple[str, ...]
    reorientations: tuple[Reorientation, ...]
    target_spacing_mm: tuple[float, float]
    series: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)


def centre_channel(image: torch.Tensor) -> torch.Tensor:
    """The slice itself of a network input ``(1 + 2k, R, C)`` (its neighbours on either side)."""
    return image[image.shape[0] // 2]


def slice_to_spacing(
    image: Slice,
    target_spacing_mm: tuple[float, float],
    *,
    normalisation: IntensityNormalisation = PER_SLICE,
    context: Sequence[Slice] = (),
) -> tuple[torch.Tensor, SpacingGeometry]:
    """Normalise one slice (``normalisation``: per slice by default, or a model's CT numbers)
    and resample it to the target spacing, as stored.

    Orientation is the caller's business (see :func:`slice_to_grid`). A slice without
    (0028,0030) PixelSpacing is taken to be at the target spacing already.

    Args:
        image: the slice.
        target_spacing_mm: the model's ``(row, col)`` spacing.
        normalisation: the intensity normalisation.
        context: its ``2k`` neighbours (`sliceseg.io.neighbours.slice_neighbours`, oriented
            like it), each normalised on its own and resampled on the slice's geometry; one
            on another grid (shape) is replaced by the slice itself.

    Returns:
        ``(tensor (1 + 2k, R, C), geometry)``: channels ``-k..-1``, the slice, ``+1..+k``.
    """
    geometry = spacing_geometry(image.shape, image.spacing_mm, target_spacing_mm)
    half = len(context) // 2
    stack = [*context[:half], image, *context[half:]]
    channels = [
        normalisation.of_slice(member if member.shape == image.shape else image) for member in stack
    ]
    stacked = channels[0][None] if len(channels) == 1 else np.stack(channels)
    pixels = torch.from_numpy(np.ascontiguousarray(stacked))
    return resample_image(pixels, geometry).contiguous(), geometry


def slices_to_spacing(
    images: Sequence[Slice],
    target_spacing_mm: tuple[float, float],
    *,
    reorientations: Sequence[Reorientation] | None = None,
    normalisation: IntensityNormalisation = PER_SLICE,
    context_slices: int = 0,
    context_pool: Sequence[Slice] = (),
) -> SpacedTensors:
    """Resample unlabelled slices to the target spacing (for prediction), canonical orientation.

    Args:
        images: the slices (a 2.5D model's: whole series, so that each has its neighbours).
        target_spacing_mm: the model's ``(row, col)`` spacing in mm.
        reorientations: as for :func:`slices_to_grid`.
        normalisation: the model's intensity normalisation (per slice by default).
        context_slices: neighbours on each side as extra channels (`slice_neighbours`,
            among ``images`` and ``context_pool``).
        context_pool: further slices that may be neighbours, not predicted themselves.

    Raises:
        ValueError: ``reorientations`` does not have one entry per slice.
    """
    changes = _reorientations(images, reorientations)
    contexts = slice_neighbours(images, context_slices, pool=context_pool)
    pairs = [
        slice_to_spacing(
            orient_slice(s, r),
            target_spacing_mm,
            normalisation=normalisation,
            context=[orient_slice(n, r) for n in _along_normal(s, r, near)],
        )
        for s, r, near in zip(images, changes, contexts, strict=True)
    ]
    return SpacedTensors(
        images=tuple(p[0] for p in pairs),
        labels=None,
        geometries=tuple(p[1] for p in pairs),
        keys=tuple(s.name for s in images),
        reorientations=tuple(changes),
        target_spacing_mm=target_spacing_mm,
        series=tuple(series_key(s) for s in images),
    )


def samples_to_spacing(
    samples: Sequence[Sample],
    target_spacing_mm: tuple[float, float] | None,
    *,
    reorientations: Sequence[Reorientation] | None = None,
    normalisation: IntensityNormalisation = PER_SLICE,
    context_slices: int = 0,
    context_pool: Sequence[Slice] = (),
) -> SpacedTensors:
    """Resample labelled samples to the target spacing (for training and validation).

    Image and label go through the same flip/transpose; the label by nearest neighbour only.

    Args:
        samples: the labelled slices.
        target_spacing_mm: the model's ``(row, col)`` spacing in mm; None takes the per-axis
            median of the samples' spacings in the canonical orientation (nnU-Net's rule;
            1 mm when no sample has a PixelSpacing, and such slices are taken as they are).
        reorientations: one per sample, as for :func:`slices_to_grid`.
        normalisation: the intensity normalisation (per slice by default; a run's CT numbers).
        context_slices: neighbours on each side as extra channels (`slice_neighbours`).
        context_pool: unlabelled slices that may be the samples' neighbours.

    Raises:
        ValueError: ``reorientations`` does not have one entry per sample.

    Example:
        >>> spaced = samples_to_spacing(samples, (0.9, 0.9))
        >>> spaced.images[0].shape[0], spaced.labels[0].dtype
        (1, torch.int64)
    """
    changes = _reorientations([s.image for s in samples], reorientations)
    if target_spacing_mm is None:
        target_spacing_mm = median_target_spacing(samples, reorientations=changes)
    contexts = slice_neighbours([s.image for s in samples], context_slices, pool=context_pool)
    images, labels, geometries = [], [], []
    for sample, change, near in zip(samples, changes, contexts, strict=True):
        tensor, geometry = slice_to_spacing(
            orient_slice(sample.image, change),
            target_spacing_mm,
            normalisation=normalisation,
            context=[orient_slice(n, change) for n in _along_normal(sample.image, change, near)],
        )
        label = torch.from_numpy(change.apply(np.asarray(sample.label)).astype(np.int64))
        images.append(tensor)
        labels.append(resample_label(label, geometry).contiguous())
        geometries.append(geometry)
    return SpacedTensors(
        images=tuple(images),
        labels=tuple(labels),
        geometries=tuple(geometries),
        keys=tuple(s.key for s in samples),
        reorientations=tuple(changes),
        target_spacing_mm=target_spacing_mm,
        series=tuple(series_key(s.image) for s in samples),
        patients=tuple(patient_groups(samples)),
    )


def median_target_spacing(
    samples: Sequence[Sample], *, reorientations: Sequence[Reorientation] | None = None
) -> tuple[float, float]:
    """The per-axis median ``(row, col)`` spacing of samples in the canonical orientation.

    nnU-Net's default target; 1 mm when no sample has a (0028,0030) PixelSpacing.

    Raises:
        ValueError: ``reorientations`` does not have one entry per sample.
    """
    changes = _reorientations([s.image for s in samples], reorientations)
    spacings = [r.spacing(s.image.spacing_mm) for s, r in zip(samples, changes, strict=True)]
    return median_spacing(spacings) or (1.0, 1.0)


def whole_slice_spacing(
    samples: Sequence[Sample],
    input_size: int,
    *,
    share: float = 1.0,
    reorientations: Sequence[Reorientation] | None = None,
) -> tuple[float, float]:
    """The spacing at which an ``input_size`` crop shows ``share`` of the median slice.

    Per axis the coarser of the median spacing (`median_target_spacing`) and ``share`` of the
    median extent in mm (the longer side of each slice: rows × row spacing or columns × column
    spacing) divided by ``input_size``: with ``share`` 1 a slice of the median extent fits the
    crop, as the whole slice resized to a square does in a plain recipe, while slices already
    coarse enough keep their own resolution.

    Raises:
        ValueError: ``reorientations`` does not have one entry per sample.

    Example:
        >>> whole_slice_spacing(samples, 160)  # 512² at 0.8 mm: 409.6 mm / 160
        (2.56, 2.56)
    """
    median, extent = _median_spacing_and_extent(samples, reorientations)
    if extent is None:
        return median
    fit = share * extent / input_size
    return max(median[0], fit), max(median[1], fit)


def native_crop_share(
    samples: Sequence[Sample],
    input_size: int,
    *,
    reorientations: Sequence[Reorientation] | None = None,
) -> float | None:
    """The share of the median slice extent an ``input_size`` crop shows at the median
    spacing (the mean of its row and column spacing); None without any spacing.

    Example:
        >>> native_crop_share(samples, 160)  # 512² at 0.8 mm: 128 mm of 409.6 mm
        0.3125
    """
    median, extent = _median_spacing_and_extent(samples, reorientations)
    if extent is None:
        return None
    return input_size * (median[0] + median[1]) / 2 / extent


def _median_spacing_and_extent(
    samples: Sequence[Sample], reorientations: Sequence[Reorientation] | None
) -> tuple[tuple[float, float], float | None]:
    """The median target spacing and the median of the slices' longer sides in mm."""
    changes = _reorientations([s.image for s in samples], reorientations)
    median = median_target_spacing(samples, reorientations=changes)
    extents = [
        max(n * mm for n, mm in zip(s.image.shape, s.image.spacing_mm, strict=True))
        for s in samples
        if s.image.spacing_mm is not None
    ]
    return median, (float(np.median(extents)) if extents else None)


def _along_normal(image: Slice, change: Reorientation, near: Sequence[Slice]) -> Sequence[Slice]:
    """A slice's neighbours ``(-k, ..., -1, +1, ..., +k)`` in the order of its canonical
    normal, as a 2.5D network takes them whatever the series' storage.

    `slice_neighbours` orders them by ImagePositionPatient along the stored normal (else by
    SliceLocation, whose sign DICOM leaves open), which an odd number of flips and transposes
    to the canonical orientation turns round. Where (0020,0032) ImagePositionPatient and
    (0020,0037) ImageOrientationPatient say that the ``+k`` side lies behind the ``-k`` side
    along the canonical normal, the order is reversed; without them it is kept.
    """
    if not near or image.orientation is None:
        return near
    first, last = near[0].image_position_mm, near[-1].image_position_mm
    if first is None or last is None:
        return near
    cosines = np.asarray(image.orientation, dtype=np.float64)
    turns = int(change.transpose) + int(change.flip_rows) + int(change.flip_cols)
    normal = np.cross(cosines[:3], cosines[3:]) * (-1.0) ** turns  # each turns it round
    step = float(np.dot(np.subtract(last, first), normal))
    return near[::-1] if step < 0 else near


def _reorientations(
    images: Sequence[Slice], given: Sequence[Reorientation] | None
) -> list[Reorientation]:
    if given is None:
        return reorientations_for(images)
    if len(given) != len(images):
        raise ValueError(
            f"reorientations has {len(given)} entries for {len(images)} slices; give one per "
            "slice (or None to choose them from ImageOrientationPatient)."
        )
    return list(given)
