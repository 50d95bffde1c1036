"""The spine-MR benchmark's data: TotalSegmentator's example abdominal MR, simulated scanners.

Source: the TotalSegmentator 2.18.0 source archive on PyPI (``totalsegmentator-2.18.0.tar.gz``,
Apache-2.0), fetched once with ``pip download --no-deps --no-binary :all: totalsegmentator==2.18.0``
into a cache folder. Only the members in ``MR_MEMBERS`` are ever read from it, by name, without
extracting anything: the example MR (``example_mr_sm.nii.gz``, 117 × 91 × 20 voxels of 3 mm,
upper lumbar spine and abdomen) and its segmentation (``example_seg_mr.nii.gz``, that tool's
reference output with the ``total_mr`` classes), plus the class map (``map_to_binary.py``, parsed
as text, never run). The archive's CT files (its CT examples, its CT DICOM folder and their
segmentations) are a held-out check of the project: no code here may name or open them
(``tests/test_bench_spine_mr.py`` checks that no bench file names them).

ROIs (the user manual's): 1 vertebral body (``total_mr`` class ``vertebrae``, every level
merged), 2 right iliopsoas, 3 left iliopsoas, 4 right and 5 left erector spinae (``autochthon``).
Label rule, fixed here: each class's indicator is resampled trilinearly onto the slice's grid; a
pixel takes the class whose indicator is largest, when that exceeds 0.5.

Levels: the volume's 20 axial planes, 3 mm apart, cut into blocks (``TRAIN_PLANES``,
``TEST_PLANES``): a training level lies between two training planes and a test level between two
test planes, every 1 mm, so no test slice is interpolated from a plane a training slice uses; and
every test block lies between two training blocks, so no test level is outside the trained range
(a level beyond it is one of issue 21's degradations, not a test of the recipe). Scanners as on
the MNI set (``real_mr_data.draw_scanner``) with the body's field of view and an abdominal MR's
spacing.
"""

from __future__ import annotations

import ast
import functools
import gzip
import math
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from real_mr_data import Anatomy, Subject, draw_scanner, sample_plane

PACKAGE = "totalsegmentator==2.18.0"
ARCHIVE = "totalsegmentator-2.18.0.tar.gz"
PREFIX = "totalsegmentator-2.18.0/"
MR_IMAGE = "tests/reference_files/example_mr_sm.nii.gz"
MR_LABELS = "tests/reference_files/example_seg_mr.nii.gz"
CLASS_MAP = "totalsegmentator/map_to_binary.py"
MR_MEMBERS: tuple[str, ...] = (MR_IMAGE, MR_LABELS, CLASS_MAP)
"""The only archive members this benchmark reads (the CT ones stay out)."""
DEFAULT_CACHE = Path.home() / ".cache" / "sliceseg-bench"

ROI_CLASSES: tuple[tuple[str, str], ...] = (
    ("vertebral body", "vertebrae"),
    ("right iliopsoas", "iliopsoas_right"),
    ("left iliopsoas", "iliopsoas_left"),
    ("right erector spinae", "autochthon_right"),
    ("left erector spinae", "autochthon_left"),
)
"""(ROI name, TotalSegmentator ``total_mr`` class) for ROI 1..5."""
ROI_NAMES: tuple[str, ...] = tuple(name for name, _ in ROI_CLASSES)
ROI_SHORT: tuple[str, ...] = ("VB", "RIP", "LIP", "RES", "LES")

N_PLANES, PLANE_MM = 20, 3.0
TRAIN_PLANES = ((0, 1), (4, 5), (8, 9), (12, 13), (16, 19))  # inclusive, 0 = most caudal
TEST_PLANES = ((2, 3), (10, 11), (14, 15))  # planes 6 and 7 are never used
TRAIN_SUBJECTS, TEST_SUBJECTS, TRAIN_SLICES = 6, 4, 20
SPACING_MM = (0.9, 1.5)  # row and column each
FOV_MM = ((290.0, 330.0), (350.0, 400.0))  # rows (anterior–posterior), columns (left–right)
WIDE_SPACING_MM = (0.7, 0.95)  # the `spine512` set: an abdominal CT's grid (512² at 0.7–0.95 mm)
WIDE_FOV_MM = ((360.0, 480.0), (360.0, 480.0))
DICOM_FIELDS = {
    "Manufacturer": "sliceseg spine-MR benchmark (TotalSegmentator 2.18.0 example MR)",
    "StudyDescription": "Abdomen",
    "SeriesDescription": "axial MR (TotalSegmentator example, simulated scanner)",
    "BodyPartExamined": "ABDOMEN",
    "PatientPosition": "HFS",
    "SliceThickness": "3",
    "SpacingBetweenSlices": "1",
}


def fetch_archive(cache: Path = DEFAULT_CACHE) -> Path:
    """The source archive in ``cache``, downloaded there with pip when it is missing."""
    path = Path(cache) / ARCHIVE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*command, PACKAGE, "-d", str(path.parent)], check=True)
    return path


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one of ``MR_MEMBERS``; any other member is refused, unread."""
    if member not in MR_MEMBERS:
        raise ValueError(f"{member}: not one of the spine-MR benchmark's members {MR_MEMBERS}")
    with tarfile.open(archive, "r:gz") as tar:
        handle = tar.extractfile(PREFIX + member)
        if handle is None:
            raise ValueError(f"{archive}: {member} is not a regular file")
        return handle.read()


def total_mr_classes(source: str) -> dict[int, str]:
    """``class_map["total_mr"]`` of ``map_to_binary.py``'s text, by parsing (never running) it."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "total_mr":
                    return {int(k): str(v) for k, v in ast.literal_eval(value).items()}
    raise ValueError("map_to_binary.py: no class_map['total_mr'] found")


def _nifti(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    image = nib.Nifti1Image.from_bytes(gzip.decompress(blob))
    return np.asarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class SpineVolume:
    """The example MR, its ROI indicators and its class map.

    Attributes:
        image: MR signal over its 99.5th percentile (non-negative, float32).
        indicators: (5, i, j, k) float32, 1 where the voxel is ROI 1..5.
        affine: voxel to world mm (RAS+); the voxel axes run to the left, posterior, superior.
        classes: the ``total_mr`` class map (id → name).
    """

    image: np.ndarray
    indicators: np.ndarray
    affine: np.ndarray
    classes: dict[int, str]


def load_volume(archive: Path | None = None) -> SpineVolume:
    """Read the example MR, its segmentation and the class map from the archive."""
    archive = archive if archive is not None else fetch_archive()
    classes = total_mr_classes(read_member(archive, CLASS_MAP).decode())
    image, affine = _nifti(read_member(archive, MR_IMAGE))
    seg, _ = _nifti(read_member(archive, MR_LABELS))
    if image.shape != seg.shape or image.shape[2] != N_PLANES:
        raise ValueError(f"{ARCHIVE}: MR {image.shape}, labels {seg.shape}; expected 20 planes")
    ids = {name: number for number, name in classes.items()}
    indicators = np.stack([(seg == ids[c]).astype(np.float32) for _, c in ROI_CLASSES])
    image = np.clip(image.astype(np.float32), 0.0, None)
    image /= np.percentile(image, 99.5)
    return SpineVolume(image=image, indicators=indicators, affine=affine, classes=classes)


def plane_z_mm(volume: SpineVolume, plane: int) -> float:
    """World z (mm) of one of the volume's axial planes."""
    return float((volume.affine @ np.array([0.0, 0.0, plane, 1.0]))[2])


def block_levels(volume: SpineVolume, blocks: Sequence[tuple[int, int]]) -> list[float]:
    """Levels every 1 mm from the first to the last plane of each block (world z, 0.01 mm).

    Rounding never takes a level past the volume's end planes (a level outside samples nothing).
    """
    low = math.ceil(plane_z_mm(volume, 0) * 100) / 100
    high = math.floor(plane_z_mm(volume, volume.indicators.shape[-1] - 1) * 100) / 100
    levels = []
    for first, last in blocks:
        z0 = plane_z_mm(volume, first)
        steps = round((last - first) * PLANE_MM)
        levels += [min(max(round(z0 + step, 2), low), high) for step in range(steps + 1)]
    return levels


def spine_labels(volume: SpineVolume, z_mm: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The label rule at world (x, y, z_mm): the largest indicator above 0.5, else 0."""
    sampled = np.stack([sample_plane(v, volume.affine, z_mm, x, y) for v in volume.indicators])
    label = (np.argmax(sampled, axis=0) + 1).astype(np.uint8)
    label[sampled.max(axis=0) <= 0.5] = 0
    return label


def spine_anatomy(volume: SpineVolume) -> Anatomy:
    """The spine set's :class:`Anatomy` (centred on the volume's in-plane centre)."""
    ni, nj, _ = volume.image.shape
    centre = volume.affine @ np.array([(ni - 1) / 2, (nj - 1) / 2, 0.0, 1.0])
    return Anatomy(
        key="spine",
        roi_names=ROI_NAMES,
        t1=volume.image,
        affine=volume.affine,
        labels=functools.partial(spine_labels, volume),
        centre_mm=(float(centre[0]), float(centre[1])),
        namespace="sliceseg-spine-mr",
        dicom_fields=DICOM_FIELDS,
    )


def unbracketed_rois(volume: SpineVolume) -> list[str]:
    """ROIs on a test plane that no training plane below it, or none above it, shows.

    A test level of such an ROI would ask the network to extrapolate past its trained range.
    """
    shown = volume.indicators.sum(axis=(1, 2)) > 0  # (ROI, plane)
    train = [p for first, last in TRAIN_PLANES for p in range(first, last + 1)]
    test = [p for first, last in TEST_PLANES for p in range(first, last + 1)]
    return [
        f"{ROI_NAMES[roi]} on plane {plane}"
        for roi in range(len(ROI_NAMES))
        for plane in test
        if shown[roi, plane]
        and not (
            any(shown[roi, p] for p in train if p < plane)
            and any(shown[roi, p] for p in train if p > plane)
        )
    ]


def spine_plan(
    volume: SpineVolume,
    seed: int,
    *,
    spacing_mm: tuple[float, float] = SPACING_MM,
    fov_mm: tuple[tuple[float, float], tuple[float, float]] = FOV_MM,
) -> tuple[list[float], list[float], list[Subject], list[Subject]]:
    """Levels and subjects: training subjects show ``TRAIN_SLICES`` of the training levels.
    ``spacing_mm`` / ``fov_mm``: the scanners' grids (an abdominal MR's by default; the
    ``spine512`` set passes an abdominal CT's, `WIDE_SPACING_MM`, `WIDE_FOV_MM`)."""
    outside = unbracketed_rois(volume)
    if outside:
        raise ValueError(f"test levels outside the trained range: {', '.join(outside)}")
    train_levels = block_levels(volume, TRAIN_PLANES)
    test_levels = block_levels(volume, TEST_PLANES)
    train: list[Subject] = []
    test: list[Subject] = []
    for index in range(TRAIN_SUBJECTS):
        rng = np.random.default_rng([seed, 10, index])
        scanner = draw_scanner(f"s{index + 1:02d}", rng, spacing_mm=spacing_mm, fov_mm=fov_mm)
        chosen = rng.choice(len(train_levels), size=TRAIN_SLICES, replace=False)
        train.append((scanner, [train_levels[i] for i in sorted(chosen)], rng))
    for index in range(TEST_SUBJECTS):
        rng = np.random.default_rng([seed, 11, index])
        scanner = draw_scanner(f"t{index + 1:02d}", rng, spacing_mm=spacing_mm, fov_mm=fov_mm)
        test.append((scanner, list(test_levels), rng))
    return train_levels, test_levels, train, test
