"""The real-MR benchmark's data: the MNI152 2009a template seen through simulated scanners.

The T1 template and its grey- and white-matter probability maps ship inside ``nilearn``
(nothing is downloaded). Each "subject" is the same anatomy imaged by a different scanner: its
own in-plane rotation, scale, pixel spacing (row and column drawn separately), field of view and
matrix, a smooth multiplicative bias field, a gamma contrast change and Rician noise. Every
subject is its own series (own PatientID, StudyInstanceUID and SeriesInstanceUID).

The label rule, fixed here: on each slice's own grid, the probability maps are resampled
linearly; a pixel is white (grey) matter where that probability exceeds 0.5 (if both do, the
larger wins) and its side is the sign of its MNI x coordinate (x > 0 mm is the patient's right).
ROIs: 1 right white matter, 2 left white matter, 3 right grey matter, 4 left grey matter.

Slices are written in the radiological convention with a standard axial orientation,
(0020,0037) ImageOrientationPatient = 1\\0\\0\\0\\1\\0: the column index runs toward the
patient's left, so the patient's right is on the image left, and the row index runs toward
posterior, so anterior is up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import map_coordinates

ROI_NAMES: tuple[str, ...] = (
    "right white matter",
    "left white matter",
    "right grey matter",
    "left grey matter",
)
"""ROI ``k`` is ``ROI_NAMES[k - 1]``; right/left are the patient's."""

DATA_VERSION = 1
"""Bumped whenever the generator changes what it writes (a stale data folder is regenerated)."""

TRAIN_SUBJECTS, TEST_SUBJECTS, TRAIN_SLICES = 6, 3, 20
MIN_ROI_AREA_MM2 = 300.0  # every ROI at least this large on the template's 1 mm level
LEVEL_BLOCKS = (8, 2, 3, 2)  # train levels, gap, test levels, gap (mm, repeated)
SUPERSAMPLING = 4  # per axis, for the continuous areas in truth.csv
BRAIN_CENTRE_MNI_MM = (0.0, -17.0)  # (x, y) put at the centre of the anatomy transform
TRUTH_COLUMNS = (
    "subject",
    "key",
    "z_mm",
    "roi",
    "roi_name",
    "pixels",
    "area_mm2",
    "area_continuous_mm2",
    "row_spacing_mm",
    "col_spacing_mm",
)


@dataclass(frozen=True, eq=False)
class Template:
    """The MNI152 2009a volumes, indexed (i, j, k) with ``affine`` mapping them to MNI mm (RAS).

    Attributes:
        t1: T1 intensities in 0..1, float32.
        gm: grey-matter probability, float32.
        wm: white-matter probability, float32.
        affine: 4×4 voxel-to-world matrix (RAS+: x toward the patient's right).
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray


@dataclass(frozen=True)
class Scanner:
    """One subject's acquisition: how the template's anatomy lands on its pixel grid.

    Attributes:
        subject: folder name and series label (``s01``..., ``t01``...).
        rotation_deg: in-plane rotation of the head in the scanner.
        scale: head size relative to the template.
        spacing_mm: (row, col) for (0028,0030) PixelSpacing.
        shape: (rows, cols) of the matrix.
        shift_mm: (x, y) LPS of the anatomy centre relative to the field-of-view centre.
        gamma: exponent of the contrast change applied to the template intensity.
        bias: coefficients of log bias = a·u + b·v + c·uv + d·(u²−⅓) + e·(v²−⅓), u, v in −1..1.
        gain: signal scale (arbitrary MR units).
        noise_fraction: Rician noise sd as a fraction of ``gain``.
    """

    subject: str
    rotation_deg: float
    scale: float
    spacing_mm: tuple[float, float]
    shape: tuple[int, int]
    shift_mm: tuple[float, float]
    gamma: float
    bias: tuple[float, float, float, float, float]
    gain: float
    noise_fraction: float


@dataclass(frozen=True, eq=False)
class RenderedSlice:
    """One axial level through one scanner.

    Attributes:
        image: (rows, cols) float64 signal (MR units, Rician noise included).
        label: (rows, cols) uint8 ROI numbers 0..4.
        areas_mm2: ROI 1..4 pixel count × row spacing × column spacing.
        areas_continuous_mm2: the same rule on a grid ``SUPERSAMPLING``× finer per axis.
    """

    image: np.ndarray
    label: np.ndarray
    areas_mm2: tuple[float, ...]
    areas_continuous_mm2: tuple[float, ...]


def load_template() -> Template:
    """Load the 1 mm MNI152 2009a T1, grey- and white-matter maps that ship inside nilearn.

    Returns:
        The three volumes on one grid, and its affine.

    Raises:
        ImportError: nilearn is not installed (``pip install -e ".[bench]"``).
    """
    from nilearn import datasets

    images = [
        datasets.load_mni152_template(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
    ]
    t1, gm, wm = (np.asarray(image.get_fdata(), dtype=np.float32) for image in images)
    return Template(t1=t1, gm=gm, wm=wm, affine=np.asarray(images[0].affine, dtype=np.float64))


def draw_scanner(
    subject: str,
    rng: np.random.Generator,
    *,
    spacing_mm: tuple[float, float] = (0.7, 1.2),
    fov_mm: tuple[tuple[float, float], tuple[float, float]] = ((215.0, 256.0), (190.0, 256.0)),
) -> Scanner:
    """Draw one subject's scanner: rotation ±10°, scale ±8 %, spacing 0.7–1.2 mm, FOV, bias...

    The field of view (rows: anterior–posterior 215–256 mm, columns: left–right 190–256 mm)
    always holds the whole brain; the matrix is the field of view over the spacing. Other
    anatomy passes its own ``spacing_mm`` and ``fov_mm`` ranges (the draws are the same).
    """
    spacing = (float(rng.uniform(*spacing_mm)), float(rng.uniform(*spacing_mm)))
    fov = (float(rng.uniform(*fov_mm[0])), float(rng.uniform(*fov_mm[1])))
    return Scanner(
        subject=subject,
        rotation_deg=float(rng.uniform(-10.0, 10.0)),
        scale=float(rng.uniform(0.92, 1.08)),
        spacing_mm=(round(spacing[0], 4), round(spacing[1], 4)),
        shape=(round(fov[0] / spacing[0]), round(fov[1] / spacing[1])),
        shift_mm=(float(rng.uniform(-5.0, 5.0)), float(rng.uniform(-5.0, 5.0))),
        gamma=float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))),
        bias=tuple(float(v) for v in rng.uniform(-0.2, 0.2, size=5)),  # type: ignore[arg-type]
        gain=float(rng.uniform(800.0, 2000.0)),
        noise_fraction=float(rng.uniform(0.015, 0.04)),
    )


def first_pixel_lps(scanner: Scanner) -> tuple[float, float]:
    """(x, y) in patient LPS mm of the first pixel's centre, for ImagePositionPatient."""
    rows, cols = scanner.shape
    row_mm, col_mm = scanner.spacing_mm
    return -(cols - 1) / 2 * col_mm, -(rows - 1) / 2 * row_mm


def pixel_to_mni(
    scanner: Scanner,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    centre_mm: tuple[float, float] = BRAIN_CENTRE_MNI_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Map (fractional) pixel indices to MNI (x, y) mm through the subject's anatomy transform.

    Patient LPS = scale · R(rotation) · (MNI as LPS − centre) + shift, inverted here. Any
    RAS world (a NIfTI affine's) works the same way with its own ``centre_mm``.
    """
    x0, y0 = first_pixel_lps(scanner)
    px = x0 + cols * scanner.spacing_mm[1] - scanner.shift_mm[0]
    py = y0 + rows * scanner.spacing_mm[0] - scanner.shift_mm[1]
    angle = np.deg2rad(scanner.rotation_deg)
    cos, sin = np.cos(angle), np.sin(angle)
    lx = (cos * px + sin * py) / scanner.scale  # R(-angle) · p / scale
    ly = (-sin * px + cos * py) / scanner.scale
    cx, cy = centre_mm
    return -(lx - cx), -(ly - cy)  # LPS back to RAS (x and y change sign)


def sample_plane(
    volume: np.ndarray, affine: np.ndarray, z_mm: float, x_mni: np.ndarray, y_mni: np.ndarray
) -> np.ndarray:
    """Sample ``volume`` linearly at MNI (x, y, z_mm); outside the volume is 0."""
    world = np.stack([x_mni.ravel(), y_mni.ravel(), np.full(x_mni.size, z_mm), np.ones(x_mni.size)])
    voxel = np.linalg.inv(affine) @ world
    values = map_coordinates(volume, voxel[:3], order=1, mode="constant", cval=0.0)
    return values.reshape(x_mni.shape)


def label_rule(gm: np.ndarray, wm: np.ndarray, x_mni: np.ndarray) -> np.ndarray:
    """Apply the benchmark's label rule to probabilities already on the slice's grid.

    Tissue where its probability exceeds 0.5 (the larger if both do); the patient's right
    where MNI x > 0 mm. Returns uint8: 1 right WM, 2 left WM, 3 right GM, 4 left GM, 0 else.
    """
    is_wm = (wm > 0.5) & (wm >= gm)
    is_gm = (gm > 0.5) & ~is_wm
    is_left = x_mni <= 0.0
    label = np.zeros(gm.shape, dtype=np.uint8)
    label[is_wm] = 1 + is_left[is_wm]
    label[is_gm] = 3 + is_left[is_gm]
    return label


def labels_on_grid(
    template: Template, scanner: Scanner, z_mm: float, *, supersampling: int = 1
) -> np.ndarray:
    """Label map of one level on the scanner's grid (``supersampling``× finer per axis)."""
    return anatomy_labels(mni_anatomy(template), scanner, z_mm, supersampling=supersampling)


def roi_areas_mm2(
    label: np.ndarray, pixel_area_mm2: float, num_rois: int = len(ROI_NAMES)
) -> tuple[float, ...]:
    """Area of ROI 1..K in a label map whose pixels each cover ``pixel_area_mm2``."""
    counts = np.bincount(label.ravel(), minlength=num_rois + 1)
    return tuple(float(n) * pixel_area_mm2 for n in counts[1 : num_rois + 1])


def bias_field(scanner: Scanner) -> np.ndarray:
    """The subject's smooth multiplicative bias field on its grid (mean about 1)."""
    rows, cols = scanner.shape
    v, u = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    a, b, c, d, e = scanner.bias
    return np.exp(a * u + b * v + c * u * v + d * (u**2 - 1 / 3) + e * (v**2 - 1 / 3))


def render_slice(
    template: Template,
    scanner: Scanner,
    z_mm: float,
    rng: np.random.Generator,
    *,
    continuous: bool = False,
) -> RenderedSlice:
    """Render one level: image (gamma, bias, Rician noise), label map and its true areas.

    Args:
        template: the MNI152 volumes.
        scanner: the subject's acquisition.
        z_mm: the axial level in MNI mm (a whole number: a plane of the 1 mm template).
        rng: draws the noise.
        continuous: also compute the areas on a ``SUPERSAMPLING``× finer grid (else NaN).
    """
    return render(mni_anatomy(template), scanner, z_mm, rng, continuous=continuous)


def valid_levels(template: Template) -> list[int]:
    """The longest run of whole-mm axial levels where every ROI covers ≥ MIN_ROI_AREA_MM2."""
    ni, nj, nk = template.gm.shape
    i, j = np.meshgrid(np.arange(ni), np.arange(nj), indexing="ij")
    levels = []
    for k in range(nk):
        world = template.affine @ np.stack(
            [i.ravel(), j.ravel(), np.full(i.size, k), np.ones(i.size)]
        )
        x_plane = world[0].reshape(i.shape)
        label = label_rule(template.gm[:, :, k], template.wm[:, :, k], x_plane)
        voxel_mm2 = abs(float(np.linalg.det(template.affine[:2, :2])))
        if min(roi_areas_mm2(label, voxel_mm2)) >= MIN_ROI_AREA_MM2:
            levels.append(round(float(world[2, 0])))
    runs: list[list[int]] = []
    for z in levels:
        if runs and z == runs[-1][-1] + 1:
            runs[-1].append(z)
        else:
            runs.append([z])
    return max(runs, key=len)


def split_levels(
    levels: Sequence[int], blocks: tuple[int, int, int, int] = LEVEL_BLOCKS
) -> tuple[list[int], list[int]]:
    """Interleave blocks of training and test levels with gaps (``blocks``: train, gap, test,
    gap, repeated; ``LEVEL_BLOCKS`` by default).

    No test level is adjacent to a training level, by construction.
    """
    n_train, gap_1, n_test, gap_2 = blocks
    pattern = ["train"] * n_train + ["gap"] * gap_1 + ["test"] * n_test + ["gap"] * gap_2
    roles = [pattern[i % len(pattern)] for i in range(len(levels))]
    train = [z for z, role in zip(levels, roles, strict=True) if role == "train"]
    test = [z for z, role in zip(levels, roles, strict=True) if role == "test"]
    return train, test


def draw_subjects(
    seed: int, train_levels: list[int], test_levels: list[int]
) -> tuple[list[tuple[Scanner, list[int], np.random.Generator]], ...]:
    """Draw every subject's scanner and levels from the seed (train: s01..., test: t01...).

    Training subjects each show ``TRAIN_SLICES`` levels drawn from the training pool; test
    subjects show every held-out level.
    """
    train, test = [], []
    for index in range(TRAIN_SUBJECTS):
        rng = np.random.default_rng([seed, 0, index])
        scanner = draw_scanner(f"s{index + 1:02d}", rng)
        levels = rng.choice(train_levels, size=TRAIN_SLICES, replace=False).tolist()
        train.append((scanner, [int(z) for z in levels], rng))
    for index in range(TEST_SUBJECTS):
        rng = np.random.default_rng([seed, 1, index])
        test.append((draw_scanner(f"t{index + 1:02d}", rng), list(test_levels), rng))
    return train, test


@dataclass(frozen=True, eq=False)
class Anatomy:
    """What one benchmark set images: the volume the scanners see and its label rule.

    Attributes:
        key: the set's name, stamped into ``data.json`` (``mni``, ``small``, ``spine``).
        roi_names: ROI ``k`` is ``roi_names[k - 1]``.
        t1: the image volume (non-negative, about 0..1), indexed like ``affine``.
        affine: voxel to world mm (RAS+).
        labels: (z_mm, world x, world y) → uint8 label map (0 background, 1..K), the set's rule.
        centre_mm: world (x, y) put at the centre of each scanner's anatomy transform.
        namespace: UID namespace of the set's files.
        dicom_fields: DICOM keywords → values that describe the set (study, body part...).
    """

    key: str
    roi_names: tuple[str, ...]
    t1: np.ndarray
    affine: np.ndarray
    labels: Callable[[float, np.ndarray, np.ndarray], np.ndarray]
    centre_mm: tuple[float, float] = BRAIN_CENTRE_MNI_MM
    namespace: str = "sliceseg-real-mr"
    dicom_fields: Mapping[str, object] = field(default_factory=dict)


def mni_anatomy(template: Template) -> Anatomy:
    """The MNI set: hemispheric white and grey matter by ``label_rule``."""

    def labels(z_mm: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        gm = sample_plane(template.gm, template.affine, z_mm, x, y)
        wm = sample_plane(template.wm, template.affine, z_mm, x, y)
        return label_rule(gm, wm, x)

    return Anatomy("mni", ROI_NAMES, template.t1, template.affine, labels)


def anatomy_labels(
    anatomy: Anatomy, scanner: Scanner, z_mm: float, *, supersampling: int = 1
) -> np.ndarray:
    """The anatomy's label map of one level on the scanner's grid (``supersampling``× finer)."""
    rows, cols = scanner.shape
    n = supersampling
    r = (np.arange(rows * n) + 0.5) / n - 0.5
    c = (np.arange(cols * n) + 0.5) / n - 0.5
    grid = np.meshgrid(r, c, indexing="ij")
    x, y = pixel_to_mni(scanner, *grid, centre_mm=anatomy.centre_mm)
    return anatomy.labels(z_mm, x, y)


def render(
    anatomy: Anatomy,
    scanner: Scanner,
    z_mm: float,
    rng: np.random.Generator,
    *,
    continuous: bool = False,
) -> RenderedSlice:
    """Render one level of ``anatomy`` (see :func:`render_slice`)."""
    rows, cols = scanner.shape
    r, c = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    x, y = pixel_to_mni(scanner, r, c, centre_mm=anatomy.centre_mm)
    t1 = np.clip(sample_plane(anatomy.t1, anatomy.affine, z_mm, x, y), 0.0, None)
    signal = scanner.gain * bias_field(scanner) * t1**scanner.gamma
    sd = scanner.noise_fraction * scanner.gain
    image = np.hypot(signal + rng.normal(0, sd, signal.shape), rng.normal(0, sd, signal.shape))
    label = anatomy_labels(anatomy, scanner, z_mm)
    pixel_mm2 = scanner.spacing_mm[0] * scanner.spacing_mm[1]
    k = len(anatomy.roi_names)
    if continuous:
        fine = anatomy_labels(anatomy, scanner, z_mm, supersampling=SUPERSAMPLING)
        areas_fine = roi_areas_mm2(fine, pixel_mm2 / SUPERSAMPLING**2, k)
    else:
        areas_fine = (float("nan"),) * k
    return RenderedSlice(image, label, roi_areas_mm2(label, pixel_mm2, k), areas_fine)


Subject = tuple[Scanner, Sequence[float], np.random.Generator]
"""One subject: its scanner, the levels it shows, and the generator that draws its noise."""

Plan = Callable[[int], tuple[Sequence[float], Sequence[float], list[Subject], list[Subject]]]
"""seed → (training levels, test levels, training subjects, test subjects)."""


def mni_plan(
    template: Template, seed: int
) -> tuple[Sequence[float], Sequence[float], list[Subject], list[Subject]]:
    """The MNI set: levels by ``valid_levels`` and ``split_levels``, ``draw_subjects``."""
    train_levels, test_levels = split_levels(valid_levels(template))
    train, test = draw_subjects(seed, train_levels, test_levels)
    return train_levels, test_levels, list(train), list(test)
