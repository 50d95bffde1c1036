"""How the CSV tables users publish write their numbers: one rule, without binary noise.

A float written as Python's ``repr`` shows the noise of binary arithmetic: 401 pixels of
0.8203 × 0.8203 mm are 269.82972809 mm², but the computed float reads ``269.82972809000006``.
Every CSV sliceseg writes for users goes through `write_csv` (or `csv_value`, cell by cell),
so each float is written rounded to :data:`SIGNIFICANT_DIGITS` significant digits, in the
shortest form that reads back as that number; a boolean is written as 1 or 0 (as the tables'
flags, ``unlike_training``, are: one form in every CSV, summed as it is); integers and text are
written as they are, and an empty (NaN) cell stays empty. Only the writing rounds: means and
standard deviations are computed from the unrounded values before (a cohort's merge reads the
series' written tables, whose rounding moves its overall rows by at most 5e-13 of their value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

__all__ = [
    "FAILED_COLUMNS",
    "FAILED_CSV",
    "SIGNIFICANT_DIGITS",
    "csv_cells",
    "csv_value",
    "failed_table",
    "write_csv",
    "write_failed",
]

# 12 digits: 5e-13 of the value (10⁻⁷ mm² of a 10⁵ mm² area), far below any measurement's
# precision, while float64 arithmetic's noise (~1e-16 relative, 1e-15 after sums) never shows.
SIGNIFICANT_DIGITS = 12

FAILED_CSV = "failed.csv"
"""What a run could not use and why, one row each, beside its tables: a series `predict` failed
on, or the slices of a label map `measure` / `evaluate` left out (a header only when none)."""
FAILED_COLUMNS = ("series", "slices", "reason")
"""``failed.csv``'s columns: the series' name (as the tables name it; empty where no readable
DICOM tells it), how many of its slices are missing from the tables, and why (one line)."""


def csv_value(value: object) -> object:
    """Return a float as the text of its CSV cell, a boolean as 1 or 0; any other value (int,
    text, NaN) as it is.

    A float32 is taken at its own shortest digits (``0.1``), not at the float64 it widens to
    (``0.100000001490``).

    Example:
        >>> [csv_value(v) for v in (268.29082176000003, 0.1, 1234567.891, 1e-7, 3.0, 7, True)]
        ['268.29082176', '0.1', '1234567.891', '1e-07', '3.0', 7, 1]
    """
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if not isinstance(value, (float, np.floating)) or value != value:  # NaN: an empty cell
        return value
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        value = float(str(value))
    # repr of the rounded number: its shortest form, whole numbers as "3.0", as pandas wrote
    return repr(float(f"{float(value):.{SIGNIFICANT_DIGITS}g}"))


def csv_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Return ``table`` with every float cell (of float or mixed columns, and of a float index)
    as `csv_value` writes it; the other cells, the labels and the order are kept."""
    columns = [_cells(table.iloc[:, i]) for i in range(table.shape[1])]
    cells = pd.concat(columns, axis=1) if columns else table.copy()
    cells.columns = table.columns
    if table.index.dtype.kind == "f":
        cells.index = pd.Index([csv_value(v) for v in table.index], name=table.index.name)
    return cells


def write_csv(table: pd.DataFrame, target: Path | IO[str], **options: Any) -> None:
    """Write ``table`` as CSV to ``target`` (a path or an open text file) with `csv_cells`'
    numbers; ``options`` go to `pandas.DataFrame.to_csv` (``index``, ``header``, ...).

    Example:
        >>> with atomic_path(out / "csa_long.csv") as tmp:
        ...     write_csv(table, tmp, index=False)
    """
    csv_cells(table).to_csv(target, **options)


def failed_table(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Return ``failed.csv``'s table of ``rows`` (each with the `FAILED_COLUMNS`; a missing one is
    an empty cell), written by `write_csv` with ``index=False``.

    Example:
        >>> failed_table([{"series": "p01", "slices": 1, "reason": "p01/a.dcm: no PixelSpacing"}])
          series  slices                      reason
        0    p01       1  p01/a.dcm: no PixelSpacing
    """
    return pd.DataFrame(
        [[row.get(c) for c in FAILED_COLUMNS] for row in rows], columns=list(FAILED_COLUMNS)
    )


def write_failed(failed: pd.DataFrame, folder: Path) -> Path:
    """Write `failed_table`'s ``failed`` as ``folder/failed.csv`` (atomically); return its path."""
    from sliceseg.io.files import atomic_path  # files.py writes, this module only words cells

    with atomic_path(folder / FAILED_CSV) as tmp:  # a full disk named as failed.csv's
        write_csv(failed, tmp, index=False)
    return folder / FAILED_CSV


def _cells(column: pd.Series) -> pd.Series:
    """One column with its floats as text, its booleans as 1 / 0 (ints and text as they are)."""
    if column.dtype.kind == "b":
        return column.astype("Int64")  # a nullable one keeps its empty cells
    if column.dtype.kind not in "fO":
        return column
    # to_numpy, not tolist: a float32 stays a float32 (tolist widens it to a Python float)
    cells = [csv_value(v) for v in column.to_numpy()]
    return pd.Series(cells, index=column.index, dtype=object, name=column.name)
