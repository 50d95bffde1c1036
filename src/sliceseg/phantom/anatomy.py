"""The phantom's lumbar anatomy: per-subject numbers, and the painted layers of one slice.

Coordinates are the anatomy frame of :mod:`sliceseg.phantom.shapes`: ``u`` mm towards the
patient's left (image right), ``v`` mm towards posterior (image down), origin at the body centre.
A slice is at ``position`` 0 (first, cranial, about L3) to 1 (last, caudal, about L4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sliceseg.phantom.shapes import (
    ANGLES,
    COS,
    SIN,
    Intersection,
    Layer,
    Shape,
    Star,
    SuperEllipse,
    Tissue,
    encloses,
    radius_at,
)

ROI_VERTEBRA, ROI_PSOAS_R, ROI_PSOAS_L, ROI_ERECTOR_R, ROI_ERECTOR_L, ROI_FAT = 1, 2, 3, 4, 5, 6
NUM_ROIS = 6
_PSOAS_FAT_PLANE_MM = 2.5
"""Width of the fat plane around each psoas, before the subject's size factor."""
FINE, MEDIUM, COARSE = 0, 1, 2
"""Texture fields: unit-std noise smoothed at about 0.5 pixel, 1.5 mm and 4 mm."""

_ROOTS = ((-4.0, 0.1), (4.0, 0.1), (-2.0, 0.45), (2.0, 0.45), (-5.5, -0.2), (5.5, -0.2), (0.0, 0.5))
"""Cauda equina roots: (u mm, v as a fraction of the canal half-depth) from the canal centre."""


@dataclass(frozen=True)
class BowelLoop:
    """One bowel loop, drifting and swelling smoothly along the series.

    ``u_frac`` places it across the abdominal cavity (-1 right wall, 1 left wall), ``v_frac`` from
    the front wall (0) to just in front of the spine (1). ``wobble`` holds (amplitude, phase) of
    radial harmonics 2, 3 and 4; ``drift_mm`` is its displacement over the series; ``content`` is
    the lumen intensity (modality units: fluid dark, faeces grey, fatty content bright, gas black).
    """

    u_frac: float
    v_frac: float
    radius_mm: float
    aspect: float
    angle_deg: float
    wobble: tuple[tuple[float, float], ...]
    drift_mm: tuple[float, float]
    swell: float
    swell_phase: float
    wall_mm: float
    content: float


@dataclass(frozen=True)
class Anatomy:
    """Every size of one subject, in mm unless stated.

    ``size`` scales the skeleton and muscles; ``*_half_mm`` are half axes; ``*_growth`` is the
    relative change of a size from the first to the last slice. The muscle wall (``fascia_*``:
    half width, depth in front of the centre, superellipse power, radial harmonics) is the inner
    border of the subcutaneous fat, ``fat_mm`` (front, side, back) thick; its depth behind the
    centre follows from the back muscles. ``wall_mm`` is the abdominal wall muscle thickness
    (front, side). ``bifurcation_at`` and ``kidney_until`` are series positions (0–1) where the
    aorta divides and the lower renal poles end. ``fatty_spots`` are (u, v, radius) streaks of fat
    in the back muscles, (u, v) relative to the muscle's half axes.
    """

    size: float
    vertebra_half_mm: tuple[float, float]
    vertebra_v_mm: float
    psoas_half_mm: tuple[float, float]
    psoas_angle_deg: float
    psoas_growth: float
    erector_half_mm: tuple[float, float]
    erector_growth: float
    quadratus_half_mm: tuple[float, float]
    fascia_half_width_mm: float
    fascia_front_mm: float
    fascia_power: float
    fascia_wobble: tuple[tuple[float, float], ...]
    fat_mm: tuple[float, float, float]
    fat_growth: float
    wall_mm: tuple[float, float]
    skin_mm: float
    bifurcation_at: float
    kidney_until: float
    bowel: tuple[BowelLoop, ...]
    fatty_spots: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Contrast:
    """T1-like tissue intensities (modality units): fat bright, all muscles alike.

    ``psoas``, ``erector`` and ``wall`` are factors (close to 1) on ``muscle``.
    """

    fat: float
    muscle: float
    psoas: float
    erector: float
    wall: float
    marrow: float
    csf: float


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one subject's anatomy."""
    s = rng.uniform(0.86, 1.06)
    adiposity = rng.uniform(0.0, 1.0)

    def fat(lo: float, hi: float) -> float:
        return float(lo + (hi - lo) * np.clip(adiposity + rng.normal(0, 0.15), 0, 1))

    loops = int(rng.integers(18, 24) + 12 * (1 - adiposity))
    bowel = tuple(_sample_loop(rng, s) for _ in range(loops))
    spots = tuple(
        (rng.uniform(-0.7, 0.2), rng.uniform(-0.5, 0.6), rng.uniform(0.8, 2.2))
        for _ in range(int(rng.integers(2, 9)))
    )
    return Anatomy(
        size=s,
        vertebra_half_mm=(24 * s * rng.uniform(0.93, 1.07), 17 * s * rng.uniform(0.93, 1.07)),
        vertebra_v_mm=14 * s,
        psoas_half_mm=(20 * s * rng.uniform(0.8, 1.15), 14.5 * s * rng.uniform(0.8, 1.15)),
        psoas_angle_deg=rng.uniform(40, 62),
        psoas_growth=rng.uniform(0.12, 0.3),
        erector_half_mm=(28 * s * rng.uniform(0.85, 1.15), 23 * s * rng.uniform(0.88, 1.12)),
        erector_growth=rng.uniform(-0.08, 0.05),
        quadratus_half_mm=(15 * s * rng.uniform(0.8, 1.2), 6.5 * s * rng.uniform(0.8, 1.2)),
        fascia_half_width_mm=s * rng.uniform(94, 114) + 10 * adiposity,
        fascia_front_mm=s * rng.uniform(62, 80) + 18 * adiposity,
        fascia_power=rng.uniform(2.0, 2.5),
        fascia_wobble=tuple((rng.uniform(0, 0.025), rng.uniform(0, 2 * np.pi)) for _ in range(3)),
        fat_mm=(fat(5, 32), fat(4, 26), fat(4, 22)),
        fat_growth=rng.uniform(0.0, 0.12),
        wall_mm=(rng.uniform(8, 12) * s, rng.uniform(11, 16) * s),
        skin_mm=rng.uniform(1.6, 2.4),
        bifurcation_at=rng.uniform(0.35, 1.1),
        kidney_until=rng.uniform(-0.1, 0.4),
        bowel=bowel,
        fatty_spots=spots,
    )


def _sample_loop(rng: np.random.Generator, s: float) -> BowelLoop:
    kind = rng.choice(4, p=[0.35, 0.35, 0.18, 0.12])
    contents = (rng.uniform(110, 220), rng.uniform(260, 480), rng.uniform(560, 780), 25.0)
    return BowelLoop(
        u_frac=rng.uniform(-0.8, 0.8),
        v_frac=rng.uniform(0.0, 1.0),
        radius_mm=s * rng.uniform(9, 22),
        aspect=rng.uniform(0.65, 1.0),
        angle_deg=rng.uniform(0, 180),
        wobble=tuple((rng.uniform(0, 0.1), rng.uniform(0, 2 * np.pi)) for _ in range(3)),
        drift_mm=(rng.normal(0, 12), rng.normal(0, 12)),
        swell=rng.uniform(0, 0.35),
        swell_phase=rng.uniform(0, 2 * np.pi),
        wall_mm=rng.uniform(1.5, 3.0),
        content=float(contents[kind]),
    )


def sample_contrast(rng: np.random.Generator) -> Contrast:
    """Draw one subject's tissue intensities (muscle factors within a few percent of each other)."""
    return Contrast(
        fat=rng.uniform(780, 920),
        muscle=rng.uniform(270, 330),
        psoas=rng.uniform(0.96, 1.04),
        erector=rng.uniform(0.96, 1.04),
        wall=rng.uniform(0.95, 1.06),
        marrow=rng.uniform(480, 600),
        csf=rng.uniform(130, 190),
    )


def _superellipse_radii(a: float, b_front: float, b_back: float, p: float, q: float) -> np.ndarray:
    """Radii of a superellipse with different front (v < 0, power p) and back (power q) halves."""
    b = np.where(SIN < 0, b_front, b_back)
    power = np.where(SIN < 0, p, q)
    return (np.abs(COS / a) ** power + np.abs(SIN / b) ** power) ** (-1.0 / power)


_COS_K = {k: np.cos(k * ANGLES) for k in (2, 3, 4)}
_SIN_K = {k: np.sin(k * ANGLES) for k in (2, 3, 4)}


def _harmonics(wobble: tuple[tuple[float, float], ...]) -> np.ndarray:
    """``1 + sum(amp * cos(k * phi + phase))`` for harmonics k = 2, 3, 4."""
    out = np.ones_like(ANGLES)
    for k, (amp, phase) in enumerate(wobble, start=2):
        out += amp * (_COS_K[k] * math.cos(phase) - _SIN_K[k] * math.sin(phase))
    return out


@dataclass(frozen=True)
class _Plan:
    """Derived positions shared by several layers of one slice."""

    vb: tuple[float, float, float]  # v centre, half width, half depth
    canal: tuple[float, float, float]  # v centre, half width, half depth
    psoas: tuple[float, float, float, float]  # |u| centre, v centre, half long, half short
    erector: tuple[float, float, float, float]  # |u| centre, v centre, half width, half depth
    fascia: np.ndarray
    wall: np.ndarray


def _plan(a: Anatomy, t: float) -> _Plan:
    """Place the vertebra, canal, psoas, back muscles and muscle wall at series position ``t``."""
    s = a.size
    vb_a, vb_b = a.vertebra_half_mm
    vb_a *= 1 + 0.03 * math.sin(math.pi * t)
    vb_v = a.vertebra_v_mm
    canal = (vb_v + vb_b + 8.5 * s, 11 * s, 7.5 * s)
    grow = 1 + a.psoas_growth * t
    ps_a, ps_b = a.psoas_half_mm[0] * grow, a.psoas_half_mm[1] * grow
    ang = math.radians(a.psoas_angle_deg)
    ps_hu = math.hypot(ps_a * math.cos(ang), ps_b * math.sin(ang))
    psoas = (0.9 * vb_a + 0.8 * ps_hu, vb_v - 0.2 * vb_b, ps_a, ps_b)
    es_a, es_b = (x * (1 + a.erector_growth * t) for x in a.erector_half_mm)
    es_v = canal[0] - 1.5 * s + es_b
    erector = (4.0 * s + es_a, es_v, es_a, es_b)
    widen = 1 + 0.04 * t
    back = es_v + 0.8 * es_b
    fascia = _superellipse_radii(
        a.fascia_half_width_mm * widen, a.fascia_front_mm, back, a.fascia_power, a.fascia_power + 1
    )
    fascia *= _harmonics(a.fascia_wobble)
    fascia *= 1 - 0.04 * np.exp(-(((ANGLES - np.pi / 2) / 0.12) ** 2))
    # The abdominal wall muscles stop posterolaterally, where the back muscles begin.
    end = math.atan2(es_v, erector[0] + es_a * 1.1)
    off_back = np.abs(np.angle(np.exp(1j * (ANGLES - np.pi / 2))))
    taper = np.clip((off_back - (np.pi / 2 - end)) / 0.35, 0, 1)
    front, side = a.wall_mm
    wall = (side * COS**2 + front * SIN**2) * taper**2 * (3 - 2 * taper)
    return _Plan((vb_v, vb_a, vb_b), canal, psoas, erector, fascia, wall)


def _skin_inner(a: Anatomy, p: _Plan, t: float) -> np.ndarray:
    """Radii of the inner skin surface: the muscle wall plus the subcutaneous fat thickness."""
    f_front, f_side, f_back = (x * (1 + a.fat_growth * t) for x in a.fat_mm)
    fat_mm = (
        f_side
        + (f_front - f_side) * np.maximum(0, -SIN) ** 1.5
        + (f_back - f_side) * np.maximum(0, SIN) ** 1.5
    )
    return p.fascia + fat_mm


def body_radii(a: Anatomy, t: float) -> np.ndarray:
    """Radii (mm, at :data:`ANGLES`) of the body outline (outer skin) at series position ``t``."""
    return _skin_inner(a, _plan(a, t), t) + a.skin_mm


def build_layers(a: Anatomy, c: Contrast, t: float) -> list[Layer]:
    """Return the painted layers of the slice at series position ``t`` (0 first, 1 last).

    Label precedence where shapes overlap (a later layer wins, in the labels and the true areas
    alike): subcutaneous fat (6) < everything inside the muscle wall (0) < erector spinae and
    multifidus (4, 5; clipped to the wall) < psoas (2, 3) < posterior elements and spinal canal
    (0) < vertebral body (1).
    """
    p = _plan(a, t)
    skin_inner = _skin_inner(a, p, t)
    fascia = Star(0.0, 0.0, p.fascia)
    cavity = Star(0.0, 0.0, p.fascia - p.wall - 0.5)
    muscle = c.muscle
    layers = [
        Layer(Star(0.0, 0.0, skin_inner + a.skin_mm), Tissue(0.55 * c.fat, FINE, 0.05), None),
        Layer(Star(0.0, 0.0, skin_inner), Tissue(c.fat, MEDIUM, 0.035), ROI_FAT),
        Layer(fascia, Tissue(0.96 * c.fat, MEDIUM, 0.04), 0),
    ]
    # Everything inside the muscle wall is unlabelled (0) until a ROI is painted, so the viscera,
    # the wall muscles and the quadratus keep the label (None): the same labels, less work.
    layers += _viscera(a, c, p, t, cavity)
    wall = Star(0.0, 0.0, p.fascia, p.fascia - p.wall)
    layers.append(Layer(wall, Tissue(muscle * c.wall, FINE, 0.05), None))
    layers += _back_and_psoas(a, c, p, fascia)
    layers += _spine(a, c, p)
    layers += _details(a, c, p)
    return layers


def _viscera(a: Anatomy, c: Contrast, p: _Plan, t: float, cavity: Star) -> list[Layer]:
    """Bowel loops, kidneys and great vessels: unlabelled, their greys overlap fat and muscle."""
    s = a.size
    vb_v, vb_a, vb_b = p.vb
    front = radius_at(p.fascia - p.wall, -np.pi / 2)
    half_width = radius_at(p.fascia - p.wall, 0.0)
    layers: list[Layer] = []
    for loop in a.bowel:
        scale = loop.radius_mm * (1 + loop.swell * math.sin(2 * math.pi * t + loop.swell_phase))
        u = loop.u_frac * half_width + loop.drift_mm[0] * t
        v = -front + 8 + loop.v_frac * (front + vb_v - vb_b - 14) + loop.drift_mm[1] * t
        turn = math.radians(loop.angle_deg)
        along = COS * math.cos(turn) + SIN * math.sin(turn)  # cos and sin of (phi - turn)
        across = SIN * math.cos(turn) - COS * math.sin(turn)
        radii = scale / np.sqrt(along * along + (across / loop.aspect) ** 2)
        radii *= _harmonics(loop.wobble)
        wall = Star(u, v, radii)
        outer: Shape = wall
        inner: Shape = Star(u, v, np.maximum(radii - loop.wall_mm, 0.0))
        if not encloses(cavity, wall):  # clip only the loops that reach the muscle wall
            outer, inner = Intersection(wall, cavity), Intersection(inner, cavity)
        layers.append(Layer(outer, Tissue(1.1 * c.muscle, FINE, 0.06), None))
        layers.append(Layer(inner, Tissue(loop.content, COARSE, 0.18), None))
    if t < a.kidney_until:
        k = math.sqrt(1 - t / a.kidney_until)
        for side in (-1, 1):
            cu, cv = side * (vb_a + 48 * s), vb_v - 4 * s
            kidney = SuperEllipse(cu, cv, 24 * s * k, 15 * s * k, side * -65)
            cortex = Tissue(1.3 * c.muscle, FINE, 0.05)
            layers.append(Layer(Intersection(kidney, cavity), cortex, None))
            sinus = SuperEllipse(cu - side * 6 * s * k, cv, 9 * s * k, 5 * s * k, side * -65)
            layers.append(Layer(sinus, Tissue(0.8 * c.fat, MEDIUM, 0.05), None))
    vessel_v = vb_v - vb_b - 9 * s
    if t < a.bifurcation_at:
        aorta = SuperEllipse(0.35 * vb_a, vessel_v, 9 * s, 9 * s)
        layers.append(Layer(aorta, Tissue(70.0), None))
    else:
        spread = 4 * s + 40 * s * (t - a.bifurcation_at)
        for side in (-1, 1):
            iliac = SuperEllipse(side * spread, vessel_v, 6.5 * s, 6.5 * s)
            layers.append(Layer(iliac, Tissue(70.0), None))
    ivc = SuperEllipse(-0.65 * vb_a, vessel_v + 1 * s, 11 * s, 7 * s, 10)
    layers.append(Layer(ivc, Tissue(0.7 * c.muscle, MEDIUM, 0.1), None))
    return layers


def _back_and_psoas(a: Anatomy, c: Contrast, p: _Plan, fascia: Star) -> list[Layer]:
    """Quadratus lumborum (unlabelled), erector spinae–multifidus and psoas pairs."""
    vb_v, _, vb_b = p.vb
    ps_u, ps_v, ps_a, ps_b = p.psoas
    es_u, es_v, es_a, es_b = p.erector
    layers: list[Layer] = []
    ql_a, ql_b = a.quadratus_half_mm
    for side in (-1, 1):
        ql = SuperEllipse(side * (es_u + 0.75 * es_a), vb_v + 1.0 * vb_b, ql_a, ql_b, side * 25)
        layers.append(Layer(Intersection(ql, fascia), Tissue(c.muscle, FINE, 0.05), None))
    for side, roi in ((-1, ROI_ERECTOR_R), (1, ROI_ERECTOR_L)):
        es = SuperEllipse(side * es_u, es_v, es_a, es_b, side * 6, 2.6)
        tissue = Tissue(c.muscle * c.erector, FINE, 0.05)
        layers.append(Layer(Intersection(es, fascia), tissue, roi))
    angle = a.psoas_angle_deg
    # The psoas is retroperitoneal: a thin fat plane (its fascia, perirenal fat) parts it from
    # the kidney and bowel, as on real MR. Without it those touched the psoas with no edge at
    # all, which no reader could draw. Unlabelled, so the truth stays the psoas's own shape.
    rim = _PSOAS_FAT_PLANE_MM * a.size
    fat_plane = Tissue(0.85 * c.fat, MEDIUM, 0.04)
    for side, roi in ((-1, ROI_PSOAS_R), (1, ROI_PSOAS_L)):
        plane = SuperEllipse(side * ps_u, ps_v, ps_a + rim, ps_b + rim, -side * angle, 2.2)
        layers.append(Layer(plane, fat_plane, 0))
        psoas = SuperEllipse(side * ps_u, ps_v, ps_a, ps_b, -side * angle, 2.2)
        tissue = Tissue(c.muscle * c.psoas, FINE, 0.05)
        layers.append(Layer(psoas, tissue, roi))  # deep: never reaches the fascia
    return layers


def _bone(shape: SuperEllipse, c: Contrast, cortex_mm: float) -> list[Layer]:
    inner = SuperEllipse(
        shape.cu,
        shape.cv,
        max(shape.a - cortex_mm, 0.1),
        max(shape.b - cortex_mm, 0.1),
        shape.angle_deg,
        shape.power,
    )
    return [
        Layer(shape, Tissue(90.0, FINE, 0.1), 0),
        Layer(inner, Tissue(0.85 * c.marrow, FINE, 0.12), None),
    ]


def _spine(a: Anatomy, c: Contrast, p: _Plan) -> list[Layer]:
    """Posterior elements and canal (unlabelled), then the vertebral body (ROI 1) on top."""
    s = a.size
    vb_v, vb_a, vb_b = p.vb
    canal_v, canal_a, canal_b = p.canal
    layers: list[Layer] = []
    for side in (-1, 1):
        layers += _bone(SuperEllipse(side * 0.6 * vb_a, vb_v + vb_b + 3 * s, 5 * s, 8 * s), c, 1.5)
        lamina = SuperEllipse(side * 8 * s, canal_v + 8 * s, 11 * s, 3.2 * s, side * 48, 2.4)
        layers += _bone(lamina, c, 1.3)
    spine_len = 0.5 * (p.erector[1] + 0.8 * p.erector[3] - canal_v - 14 * s)
    spinous = SuperEllipse(0.0, canal_v + 13 * s + spine_len, spine_len, 3.3 * s, 90, 2.5)
    layers += _bone(spinous, c, 1.3)
    epidural = SuperEllipse(0.0, canal_v, canal_a + 2 * s, canal_b + 2 * s, 0, 2.2)
    layers.append(Layer(epidural, Tissue(0.92 * c.fat, MEDIUM, 0.05), 0))
    layers.append(Layer(SuperEllipse(0.0, canal_v, canal_a, canal_b, 0, 2.2), Tissue(c.csf), 0))
    for du, dv in _ROOTS:
        root = SuperEllipse(du * s, canal_v + dv * canal_b, 1.2 * s, 1.2 * s)
        layers.append(Layer(root, Tissue(0.9 * c.muscle), None))
    radii = _superellipse_radii(vb_a, vb_b, vb_b, 2.3, 2.3)
    radii *= 1 - 0.13 * np.exp(-(((ANGLES - np.pi / 2) / 0.45) ** 2))
    layers.append(Layer(Star(0.0, vb_v, radii), Tissue(85.0, FINE, 0.1), ROI_VERTEBRA))
    marrow = Star(0.0, vb_v, np.maximum(radii - 1.6, 0.0))
    layers.append(Layer(marrow, Tissue(c.marrow, FINE, 0.1), None))
    vein = SuperEllipse(0.0, vb_v + 0.55 * vb_b, 3.5 * s, 1.6 * s)
    layers.append(Layer(vein, Tissue(0.5 * c.marrow), None))
    return layers


def _details(a: Anatomy, c: Contrast, p: _Plan) -> list[Layer]:
    """Decorative detail that keeps the labels: fascia, fat planes, linea alba, fatty streaks."""
    s = a.size
    layers = [Layer(Star(0.0, 0.0, p.fascia, p.fascia - 1.0), Tissue(0.45 * c.muscle), None)]
    for side in (-1, 1):  # fat planes between the oblique muscles, one Star per flank
        flank = (side * COS > 0.45) & (p.wall > 4)
        for frac in (0.33, 0.66):
            mid = np.where(flank, p.fascia - frac * p.wall, 0.0)
            half = np.where(flank, 0.45, 0.0)
            plane = Star(0.0, 0.0, mid + half, mid - half)
            layers.append(Layer(plane, Tissue(0.75 * c.fat), None))
    front = radius_at(p.fascia, -np.pi / 2)
    wall_front = a.wall_mm[0]
    alba = SuperEllipse(0.0, -front + wall_front / 2, 1.2, wall_front / 2 + 0.5)
    layers.append(Layer(alba, Tissue(110.0), None))
    es_u, es_v, es_a, es_b = p.erector
    for side in (-1, 1):
        es = SuperEllipse(side * es_u, es_v, es_a, es_b, side * 6, 2.6)
        septum = SuperEllipse(side * (es_u - 0.1 * es_a), es_v, 0.85 * es_b, 0.6, side * 80)
        layers.append(Layer(Intersection(septum, es), Tissue(0.7 * c.fat), None))
        for du, dv, r in a.fatty_spots:
            spot = SuperEllipse(side * (es_u + du * es_a), es_v + dv * es_b, r * s, 0.6 * r * s)
            layers.append(Layer(Intersection(spot, es), Tissue(0.6 * c.fat), None))
    return layers


__all__ = [
    "NUM_ROIS",
    "Anatomy",
    "BowelLoop",
    "Contrast",
    "body_radii",
    "build_layers",
    "sample_anatomy",
    "sample_contrast",
]
