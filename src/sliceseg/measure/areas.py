"""Areas per ROI per slice in mm², from label maps on the DICOM's own grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path
from sliceseg.measure.tissue import TissueSettings, roi_tissue

SUMMARY_ROWS = ("mean", "std")
CONFIDENCE_COLUMN = "confidence"  # a wide table's per-slice confidence, not an area


@dataclass(frozen=True)
class SpacingFallback:
    """Spacing for files without (0028,0030) PixelSpacing, from the user manual's FOV / matrix.

    Attributes:
        fov_mm: field of view (rows mm, columns mm); one number means a square FOV.
        matrix: acquisition matrix (rows, columns); None means the image's own shape.
        pixels_only: measure in pixels instead when no spacing is known.
    """

    fov_mm: tuple[float, float] | None = None
    matrix: tuple[int, int] | None = None
    pixels_only: bool = False

    def __post_init__(self) -> None:
        if self.fov_mm is not None and any(v <= 0 for v in self.fov_mm):
            raise ConfigError(f"--fov must be positive millimetres, got {self.fov_mm}.")
        if self.matrix is not None and any(v <= 0 for v in self.matrix):
            raise ConfigError(f"--matrix must be positive pixel counts, got {self.matrix}.")


def resolve_spacing(
    image: Slice, fallback: SpacingFallback = SpacingFallback()
) -> tuple[tuple[float, float] | None, str]:
    """Return a slice's (row, col) spacing in mm and where it came from.

    Args:
        image: the slice; its own spacing wins when present.
        fallback: FOV / matrix for files without spacing.

    Returns:
        ``(spacing_mm, source)``: source is the DICOM keyword, ``"fov/matrix"``, or ``"pixels"``
        (then spacing is None and areas are pixel counts).

    Raises:
        ConfigError: the file has no spacing and no fallback was given, or ``--matrix`` does
            not match the image's shape.
    """
    if image.spacing_mm is not None:
        return image.spacing_mm, image.spacing_source
    if fallback.fov_mm is not None:
        matrix = fallback.matrix or image.shape
        if tuple(matrix) != tuple(image.shape):
            raise ConfigError(
                f"{image.source}: image is {image.shape[0]}×{image.shape[1]} pixels but --matrix "
                f"says {matrix[0]}×{matrix[1]}; give the matrix the image was stored with."
            )
        return (fallback.fov_mm[0] / matrix[0], fallback.fov_mm[1] / matrix[1]), "fov/matrix"
    if fallback.pixels_only:
        return None, "pixels"
    raise ConfigError(
        f"{image.source}: no PixelSpacing (0028,0030) in the file, so areas in mm² are unknown; "
        "give --fov MM (and --matrix ROWS COLS), or --pixels to report pixel counts."
    )


def area_mm2(mask: np.ndarray, spacing_mm: tuple[float, float]) -> float:
    """Return the area of a boolean mask: pixel count × row spacing × column spacing.

    Example:
        >>> area_mm2(np.ones((10, 10), bool), (0.5, 0.8))
        40.0
    """
    return float(np.count_nonzero(mask)) * float(spacing_mm[0]) * float(spacing_mm[1])


@dataclass(frozen=True)
class AreaTable:
    """Cross-sectional areas of every ROI on every slice.

    Attributes:
        wide: one row per slice (index "1".."N", columns ``file`` then one per ROI name), then
            the ``mean`` and ``std`` rows, as in the user manual.
        long: tidy table (slice, file, roi, roi_name, pixels, area_mm2, mean_intensity,
            spacing_source) for statistics tools.
        unit: "mm2", or "pixels" when no slice had a spacing.
    """

    wide: pd.DataFrame
    long: pd.DataFrame
    unit: str = "mm2"

    @property
    def per_slice(self) -> pd.DataFrame:
        """The wide table without the summary rows, ROI columns only."""
        return (
            self.wide.drop(index=list(SUMMARY_ROWS))
            .drop(columns=["file", CONFIDENCE_COLUMN], errors="ignore")
            .astype(float)
        )

    def to_text(self) -> str:
        """Return the wide table as aligned text with one decimal."""
        shown = self.wide.drop(columns=[CONFIDENCE_COLUMN], errors="ignore")
        for column in shown.columns[1:]:
            shown[column] = shown[column].map(lambda v: f"{v:.1f}")
        shown.loc[list(SUMMARY_ROWS), "file"] = ""
        header = "Cross-sectional area (mm²)" if self.unit == "mm2" else "Area (pixels)"
        return f"{header}\n{shown.to_string()}"

    def save(self, out_dir: Path | str) -> tuple[Path, Path]:
        """Write ``csa.csv`` (wide) and ``csa_long.csv`` (tidy) atomically; return their paths."""
        out = Path(out_dir)
        wide_path, long_path = out / "csa.csv", out / "csa_long.csv"
        with atomic_path(wide_path) as tmp:
            self.wide.to_csv(tmp, index_label="slice")
        with atomic_path(long_path) as tmp:
            self.long.to_csv(tmp, index=False)
        return wide_path, long_path


def measure_areas(
    labels: Sequence[np.ndarray],
    images: Sequence[Slice],
    roi_names: Sequence[str],
    *,
    names: Sequence[str] | None = None,
    fallback: SpacingFallback = SpacingFallback(),
    keep_patient_info: bool = False,
    tissue: TissueSettings = TissueSettings(),
) -> AreaTable:
    """Measure every ROI on every slice at the slice's own resolution.

    Args:
        labels: label maps (rows, cols), values 0..K, one per slice, on each slice's grid.
        images: the slices, for spacing and mean intensity.
        roi_names: names of ROIs 1..K.
        names: file names to show per slice; defaults to each slice's name.
        fallback: spacing for files without PixelSpacing.
        keep_patient_info: add each slice's PatientID and PatientName to the tidy table; left
            out by default so that tables can be shared.
        tissue: CT thresholds of the muscle composition. The tidy table has, per slice and
            ROI, ``mean_intensity``, ``std_intensity`` and ``median_intensity`` in modality
            units and, for muscles on CT, the columns of `sliceseg.measure.tissue.CT_COLUMNS`.

    Returns:
        The wide and tidy tables.

    Raises:
        ConfigError: a label map's shape differs from its slice, or a slice has no spacing
            and no fallback was given.

    Example:
        >>> table = measure_areas([label], [image], ["vertebral body"])
        >>> table.wide.loc["mean", "vertebral body"]
    """
    if len(labels) != len(images):
        raise ConfigError(f"{len(labels)} label maps for {len(images)} slices; give one per slice.")
    names = list(names) if names is not None else [image.name for image in images]
    wide_rows, long_rows = [], []
    units = set()
    for number, (label, image, name) in enumerate(zip(labels, images, names, strict=True), 1):
        if label.shape != image.shape:
            raise ConfigError(
                f"{name}: label map is {label.shape[0]}×{label.shape[1]} but the image is "
                f"{image.shape[0]}×{image.shape[1]}; a label must be on its image's own grid."
            )
        spacing, source = resolve_spacing(image, fallback)
        units.add("pixels" if spacing is None else "mm2")
        row: dict[str, object] = {"file": name}
        for roi, roi_name in enumerate(roi_names, 1):
            mask = label == roi
            pixels = int(np.count_nonzero(mask))
            area = float(pixels) if spacing is None else area_mm2(mask, spacing)
            row[roi_name] = area
            long_rows.append(
                {
                    "slice": number,
                    "file": name,
                    **(
                        {"patient_id": image.patient_id, "patient_name": image.patient_name}
                        if keep_patient_info
                        else {}
                    ),
                    "roi": roi,
                    "roi_name": roi_name,
                    "pixels": pixels,
                    "area_mm2": np.nan if spacing is None else area,
                    **roi_tissue(image, mask, roi_name, spacing, settings=tissue),
                    "row_spacing_mm": np.nan if spacing is None else spacing[0],
                    "col_spacing_mm": np.nan if spacing is None else spacing[1],
                    "spacing_source": source,
                }
            )
        wide_rows.append(row)
    if len(units) > 1:
        raise ConfigError(
            "some slices have a pixel spacing and others do not; give --fov / --matrix so every "
            "slice is measured in mm²."
        )
    wide = pd.DataFrame(wide_rows, columns=["file", *roi_names])
    wide.index = [str(i) for i in range(1, len(wide) + 1)]
    values = wide[list(roi_names)].astype(float)
    wide.loc["mean"] = ["", *values.mean(axis=0).tolist()]
    wide.loc["std"] = ["", *values.std(axis=0, ddof=1).fillna(0.0).tolist()]
    long = pd.DataFrame(long_rows)
    return AreaTable(wide=wide, long=long, unit=units.pop() if units else "mm2")
