"""The cohort's area tables (``csa.csv``, ``csa_long.csv``) written series by series.

`write_area_tables` reads the finished series' own tables :data:`CHUNK_SERIES` series at a
time, numbers their rows over the cohort and appends them to the files; each series' own
summary rows go to a temporary file that follows the slice rows, and the overall rows come
last. Memory holds one chunk's lines and each slice's ROI areas (K floats, for the overall
rows), never the cohort's tables, and the files are byte for byte those of parsing every
series' table at once: the same pandas parsing, columns, dtypes and reductions (the wide
table's layout is `sliceseg.measure.areas.AreaTable`'s).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from sliceseg.errors import ConfigError
from sliceseg.inference.records import series_dir
from sliceseg.io.files import atomic_path, named_text
from sliceseg.io.tables import write_csv
from sliceseg.measure.areas import (
    CONFIDENCE_COLUMN,
    FAMILIARITY_COLUMN,
    is_summary_row,
    with_whole_counts,
)
from sliceseg.measure.summary_rows import (
    PRESENT,
    SUMMARY_ROWS,
    leave_out_flagged,
    overall_note,
    series_label,
    series_row,
    summary_cell,
    summary_stats,
)
from sliceseg.measure.tissue import CT_COLUMNS

__all__ = ["CHUNK_SERIES", "TIDY_TEXT", "WIDE_TEXT", "write_area_tables"]

CHUNK_SERIES = 256
"""Series whose tables are read and written together."""

WIDE_TEXT = {"slice": str, "file": str}
"""The wide table's columns of names, read back as written (a file named 0001 stays "0001")."""
TIDY_TEXT = {
    "file": str,
    "patient_id": str,
    "patient_name": str,
    "roi_name": str,
    "series": str,
    "spacing_source": str,
}
"""The tidy table's columns of names, read back as written (a PatientID 00123 stays "00123")."""


def write_area_tables(
    out: Path, names: Sequence[str], flagged: Sequence[bool] | None, *, into: Path | None = None
) -> tuple[tuple[int, ...], str]:
    """Write ``OUT/csa.csv`` and ``OUT/csa_long.csv`` of the finished series ``names``.

    Args:
        out: the cohort's output folder.
        into: the folder to write the two tables in (default ``out``; the merge writes them
            beside its other outputs first, `sliceseg.io.files.files_together`).
        names: the finished series, in order (series 1, 2, ...).
        flagged: per series, unlike the training data (None: the model file has no training
            profile, so the tables have no ``unlike_training`` column); flagged series are
            left out of the overall mean, std and n (`with_familiarity`).

    Returns:
        The number of slices of each series, and what the overall rows' ``file`` cells say
        beyond :data:`PRESENT` (`overall_note`: the series left out, or "").

    Raises:
        ConfigError: the series' tables have different columns (another run's series); only
            the CT columns may differ (a CT series' muscles have them, an MR series' do not).
    """
    tables = _Tables(several=len(names) > 1, flagged=flagged, tidy=_tidy_columns(out, names))
    into = out if into is None else into
    with (  # a failing write names its file (a full disk's error names none)
        atomic_path(into / "csa.csv") as wide_path,
        atomic_path(into / "csa_long.csv") as long_path,
        named_text(wide_path, into / "csa.csv") as wide,  # written out before either is renamed
        named_text(long_path, into / "csa_long.csv") as long,
        # the series' summary rows, csa.csv's: its name on a failing write
        named_text(tempfile.TemporaryFile("w+b", buffering=0, dir=out), into / "csa.csv") as rows,
    ):
        for start in range(0, len(names), CHUNK_SERIES):
            tables.add(out, names[start : start + CHUNK_SERIES], wide, long, rows)
        rows.seek(0)
        shutil.copyfileobj(rows, wide)
        note = tables.finish(wide)
    return tuple(tables.counts), note


def _tidy_columns(out: Path, names: Sequence[str]) -> list[str]:
    """The columns of the cohort's ``csa_long.csv``: every series' own, in their order.

    A CT series' muscles have the CT columns and an MR series' do not, so a folder of both
    gives tables of two shapes; the cohort's has them all (empty where a series has none).
    Any other difference is another run's series (`merge_order`).
    """
    merged: list[str] = []
    for name in names:
        with (series_dir(out, name) / "csa_long.csv").open(encoding="utf-8") as table:
            header = table.readline().rstrip("\r\n").split(",")
        merged = merge_order(merged, header, f"{name}/csa_long.csv")
    return merged


def merge_order(columns: Sequence[str], header: Sequence[str], source: str) -> list[str]:
    """Columns so far with those of ``header`` (a table named ``source``), each new column after
    its neighbour in ``header``; only :data:`CT_COLUMNS` may be in one and not the other.

    Example:
        >>> merge_order(["roi", "area_mm2", "confidence"], ["roi", "area_mm2", "imat_mm2",
        ...             "confidence"], "s2/csa_long.csv")
        ['roi', 'area_mm2', 'imat_mm2', 'confidence']
    """
    if not columns:
        return list(header)
    odd = sorted(set(columns).symmetric_difference(header) - set(CT_COLUMNS))
    if odd:
        raise ConfigError(
            f"{source}: its columns differ from the other series' ({', '.join(odd)}); merge only "
            "the series of one predict run (one model and settings)."
        )
    merged = list(columns)
    for i, column in enumerate(header):
        if column not in merged:
            merged.insert(merged.index(header[i - 1]) + 1 if i else 0, column)
    return merged


class _Lines:
    """CSV lines of some series' tables, parsed together: ``one_header`` refuses a series whose
    header differs, else the lines of each header are parsed apart (`table` aligns them)."""

    def __init__(self, header: str | None, *, one_header: bool = True) -> None:
        self.header = header
        self.one_header = one_header
        self.groups: dict[str, list[tuple[int, str]]] = {}  # header → (position, line)
        self.counts: list[int] = []

    def add(self, header: str, lines: list[str], source: str = "") -> None:
        if self.one_header and self.header is not None and header != self.header:
            old, new = self.header.split(","), header.split(",")
            odd = [c for c in new if c not in old] + [c for c in old if c not in new]
            raise ConfigError(
                f"{source or 'a series table'}: its columns differ from the other series' "
                f"({', '.join(odd) or 'their order'}); merge only the series of one predict run "
                "(one model and settings)."
            )
        self.header = self.header or header
        start = sum(self.counts)
        self.groups.setdefault(header, []).extend(enumerate(lines, start))
        self.counts.append(len(lines))

    @property
    def lines(self) -> list[str]:
        return [
            line for _, line in sorted(pair for pairs in self.groups.values() for pair in pairs)
        ]

    def table(self, columns: Sequence[str] | None = None, **options: Any) -> pd.DataFrame:
        """The lines as one table in their order (``columns``: aligned to these)."""
        if len(self.groups) <= 1:
            text = "\n".join([self.header or "", *self.lines]) + "\n"
            table = pd.read_csv(io.StringIO(text), **options)
            return table if columns is None else table.reindex(columns=list(columns))
        parts, order = [], []
        for header, pairs in self.groups.items():
            text = "\n".join([header, *(line for _, line in pairs)]) + "\n"
            parts.append(pd.read_csv(io.StringIO(text), **options))
            order += [position for position, _ in pairs]
        table = pd.concat(parts, ignore_index=True).iloc[np.argsort(order, kind="stable")]
        return table.reset_index(drop=True).reindex(columns=list(columns or parts[0].columns))


class _Tables:
    """The cohort's tables while they are written: headers, counts, each slice's areas."""

    def __init__(
        self, *, several: bool, flagged: Sequence[bool] | None, tidy: Sequence[str]
    ) -> None:
        self.several = several
        self.flagged = flagged
        self.tidy = list(tidy)  # csa_long.csv's columns (`_tidy_columns`)
        self.wide_header: str | None = None
        self.columns: list[str] = []  # of the wide table, after its index
        self.rois: list[str] = []
        self.counts: list[int] = []
        self.total = 0  # slices before the chunk being written
        self.areas: list[np.ndarray] = []  # per chunk (slices, K) ROI areas

    def add(
        self, out: Path, names: Sequence[str], wide: IO[str], long: IO[str], rows: IO[str]
    ) -> None:
        """Append one chunk of series: slice rows, tidy rows, and (for later) summary rows."""
        slices, summaries, tidy = self._read(out, names)
        first = len(self.counts)  # series before this chunk
        table = slices.table(index_col="slice", dtype=WIDE_TEXT)
        part = self._slice_rows(table, slices.counts, first, wide)
        if self.several:
            self._series_rows(summaries, part["file"].tolist(), slices.counts, names, rows)
        self._tidy_rows(tidy, slices.counts, first, names, long)
        self.counts += slices.counts
        self.total += len(table)

    def _read(self, out: Path, names: Sequence[str]) -> tuple[_Lines, _Lines, _Lines]:
        slices, summaries = _Lines(self.wide_header), _Lines(self.wide_header)
        tidy = _Lines(None, one_header=False)
        for name in names:
            folder = series_dir(out, name)
            header, *lines = (folder / "csa.csv").read_text(encoding="utf-8").splitlines()
            is_summary = [is_summary_row(line.split(",", 1)[0]) for line in lines]
            source = f"{name}/csa.csv"
            kept = [ln for ln, flag in zip(lines, is_summary, strict=True) if not flag]
            slices.add(header, kept, source)
            summaries.add(header, [ln for ln, flag in zip(lines, is_summary, strict=True) if flag])
            long_header, *rows = (folder / "csa_long.csv").read_text(encoding="utf-8").splitlines()
            tidy.add(long_header, rows)
        self.wide_header = slices.header
        return slices, summaries, tidy

    def _slice_rows(
        self, table: pd.DataFrame, counts: list[int], first: int, wide: IO[str]
    ) -> pd.DataFrame:
        """The chunk's slice rows, numbered over the cohort, with confidence and familiarity."""
        table = table.drop(columns=[FAMILIARITY_COLUMN], errors="ignore")
        confidence = table.pop(CONFIDENCE_COLUMN) if CONFIDENCE_COLUMN in table else None
        if not self.columns:  # the header, once
            self.rois = [column for column in table.columns if column != "file"]
            extra = [CONFIDENCE_COLUMN] * (confidence is not None)
            extra += [FAMILIARITY_COLUMN] * (self.flagged is not None)
            self.columns = ["file", *self.rois, *extra]
            write_csv(pd.DataFrame(columns=self.columns), wide, index_label="slice")
        part = table[["file"]].copy()
        for roi in self.rois:
            part[roi] = table[roi].astype(float)
        done = self.total
        part.index = [str(i) for i in range(done + 1, done + len(table) + 1)]
        if confidence is not None:
            part[CONFIDENCE_COLUMN] = confidence.to_numpy(dtype=float)
        if self.flagged is not None:
            marks = [self.flagged[first + j] for j, n in enumerate(counts) for _ in range(n)]
            part[FAMILIARITY_COLUMN] = marks  # booleans: write_csv writes them 1 / 0
        write_csv(with_whole_counts(part), wide, header=False)
        self.areas.append(part[self.rois].to_numpy(dtype=float))
        return part

    def _series_rows(
        self,
        lines: _Lines,
        files: list[str],
        counts: list[int],
        names: Sequence[str],
        rows: IO[str],
    ) -> None:
        """Each series' own summary rows, labelled ``mean series <name>`` ... with its span."""
        table = lines.table(index_col="slice", dtype=WIDE_TEXT)
        starts = np.cumsum([0, *counts[:-1]])
        labels = [
            series_label(files[start : start + n]) for start, n in zip(starts, counts, strict=True)
        ]
        numbers = [j for j, n in enumerate(lines.counts) for _ in range(n)]
        part = table[["file"]].copy()
        part["file"] = [
            summary_cell(str(row), labels[j]) for row, j in zip(table.index, numbers, strict=True)
        ]
        for roi in self.rois:
            part[roi] = table[roi].astype(float)
        part.index = [
            series_row(label, names[j]) for label, j in zip(table.index, numbers, strict=True)
        ]
        write_csv(with_whole_counts(part.reindex(columns=self.columns)), rows, header=False)

    def _tidy_rows(
        self, lines: _Lines, counts: list[int], first: int, names: Sequence[str], long: IO[str]
    ) -> None:
        """The chunk's tidy rows: slices numbered over the cohort, series by name (as
        ``series.csv`` and ``OUT/series/<name>/``); ``first``: series before the chunk."""
        table = lines.table(self.tidy, dtype=TIDY_TEXT)
        done = self.total
        offsets = done + np.cumsum([0, *counts[:-1]])
        table["slice"] = table["slice"].to_numpy() + np.repeat(offsets, lines.counts)
        members = [j for j, n in enumerate(lines.counts) for _ in range(n)]
        table["series"] = [names[j] for j in members]
        if self.flagged is not None and len(table):
            table[FAMILIARITY_COLUMN] = [self.flagged[first + j] for j in members]  # 1 / 0
        write_csv(table, long, header=first == 0, index=False)

    def finish(self, wide: IO[str]) -> str:
        """The overall mean, std and n rows (without the flagged series' slices); returns what
        their ``file`` cells say of the series left out (`overall_note`)."""
        values = pd.DataFrame(
            {roi: np.concatenate([a[:, k] for a in self.areas]) for k, roi in enumerate(self.rois)}
        )
        rows = pd.DataFrame(
            summary_stats(values.to_numpy()), index=list(SUMMARY_ROWS), columns=self.rois
        )
        rows.insert(0, "file", [summary_cell(row, PRESENT) for row in rows.index])
        if self.flagged is not None and any(self.flagged):
            marks = np.repeat(np.asarray(self.flagged, dtype=bool), self.counts).tolist()
            leave_out_flagged(rows, values, marks, sum(self.flagged))
        write_csv(with_whole_counts(rows.reindex(columns=self.columns)), wide, header=False)
        return overall_note(rows.loc["mean", "file"])
