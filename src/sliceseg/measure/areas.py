"""Areas per ROI per slice in mm², from label maps on the DICOM's own grid."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.io.files import atomic_path
from sliceseg.io.identity import series_key
from sliceseg.io.roi_values import check_class_map, parse_roi_names
from sliceseg.io.tables import write_csv
from sliceseg.measure.spacing import SpacingFallback, pixels_beside_mm_message, resolve_spacing
from sliceseg.measure.summary_rows import (
    PRESENT,
    SAMPLE_STD,
    SUMMARY_ROWS,
    area_column,
    overall_line,
    overall_note,
    series_row,
    shown_number,
    with_summary_rows,
)
from sliceseg.measure.tissue import TissueSettings, check_muscle_rois, roi_tissue
from sliceseg.measure.tissue_notes import SeriesTissue, TissueWarning, series_tissue, tissue_lines

SUMMARY_NOTE = f"mean, {SAMPLE_STD}: over the {PRESENT}; n: how many"  # under the printed table
CONFIDENCE_COLUMN = "confidence"  # a wide table's per-slice confidence, not an area
FAMILIARITY_COLUMN = "unlike_training"  # 1 on the slices of a series unlike the training data


def is_summary_row(label: object) -> bool:
    """True for a wide table's summary rows: ``mean`` / ``std`` / ``n``, ``mean series p01`` / ...
    (a series' name may hold spaces and digits; a slice row's label is its number).

    Example:
        >>> [is_summary_row(label) for label in ("3", "mean series site 01", "std", "n series 2")]
        [False, True, True, True]
    """
    words = str(label).split()
    return bool(words) and words[0] in SUMMARY_ROWS and (len(words) == 1 or words[1] == "series")


def is_count_row(label: object) -> bool:
    """True for the summary rows that count slices: ``n`` and ``n series 2`` / ...

    Example:
        >>> [is_count_row(label) for label in ("n", "n series 2", "mean", "7")]
        [True, True, False, False]
    """
    return is_summary_row(label) and str(label).split()[0] == "n"


def slice_positions(wide: pd.DataFrame) -> list[int]:
    """Positions of a wide table's slice rows (not its summary rows), in order, for ``iloc``
    (a fraction of ``loc``'s cost on a one-slice series' table).

    Example:
        >>> slice_positions(pd.DataFrame({"disc": [1.0, 1.0, 0.0]}, index=["1", "2", "mean"]))
        [0, 1]
    """
    return [i for i, label in enumerate(wide.index) if not is_summary_row(label)]


def with_whole_counts(wide: pd.DataFrame) -> pd.DataFrame:
    """Return a wide table as its CSV holds it: the ``n`` rows' counts and the
    ``unlike_training`` marks as whole numbers (``12``, not ``12.0``); areas as they are.

    Example:
        >>> table = pd.DataFrame({"file": ["a", ""], "disc": [2.5, 1.0]}, index=["1", "n"])
        >>> with_whole_counts(table)["disc"].tolist()
        [2.5, 1]
    """
    areas = [c for c in wide.columns if c not in ("file", CONFIDENCE_COLUMN, FAMILIARITY_COLUMN)]
    counts = [row for row, label in enumerate(wide.index) if is_count_row(label)]
    table = wide.copy()
    for column in areas:  # object columns of the same floats: they write as before
        values = wide[column].to_numpy(dtype=object)
        for row in counts:
            values[row] = _whole(values[row])
        table[column] = values
    if FAMILIARITY_COLUMN in wide.columns:
        marks = [_whole(v) for v in wide[FAMILIARITY_COLUMN]]
        table[FAMILIARITY_COLUMN] = pd.Series(marks, index=wide.index, dtype=object)
    return table


def _whole(value: object) -> object:
    """A count or a mark as an int (an empty cell stays empty)."""
    return value if pd.isna(value) else int(float(value))  # type: ignore[arg-type]


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
        wide: one row per slice (index "1".."N", columns ``file`` then one per ROI name), then,
            when the slices come from two or more series, ``mean series k``, ``std series k``
            and ``n series k`` for each series k (its ``file`` cell names its first and last
            slice; `named` puts the series' names in k's place, as the written tables have
            them), then the overall ``mean``, ``std`` and ``n`` rows, as in the user manual.
            Mean and std are over the slices where the ROI is present (area > 0), the number a
            paper reports; ``n`` counts those slices. ``std`` is NaN (an empty cell in the CSV)
            over a single slice, mean and std are NaN where an ROI is on no slice (``n`` 0).
        long: tidy table (slice, series, file, roi, roi_name, pixels, area_mm2, mean_intensity,
            spacing) for statistics tools; ``series`` numbers the series 1, 2, ... in order
            (`named`: their names).
        unit: "mm2", or "pixels" when no slice had a spacing.
        series: the series number of each slice row of ``wide``, in order: the key that
            groups slices, also once the tables name the series.
        tissue: per series number, what leaves its tissue columns out (`series_tissue`).
    """

    wide: pd.DataFrame
    long: pd.DataFrame
    unit: str = "mm2"
    series: tuple[int, ...] = ()
    tissue: tuple[SeriesTissue, ...] = ()

    @property
    def per_slice(self) -> pd.DataFrame:
        """The wide table without the summary rows, ROI columns only."""
        return (
            self.wide.iloc[slice_positions(self.wide)]
            .drop(columns=["file", CONFIDENCE_COLUMN, FAMILIARITY_COLUMN], errors="ignore")
            .astype(float)
        )

    def named(self, names: Sequence[str]) -> AreaTable:
        """The table as a user reads it: series k is ``names[k - 1]`` in the tidy table's
        ``series`` column and in the per-series rows (``mean series p01``); ``series`` stays.

        Example:
            >>> table.named(["p01", "p02"]).long["series"].unique().tolist()
            ['p01', 'p02']
        """
        if not self.series:
            return self
        groups = sorted(set(self.series))  # the per-series rows' order (`with_summary_rows`)
        per_series = (label for label in self.wide.index if str(label).split()[1:2] == ["series"])
        labels = {
            label: series_row(str(label).split()[0], names[groups[j // 3] - 1])
            for j, label in enumerate(per_series)
        }
        long = self.long.copy()
        if len(long):  # by each row's slice, so naming twice names the same
            long["series"] = [names[self.series[k - 1] - 1] for k in long["slice"]]
        return dataclasses.replace(self, wide=self.wide.rename(index=labels), long=long)

    def to_text(self) -> str:
        """Return the wide table as text (one decimal, empty std "–"; overall rows' note last)."""
        shown = self.wide.drop(columns=[CONFIDENCE_COLUMN, FAMILIARITY_COLUMN], errors="ignore")
        for column in shown.columns[1:]:
            shown[column] = [_shown(v, label) for label, v in shown[column].items()]
        more = overall_note(shown.loc["mean", "file"]) if "mean" in shown.index else ""
        shown.loc[[row for row in SUMMARY_ROWS if row in shown.index], "file"] = ""
        header = "Cross-sectional area (mm²)" if self.unit == "mm2" else "Area (pixels)"
        note = f"; {overall_line(more)}" if more else ""
        return f"{header}\n{shown.to_string()}\n{SUMMARY_NOTE}{note}"

    def save(self, out_dir: Path | str) -> tuple[Path, Path]:
        """Write ``csa.csv`` (wide; in pixels its ROI columns say so: ``psoas (pixels)``) and
        ``csa_long.csv`` (tidy) atomically; return their paths."""
        out = Path(out_dir)
        wide_path, long_path = out / "csa.csv", out / "csa_long.csv"
        units = {roi: area_column(roi, self.unit) for roi in self.per_slice.columns}
        wide = with_whole_counts(self.wide).rename(columns=units)
        with atomic_path(wide_path) as tmp:
            write_csv(wide, tmp, index_label="slice")
        with atomic_path(long_path) as tmp:
            write_csv(self.long, tmp, index=False)
        return wide_path, long_path


def measure_areas(
    labels: Sequence[np.ndarray],
    images: Sequence[Slice],
    roi_names: str | Sequence[str],
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
        roi_names: names of ROIs 1..K (a string: comma-separated names).
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
        ConfigError: a label map's shape differs from its slice, a slice has no spacing
            and no fallback was given, or ``tissue.muscle_rois`` names an ROI not measured.
        LabelError: a label map holds a value other than 0..K (K = ``len(roi_names)``).

    Example:
        >>> table = measure_areas([label], [image], ["vertebral body"])
        >>> table.wide.loc["mean", "vertebral body"]
    """
    roi_names = parse_roi_names(roi_names)  # "muscle" is one ROI, not six
    if len(labels) != len(images):
        raise ConfigError(f"{len(labels)} label maps for {len(images)} slices; give one per slice.")
    check_muscle_rois(tissue, roi_names)
    names = list(names) if names is not None else [image.name for image in images]
    wide_rows, long_rows = [], []
    units: dict[str, Slice] = {}  # unit -> the first slice measured in it
    found, not_hu = _tissue_warnings(images, names, roi_names, tissue)
    for number, (label, image, name) in enumerate(zip(labels, images, names, strict=True), 1):
        check_class_map(label, image.shape, len(roi_names), name=name)
        spacing, source = resolve_spacing(image, fallback)
        units.setdefault("pixels" if spacing is None else "mm2", image)
        ids = {"slice": number, "file": name, **(_patient(image) if keep_patient_info else {})}
        areas, rows = _roi_rows(
            label, image, roi_names, ids, spacing=(spacing, source), tissue=tissue,
            is_hu=number - 1 not in not_hu,
        )  # fmt: skip
        wide_rows.append({"file": name, **areas})
        long_rows.extend(rows)
    if len(units) > 1:
        raise ConfigError(pixels_beside_mm_message(units["pixels"], units["mm2"], slices="slices"))
    numbers = _series_numbers(images)
    long = pd.DataFrame(long_rows)
    if len(long):
        long.insert(1, "series", [numbers[row - 1] for row in long["slice"]])
    wide = with_summary_rows(pd.DataFrame(wide_rows, columns=["file", *roi_names]), numbers)
    unit = next(iter(units), "mm2")
    return AreaTable(wide=wide, long=long, unit=unit, series=numbers, tissue=found)


def _roi_rows(
    label: np.ndarray,
    image: Slice,
    roi_names: Sequence[str],
    ids: dict[str, object],
    *,
    spacing: tuple[tuple[float, float] | None, str],
    tissue: TissueSettings,
    is_hu: bool,
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """One slice's area per ROI (its wide row) and its tidy rows, tissue statistics included;
    ``spacing``: `resolve_spacing`'s (spacing or None for pixel counts, its source)."""
    row_col, source = spacing
    areas: dict[str, float] = {}
    rows: list[dict[str, object]] = []
    for roi, roi_name in enumerate(roi_names, 1):
        mask = label == roi
        pixels = int(np.count_nonzero(mask))
        area = float(pixels) if row_col is None else area_mm2(mask, row_col)
        areas[roi_name] = area
        rows.append(
            {
                **ids,
                "roi": roi,
                "roi_name": roi_name,
                "pixels": pixels,
                "area_mm2": np.nan if row_col is None else area,
                **roi_tissue(image, mask, roi_name, row_col, settings=tissue, is_hu=is_hu),
                "row_spacing_mm": np.nan if row_col is None else row_col[0],
                "col_spacing_mm": np.nan if row_col is None else row_col[1],
                "spacing_source": source,
            }
        )
    return areas, rows


def _series_numbers(images: Sequence[Slice]) -> tuple[int, ...]:
    """Number each slice's series 1, 2, ... in order of first appearance."""
    numbers: dict[str, int] = {}
    return tuple(numbers.setdefault(series_key(image), len(numbers) + 1) for image in images)


def _patient(image: Slice) -> dict[str, str]:
    """The tidy table's patient columns, only with ``keep_patient_info``."""
    return {"patient_id": image.patient_id, "patient_name": image.patient_name}


def _shown(value: float, label: object) -> str:
    """A wide table's cell as text (`shown_number`): a count whole, an area to 0.1."""
    return shown_number(value, is_count=is_count_row(label))


def _tissue_warnings(
    images: Sequence[Slice],
    names: Sequence[str],
    roi_names: Sequence[str],
    settings: TissueSettings,
) -> tuple[tuple[SeriesTissue, ...], set[int]]:
    """Say once for all series what tissue columns they lack (`tissue_lines`; ``names``: the
    slices' keys, which name the series as the tables do); return what each series lacks and
    the slices not in HU."""
    found, not_hu = series_tissue(images, names)
    for line in tissue_lines(found, roi_names, settings):
        warnings.warn(line, TissueWarning, stacklevel=3)
    return tuple(found.values()), not_hu
