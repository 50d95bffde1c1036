"""Continuous 2D shapes in mm and the painter that samples them into images, labels and areas.

The phantom's anatomy is a list of :class:`Layer` objects painted in order (a later layer wins).
Each layer is a continuous shape in the *anatomy frame* (``u`` mm towards the patient's left, i.e.
towards larger column indices; ``v`` mm towards posterior, i.e. larger row indices), a tissue
intensity, and a label: an ROI number, 0 for unlabelled tissue, or ``None`` for a decorative layer
that changes the image but keeps the label underneath. Images, label maps and true areas are all
painted from the same list, so the labels always agree with the picture and the true areas
respect the same precedence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

_TABLE_SIZE = 1024


def _pseudo_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A cheap stand-in for the polar angle: 0 at -v, 1 at +u, 2 at +v, 3 at -u, 4 at -v again.

    ``2 + sign(u) * (v / (|u| + |v|) - 1)`` rises monotonically with the angle, which is all a
    radius table needs, and costs a fifth of ``arctan2``.
    """
    tiny = np.asarray(1e-30, u.dtype)
    p = v / (np.abs(u) + np.abs(v) + tiny)
    p -= 1
    p *= np.copysign(np.asarray(1, u.dtype), u)
    p += 2
    return p


def _angles() -> np.ndarray:
    """The polar angles of pseudo-angles ``4 k / _TABLE_SIZE`` (the inverse of the above)."""
    p = np.arange(_TABLE_SIZE) * (4.0 / _TABLE_SIZE)
    v = np.where(p <= 2, p - 1, 3 - p)
    u = np.where(p <= 2, 1 - np.abs(v), np.abs(v) - 1)
    return np.arctan2(v, u)


ANGLES = _angles()
"""Polar angles (rad, ``atan2(v, u)``) at which :class:`Star` radii are tabulated.

They are evenly spaced in :func:`_pseudo_angle`, not in angle; radii in between are interpolated
linearly in the pseudo-angle, and that interpolation defines the continuous boundary.
"""
COS, SIN = np.cos(ANGLES), np.sin(ANGLES)

BBox = tuple[float, float, float, float]
"""``(u_min, u_max, v_min, v_max)`` in mm, anatomy frame."""


@dataclass
class Points:
    """Sample points in the anatomy frame (any array shape), with their polar position about 0.

    ``r`` is the distance from the origin; ``index`` and ``frac`` place each point's direction
    in the radius tables (see :func:`table_position`).
    """

    u: np.ndarray
    v: np.ndarray
    r: np.ndarray
    index: np.ndarray
    frac: np.ndarray

    def take(self, index: tuple[slice, slice] | tuple[np.ndarray, ...] | np.ndarray) -> Points:
        """The points at ``index`` (a window, a tuple of index arrays, or first-axis indices)."""
        return Points(
            self.u[index], self.v[index], self.r[index], self.index[index], self.frac[index]
        )


def table_position(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table index and fraction of the direction of each ``(u, v)`` from the origin."""
    pos = _pseudo_angle(u, v) * np.asarray(_TABLE_SIZE / 4.0, u.dtype)
    index = np.minimum(pos.astype(np.intp), _TABLE_SIZE - 1)
    return index, pos - index


def _interpolate(
    table: np.ndarray, step: np.ndarray, index: np.ndarray, frac: np.ndarray
) -> np.ndarray:
    """``table[index] + step[index] * frac`` in the points' precision (take beats indexing)."""
    dtype = frac.dtype  # float32 grids stay float32: half the memory traffic
    values = table.astype(dtype, copy=False).take(index)
    values += step.astype(dtype, copy=False).take(index) * frac
    return values


def radius_at(table: np.ndarray, angle: float) -> float:
    """The radius (mm) of a table at the polar angle ``angle`` (rad, ``atan2(v, u)``)."""
    index, frac = table_position(np.array([math.cos(angle)]), np.array([math.sin(angle)]))
    following = table[(index + 1) % _TABLE_SIZE]
    return float((table[index] + (following - table[index]) * frac)[0])


def _make_points(u: np.ndarray, v: np.ndarray) -> Points:
    """Return :class:`Points` for anatomy-frame coordinates ``u``, ``v`` (mm)."""
    index, frac = table_position(u, v)
    return Points(u, v, np.sqrt(u * u + v * v), index, frac)


class Shape(Protocol):
    """A region of the plane: a bounding box and an inside test."""

    @property
    def bbox(self) -> BBox: ...

    def contains(self, pts: Points) -> np.ndarray: ...


@dataclass(frozen=True)
class SuperEllipse:
    """``|x/a|^p + |y/b|^p <= 1`` in a frame centred on ``(cu, cv)`` and turned by ``angle_deg``.

    ``power`` is at least 2 (2 is an ellipse; larger is boxier).
    """

    cu: float
    cv: float
    a: float
    b: float
    angle_deg: float = 0.0
    power: float = 2.0

    @property
    def bbox(self) -> BBox:
        t = math.radians(self.angle_deg)
        hu = abs(self.a * math.cos(t)) + abs(self.b * math.sin(t))
        hv = abs(self.a * math.sin(t)) + abs(self.b * math.cos(t))
        return (self.cu - hu, self.cu + hu, self.cv - hv, self.cv + hv)

    def contains(self, pts: Points) -> np.ndarray:
        t = math.radians(self.angle_deg)
        c, s = math.cos(t), math.sin(t)
        du, dv = pts.u - self.cu, pts.v - self.cv
        x = (c * du + s * dv) / self.a
        y = (c * dv - s * du) / self.b
        inside = x * x + y * y <= 1.0
        if self.power == 2.0:
            return inside
        # With power >= 2 the ellipse lies inside and the box outside: only the rim needs powers.
        x, y = np.abs(x), np.abs(y)
        rim = np.nonzero(~inside & (x <= 1.0) & (y <= 1.0))
        inside[rim] = x[rim] ** self.power + y[rim] ** self.power <= 1.0
        return inside


@dataclass(frozen=True, eq=False)
class Star:
    """A star-shaped region about ``(cu, cv)``: ``inner(phi) <= r < outer(phi)``.

    ``outer`` and ``inner`` hold radii (mm) at :data:`ANGLES`; between them the radius is linearly
    interpolated, which defines the continuous boundary. ``inner=None`` means a filled shape.
    """

    cu: float
    cv: float
    outer: np.ndarray
    inner: np.ndarray | None = None
    bbox: BBox = field(init=False)
    _outer_step: np.ndarray = field(init=False, repr=False)
    _inner_step: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        u = self.cu + self.outer * COS
        v = self.cv + self.outer * SIN
        # Between two tabulated directions the boundary strays by far less than 0.5 mm.
        box: BBox = (
            float(min(u.min(), self.cu)) - 0.5,
            float(max(u.max(), self.cu)) + 0.5,
            float(min(v.min(), self.cv)) - 0.5,
            float(max(v.max(), self.cv)) + 0.5,
        )
        object.__setattr__(self, "bbox", box)
        object.__setattr__(
            self, "_outer_step", np.append(self.outer[1:], self.outer[0]) - self.outer
        )
        inner = self.outer if self.inner is None else self.inner
        object.__setattr__(self, "_inner_step", np.append(inner[1:], inner[0]) - inner)

    def contains(self, pts: Points) -> np.ndarray:
        if self.cu == 0.0 and self.cv == 0.0:
            r, index, frac = pts.r, pts.index, pts.frac
        else:
            du, dv = pts.u - self.cu, pts.v - self.cv
            r = np.sqrt(du * du + dv * dv)
            index, frac = table_position(du, dv)
        inside = r < _interpolate(self.outer, self._outer_step, index, frac)
        if self.inner is not None:
            inside &= r >= _interpolate(self.inner, self._inner_step, index, frac)
        return inside


@dataclass(frozen=True, eq=False)
class Intersection:
    """The part of ``first`` that is also inside ``second``."""

    first: Shape
    second: Shape

    @property
    def bbox(self) -> BBox:
        a, b = self.first.bbox, self.second.bbox
        return (max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3]))

    def contains(self, pts: Points) -> np.ndarray:
        inside = self.first.contains(pts)
        hits = np.nonzero(inside)
        if hits[0].size:  # test ``second`` only where ``first`` holds
            inside[hits] = self.second.contains(pts.take(hits))
        return inside


def encloses(region: Star, shape: Star, *, margin_mm: float = 1.0) -> bool:
    """Whether ``region`` holds all of ``shape`` with ``margin_mm`` to spare.

    Testing the grown outline suffices: a closed curve inside a simply connected region encloses
    only points of that region.
    """
    grown = shape.outer + margin_mm
    outline = _make_points(shape.cu + grown * COS, shape.cv + grown * SIN)
    return bool(region.contains(outline).all())


@dataclass(frozen=True)
class Tissue:
    """Mean intensity (modality units) and optional texture: field index and relative amplitude."""

    intensity: float
    texture: int | None = None
    texture_amp: float = 0.0


@dataclass(frozen=True, eq=False)
class Layer:
    """One painted shape: its tissue, and its label (ROI, 0, or ``None`` = keep the label below)."""

    shape: Shape
    tissue: Tissue
    label: int | None


@dataclass(frozen=True)
class Frame:
    """Where the anatomy sits in the image: centre offset (x, y mm from the image centre) and turn.

    Image ``x`` runs along a row (towards larger column indices), ``y`` down the columns.
    """

    offset_x_mm: float
    offset_y_mm: float
    rotation_deg: float

    def to_anatomy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = math.radians(self.rotation_deg)
        c, s = math.cos(t), math.sin(t)
        dx, dy = x - self.offset_x_mm, y - self.offset_y_mm
        return c * dx + s * dy, c * dy - s * dx

    def to_image(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = math.radians(self.rotation_deg)
        c, s = math.cos(t), math.sin(t)
        return self.offset_x_mm + c * u - s * v, self.offset_y_mm + s * u + c * v


class SampleGrid:
    """A regular grid of sample positions ``ys`` (rows) × ``xs`` (columns), image mm."""

    def __init__(
        self, xs: np.ndarray, ys: np.ndarray, frame: Frame, *, dtype: type = np.float64
    ) -> None:
        self.xs, self.ys, self.frame = xs, ys, frame
        self.shape = (len(ys), len(xs))
        u, v = frame.to_anatomy(xs[None, :], ys[:, None])
        self.pts = _make_points(u.astype(dtype), v.astype(dtype))

    def select(self, bbox: BBox) -> tuple[tuple[slice, slice], Points] | None:
        """Return the window of grid points that may lie inside ``bbox``, or None if empty."""
        u = np.array([bbox[0], bbox[1], bbox[0], bbox[1]])
        v = np.array([bbox[2], bbox[2], bbox[3], bbox[3]])
        x, y = self.frame.to_image(u, v)
        c0, c1 = np.searchsorted(self.xs, [x.min(), x.max()], side="left")
        r0, r1 = np.searchsorted(self.ys, [y.min(), y.max()], side="left")
        c1, r1 = min(c1 + 1, self.shape[1]), min(r1 + 1, self.shape[0])
        if c0 >= c1 or r0 >= r1:
            return None
        win = (slice(int(r0), int(r1)), slice(int(c0), int(c1)))
        return win, self.pts.take(win)


def paint_image(
    layers: Sequence[Layer], grid: SampleGrid, textures: Sequence[np.ndarray]
) -> np.ndarray:
    """Paint the layers' intensities on ``grid``; ``textures`` are unit-std fields on the grid."""
    image = np.zeros(grid.shape, np.float32)
    for layer in layers:
        found = grid.select(layer.shape.bbox)
        if found is None:
            continue
        win, pts = found
        inside = layer.shape.contains(pts)
        tissue = layer.tissue
        # copyto(where=) beats boolean indexing here, even for sparse masks.
        if tissue.texture is None:
            np.copyto(image[win], np.float32(tissue.intensity), where=inside)
        else:
            values = textures[tissue.texture][win] * np.float32(
                tissue.intensity * tissue.texture_amp
            )
            values += np.float32(tissue.intensity)
            np.copyto(image[win], values, where=inside)
    return image


def paint_labels(layers: Sequence[Layer], grid: SampleGrid) -> np.ndarray:
    """Return the label map sampled at the grid points (uint8)."""
    labels = np.zeros(grid.shape, np.uint8)
    for layer in layers:
        if layer.label is None:
            continue
        found = grid.select(layer.shape.bbox)
        if found is not None:
            win, pts = found
            np.copyto(labels[win], np.uint8(layer.label), where=layer.shape.contains(pts))
    return labels


def true_pixel_areas(
    layers: Sequence[Layer],
    grid: SampleGrid,
    labels: np.ndarray,
    *,
    num_labels: int,
    refine: int = 8,
) -> np.ndarray:
    """Area of each label in pixel units, from the continuous shapes by fine sampling.

    Pixels whose 3×3 neighbourhood holds one label (at pixel centres) count whole; every pixel next
    to a label change is resampled on a ``refine`` × ``refine`` grid of sub-pixel centres. Only a
    feature thinner than a pixel *and* missed by every nearby pixel centre could escape; the
    anatomy has none (checked against full 24× rasterisations down to 64 × 64 matrices), so this
    equals a ``refine``× supersampled rasterisation of the shapes at a fraction of the cost.

    Args:
        layers: the painted layers (the label precedence is their order).
        grid: the pixel-centre grid (``xs`` and ``ys`` evenly spaced).
        labels: ``paint_labels(layers, grid)``.
        num_labels: the largest label value K.
        refine: sub-samples per pixel side at the boundaries.

    Returns:
        ``(K + 1,)`` float64 areas in pixels, background first.
    """
    edge = ndimage.maximum_filter(labels, 3) != ndimage.minimum_filter(labels, 3)
    counts = np.bincount(labels[~edge], minlength=num_labels + 1).astype(np.float64)
    rows, cols = np.nonzero(edge)
    if rows.size == 0:
        return counts
    dx = float(grid.xs[1] - grid.xs[0]) if len(grid.xs) > 1 else 1.0
    dy = float(grid.ys[1] - grid.ys[0]) if len(grid.ys) > 1 else 1.0
    steps = (np.arange(refine) + 0.5) / refine - 0.5
    off_x, off_y = np.meshgrid(steps * dx, steps * dy)
    # The map to the anatomy frame is affine: offsets turn once, then add to each centre.
    off_u, off_v = grid.frame.to_anatomy(off_x.ravel(), off_y.ravel())
    origin_u, origin_v = grid.frame.to_anatomy(np.zeros(1), np.zeros(1))
    centre_u, centre_v = grid.pts.u[rows, cols], grid.pts.v[rows, cols]
    # float32 (about 1e-5 mm here) halves the memory traffic; the areas move by < 1e-6.
    u = (centre_u[:, None] + (off_u - origin_u)[None, :]).astype(np.float32)
    v = (centre_v[:, None] + (off_v - origin_v)[None, :]).astype(np.float32)
    fine = _make_points(u, v)
    margin = 0.75 * max(dx, dy)
    values = np.zeros(u.shape, np.uint8)
    for layer in layers:
        if layer.label is None:
            continue
        u0, u1, v0, v1 = layer.shape.bbox
        near = (centre_u >= u0 - margin) & (centre_u <= u1 + margin)
        near &= (centre_v >= v0 - margin) & (centre_v <= v1 + margin)
        index = np.flatnonzero(near)
        if 2 * index.size > rows.size:  # most points: cheaper than copying them
            inside = layer.shape.contains(fine) & near[:, None]
            values[inside] = layer.label
        elif index.size:
            inside = layer.shape.contains(fine.take(index))
            values[index] = np.where(inside, np.uint8(layer.label), values[index])
    counts += np.bincount(values.ravel(), minlength=num_labels + 1) / refine**2
    return counts
