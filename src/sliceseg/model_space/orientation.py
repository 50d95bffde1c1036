"""The canonical in-plane orientation: an exact flip/transpose chosen from the direction cosines.

A slice's (0020,0037) ImageOrientationPatient holds two unit vectors in the patient's LPS axes
(+x toward the patient's left, +y posterior, +z superior): the *row direction* (where a step
along a row, to the next column, goes) and the *column direction* (where a step down a column,
to the next row, goes). Before the model, every slice is brought to one canonical orientation
by a transpose and/or a reversal of its rows and/or columns — an exact permutation of pixels,
never an interpolation — and after prediction the same permutation is undone, so label maps
are on the DICOM's own grid again and sided ROIs (left / right) can never swap.

The convention (:data:`ORIENTATION_CONVENTION`, recorded in every model file), by the plane the
slice is closest to:

====================  =================================  =================================
plane (normal)        columns run toward (row dir.)      rows run toward (column dir.)
====================  =================================  =================================
axial (z)             patient left, +x: right on image   posterior, +y: anterior up
                      left (radiological)
coronal (y)           patient left, +x: right on image   feet, -z: head up
                      left
sagittal (x)          posterior, +y: anterior on image   feet, -z: head up
                      left
====================  =================================  =================================

These are the layouts scanners write by default, so most series need no change at all.

The nearest flip/transpose is chosen from the cosines' dominant patient axes. When an in-plane
axis is more than :data:`OBLIQUE_TOLERANCE_DEG` from every patient axis the slice is oblique: no
flip/transpose can make it canonical, so the nearest one is used with an
:class:`OrientationWarning` naming the file. Slices without (usable) orientation are taken as
stored, with one warning per series.

Example:
    >>> choice = choose_reorientation((-1, 0, 0, 0, 1, 0))  # columns run toward patient right
    >>> choice.reorientation
    Reorientation(transpose=False, flip_rows=False, flip_cols=True)
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import torch

from sliceseg.errors import BundleError
from sliceseg.io.dicom import Slice
from sliceseg.io.volume_slices import ORIENTATION_CONVENTION
from sliceseg.wording import few_of

__all__ = [
    "IDENTITY",
    "OBLIQUE_TOLERANCE_DEG",
    "ORIENTATION_CONVENTION",
    "OrientationChoice",
    "OrientationWarning",
    "Reorientation",
    "choose_reorientation",
    "is_canonicalising",
    "orient_slice",
    "reorientations_for",
]

OBLIQUE_TOLERANCE_DEG = 30.0
"""Largest angle (degrees) between an in-plane axis and its patient axis taken without warning."""

_MAX_NAMED_FILES = 3  # files named in one warning; the rest are counted

# Canonical (patient axis, sign) of the row direction and of the column direction, by plane.
_CANONICAL: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "axial": ((0, 1), (1, 1)),
    "coronal": ((0, 1), (2, -1)),
    "sagittal": ((1, 1), (2, -1)),
}
_PLANE_BY_NORMAL = {0: "sagittal", 1: "coronal", 2: "axial"}
_AXIS_PAIRS = ((0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1))

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


class OrientationWarning(UserWarning):
    """A slice could not be brought exactly to the canonical orientation (oblique, or unknown)."""


@dataclass(frozen=True)
class Reorientation:
    """An exact in-plane permutation of pixels: a transpose, then row and/or column reversal.

    :meth:`apply` works on the last two axes, so ``(H, W)``, ``(C, H, W)`` and ``(B, C, H, W)``
    arrays (numpy or torch) all go through it; :meth:`undo` is its exact inverse.

    Attributes:
        transpose: swap rows and columns first (the image's axes are the other way round).
        flip_rows: then reverse the order of the rows (top becomes bottom).
        flip_cols: then reverse the order of the columns (left becomes right).

    Example:
        >>> r = Reorientation(transpose=True, flip_cols=True)
        >>> r.apply(np.arange(6).reshape(2, 3)).tolist()
        [[3, 0], [4, 1], [5, 2]]
    """

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        """True when the slice is already canonical (nothing to do)."""
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def apply(self, array: ArrayT) -> ArrayT:
        """Return ``array`` in the canonical orientation (a contiguous copy when changed).

        Raises:
            ValueError: ``array`` has fewer than two dimensions.
        """
        _check_ndim(array)
        out = _swap(array) if self.transpose else array
        return _flip(out, rows=self.flip_rows, cols=self.flip_cols)

    def undo(self, array: ArrayT) -> ArrayT:
        """Return a canonical ``array`` back in the slice's own orientation (exact inverse).

        Raises:
            ValueError: ``array`` has fewer than two dimensions.
        """
        _check_ndim(array)
        out = _flip(array, rows=self.flip_rows, cols=self.flip_cols)
        return _swap(out) if self.transpose else out

    def shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Return the canonical ``(rows, cols)`` of a slice of ``shape``."""
        return (shape[1], shape[0]) if self.transpose else (shape[0], shape[1])

    def spacing(self, spacing_mm: tuple[float, float] | None) -> tuple[float, float] | None:
        """Return the canonical ``(row, col)`` spacing: a transpose swaps row and column."""
        if spacing_mm is None or not self.transpose:
            return spacing_mm
        return spacing_mm[1], spacing_mm[0]

    def describe(self) -> str:
        """Return the steps in words, e.g. ``"transpose, reverse columns"`` or ``"none"``."""
        steps = [
            name
            for name, on in (
                ("transpose", self.transpose),
                ("reverse rows", self.flip_rows),
                ("reverse columns", self.flip_cols),
            )
            if on
        ]
        return ", ".join(steps) or "none"


IDENTITY = Reorientation()
"""The reorientation of a slice that is already canonical, or that is taken as stored."""


@dataclass(frozen=True)
class OrientationChoice:
    """The nearest flip/transpose for one slice and how far from canonical the slice was.

    Attributes:
        reorientation: what to apply before the model.
        plane: "axial", "coronal" or "sagittal": the plane the slice is closest to.
        oblique_deg: the larger angle between an in-plane axis and its patient axis.
    """

    reorientation: Reorientation
    plane: str
    oblique_deg: float


def choose_reorientation(cosines: Sequence[float]) -> OrientationChoice | None:
    """Choose the flip/transpose that brings a slice nearest to the canonical orientation.

    Each image axis is matched to a distinct patient axis so that the summed absolute cosines
    are largest (its *dominant* axis); the plane is the remaining patient axis.

    Args:
        cosines: (0020,0037) ImageOrientationPatient: row direction then column direction,
            6 numbers in LPS.

    Returns:
        The choice, or ``None`` when the cosines are not two non-zero, non-parallel vectors
        (such a header says nothing about orientation).

    Example:
        >>> choose_reorientation((0, 1, 0, 1, 0, 0)).reorientation.describe()
        'transpose'
    """
    values = np.asarray(cosines, dtype=np.float64).reshape(-1)
    if values.shape != (6,) or not np.isfinite(values).all():
        return None
    row_dir, col_dir = _unit(values[:3]), _unit(values[3:])
    if row_dir is None or col_dir is None or abs(float(row_dir @ col_dir)) > 0.5:
        return None
    weight = np.abs(np.stack([row_dir, col_dir]))
    row_axis, col_axis = max(_AXIS_PAIRS, key=lambda p: weight[0, p[0]] + weight[1, p[1]])
    plane = _PLANE_BY_NORMAL[3 - row_axis - col_axis]
    (want_row_axis, want_row_sign), (_, want_col_sign) = _CANONICAL[plane]
    row_sign = 1 if row_dir[row_axis] > 0 else -1
    col_sign = 1 if col_dir[col_axis] > 0 else -1
    is_transposed = row_axis != want_row_axis
    # after a transpose the column direction becomes the row direction and vice versa
    new_row_sign, new_col_sign = (col_sign, row_sign) if is_transposed else (row_sign, col_sign)
    change = Reorientation(
        transpose=is_transposed,
        flip_rows=new_col_sign != want_col_sign,
        flip_cols=new_row_sign != want_row_sign,
    )
    oblique = max(
        math.degrees(math.acos(min(1.0, weight[0, row_axis]))),
        math.degrees(math.acos(min(1.0, weight[1, col_axis]))),
    )
    return OrientationChoice(reorientation=change, plane=plane, oblique_deg=oblique)


def reorientations_for(
    slices: Sequence[Slice],
    *,
    tolerance_deg: float = OBLIQUE_TOLERANCE_DEG,
    notes: list[str] | None = None,
) -> list[Reorientation]:
    """Choose each slice's reorientation, warning once per series about what cannot be exact.

    Args:
        slices: the slices, any series.
        tolerance_deg: obliquity above which a slice gets an :class:`OrientationWarning`.
        notes: when given, the warnings' messages are appended to it instead of warned (a
            caller that already said them, or says them itself: no global warning filter).

    Returns:
        One :class:`Reorientation` per slice, in order; :data:`IDENTITY` for slices without
        usable orientation (taken as stored).

    Warns:
        OrientationWarning: per series, once for slices without (0020,0037)
            ImageOrientationPatient and once for oblique slices, naming the files.

    Example:
        >>> [r.is_identity for r in reorientations_for(read_series("phantom/test/dicoms"))][:2]
        [True, True]
    """
    chosen: list[Reorientation] = []
    missing: dict[str, list[Slice]] = defaultdict(list)
    oblique: dict[str, list[tuple[Slice, OrientationChoice]]] = defaultdict(list)
    for image in slices:
        choice = None if image.orientation is None else choose_reorientation(image.orientation)
        if choice is None:
            missing[_series_name(image)].append(image)
            chosen.append(IDENTITY)
            continue
        if choice.oblique_deg > tolerance_deg:
            oblique[_series_name(image)].append((image, choice))
        chosen.append(choice.reorientation)
    said = notes.append if notes is not None else _warn
    for series, images in missing.items():
        said(
            f"{_files(images)}: no usable (0020,0037) ImageOrientationPatient in {len(images)} "
            f"slice(s) of series {series}; taking them as stored, assumed {ORIENTATION_CONVENTION} "
            "(patient right on image left, anterior up) - if the series is flipped or "
            "transposed, left and right ROIs swap; add the tag or check the overlays."
        )
    for series, items in oblique.items():
        worst = max(choice.oblique_deg for _, choice in items)
        steps = sorted({choice.reorientation.describe() for _, choice in items})
        said(
            f"{_files([image for image, _ in items])}: {len(items)} slice(s) of series {series} "
            f"are oblique by up to {worst:.1f}° (tolerance {tolerance_deg:g}°); no flip or "
            f"transpose makes them {ORIENTATION_CONVENTION}, using the nearest "
            f"({' / '.join(steps)}); check that left and right ROIs are on the right side."
        )
    return chosen


def orient_slice(image: Slice, reorientation: Reorientation) -> Slice:
    """Return ``image`` in the canonical orientation, its header values changed to match.

    Pixels are permuted exactly; (row, col) spacing swaps on a transpose; the direction
    cosines and the first pixel's position follow, so the result describes the same anatomy.

    Example:
        >>> orient_slice(image, Reorientation(transpose=True)).spacing_mm
        (0.8, 0.5)
    """
    if reorientation.is_identity:
        return image
    rows, cols = reorientation.shape(image.shape)
    spacing = reorientation.spacing(image.spacing_mm)
    orientation, position = image.orientation, image.image_position_mm
    if orientation is not None:
        row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
        if reorientation.transpose:
            row_dir, col_dir = col_dir, row_dir
        if position is not None and spacing is not None:
            first = np.asarray(position, dtype=np.float64)
            first = first + reorientation.flip_rows * (rows - 1) * spacing[0] * col_dir
            first = first + reorientation.flip_cols * (cols - 1) * spacing[1] * row_dir
            position = (float(first[0]), float(first[1]), float(first[2]))
        row_dir = -row_dir if reorientation.flip_cols else row_dir
        col_dir = -col_dir if reorientation.flip_rows else col_dir
        orientation = tuple(float(v) for v in (*row_dir, *col_dir))  # type: ignore[assignment]
    # ``position_mm`` stays as read, along the stored normal, which each flip and the transpose
    # turn round: nothing reads it from an oriented slice (series order, 2.5D neighbours, copies
    # and splits use the slices as read; the grids and exports use the two fields above).
    return replace(
        image,
        pixels=reorientation.apply(image.pixels),
        spacing_mm=spacing,
        orientation=orientation,
        image_position_mm=position,
    )


def is_canonicalising(convention: str | None, *, source: object = "the model file") -> bool:
    """Tell whether a model with this recorded orientation convention expects canonical slices.

    A model file without the entry (``None``: written before sliceseg canonicalised
    orientation) was trained on slices as stored, so it must predict on slices as stored:
    skipping canonicalisation for it gives exactly its earlier predictions.

    Args:
        convention: ``ModelMetadata.orientation``.
        source: what to name in the error (the model file's path).

    Returns:
        True for :data:`ORIENTATION_CONVENTION`, False for ``None``.

    Raises:
        BundleError: the convention is one this sliceseg does not know (a newer version).
    """
    if convention is None:
        return False
    if convention == ORIENTATION_CONVENTION:
        return True
    raise BundleError(
        f"{source}: records orientation convention {convention!r}; this sliceseg knows only "
        f"{ORIENTATION_CONVENTION!r}; upgrade sliceseg to use this model."
    )


# --------------------------------------------------------------------------- helpers


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    return None if norm < 1e-6 else vector / norm


def _check_ndim(array: np.ndarray | torch.Tensor) -> None:
    if array.ndim < 2:
        raise ValueError(
            f"Reorientation expects (..., rows, cols), got shape {tuple(array.shape)}."
        )


def _swap(array: ArrayT) -> ArrayT:
    if isinstance(array, torch.Tensor):
        return array.transpose(-2, -1).contiguous()
    return np.ascontiguousarray(np.swapaxes(array, -2, -1))


def _flip(array: ArrayT, *, rows: bool, cols: bool) -> ArrayT:
    axes = [axis for axis, on in ((-2, rows), (-1, cols)) if on]
    if not axes:
        return array
    if isinstance(array, torch.Tensor):
        return torch.flip(array, dims=axes)
    return np.ascontiguousarray(np.flip(array, axis=tuple(axes)))


def _series_name(image: Slice) -> str:
    return image.series_uid or f"in folder {image.source.parent}"


def _files(images: Sequence[Slice]) -> str:
    paths = list(dict.fromkeys(str(image.source) for image in images))  # frames share a file
    return few_of(paths, shown=_MAX_NAMED_FILES)


def _warn(message: str) -> None:
    warnings.warn(message, OrientationWarning, stacklevel=3)
