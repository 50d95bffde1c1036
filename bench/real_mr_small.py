"""Small structures on the MNI152 template (``real_mr.py --set small``): six sided deep ROIs.

The same template, scanners, files and scoring as the MNI set (``real_mr_data``); only the label
rule, the levels and the subject counts differ. Label rule, fixed here, on each slice's own grid
(probability maps and nilearn's MNI152 brain mask resampled linearly; MNI mm, x > 0 = right):

- lateral ventricle: cerebrospinal fluid, 1 − GM − WM > 0.5, inside the brain mask (> 0.5),
  with 3 ≤ |x| ≤ 28, −40 ≤ y ≤ 26 (|x| ≥ 3 leaves the third ventricle and the midline out);
- anterior deep grey (caudate head with the front of the striatum): GM > 0.5 with
  4 ≤ |x| ≤ 19, −2 ≤ y ≤ 26 (|x| ≤ 19 stops at the internal capsule, before the putamen);
- posterior deep grey (thalamus; above z ≈ 14 mm also the caudate body beside the ventricle):
  GM > 0.5 with 2 ≤ |x| ≤ 24, −36 ≤ y < −2.

Ventricle wins over grey matter where both hold (they cannot: CSF > 0.5 excludes GM > 0.5).
Levels z = 0…22 mm, where on the template every ROI covers about 100–520 mm² per slice; blocks of
3 training levels, 1 unused, 2 test levels, 1 unused (no test level within 2 mm of a training one).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from real_mr_data import (
    Anatomy,
    Plan,
    Subject,
    Template,
    draw_scanner,
    sample_plane,
    split_levels,
)

SMALL_NAMES: tuple[str, ...] = (
    "right lateral ventricle",
    "left lateral ventricle",
    "right anterior deep grey",
    "left anterior deep grey",
    "right posterior deep grey",
    "left posterior deep grey",
)
"""ROI ``k`` is ``SMALL_NAMES[k - 1]``; right/left are the patient's."""
SMALL_SHORT: tuple[str, ...] = ("RLV", "LLV", "RAG", "LAG", "RPG", "LPG")

LEVELS_MM = tuple(range(0, 23))
LEVEL_BLOCKS = (3, 1, 2, 1)  # train levels, gap, test levels, gap (mm, repeated)
TRAIN_SUBJECTS, TEST_SUBJECTS = 8, 4
BOXES: tuple[tuple[str, tuple[float, float], tuple[float, float]], ...] = (
    ("csf", (3.0, 28.0), (-40.0, 26.0)),
    ("gm", (4.0, 19.0), (-2.0, 26.0)),
    ("gm", (2.0, 24.0), (-36.0, -2.0)),
)
"""(tissue, |x| range, y range) of ROI pairs 1–2, 3–4, 5–6 (the y upper end of pair 5–6 open)."""


def small_rule(
    gm: np.ndarray, wm: np.ndarray, brain: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """The small-structure label rule on probabilities already on the grid (uint8, 0..6)."""
    tissue = {"csf": ((1.0 - gm - wm) > 0.5) & (brain > 0.5), "gm": gm > 0.5}
    is_left = x <= 0.0
    label = np.zeros(gm.shape, dtype=np.uint8)
    for pair, (name, (x_lo, x_hi), (y_lo, y_hi)) in reversed(list(enumerate(BOXES))):
        y_ok = (y >= y_lo) & ((y < y_hi) if pair == 2 else (y <= y_hi))
        inside = tissue[name] & (np.abs(x) >= x_lo) & (np.abs(x) <= x_hi) & y_ok
        label[inside] = 1 + 2 * pair + is_left[inside]
    return label


def _labels(
    template: Template, brain: np.ndarray, z_mm: float, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    gm = sample_plane(template.gm, template.affine, z_mm, x, y)
    wm = sample_plane(template.wm, template.affine, z_mm, x, y)
    mask = sample_plane(brain, template.affine, z_mm, x, y)
    return small_rule(gm, wm, mask, x, y)


def load_brain_mask() -> np.ndarray:
    """nilearn's 1 mm MNI152 brain mask (on the template's grid), float32."""
    from nilearn import datasets

    image = datasets.load_mni152_brain_mask(resolution=1)
    return np.asarray(image.get_fdata(), dtype=np.float32)


def split_small_levels() -> tuple[list[int], list[int]]:
    """``LEVELS_MM`` cut into ``LEVEL_BLOCKS``: (training levels, test levels)."""
    return split_levels(LEVELS_MM, LEVEL_BLOCKS)


def small_plan(
    seed: int,
) -> tuple[Sequence[float], Sequence[float], list[Subject], list[Subject]]:
    """Every training subject shows every training level, every test subject every test level."""
    train_levels, test_levels = split_small_levels()
    train: list[Subject] = []
    test: list[Subject] = []
    for index in range(TRAIN_SUBJECTS):
        rng = np.random.default_rng([seed, 20, index])
        train.append((draw_scanner(f"s{index + 1:02d}", rng), list(train_levels), rng))
    for index in range(TEST_SUBJECTS):
        rng = np.random.default_rng([seed, 21, index])
        test.append((draw_scanner(f"t{index + 1:02d}", rng), list(test_levels), rng))
    return train_levels, test_levels, train, test


def small_set(template: Template) -> tuple[Anatomy, Plan]:
    """The small-structure set's anatomy and plan."""
    anatomy = Anatomy(
        key="small",
        roi_names=SMALL_NAMES,
        t1=template.t1,
        affine=template.affine,
        labels=functools.partial(_labels, template, load_brain_mask()),
        namespace="sliceseg-real-mr-small",
    )
    return anatomy, small_plan
