"""Plots of numbers: training history, areas along a series, Bland–Altman agreement."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.measure.areas import is_summary_row
from sliceseg.measure.summary_rows import shown_number, summary_stats
from sliceseg.report.colours import roi_colour_hex
from sliceseg.report.figures import new_figure, save_figure

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn (`new_figure`)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _slice_values(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    rows = table.drop(index=[label for label in table.index if is_summary_row(label)])
    names = rows["file"].astype(str).tolist() if "file" in rows else [str(i) for i in rows.index]
    return rows.drop(columns=["file"], errors="ignore").astype(float), names


def _finish(fig: Figure, path: Path | str | None) -> Figure:
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_history(history: pd.DataFrame, *, path: Path | str | None = None) -> Figure:
    """Plot the training history: loss (left) and Dice (right) against the epoch.

    Args:
        history: one row per epoch with ``epoch`` and any of ``loss``, ``dice_loss``,
            ``train_dice``, ``val_dice`` (mean over ROIs), ``val_dice_<roi name>`` (drawn in the
            ROI's colour, ROIs in column order) and ``lr`` (drawn when it changes).
            Validation columns may be NaN on epochs without validation.
        path: save the figure here (PNG) when given.

    Returns:
        The figure.

    Raises:
        ConfigError: the table has no ``epoch`` column.
    """
    if "epoch" not in history.columns:
        raise ConfigError(f"history needs an 'epoch' column; it has {list(history.columns)}.")
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(11.0, 4.2)
    loss_ax, dice_ax = fig.subplots(1, 2)

    def draw(ax: Axes, column: str, label: str, **style: Any) -> None:
        points = history[["epoch", column]].dropna()
        if len(points):
            ax.plot(points["epoch"], points[column], label=label, **style)

    for column, label, style in (("loss", "loss", "-"), ("dice_loss", "Dice loss", "--")):
        if column in history:
            draw(loss_ax, column, label, linestyle=style, color="black")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Training loss")
    handles, labels = loss_ax.get_legend_handles_labels()
    if "lr" in history and history["lr"].nunique() > 1:
        lr_ax = loss_ax.twinx()
        draw(lr_ax, "lr", "learning rate", linestyle=":", color="tab:gray")
        lr_ax.set(ylabel="learning rate", yscale="log")
        lr_handles, lr_labels = lr_ax.get_legend_handles_labels()
        handles, labels = handles + lr_handles, labels + lr_labels
    if handles:
        loss_ax.legend(handles, labels, fontsize=8)
    if "train_dice" in history:
        draw(dice_ax, "train_dice", "train (mean)", color="black")
    if "val_dice" in history:
        draw(dice_ax, "val_dice", "validation (mean)", color="black", linestyle="--", marker="o")
    roi_columns = [c for c in history.columns if c.startswith("val_dice_")]
    for k, column in enumerate(roi_columns, 1):
        name = column.removeprefix("val_dice_")
        draw(dice_ax, column, name, color=roi_colour_hex(k), marker=".", linewidth=1)
    dice_ax.set(xlabel="epoch", ylabel="Dice", title="Dice (1 = perfect overlap)", ylim=(0, 1.02))
    if dice_ax.get_legend_handles_labels()[0]:
        dice_ax.legend(fontsize=8, loc="lower right", ncol=1 + len(roi_columns) // 8)
    for ax in (loss_ax, dice_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
    return _finish(fig, path)


def _series_ids(values: pd.DataFrame, series: Sequence[str] | None) -> list[str]:
    """One series id per slice row (``""`` each without ``series``); refuse a mismatch."""
    if values.empty:
        raise ConfigError("the area table has no slice row to plot; measure at least one slice.")
    ids = list(series) if series is not None else [""] * len(values)
    if len(ids) != len(values):
        raise ConfigError(f"{len(ids)} series ids for {len(values)} slices; give one per slice.")
    return ids


def plot_areas(
    area_table: pd.DataFrame,
    *,
    path: Path | str | None = None,
    unit: str = "mm²",
    series: Sequence[str] | None = None,
    order: str = "series order",
) -> Figure:
    """Plot each ROI's area along the series: one panel per ROI, in the ROI's colour.

    Each ROI gets its own y-axis, so a 300 mm² muscle is as readable as a 15 000 mm² fat ring.
    Each panel's title gives the ROI's mean ± SD over the slices where it is present (area >
    0), as the ``mean`` and ``std`` rows of ``csa.csv``.
    When ``series`` is given, lines break between series and dashed lines mark where a new
    series starts.

    Args:
        area_table: rows = slices in series order, columns = ROI names in ROI order (areas);
            a ``file`` column labels the slices, and the summary rows (``mean``, ``std``,
            ``n``, per series too) are left out.
        path: save the figure here (PNG) when given.
        unit: the unit of the areas, for the axis label.
        series: one series id per slice (e.g. SeriesInstanceUID), same order as the rows.
        order: what orders the rows, for the x-axis label (``slice (<order>)``).

    Returns:
        The figure; ``fig.axes[k - 1]`` is ROI k's panel.

    Raises:
        ConfigError: ``series`` has a different length from the table, or the table has no
            slice row.
    """
    values, slices = _slice_values(area_table)
    ids = _series_ids(values, series)
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    segments = list(zip(starts, [*starts[1:], len(ids)], strict=True))
    columns = min(3, max(1, values.shape[1]))
    rows = -(-values.shape[1] // columns)
    width = min(16.0, max(8.0, 3.0 + 0.12 * len(values) * columns))
    fig = new_figure(width, 2.6 * rows + 0.6)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    x = np.arange(1, len(values) + 1)
    for k, (ax, name) in enumerate(zip(axes, values.columns, strict=False), 1):
        area = values[name].to_numpy()
        for first, stop in segments:
            ax.plot(
                x[first:stop],
                area[first:stop],
                marker="o",
                markersize=2.5,
                color=roi_colour_hex(k),
                label=name if first == 0 else "_nolegend_",
            )
        for first in starts[1:]:
            ax.axvline(first + 0.5, color="#8c959f", linestyle="--", linewidth=0.8)
        stats = _present_stats(area)
        ax.set_title(_panel_title(str(name), stats, width / columns), fontsize=9, loc="left")
        ax.spines["top"].set(color=roi_colour_hex(k), linewidth=3)  # the ROI's colour swatch
        ax.margins(y=0.15)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[values.shape[1] :]:
        ax.set_visible(False)
    step = max(1, len(x) // 12)
    for index, ax in enumerate(axes[: values.shape[1]]):
        lowest_in_column = index + columns >= values.shape[1]
        labels = [slices[i] for i in range(0, len(x), step)] if lowest_in_column else []
        ax.set_xticks(x[::step], labels, rotation=60, ha="right", fontsize=6)
    fig.supxlabel(f"slice ({order})", fontsize=9)
    fig.supylabel(f"area ({unit})", fontsize=9)
    fig.suptitle("Area of each ROI along the series (mean ± sample SD where present)", fontsize=11)
    return _finish(fig, path)


def _present_stats(area: np.ndarray) -> str:
    """``mean ± SD`` of csa.csv's rows (`summary_stats`: over the slices where the ROI is
    present, area > 0), shown as the report shows them (`shown_number`)."""
    mean, std, n = summary_stats(area[:, None])[:, 0]
    if n == 0:
        return "on no slice"
    if n == 1:
        return f"{shown_number(mean)} (1 slice)"
    return f"{shown_number(mean)} ± {shown_number(std)}"


def _panel_title(name: str, stats: str, panel_inches: float) -> str:
    """``name: mean ± SD`` in dark text, wrapped to the panel's width (about 12 characters of
    9-point text per inch), so neighbouring titles never run into each other."""
    chars = max(10, int(panel_inches * 12))
    line = f"{name}: {stats}"
    if len(line) <= chars:
        return line
    return "\n".join([*textwrap.wrap(name, chars, break_long_words=True), stats])


def plot_bland_altman(
    auto: np.ndarray,
    manual: np.ndarray,
    *,
    title: str,
    path: Path | str | None = None,
    groups: np.ndarray | None = None,
) -> Figure:
    """Draw a Bland–Altman plot: difference against mean, bias and ±1.96 SD limits labelled.

    Args:
        auto: automatic measurements (e.g. areas in mm²); NaN pairs are left out.
        manual: manual measurements, same length.
        title: figure title (say what and in which unit).
        path: save the figure here (PNG) when given.
        groups: optional group name per pair (e.g. ROI name), coloured with the ROI colours
            in order of first appearance.

    Returns:
        The figure.

    Raises:
        ConfigError: lengths differ, or fewer than two complete pairs.
    """
    a, m = np.asarray(auto, float).ravel(), np.asarray(manual, float).ravel()
    group = None if groups is None else np.asarray(groups).ravel()
    if a.shape != m.shape or (group is not None and group.shape != a.shape):
        raise ConfigError(f"need paired values, got {a.size} automatic and {m.size} manual.")
    keep = np.isfinite(a) & np.isfinite(m)
    if keep.sum() < 2:
        raise ConfigError(f"a Bland–Altman plot needs at least 2 complete pairs, got {keep.sum()}.")
    mean, diff = (a[keep] + m[keep]) / 2.0, a[keep] - m[keep]
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    fig = new_figure(7.5, 5.0)
    ax = fig.subplots()
    if group is None:
        ax.scatter(mean, diff, s=14, color=roi_colour_hex(4), alpha=0.7)
    else:
        kept = group[keep]
        for k, name in enumerate(pd.unique(kept), 1):
            chosen = kept == name
            ax.scatter(
                mean[chosen],
                diff[chosen],
                s=14,
                color=roi_colour_hex(k),
                alpha=0.8,
                label=str(name),
            )
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    for value, text, style in (
        (bias, f"bias {bias:.2f}", "-"),
        (bias + 1.96 * sd, f"+1.96 SD {bias + 1.96 * sd:.2f}", "--"),
        (bias - 1.96 * sd, f"−1.96 SD {bias - 1.96 * sd:.2f}", "--"),
    ):
        ax.axhline(value, color="black", linestyle=style, linewidth=1)
        ax.text(
            0.99, value, text, transform=ax.get_yaxis_transform(), ha="right", va="bottom",
            fontsize=8,
        )  # fmt: skip
    ax.set(xlabel="mean of automatic and manual", ylabel="automatic − manual", title=title)
    ax.grid(alpha=0.3)
    return _finish(fig, path)
