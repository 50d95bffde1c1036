"""Plausibility warnings on an area table: ROIs lost between slices, skewed left/right ratios."""

from __future__ import annotations

import math
import re
from collections.abc import Container, Sequence

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.measure.areas import slice_positions

_SIDES = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}


def _slice_values(table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    rows = table.iloc[slice_positions(table)]
    names = rows["file"].astype(str).tolist() if "file" in rows else [str(i) for i in rows.index]
    return rows.drop(columns=["file"], errors="ignore").astype(float), names


def _side_and_stem(name: str) -> tuple[str, tuple[str, ...]] | None:
    tokens = [token for token in re.split(r"[^0-9a-z]+", name.lower()) if token]
    sided = [i for i, token in enumerate(tokens) if token in _SIDES]
    if len(sided) != 1 or len(tokens) < 2:
        return None
    i = sided[0]
    return _SIDES[tokens[i]], tuple(tokens[:i] + tokens[i + 1 :])


def sided_pairs_from_names(roi_names: Sequence[str]) -> list[tuple[str, str]]:
    """Find left/right pairs among ROI names, in the order the left ROIs come.

    A pair is two names that differ only in a side word: "left"/"right", "L"/"R" or "lt"/"rt",
    anywhere in the name and in any case ("left psoas major", "R psoas major", "psoas_left").

    Args:
        roi_names: names of ROIs 1..K.

    Returns:
        ``(left name, right name)`` pairs.

    Example:
        >>> sided_pairs_from_names(["right psoas major", "left psoas major", "vertebral body"])
        [('left psoas major', 'right psoas major')]
    """
    by_stem: dict[tuple[str, ...], dict[str, str]] = {}
    for name in roi_names:
        parsed = _side_and_stem(name)
        if parsed is not None:
            by_stem.setdefault(parsed[1], {}).setdefault(parsed[0], name)
    pairs = [(sides["left"], sides["right"]) for sides in by_stem.values() if len(sides) == 2]
    order = {name: i for i, name in enumerate(roi_names)}
    return sorted(pairs, key=lambda pair: order[pair[0]])


def area_warnings(
    area_table: pd.DataFrame,
    *,
    roi_names: Sequence[str],
    sided_pairs: Sequence[tuple[str, str]] = (),
    series: Sequence[object] | None = None,
    ratio_tolerance: float = 0.5,
) -> list[str]:
    """List implausible areas: an ROI lost between two slices that have it, or a skewed L/R ratio.

    Slices are compared only with slices of their own series: a neighbour is the previous or
    next slice of the same series, and the left/right ratio is compared with that series'
    median, never with another patient's.

    Args:
        area_table: rows = slices in series order (a ``file`` column names them; summary rows
            such as ``mean`` and ``std series 2`` are ignored), one column of areas per ROI.
        roi_names: the ROI columns to check for gaps.
        sided_pairs: ``(left, right)`` column pairs whose area ratio should stay steady
            (see :func:`sided_pairs_from_names`); checked within a series where both areas are
            above 0 on at least 3 of its slices.
        series: the series of each slice row (e.g. ``AreaTable.series``); None: one series.
        ratio_tolerance: flag a slice whose left/right ratio is more than a factor of
            ``1 + ratio_tolerance`` above or below its series' median ratio, i.e.
            ``|log(ratio / median)| > log(1 + tolerance)`` (symmetric, so that the right/left
            ratio flags the same slices: 0.5 flags 1.5 × and 1 / 1.5 = 0.67 × the median).

    Returns:
        One line per finding, naming the slice and the ROI, in slice order.

    Raises:
        ConfigError: a named ROI is not a column, ``series`` does not give one entry per slice,
            or ``ratio_tolerance`` is not positive.

    Example:
        >>> names = areas.wide.columns[1:]
        >>> area_warnings(areas.wide, roi_names=names, sided_pairs=sided_pairs_from_names(names),
        ...               series=areas.series)
        ['s07: left psoas major is missing (area 0) although ...']
    """
    if not ratio_tolerance > 0:
        raise ConfigError(f"ratio_tolerance must be above 0, got {ratio_tolerance}.")
    wanted = [*roi_names, *(name for pair in sided_pairs for name in pair)]
    unknown = sorted({name for name in wanted if name not in area_table.columns})
    if unknown:
        raise ConfigError(
            f"ROI(s) {unknown} are not columns of the area table; "
            f"its columns are {[str(c) for c in area_table.columns]}."
        )
    values, slices = _slice_values(area_table)
    groups = list(series) if series is not None else [0] * len(slices)
    if len(groups) != len(slices):
        raise ConfigError(f"series gives {len(groups)} entries for {len(slices)} slices.")
    found: list[tuple[int, str]] = []
    for group in dict.fromkeys(groups):
        rows = np.flatnonzero([g == group for g in groups])
        found += _gaps(values.iloc[rows], [slices[i] for i in rows], rows, roi_names)
        for left, right in sided_pairs:
            found += _skewed_ratios(
                values.iloc[rows], [slices[i] for i in rows], rows, (left, right), ratio_tolerance
            )
    return [message for _, message in sorted(found, key=lambda item: item[0])]


def warned_slice(warning: str, names: Container[str]) -> str | None:
    """The slice a warning is about: the name of ``names`` it starts with (``"<name>: ..."``).

    A file name may hold ": " itself (``scan: 2.dcm``), so every ": " is a candidate end of
    the name; the longest name wins. None when the warning names no slice of ``names``.

    Example:
        >>> warned_slice("scan: 2.dcm: psoas is missing", {"scan", "scan: 2.dcm"})
        'scan: 2.dcm'
    """
    for end in reversed([found.start() for found in re.finditer(": ", warning)]):
        if warning[:end] in names:
            return warning[:end]
    return None


def _gaps(
    values: pd.DataFrame, slices: list[str], rows: np.ndarray, roi_names: Sequence[str]
) -> list[tuple[int, str]]:
    """An ROI with area 0 on a slice whose two neighbours in the series have it."""
    found = []
    for name in roi_names:
        area = values[name].to_numpy()
        for i in range(1, len(area) - 1):
            if area[i] == 0 and area[i - 1] > 0 and area[i + 1] > 0:
                message = (
                    f"{slices[i]}: {name} is missing (area 0) although both neighbouring "
                    f"slices ({slices[i - 1]}, {slices[i + 1]}) have it; check this slice."
                )
                found.append((int(rows[i]), message))
    return found


def _skewed_ratios(
    values: pd.DataFrame,
    slices: list[str],
    rows: np.ndarray,
    pair: tuple[str, str],
    tolerance: float,
) -> list[tuple[int, str]]:
    """Slices whose left/right area ratio is far from the series' median ratio."""
    left, right = pair
    left_area, right_area = values[left].to_numpy(), values[right].to_numpy()
    both = np.flatnonzero((left_area > 0) & (right_area > 0))
    if len(both) < 3:
        return []
    ratios = left_area[both] / right_area[both]
    median = float(np.median(ratios))
    found = []
    for i, ratio in zip(both, ratios, strict=True):
        if abs(math.log(ratio / median)) > math.log1p(tolerance):
            side = "above" if ratio > median else "below"
            factor = max(ratio / median, median / ratio)
            message = (
                f"{slices[i]}: {left} / {right} area ratio is {ratio:.2f}, far from the "
                f"series median {median:.2f} ({side} it by a factor of {factor:.2f}, more than "
                f"the {1 + tolerance:.3g} allowed either way); check that left and right are "
                "not swapped, merged or cut."
            )
            found.append((int(rows[i]), message))
    return found
