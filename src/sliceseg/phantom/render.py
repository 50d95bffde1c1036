"""Rendering one phantom slice: subject parameters in, image, label map and true areas out.

The image is rendered at :data:`SUPERSAMPLING`× per pixel side and averaged (partial volume),
blurred by the point-spread function, multiplied by a smooth bias field, given Rician noise
(the magnitude of complex Gaussian noise) and quantised exactly as the DICOM file stores it.
Labels are sampled at pixel centres; the true areas come from the continuous shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sliceseg.phantom.anatomy import (
    NUM_ROIS,
    Anatomy,
    Contrast,
    body_radii,
    build_layers,
    sample_anatomy,
    sample_contrast,
)
from sliceseg.phantom.shapes import (
    ANGLES,
    Frame,
    SampleGrid,
    paint_image,
    paint_labels,
    true_pixel_areas,
)

RESCALE_SLOPE = 0.5
"""(0028,1053) RescaleSlope written to every file: modality value = stored × slope + intercept."""
RESCALE_INTERCEPT = -50.0
"""(0028,1052) RescaleIntercept written to every file."""
SUPERSAMPLING = 2
"""Image samples per pixel side; their mean is the pixel (partial-volume effect)."""
_TRUTH_SAMPLE_MM = 0.2
"""Sample pitch (mm) of the true areas at ROI boundaries (6–32 samples per pixel side): the areas
then agree with a far finer rasterisation of the shapes to within about 0.1 %."""


@dataclass(frozen=True)
class SubjectParams:
    """Everything drawn for one subject; rendering a slice from it adds only noise and texture.

    Attributes:
        name: subject id, e.g. ``"sub03"``.
        matrix_shape: (rows, cols) of every slice.
        spacing_mm: (row, col) pixel spacing, (0028,0030) PixelSpacing order.
        frame: where the body sits in the image at the first slice (offset and turn).
        rotation_drift_deg: extra in-plane turn reached at the last slice.
        slice_thickness_mm: (0018,0050) SliceThickness.
        slice_step_mm: distance between slice centres, (0018,0088) SpacingBetweenSlices.
        first_location_mm: (0020,1041) SliceLocation of the first slice; later ones are caudal.
        n_slices: slices in the series.
        anatomy: every size of the subject.
        contrast: tissue intensities.
        noise_fraction: Rician noise sigma as a fraction of the fat intensity.
        bias: coefficients of the log bias field in x, y, x², y², xy (x, y in -1..1 over the FOV).
        psf_sigma_px: Gaussian blur of the point-spread function, pixels.
    """

    name: str
    matrix_shape: tuple[int, int]
    spacing_mm: tuple[float, float]
    frame: Frame
    rotation_drift_deg: float
    slice_thickness_mm: float
    slice_step_mm: float
    first_location_mm: float
    n_slices: int
    anatomy: Anatomy
    contrast: Contrast
    noise_fraction: float
    bias: tuple[float, float, float, float, float]
    psf_sigma_px: float


@dataclass(frozen=True)
class SliceParams:
    """One slice of a subject: ``position`` 0 is the first (cranial) slice, 1 the last."""

    subject: SubjectParams
    position: float


@dataclass(frozen=True)
class PhantomSlice:
    """A rendered slice with its truth.

    Attributes:
        image: (rows, cols) float32 in modality units, exactly what a reader of the DICOM gets.
        label: (rows, cols) uint8, 0 background, ROI ``k`` as in ``ROI_NAMES``.
        spacing_mm: (row, col) pixel spacing.
        true_areas_mm2: ROI number (1..6) → area of the continuous shape in mm².
    """

    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, float]
    true_areas_mm2: dict[int, float]


def sample_subject(
    rng: np.random.Generator,
    *,
    name: str = "sub01",
    matrix_shape: tuple[int, int] = (256, 256),
    n_slices: int = 20,
) -> SubjectParams:
    """Draw one subject: anatomy, contrast, acquisition, and a field of view that fits the body.

    The pixel spacing follows from the body size and the matrix: the body fills 80–92 % of the
    image width (and never more than 94 % of its height); some subjects get row ≠ col spacing.

    Args:
        rng: the source of every random number.
        name: subject id.
        matrix_shape: (rows, cols).
        n_slices: slices in the series.

    Returns:
        The subject's parameters.

    Example:
        >>> subject = sample_subject(np.random.default_rng(0), matrix_shape=(224, 192))
    """
    anatomy = sample_anatomy(rng)
    contrast = sample_contrast(rng)
    rotation = rng.uniform(-6, 6)
    drift = rng.uniform(-1.5, 1.5)
    x_lo, x_hi, y_lo, y_hi = _body_extent(anatomy, rotation, drift)
    rows, cols = matrix_shape
    width, height = x_hi - x_lo, y_hi - y_lo
    col_mm = width / (cols * rng.uniform(0.80, 0.92))
    row_mm = col_mm * (rng.uniform(0.88, 1.12) if rng.random() < 0.4 else 1.0)
    grow = max(1.0, height / (0.94 * rows * row_mm))
    row_mm, col_mm = round(row_mm * grow, 4), round(col_mm * grow, 4)
    slack_x = max(0.0, 0.97 * cols * col_mm - width) / 2
    slack_y = max(0.0, 0.97 * rows * row_mm - height) / 2
    offset_x = rng.uniform(-0.8, 0.8) * slack_x - (x_lo + x_hi) / 2
    offset_y = rng.uniform(-0.8, 0.8) * slack_y - (y_lo + y_hi) / 2
    thickness = float(rng.choice([3.0, 4.0, 5.0]))
    return SubjectParams(
        name=name,
        matrix_shape=(rows, cols),
        spacing_mm=(row_mm, col_mm),
        frame=Frame(offset_x, offset_y, rotation),
        rotation_drift_deg=drift,
        slice_thickness_mm=thickness,
        slice_step_mm=round(thickness * rng.uniform(1.0, 1.2), 2),
        first_location_mm=round(rng.uniform(40, 160), 2),
        n_slices=n_slices,
        anatomy=anatomy,
        contrast=contrast,
        noise_fraction=rng.uniform(0.015, 0.035),
        bias=(
            rng.uniform(-0.1, 0.1),
            rng.uniform(-0.1, 0.1),
            rng.uniform(-0.06, 0.06),
            rng.uniform(-0.06, 0.06),
            rng.uniform(-0.04, 0.04),
        ),
        psf_sigma_px=rng.uniform(0.35, 0.6),
    )


def _body_extent(
    anatomy: Anatomy, rotation_deg: float, drift_deg: float
) -> tuple[float, float, float, float]:
    """Image-frame bounding box (x_lo, x_hi, y_lo, y_hi mm) of the body over the whole series."""
    xs, ys = [], []
    for t in (0.0, 0.5, 1.0):
        radii = body_radii(anatomy, t)
        frame = Frame(0.0, 0.0, rotation_deg + drift_deg * t)
        x, y = frame.to_image(radii * np.cos(ANGLES), radii * np.sin(ANGLES))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


def slice_params(subject: SubjectParams, index: int) -> SliceParams:
    """Return the parameters of slice ``index`` (0-based) of ``subject``'s series."""
    position = index / (subject.n_slices - 1) if subject.n_slices > 1 else 0.0
    return SliceParams(subject=subject, position=position)


def pixel_centres_mm(subject: SubjectParams) -> tuple[np.ndarray, np.ndarray]:
    """Return (xs, ys): column and row pixel-centre positions in mm from the image centre."""
    rows, cols = subject.matrix_shape
    row_mm, col_mm = subject.spacing_mm
    return (np.arange(cols) - (cols - 1) / 2) * col_mm, (np.arange(rows) - (rows - 1) / 2) * row_mm


def render_slice(params: SliceParams, rng: np.random.Generator) -> PhantomSlice:
    """Render one slice: the MR-like image, its label map and the true ROI areas.

    Args:
        params: the subject and the position along its series.
        rng: draws the tissue texture and the noise (the anatomy is fixed by ``params``).

    Returns:
        The slice. ``image`` is quantised exactly as the DICOM stores it (uint16 with
        :data:`RESCALE_SLOPE` and :data:`RESCALE_INTERCEPT`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> subject = sample_subject(rng, n_slices=5)
        >>> phantom_slice = render_slice(slice_params(subject, 2), rng)
        >>> sorted(phantom_slice.true_areas_mm2)
        [1, 2, 3, 4, 5, 6]
    """
    subject, t = params.subject, params.position
    rows, cols = subject.matrix_shape
    row_mm, col_mm = subject.spacing_mm
    f = subject.frame
    frame = Frame(f.offset_x_mm, f.offset_y_mm, f.rotation_deg + subject.rotation_drift_deg * t)
    layers = build_layers(subject.anatomy, subject.contrast, t)

    ss = SUPERSAMPLING
    xs, ys = pixel_centres_mm(subject)
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    fine_grid = SampleGrid(
        (xs[:, None] + sub[None, :] * col_mm).ravel(),
        (ys[:, None] + sub[None, :] * row_mm).ravel(),
        frame,
        dtype=np.float32,
    )
    textures = _textures(rng, (rows, cols), subject.spacing_mm)
    textures = [np.repeat(np.repeat(tex, ss, axis=0), ss, axis=1) for tex in textures]
    fine = paint_image(layers, fine_grid, textures)
    image = sum(fine[i::ss, j::ss] for i in range(ss) for j in range(ss)) * np.float32(ss**-2)
    image = ndimage.gaussian_filter(image, subject.psf_sigma_px)
    image *= _bias_field(subject, xs, ys).astype(np.float32)
    # Rician noise: the magnitude of the signal plus complex Gaussian noise.
    sigma = np.float32(subject.noise_fraction * subject.contrast.fat)
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    stored = to_stored(np.sqrt(real * real + imag * imag))

    grid = SampleGrid(xs, ys, frame)
    label = paint_labels(layers, grid)
    refine = min(max(math.ceil(max(row_mm, col_mm) / _TRUTH_SAMPLE_MM), 6), 32)
    areas = true_pixel_areas(layers, grid, label, num_labels=NUM_ROIS, refine=refine)
    areas *= row_mm * col_mm
    return PhantomSlice(
        image=(stored * RESCALE_SLOPE + RESCALE_INTERCEPT).astype(np.float32),
        label=label,
        spacing_mm=subject.spacing_mm,
        true_areas_mm2={k: float(areas[k]) for k in range(1, NUM_ROIS + 1)},
    )


def _textures(
    rng: np.random.Generator, shape: tuple[int, int], spacing_mm: tuple[float, float]
) -> list[np.ndarray]:
    """Unit-std noise fields smoothed at about 0.5 pixel, 1.5 mm and 4 mm (FINE, MEDIUM, COARSE)."""
    fields = []
    for sigma_mm in (None, 1.5, 4.0):
        noise = rng.standard_normal(shape, dtype=np.float32)
        sigma = (0.5, 0.5) if sigma_mm is None else tuple(sigma_mm / d for d in spacing_mm)
        smooth = ndimage.gaussian_filter(noise, sigma, truncate=3.0)
        smooth *= 1 / smooth.std()
        fields.append(smooth)
    return fields


def _bias_field(subject: SubjectParams, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    x = (xs / (xs[-1] - xs[0] + 1e-9) * 2)[None, :]
    y = (ys / (ys[-1] - ys[0] + 1e-9) * 2)[:, None]
    a, b, c, d, e = subject.bias
    return np.exp(a * x + b * y + c * x * x + d * y * y + e * x * y)


def to_stored(values: np.ndarray) -> np.ndarray:
    """Modality values to the uint16 stored values of the DICOM (rounded, clipped)."""
    stored = np.rint((values - np.float32(RESCALE_INTERCEPT)) * np.float32(1 / RESCALE_SLOPE))
    return np.clip(stored, 0, 65535).astype(np.uint16)
