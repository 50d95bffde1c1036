"""A synthetic lumbar MR phantom with known areas: DICOM series, label maps and ``truth.csv``.

Each subject is an axial T1-like series from about L3 to L4 with six ROIs (:data:`ROI_NAMES`)
among unlabelled look-alikes: abdominal wall and quadratus lumborum muscles as grey as the psoas,
visceral fat as bright as the subcutaneous fat, bowel loops of every intensity, and the posterior
elements of the spine. Images have partial volume, blur, a bias field and Rician noise; labels are
sampled at pixel centres; the true areas come from the continuous shapes, not from the pixels.

Right and left follow the radiological convention: the patient's right is on the image left
(small column index). Rows run anterior to posterior.

The parts: ``_phantom_shapes`` (continuous shapes and the painter), ``_phantom_anatomy`` (the
lumbar anatomy as painted layers), ``_phantom_render`` (one slice), ``_phantom_files`` (DICOM and
label encoding). This module is the public face: it re-exports what users need and writes files.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sliceseg.errors import ConfigError, option_name
from sliceseg.io.files import atomic_write_bytes, atomic_write_text
from sliceseg.io.output_folders import prepare_output_dir
from sliceseg.io.tables import csv_value
from sliceseg.phantom.files import dicom_bytes, label_bytes, series_ids
from sliceseg.phantom.render import (
    RESCALE_INTERCEPT,
    RESCALE_SLOPE,
    SUPERSAMPLING,
    PhantomSlice,
    SliceParams,
    SubjectParams,
    pixel_centres_mm,
    render_slice,
    sample_subject,
    slice_params,
    to_stored,
)
from sliceseg.progress_bars import shows_progress

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


_MIN_SIZE, _MAX_SIZE = 64, 2048
_OUT_DIR = option_name("OUT_DIR", "out_dir")  # `sliceseg phantom OUT_DIR`: an argument, no flag


@dataclass(frozen=True)
class PhantomSummary:
    """What :func:`generate_phantom` wrote.

    Attributes:
        out_dir: the phantom folder.
        train_dir: ``out_dir/train`` (``dicoms/``, ``labels/``, ``labels.txt``).
        test_dir: ``out_dir/test``, the same layout, other subjects.
        n_train_slices: slices in ``train_dir``.
        n_test_slices: slices in ``test_dir``.
        truth_csv: the true areas, columns :data:`TRUTH_COLUMNS`.
        roi_names: :data:`ROI_NAMES`.
    """

    out_dir: Path
    train_dir: Path
    test_dir: Path
    n_train_slices: int
    n_test_slices: int
    truth_csv: Path
    roi_names: tuple[str, ...]


def generate_phantom(
    out_dir: Path | str,
    *,
    train_subjects: int = 16,
    test_subjects: int = 4,
    slices_per_subject: int = 10,
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
    column is the DICOM path relative to ``out_dir``. Subject ``i`` gets the matrix
    ``matrix_sizes[(i - 1) % len(matrix_sizes)]``. The same ``seed`` writes the same pixels and
    labels.

    Args:
        out_dir: folder to write; created if missing.
        train_subjects: subjects in ``train/`` (``sub01`` ...).
        test_subjects: further subjects in ``test/``, never in ``train/``.
        slices_per_subject: slices per series.
        seed: seed of every random draw.
        overwrite: allow a non-empty ``out_dir``; its ``train/`` and ``test/`` are replaced.
        progress: show a progress bar (only in a terminal or a Jupyter notebook: `shows_progress`).
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
    _check_count(seed, name="seed", minimum=0, flag="--seed")
    _check_count(train_subjects, name="train_subjects", minimum=1, flag="--train-subjects")
    _check_count(test_subjects, name="test_subjects", minimum=0, flag="--test-subjects")
    _check_count(slices_per_subject, name="slices_per_subject", minimum=1, flag="--slices")
    sizes = DEFAULT_MATRIX_SIZES if matrix_sizes is None else _parse_sizes(matrix_sizes)
    out = prepare_output_dir(out_dir, overwrite=overwrite, argument=_OUT_DIR)
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
        disable=not (progress and shows_progress()),
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
    truth_csv = _write_truth_and_names(out, rows)
    return PhantomSummary(
        out_dir=out,
        train_dir=out / "train",
        test_dir=out / "test",
        n_train_slices=train_subjects * slices_per_subject,
        n_test_slices=test_subjects * slices_per_subject,
        truth_csv=truth_csv,
        roi_names=ROI_NAMES,
    )


def _write_truth_and_names(out: Path, rows: list[dict[str, object]]) -> Path:
    """Write ``truth.csv`` and the ``labels.txt`` files; return the path of ``truth.csv``."""
    truth_csv = out / "truth.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({column: csv_value(value) for column, value in row.items()} for row in rows)
    atomic_write_text(truth_csv, buffer.getvalue())
    names = "".join(f"{name}\n" for name in ROI_NAMES)
    for folder in (out, out / "train", out / "test"):
        atomic_write_text(folder / "labels.txt", names)
    return truth_csv


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
            to_stored(rendered.image),
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
        ConfigError: ``n``, ``size``, ``seed`` or ``slices_per_subject`` is out of range.

    Example:
        >>> images, labels, spacings = make_phantom_arrays(4, size=(128, 128))
        >>> images.shape, labels.max()
        ((4, 128, 128), 6)
    """
    _check_count(n, name="n", minimum=1)
    _check_count(seed, name="seed", minimum=0)
    _check_count(slices_per_subject, name="slices_per_subject", minimum=1)
    (shape,) = _parse_sizes([size])
    images = np.zeros((n, *shape), np.float32)
    labels = np.zeros((n, *shape), np.uint8)
    spacings = np.zeros((n, 2), np.float64)
    for i in range(n):
        index, j = divmod(i, slices_per_subject)
        if j == 0:
            subject = sample_subject(
                _subject_rng(seed, index + 1),
                name=f"sub{index + 1:02d}",
                matrix_shape=shape,
                n_slices=slices_per_subject,
            )
        rendered = render_slice(slice_params(subject, j), _subject_rng(seed, index + 1, j))
        images[i], labels[i], spacings[i] = rendered.image, rendered.label, rendered.spacing_mm
    return images, labels, spacings


def _subject_rng(seed: int, index: int, slice_index: int | None = None) -> np.random.Generator:
    """The generator of subject ``index`` (its anatomy) or of one of its slices (noise, texture).

    Each draws from its own stream, so a subject does not change when others are added.
    """
    key = (index,) if slice_index is None else (index, slice_index + 1)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _check_count(value: int, *, name: str, minimum: int, flag: str = "") -> None:
    """Raise ConfigError unless ``value`` is a whole number >= ``minimum`` (``flag``: the
    ``sliceseg phantom`` option that sets it, named too)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        option = f" ({flag})" if flag else ""
        raise ConfigError(f"{name}={value!r}{option}: expected a whole number >= {minimum}.")


def _parse_sizes(sizes: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Check matrix sizes and return them as ``((rows, cols), ...)`` of plain ints.

    Raises:
        ConfigError: no sizes, or one that is not two whole numbers from 64 to 2048.
    """
    parsed = []
    for size in sizes:
        values = tuple(size) if isinstance(size, (tuple, list, np.ndarray)) else (size,)
        if len(values) != 2 or not all(
            isinstance(v, (int, np.integer)) and _MIN_SIZE <= v <= _MAX_SIZE for v in values
        ):
            raise ConfigError(
                f"matrix size {size!r}: expected (rows, cols), each a whole number from "
                f"{_MIN_SIZE} to {_MAX_SIZE}; e.g. (256, 256) or (224, 192)."
            )
        parsed.append((int(values[0]), int(values[1])))
    if not parsed:
        raise ConfigError("matrix_sizes is empty: expected at least one (rows, cols).")
    return tuple(parsed)


__all__ = [
    "DEFAULT_MATRIX_SIZES",
    "RESCALE_INTERCEPT",
    "RESCALE_SLOPE",
    "ROI_NAMES",
    "SUPERSAMPLING",
    "TRUTH_COLUMNS",
    "PhantomSlice",
    "PhantomSummary",
    "SliceParams",
    "SubjectParams",
    "generate_phantom",
    "make_phantom_arrays",
    "render_slice",
    "sample_subject",
    "slice_params",
]
