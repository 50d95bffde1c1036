"""Intensity statistics of each ROI in modality units, and CT muscle composition (IMAT, density).

Every ROI gets the mean, standard deviation and median of its pixels in modality units
((0028,1052) RescaleIntercept and (0028,1053) RescaleSlope applied: Hounsfield units on CT).
On CT ((0008,0060) Modality "CT") every muscle ROI also gets the thresholds of the L3
body-composition literature (Mitsiopoulos et al. 1998; Aubrey et al. 2014; Comp2Comp):

- ``imat_fraction``: the share of the ROI's pixels between −190 and −30 HU (intramuscular
  adipose tissue), and ``imat_mm2``, their area;
- ``muscle_radiodensity_hu``: the mean of the ROI's pixels between −29 and +150 HU (the muscle
  proper, without its fat).

An ROI is a muscle when its name holds a muscle word (:data:`MUSCLE_WORDS`: "psoas",
"multifidus", "erector", ...) unless `TissueSettings.muscle_rois` names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice

MUSCLE_WORDS: tuple[str, ...] = (
    "muscle",
    "muscles",
    "psoas",
    "multifidus",
    "erector",
    "spinae",
    "paraspinal",
    "paravertebral",
    "quadratus",
    "lumborum",
    "rectus",
    "oblique",
    "obliques",
    "transversus",
    "abdominis",
    "iliacus",
    "iliopsoas",
    "gluteus",
    "latissimus",
    "longissimus",
    "iliocostalis",
    "skeletal",
)
"""Words (lower case, whole tokens of an ROI name) that make an ROI a muscle."""

CT_COLUMNS: tuple[str, ...] = ("imat_fraction", "imat_mm2", "muscle_radiodensity_hu")
"""Columns added for muscle ROIs on CT slices (NaN elsewhere)."""


@dataclass(frozen=True)
class TissueSettings:
    """Thresholds of the CT muscle composition.

    Attributes:
        adipose_hu: (low, high) HU of intramuscular adipose tissue, both included.
        muscle_hu: (low, high) HU of muscle for the radiodensity, both included.
        muscle_rois: names of the ROIs that are muscles; None finds them by name.
    """

    adipose_hu: tuple[float, float] = (-190.0, -30.0)
    muscle_hu: tuple[float, float] = (-29.0, 150.0)
    muscle_rois: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("adipose_hu", "muscle_hu"):
            low, high = getattr(self, name)
            if not low < high:
                raise ConfigError(
                    f"{name} must be (low, high) HU with low < high, got ({low:g}, {high:g})."
                )
        if self.muscle_rois is not None:
            object.__setattr__(self, "muscle_rois", tuple(str(n) for n in self.muscle_rois))

    def is_muscle(self, roi_name: str) -> bool:
        """Whether an ROI is a muscle: named in ``muscle_rois``, else by a muscle word.

        Example:
            >>> TissueSettings().is_muscle("left psoas major"), TissueSettings().is_muscle("L3")
            (True, False)
        """
        if self.muscle_rois is not None:
            return roi_name in self.muscle_rois
        tokens = re.split(r"[^0-9a-z]+", roi_name.lower())
        return any(token in MUSCLE_WORDS for token in tokens)


def tissue_statistics(
    values: np.ndarray,
    *,
    roi_name: str,
    modality: str,
    pixel_mm2: float | None,
    settings: TissueSettings = TissueSettings(),
) -> dict[str, float]:
    """Return the intensity statistics of one ROI on one slice.

    Args:
        values: the ROI's pixel values in modality units (any shape; flattened).
        roi_name: the ROI's name (decides whether it is a muscle).
        modality: (0008,0060) Modality of the slice; "CT" adds the muscle composition.
        pixel_mm2: area of one pixel (row × column spacing), None when unknown.
        settings: the CT thresholds and which ROIs are muscles.

    Returns:
        ``mean_intensity``, ``std_intensity`` (of the pixels, ddof 0), ``median_intensity``
        (NaN for an empty ROI); on CT for a muscle also :data:`CT_COLUMNS`.

    Example:
        >>> tissue_statistics(np.array([-100.0, 50, 50, 50, 50]), roi_name="psoas",
        ...                   modality="CT", pixel_mm2=1.0)["imat_fraction"]
        0.2
    """
    pixels = np.asarray(values, dtype=np.float64).ravel()
    empty = pixels.size == 0
    stats = {
        "mean_intensity": np.nan if empty else float(pixels.mean()),
        "std_intensity": np.nan if empty else float(pixels.std()),
        "median_intensity": np.nan if empty else float(np.median(pixels)),
    }
    if modality.strip().upper() == "CT" and settings.is_muscle(roi_name):
        stats.update(_muscle_composition(pixels, pixel_mm2, settings))
    return stats


def roi_tissue(
    image: Slice,
    mask: np.ndarray,
    roi_name: str,
    spacing_mm: tuple[float, float] | None,
    *,
    settings: TissueSettings = TissueSettings(),
) -> dict[str, float]:
    """Return :func:`tissue_statistics` of the pixels of ``image`` under ``mask``.

    Args:
        image: the slice (its pixels in modality units and its (0008,0060) Modality).
        mask: (rows, cols) boolean mask of the ROI on the slice's grid.
        roi_name: the ROI's name.
        spacing_mm: (row, col) spacing used for the areas, None when unknown.
        settings: the CT thresholds and which ROIs are muscles.
    """
    pixel_mm2 = None if spacing_mm is None else spacing_mm[0] * spacing_mm[1]
    return tissue_statistics(
        image.pixels[mask],
        roi_name=roi_name,
        modality=image.modality,
        pixel_mm2=pixel_mm2,
        settings=settings,
    )


def _muscle_composition(
    hu: np.ndarray, pixel_mm2: float | None, settings: TissueSettings
) -> dict[str, float]:
    low, high = settings.adipose_hu
    adipose = int(np.count_nonzero((hu >= low) & (hu <= high)))
    low, high = settings.muscle_hu
    muscle = hu[(hu >= low) & (hu <= high)]
    return {
        "imat_fraction": adipose / hu.size if hu.size else np.nan,
        "imat_mm2": np.nan if pixel_mm2 is None else adipose * pixel_mm2,
        "muscle_radiodensity_hu": float(muscle.mean()) if muscle.size else np.nan,
    }
