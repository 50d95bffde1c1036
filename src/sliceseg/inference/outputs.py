"""What a prediction writes: label maps, overlays, thumbnails, GIFs, area plots, tables, report.

`write_outputs` lays out one folder the same way for a whole ``predict_folder`` run and for
each series of a cohort (``OUT/series/<name>/``): ``labels/<key>.png``, ``overlays/<key>.jpg``,
``thumbnails/<key>.jpg``, ``segmentation.gif``, ``areas.png``, ``csa.csv``, ``csa_long.csv``,
``exports/`` and ``report.html``. Series are grouped by `sliceseg.io.identity.series_key`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from sliceseg.inference.predict import Prediction
from sliceseg.io.dicom import SkippedFile
from sliceseg.io.identity import series_key, used_series_names
from sliceseg.io.labels import write_label_png
from sliceseg.io.neighbours import series_order
from sliceseg.measure.areas import AreaTable
from sliceseg.measure.summary_rows import unit_name
from sliceseg.report.display import display_window, shown_as
from sliceseg.report.exports import SeriesExport, export_predictions
from sliceseg.report.html import write_report
from sliceseg.report.plots import plot_areas
from sliceseg.report.thumbnails import save_thumbnail
from sliceseg.report.visualize import save_animation, save_overlay


@dataclass(frozen=True)
class Visuals:
    """Which pictures a run draws; label maps, tables and exports are always written.

    Attributes:
        keys: the slices that get an overlay and a thumbnail; None means every slice.
        animations: one GIF per series.
        figures: one area plot per series.
    """

    keys: frozenset[str] | None = None
    animations: bool = True
    figures: bool = True

    def draws(self, key: str) -> bool:
        """True when slice ``key`` gets an overlay and a thumbnail."""
        return self.keys is None or key in self.keys


def _series_groups(predictions: Sequence[Prediction]) -> list[tuple[str, list[Prediction]]]:
    """The predictions grouped by `series_key`, series in order of first appearance."""
    groups: dict[str, list[Prediction]] = {}
    for prediction in predictions:
        groups.setdefault(series_key(prediction.image), []).append(prediction)
    return list(groups.items())


def along_normal(members: Sequence[Prediction]) -> list[Prediction]:
    """One series' predictions in order along the slice normal (`series_order`)."""
    by_image = {id(p.image): p for p in members}
    return [by_image[id(image)] for image in series_order([p.image for p in members])]


def write_slice_outputs(
    out: Path,
    predictions: Sequence[Prediction],
    roi_names: Sequence[str],
    progress: bool,
    visuals: Visuals = Visuals(),
) -> list[tuple[str, Path]]:
    """Write every slice's label map and, for the slices ``visuals`` draws, overlay and thumbnail.

    Returns:
        (key, overlay path) of the slices drawn.
    """
    overlays = []
    for prediction in tqdm(predictions, desc="writing", unit="slice", disable=not progress):
        write_label_png(out / "labels" / f"{prediction.key}.png", prediction.label)
        if not visuals.draws(prediction.key):
            continue
        pixels, window, spacing_mm = shown_as(prediction.image)
        overlay = overlay_path(out, prediction.key)
        save_overlay(
            overlay, pixels, prediction.label, roi_names,
            title=prediction.key, window=window, spacing_mm=spacing_mm,
        )  # fmt: skip
        save_thumbnail(
            _thumbnail_path(out, prediction.key), pixels, prediction.label,
            window=window, spacing_mm=spacing_mm,
        )  # fmt: skip
        overlays.append((prediction.key, overlay))
    return overlays


def overlay_path(out: Path, key: str) -> Path:
    """Where slice ``key``'s overlay (its label map over the image, with a legend) lies."""
    return out / "overlays" / f"{key}.jpg"


def _thumbnail_path(out: Path, key: str) -> Path:
    """Where slice ``key``'s thumbnail lies under ``out``."""
    return out / "thumbnails" / f"{key}.jpg"


_ALONG_NORMAL = "along the slice normal; the tables go by InstanceNumber"
"""The area plots' x-axis order (`series_figures`), said on the axis: where InstanceNumbers do
not follow the position, the plot's k-th point is not the table's k-th row."""


def series_figures(
    out: Path, predictions: Sequence[Prediction], areas: AreaTable, names: Mapping[str, str]
) -> list[tuple[str, Path]]:
    """One area-along-the-series plot per series: ``areas.png``, or ``areas_<name>.png`` for
    several, named as the tables and exports name the series (``names``: `slices_series_names`).

    Its slices go along the slice normal, as the series' GIF frames do (`along_normal`): the
    lines join neighbouring slices whatever order the InstanceNumbers put the table in.
    """
    table = areas.per_slice
    table.insert(0, "file", [p.key for p in predictions])
    row_of = {id(p): n for n, p in enumerate(predictions)}
    groups = _series_groups(predictions)
    figures = []
    for uid, members in groups:
        name = names[uid]
        rows = table.iloc[[row_of[id(p)] for p in along_normal(members)]]
        path = _series_file(out, "areas", ".png", name, several=len(groups) > 1)
        plot_areas(rows, path=path, unit=unit_name(areas.unit), order=_ALONG_NORMAL)
        first, last = rows["file"].iloc[0], rows["file"].iloc[-1]
        caption = "Area of each ROI along the series"
        if len(groups) > 1:
            caption += f" — series {name} ({first} … {last}, {len(rows)} slices)"
        figures.append((caption, path))
    return figures


def _series_file(out: Path, stem: str, suffix: str, name: str, *, several: bool) -> Path:
    """A per-series picture's path: ``<stem><suffix>`` alone, ``<stem>_<name><suffix>`` among
    several series (``areas_p01.png``)."""
    return out / (f"{stem}_{name}{suffix}" if several else f"{stem}{suffix}")


def write_animations(
    out: Path,
    predictions: Sequence[Prediction],
    roi_names: Sequence[str],
    names: Mapping[str, str],
) -> list[Path]:
    """One GIF per series: ``segmentation.gif``, or ``segmentation_<name>.gif`` for several
    (``names``: per `series_key`, the series' name, `slices_series_names`).

    Its frames step along the slice normal (`series_order`: by position where the headers
    give one), whatever order the InstanceNumbers or file names put the slices in.
    """
    groups = _series_groups(predictions)
    paths = []
    for uid, members in groups:
        ordered = along_normal(members)
        path = _series_file(out, "segmentation", ".gif", names[uid], several=len(groups) > 1)
        save_animation(
            path,
            [p.image.display_pixels for p in ordered],
            [p.label for p in ordered],
            roi_names,
            titles=[p.key for p in ordered],
            window=display_window(ordered[0].image),
            spacings_mm=[p.image.spacing_mm for p in ordered],
        )
        paths.append(path)
    return paths


def write_outputs(
    out: Path,
    predictions: Sequence[Prediction],
    areas: AreaTable,
    warnings: list[str],
    skipped: Sequence[SkippedFile],
    *,
    roi_names: Sequence[str],
    settings: dict[str, object] | None,
    exports: Sequence[str],
    series_names: Mapping[str, str],
    progress: bool,
    unlike_training: Sequence[str] = (),
    visuals: Visuals = Visuals(),
) -> tuple[list[Path], Path | None, list[SeriesExport]]:
    """Write tables, label maps, overlays, animations, exports and (with settings) the report.

    ``series_names``: per `series_key`, the series' name (`slices_series_names`), which its
    exports, pictures, tables and the report all take.
    """
    names = list(roi_names)
    images = [p.image for p in predictions]
    series = used_series_names(images, series_names)
    areas = areas.named(list(series.values()))
    areas.save(out)
    overlays = write_slice_outputs(out, predictions, names, progress, visuals)
    animations = write_animations(out, predictions, names, series) if visuals.animations else []
    exported = export_predictions(
        out / "exports",
        images,
        [p.label for p in predictions],
        series,
        names,
        formats=exports,
    )
    report_path = None
    if settings is not None:
        report_path = _write_run_report(
            out,
            predictions,
            areas,
            overlays,
            warnings,
            skipped,
            settings,
            unlike_training,
            figures=series if visuals.figures else None,
        )
    return animations, report_path, exported


def _write_run_report(
    out: Path,
    predictions: Sequence[Prediction],
    areas: AreaTable,
    overlays: list[tuple[str, Path]],
    warnings: list[str],
    skipped: Sequence[SkippedFile],
    settings: dict[str, object],
    unlike_training: Sequence[str] = (),
    *,
    figures: Mapping[str, str] | None = None,
) -> Path:
    """Write ``out/report.html``: settings, areas, the drawn slices, warnings and, given the
    series' names (``figures``: `slices_series_names`), an area plot per series."""
    return write_report(
        out / "report.html",
        title="sliceseg segmentation report",
        settings=settings,
        area_table=areas.wide,
        overlays=overlays,
        figures=series_figures(out, predictions, areas, figures) if figures is not None else [],
        warnings=warnings,
        notes=[f"Skipped {s.describe()}" for s in skipped],
        area_unit=unit_name(areas.unit),
        thumbnails=[_thumbnail_path(out, key) for key, _path in overlays],
        unlike_training=unlike_training,
    )
