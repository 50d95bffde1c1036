"""A synthetic lumbar MR phantom with known areas: DICOM series, label maps and ``truth.csv``.

Each subject is an axial T1-like series from about L3 to L4 with six ROIs (:data:`ROI_NAMES`)
among unlabelled look-alikes: abdominal wall and quadratus lumborum muscles as grey as the psoas,
visceral fat as bright as the subcutaneous fat, bowel loops of every intensity, and the
posterior elements of the spine. The image is rendered at 2× supersampling (partial volume), blurred,
multiplied by a smooth bias field and given Rician noise. Labels are sampled at pixel centres;
the true areas come from the continuous shapes (see :mod:`sliceseg._phantom_shapes`).

Right and left follow the radiological convention: the patient's right is on the image left
(small column index). Rows run anterior to posterior.
"""

from __future__ import annotations

import csv
import io
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from sliceseg._phantom_anatomy import (
    Anatomy,
    Contrast,
    body_radii,
    build_layers,
    sample_anatomy,
    sample_contrast,
)
from sliceseg._phantom_files import dicom_bytes, label_bytes, series_ids
from sliceseg._phantom_shapes import (
    ANGLES,
    Frame,
    SampleGrid,
    paint_image,
    paint_labels,
    true_pixel_areas,
)
from sliceseg.errors import ConfigError
from sliceseg.io import atomic_write_bytes, atomic_write_text, prepare_output_dir

ROI_NAMES: tuple[str, ...] = (
    "vertebral body",
    "right psoas major",
    "left psoas major",
    "right multifidus-erector spinae",
    "left multifidus-erector spinae",
    "subcutaneous fat",
)
"""ROI names; ROI ``k`` is ``ROI_NAMES[k - 1]``. Right/left are the patient's."""

DEFAULT_MATRIX_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (224, 192), (256, 256), (192, 256))
"""(rows, cols) per subject, cycled: subject ``i`` (from 1) gets entry ``(i - 1) % len``."""

RESCALE_SLOPE = 0.5
"""(0028,1053) RescaleSlope written to every file: modality value = stored × slope + intercept."""
RESCALE_INTERCEPT = -50.0
"""(0028,1052) RescaleIntercept written to every file."""
SUPERSAMPLING = 2
"""Image samples per pixel side; their mean is the pixel (partial-volume effect)."""

_MIN_SIZE, _MAX_SIZE = 64, 2048


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
        label: (rows, cols) uint8, 0 background, ROI ``k`` = ``ROI_NAMES[k - 1]``.
        spacing_mm: (row, col) pixel spacing.
        true_areas_mm2: ROI number (1..6) → area of the continuous shape in mm².
    """

    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, float]
    true_areas_mm2: dict[int, float]


@dataclass(frozen=True)
class PhantomSummary:
    """What :func:`generate_phantom` wrote."""

    out_dir: Path
    train_dir: Path
    test_dir: Path
    n_train_slices: int
    n_test_slices: int
    truth_csv: Path
    roi_names: tuple[str, ...]


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
    image = fine.reshape(rows, ss, cols, ss).mean(axis=(1, 3))
    image = ndimage.gaussian_filter(image, subject.psf_sigma_px)
    image *= _bias_field(subject, xs, ys)
    sigma = subject.noise_fraction * subject.contrast.fat
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    stored = _to_stored(np.hypot(real, imag))

    grid = SampleGrid(xs, ys, frame)
    label = paint_labels(layers, grid)
    areas = true_pixel_areas(layers, grid, label, num_labels=len(ROI_NAMES)) * row_mm * col_mm
    return PhantomSlice(
        image=(stored * RESCALE_SLOPE + RESCALE_INTERCEPT).astype(np.float32),
        label=label,
        spacing_mm=subject.spacing_mm,
        true_areas_mm2={k: float(areas[k]) for k in range(1, len(ROI_NAMES) + 1)},
    )


def _textures(
    rng: np.random.Generator, shape: tuple[int, int], spacing_mm: tuple[float, float]
) -> list[np.ndarray]:
    """Unit-std noise fields smoothed at about 0.5 pixel, 1.5 mm and 4 mm (FINE, MEDIUM, COARSE)."""
    fields = []
    for sigma_mm in (None, 1.5, 4.0):
        noise = rng.standard_normal(shape)
        sigma = (0.5, 0.5) if sigma_mm is None else tuple(sigma_mm / d for d in spacing_mm)
        smooth = ndimage.gaussian_filter(noise, sigma)
        fields.append((smooth / smooth.std()).astype(np.float32))
    return fields


def _bias_field(subject: SubjectParams, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    x = (xs / (xs[-1] - xs[0] + 1e-9) * 2)[None, :]
    y = (ys / (ys[-1] - ys[0] + 1e-9) * 2)[:, None]
    a, b, c, d, e = subject.bias
    return np.exp(a * x + b * y + c * x * x + d * y * y + e * x * y)


def _to_stored(values: np.ndarray) -> np.ndarray:
    stored = np.rint((values - RESCALE_INTERCEPT) / RESCALE_SLOPE)
    return np.clip(stored, 0, 65535).astype(np.uint16)


def _subject_rng(seed: int, index: int, slice_index: int | None = None) -> np.random.Generator:
    key = (index,) if slice_index is None else (index, slice_index + 1)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def make_phantom_arrays(
    n: int, *, size: tuple[int, int] = (256, 256), seed: int = 0, slices_per_subject: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``n`` phantom slices in memory, for tests and benchmarks (no files).

    Args:
        n: number of slices.
        size: (rows, cols) of every slice.
        seed: the same seed gives the same arrays.
        slices_per_subject: consecutive slices drawn from one subject.

    Returns:
        ``images`` (n, rows, cols) float32 modality units, ``labels`` (n, rows, cols) uint8
        0..6, and ``spacings`` (n, 2) float64 (row, col) mm.

    Raises:
        ConfigError: ``n``, ``size`` or ``slices_per_subject`` is out of range.

    Example:
        >>> images, labels, spacings = make_phantom_arrays(4, size=(128, 128))
        >>> images.shape, labels.max()
        ((4, 128, 128), 6)
    """
    _check_count(n, name="n", minimum=1)
    _check_count(slices_per_subject, name="slices_per_subject", minimum=1)
    _check_size(size)
    images = np.zeros((n, *size), np.float32)
    labels = np.zeros((n, *size), np.uint8)
    spacings = np.zeros((n, 2), np.float64)
    for i in range(n):
        subject_index, slice_index = divmod(i, slices_per_subject)
        subject = sample_subject(
            _subject_rng(seed, subject_index + 1),
            name=f"sub{subject_index + 1:02d}",
            matrix_shape=tuple(size),
            n_slices=slices_per_subject,
        )
        rendered = render_slice(
            slice_params(subject, slice_index), _subject_rng(seed, subject_index + 1, slice_index)
        )
        images[i], labels[i], spacings[i] = rendered.image, rendered.label, rendered.spacing_mm
    return images, labels, spacings


def _check_count(value: int, *, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r}: expected a whole number >= {minimum}.")


def _check_size(size: Sequence[int]) -> None:
    ok = len(size) == 2 and all(
        isinstance(v, (int, np.integer)) and _MIN_SIZE <= v <= _MAX_SIZE for v in size
    )
    if not ok:
        raise ConfigError(
            f"matrix size {tuple(size)!r}: expected (rows, cols), each a whole number from "
            f"{_MIN_SIZE} to {_MAX_SIZE}; e.g. (256, 256) or (224, 192)."
        )


TRUTH_COLUMNS: tuple[str, ...] = (
    "split",
    "subject",
    "key",
    "file",
    "slice_index",
    "instance_number",
    "roi",
    "roi_name",
    "area_mm2",
    "row_spacing_mm",
    "col_spacing_mm",
)
"""Columns of ``truth.csv``, one row per slice and ROI."""


def generate_phantom(
    out_dir: Path | str,
    *,
    train_subjects: int = 8,
    test_subjects: int = 2,
    slices_per_subject: int = 20,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
    matrix_sizes: Sequence[tuple[int, int]] | None = None,
) -> PhantomSummary:
    """Write the phantom: DICOM series, label maps, true areas and ROI names.

    Layout (``key`` = path below ``dicoms/`` or ``labels/`` without suffix)::

        out_dir/labels.txt                                 one ROI name per line (6 lines)
        out_dir/truth.csv                                  see TRUTH_COLUMNS
        out_dir/train/labels.txt                           copy, read by the dataset checker
        out_dir/train/dicoms/sub01/sub01_s00.dcm ...
        out_dir/train/labels/sub01/sub01_s00.png           odd subjects PNG, even subjects NPY
        out_dir/test/...                                   the last ``test_subjects`` subjects

    ``truth.csv`` holds, per slice and ROI, the area of the continuous shape (mm²); its ``file``
    column is the DICOM path relative to ``out_dir``. Subject ``i`` gets
    ``matrix_sizes[(i - 1) % len(matrix_sizes)]``; the same ``seed`` writes the same pixels and labels.

    Args:
        out_dir: folder to write; created if missing.
        train_subjects: subjects in ``train/`` (``sub01`` ...).
        test_subjects: further subjects in ``test/``, never in ``train/``.
        slices_per_subject: slices per series.
        seed: seed of every random draw.
        overwrite: allow a non-empty ``out_dir``; its ``train/`` and ``test/`` are replaced.
        progress: show a progress bar (only when stderr is a terminal).
        matrix_sizes: (rows, cols) per subject, cycled; default :data:`DEFAULT_MATRIX_SIZES`.

    Returns:
        Where everything went and how many slices.

    Raises:
        ConfigError: ``out_dir`` is not empty and ``overwrite`` is False, or a count or matrix
            size is out of range.

    Example:
        >>> summary = generate_phantom(tmp_path / "phantom", train_subjects=2, test_subjects=1,
        ...                            slices_per_subject=3, matrix_sizes=[(128, 128)])
        >>> summary.n_train_slices, summary.n_test_slices
        (6, 3)
    """
    _check_count(train_subjects, name="train_subjects", minimum=1)
    _check_count(test_subjects, name="test_subjects", minimum=0)
    _check_count(slices_per_subject, name="slices_per_subject", minimum=1)
    sizes = DEFAULT_MATRIX_SIZES if matrix_sizes is None else tuple(map(tuple, matrix_sizes))
    if not sizes:
        raise ConfigError("matrix_sizes is empty: expected at least one (rows, cols).")
    for size in sizes:
        _check_size(size)
    out = prepare_output_dir(out_dir, overwrite=overwrite)
    for split in ("train", "test"):
        if (out / split).is_dir():
            shutil.rmtree(out / split)
    total = train_subjects + test_subjects
    width = max(2, len(str(total)))
    rows: list[dict[str, object]] = []
    bar = tqdm(
        total=total * slices_per_subject,
        desc="phantom",
        unit="slice",
        disable=not (progress and sys.stderr.isatty()),
    )
    with bar:
        for index in range(1, total + 1):
            subject = sample_subject(
                _subject_rng(seed, index),
                name=f"sub{index:0{width}d}",
                matrix_shape=sizes[(index - 1) % len(sizes)],
                n_slices=slices_per_subject,
            )
            split = "train" if index <= train_subjects else "test"
            rows += _write_subject(out, split, subject, index=index, seed=seed, bar=bar)
    truth_csv = out / "truth.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(truth_csv, buffer.getvalue())
    names = "".join(f"{name}\n" for name in ROI_NAMES)
    for folder in (out, out / "train", out / "test"):
        atomic_write_text(folder / "labels.txt", names)
    return PhantomSummary(
        out_dir=out,
        train_dir=out / "train",
        test_dir=out / "test",
        n_train_slices=train_subjects * slices_per_subject,
        n_test_slices=test_subjects * slices_per_subject,
        truth_csv=truth_csv,
        roi_names=ROI_NAMES,
    )


def _write_subject(
    out: Path, split: str, subject: SubjectParams, *, index: int, seed: int, bar: tqdm
) -> list[dict[str, object]]:
    """Render and write one series; return its truth rows."""
    ids = series_ids(subject.name, seed=seed, series_number=index)
    suffix = ".png" if index % 2 else ".npy"
    xs, ys = pixel_centres_mm(subject)
    width = max(2, len(str(subject.n_slices - 1)))
    rows: list[dict[str, object]] = []
    for j in range(subject.n_slices):
        rendered = render_slice(slice_params(subject, j), _subject_rng(seed, index, j))
        key = f"{subject.name}/{subject.name}_s{j:0{width}d}"
        dicom_path = out / split / "dicoms" / f"{key}.dcm"
        encoded = dicom_bytes(
            _to_stored(rendered.image),
            ids=ids,
            seed=seed,
            instance_number=j + 1,
            spacing_mm=subject.spacing_mm,
            first_pixel_mm=(float(xs[0]), float(ys[0])),
            location_mm=subject.first_location_mm - j * subject.slice_step_mm,
            thickness_mm=subject.slice_thickness_mm,
            step_mm=subject.slice_step_mm,
            rescale=(RESCALE_SLOPE, RESCALE_INTERCEPT),
        )
        atomic_write_bytes(dicom_path, encoded)
        label_path = out / split / "labels" / f"{key}{suffix}"
        atomic_write_bytes(label_path, label_bytes(rendered.label, suffix))
        for roi, name in enumerate(ROI_NAMES, start=1):
            rows.append(
                {
                    "split": split,
                    "subject": subject.name,
                    "key": key,
                    "file": dicom_path.relative_to(out).as_posix(),
                    "slice_index": j,
                    "instance_number": j + 1,
                    "roi": roi,
                    "roi_name": name,
                    "area_mm2": f"{rendered.true_areas_mm2[roi]:.4f}",
                    "row_spacing_mm": subject.spacing_mm[0],
                    "col_spacing_mm": subject.spacing_mm[1],
                }
            )
        bar.update(1)
    return rows


__all__ = [
    "DEFAULT_MATRIX_SIZES",
    "RESCALE_INTERCEPT",
    "RESCALE_SLOPE",
    "ROI_NAMES",
    "PhantomSlice",
    "PhantomSummary",
    "SliceParams",
    "SubjectParams",
    "TRUTH_COLUMNS",
    "generate_phantom",
    "make_phantom_arrays",
    "render_slice",
    "sample_subject",
    "slice_params",
]
