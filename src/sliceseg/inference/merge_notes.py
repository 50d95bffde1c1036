"""What a cohort's merge says it left out: one line per kind of series, and the damaged files;
and once for the cohort, its series that lack tissue columns (`TissueLines`).

The series lines (another run's, not in the input, unreadable, not finished) are printed by
``predict`` and ``merge`` and shown in ``report.html``; the files are listed in the report only
(``Skipped <file>: why``): those the plan left out, those of the series none of whose files
could be read, and those the finished series left out while decoding (read back from their
records, so a standalone ``sliceseg merge`` names them too), at most `SHOWN_LINES` of them,
all counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sliceseg.errors import ConfigError
from sliceseg.io.dicom_files import SkippedFile
from sliceseg.measure.tissue import TissueSettings
from sliceseg.measure.tissue_notes import SeriesTissue, recorded_tissue, tissue_lines
from sliceseg.report.cohort import SHOWN_LINES
from sliceseg.wording import few_of

__all__ = [
    "SkippedLines",
    "TissueLines",
    "changed_notes",
    "damaged_notes",
    "damaged_run_record_message",
    "gone_notes",
    "left_out_notes",
    "mixed_units_message",
    "not_a_cohort_message",
    "nothing_current_message",
    "nothing_readable_message",
    "outdated_notes",
    "removed_outputs_note",
    "unfinished_notes",
    "unreadable_notes",
]


@dataclass
class SkippedLines:
    """The files a merge names as left out: the first `SHOWN_LINES` lines kept, all counted
    (memory stays flat however many series left files out).

    Example:
        >>> lines = SkippedLines()
        >>> lines.add(["p01/a.dcm: cannot decode pixel data"])
        >>> lines.lines, lines.count
        (['Skipped p01/a.dcm: cannot decode pixel data'], 1)
    """

    lines: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, described: Iterable[str]) -> None:
        """Count files described as `SkippedFile.describe` writes them; keep the first lines."""
        for text in described:
            self.count += 1
            if len(self.lines) < SHOWN_LINES:
                self.lines.append(f"Skipped {text}")

    def add_files(self, files: Iterable[SkippedFile], *, count: int | None = None) -> None:
        """Count and keep `SkippedFile`s, as `add`; ``count``: how many there were when
        ``files`` are only the first of them (a record keeps only those the report shows)."""
        before = self.count
        self.add(item.describe() for item in files)
        if count is not None:
            self.count = before + max(count, self.count - before)

    def extend(self, other: SkippedLines) -> None:
        """Append another's lines (up to `SHOWN_LINES` in all) and its count."""
        self.lines += other.lines[: max(SHOWN_LINES - len(self.lines), 0)]
        self.count += other.count


@dataclass
class TissueLines:
    """The cohort's lines on its series that lack tissue columns (`tissue_lines`: no Modality,
    not in HU, not CT given CT options), said once by the merge of however many shards, each of
    which said its own share's; of each series only what a line may name is kept
    (`SeriesTissue.is_noted`).
    """

    series: dict[str, SeriesTissue] = field(default_factory=dict)

    def add(self, name: str, summary: Mapping[str, Any]) -> None:
        """Keep what the record summary of series ``name`` (read in the tables' order) says."""
        found = recorded_tissue(summary)
        if found is not None and found.is_noted:
            self.series[name] = found

    def lines(self, settings: Mapping[str, Any]) -> list[str]:
        """`tissue_lines` under the run's settings as its records keep them."""
        try:
            tissue = TissueSettings.from_dict(settings.get("tissue"))
        except (ConfigError, TypeError, ValueError):  # a damaged record: no CT options given
            tissue = TissueSettings()
        return tissue_lines(self.series, list(settings.get("roi_names") or ()), tissue)


def outdated_notes(outdated: Sequence[str]) -> list[str]:
    """One line naming the finished series left out as another model's or settings' (an
    ``--overwrite`` run not done yet); none when there are none."""
    if not outdated:
        return []
    names = few_of(outdated, shown=10)
    return [
        f"{len(outdated)} series made by another model or settings left out ({names}); run "
        "the predict command again to redo them."
    ]


def left_out_notes(
    out: Path,
    outdated: Sequence[str],
    gone: Sequence[str],
    unfinished: Sequence[str] = (),
    unreadable: Sequence[str] = (),
    changed: Sequence[str] = (),
    damaged: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The lines naming the series a merge left out: another model's or settings'
    (`outdated_notes`), not in the latest run's input (`gone_notes`), with no readable file
    (`unreadable_notes`), finished from files changed since (`changed_notes`), not finished
    (`unfinished_notes`), with a damaged table (`damaged_notes`)."""
    return [
        *outdated_notes(outdated),
        *gone_notes(out, gone),
        *unreadable_notes(out, unreadable),
        *changed_notes(changed),
        *unfinished_notes(out, unfinished),
        *damaged_notes(out, damaged),
    ]


def changed_notes(changed: Sequence[str]) -> list[str]:
    """One line naming the finished series whose input files changed (added, removed or
    rewritten) since they were predicted, so their areas are not of the input's files now;
    none when there are none."""
    if not changed:
        return []
    names = few_of(changed, shown=10)
    return [
        f"{len(changed)} series whose input files changed since they were predicted left out "
        f"({names}); run the predict command (each shard) again to redo them."
    ]


def damaged_notes(out: Path, damaged: Sequence[tuple[str, str]]) -> list[str]:
    """One line naming the finished series whose ``csa.csv`` or ``csa_long.csv`` could not be
    merged (series, why: `sliceseg.inference.records.damaged_tables`); none when there are
    none. A next predict run redoes them (it takes such a series as not finished)."""
    if not damaged:
        return []
    shown = few_of([f"{name}: {why}" for name, why in damaged], shown=5)
    return [
        f"{len(damaged)} series with a damaged table left out ({shown}) in "
        f"{out / 'series'}/<name>/; run the predict command again, which redoes them, then "
        f"`sliceseg merge {out}`."
    ]


def removed_outputs_note(removed: Sequence[str]) -> str:
    """The sentence a merge that stops adds when it removed an earlier merge's outputs (they
    showed series this folder's latest run does not hold); "" when it removed none."""
    if not removed:
        return ""
    return (
        f" Removed the earlier merge's {', '.join(removed)}: they showed series this run "
        "does not hold."
    )


def mixed_units_message(out: Path, units: Mapping[str, str]) -> str:
    """The one line refusing series measured in pixels (``--pixels``: no spacing in mm) beside
    series in mm² (``units``: each unit's first series), with the fix. Its record keeps no
    spacing source, so the line says no more of why (absent, malformed, a film's ...)."""
    return (
        f"{out}: series {units['pixels']} is measured in pixels (--pixels: its files have no "
        f"spacing in mm) while series {units['mm2']} is in mm², so the cohort's areas and means "
        "would mix the two; give --fov MM (and --matrix ROWS COLS) and run again with "
        "--overwrite, or predict the series without a spacing into another --out."
    )


def not_a_cohort_message(out: Path, run_record: str) -> str:
    """Why ``out`` cannot be merged (no ``run_record``): what it is, and what to do instead."""
    if not out.is_dir():  # a typo, or a file: "no cohort.json" sent users looking for one
        what = "not a folder" if out.exists() else "no such folder"
        return f"{out}: {what}; give the --out of a predict_cohort (`sliceseg predict`) run."
    if (out / "csa.csv").is_file():  # predict_folder's (or `sliceseg measure`'s) whole tables
        return (
            f"{out}: holds csa.csv but no {run_record}: a predict_folder (or `sliceseg "
            "measure`) output, whose tables are written whole already; it needs no merge. "
            "merge_cohort (`sliceseg merge`) joins the series of a predict_cohort "
            "(`sliceseg predict`) run."
        )
    return (
        f"{out}: no {run_record}, so not the output folder of a predict_cohort (`sliceseg "
        "predict`) run; give the --out of such a run."
    )


def unreadable_notes(out: Path, unreadable: Sequence[str]) -> list[str]:
    """One line naming the series of the input none of whose files could be read (each file
    is named with why in the report and in its record); none when there are none."""
    if not unreadable:
        return []
    names = few_of(unreadable, shown=10)
    return [
        f"{len(unreadable)} series of the input with no readable file left out ({names}): "
        f"every file damaged, each named with why in {out / 'unreadable'}/<name>.json; replace "
        "the files and run the predict command again."
    ]


def nothing_readable_message(out: Path, unreadable: Sequence[str]) -> str:
    """The one line of a merge that finds no series to merge because no file of any series of
    the input could be read (each series' files named with why in ``OUT/unreadable/``)."""
    return (
        f"{out}: no series to merge: every file of every series of the input is unreadable "
        f"({len(unreadable)} series: {few_of(unreadable, shown=5)}); each file is named with why "
        f"in {out / 'unreadable'}/<name>.json; replace the files (or give the right input "
        "folder) and run the predict command again."
    )


def nothing_current_message(out: Path, outdated: Sequence[str], unfinished: Sequence[str]) -> str:
    """The one line of a merge that finds no series of the latest run (``cohort.json``'s model
    and settings) finished or failed: those there are another run's (an ``--overwrite`` run
    not done yet), and those of the input not finished (a shard still running or not run)."""
    found = [
        f"{len(names)} series {what} ({few_of(names, shown=5)})"
        for names, what in (
            (outdated, "made by another model or settings"),
            (unfinished, "of the input not finished"),
        )
        if names
    ]
    return (
        f"{out}: no series of the latest predict run's model and settings finished or failed yet: "
        f"{'; '.join(found)}; run the predict command (each shard) again, then `sliceseg merge "
        f"{out}`."
    )


def damaged_run_record_message(out: Path) -> str:
    """The one line of a merge whose ``cohort.json`` cannot be read, so that no series can be
    told to be of the latest run's model and settings."""
    return (
        f"{out / 'cohort.json'}: damaged (not the JSON record of a predict run), so the model "
        "and settings of the series are unknown; run the predict command again with "
        "--overwrite, which rewrites it and skips the series of that model and settings, then "
        f"`sliceseg merge {out}`."
    )


def unfinished_notes(out: Path, unfinished: Sequence[str]) -> list[str]:
    """One line naming the series of the latest run's input that neither finished nor failed
    (a merge while a shard still runs, after one was stopped, or a damaged ``record.json``):
    without it the tables silently lacked them."""
    if not unfinished:
        return []
    names = few_of(unfinished, shown=10)
    return [
        f"{len(unfinished)} series of the input not finished, left out ({names}): a predict run "
        "or shard still running, stopped or not run, or a damaged record.json; run the predict "
        "command (each shard) again, which skips the finished series, then `sliceseg merge "
        f"{out}`."
    ]


def gone_notes(out: Path, gone: Sequence[str]) -> list[str]:
    """One line naming the series left out because the latest run's input no longer holds
    them (removed from the input folder since they were predicted); none when there are none.
    """
    if not gone:
        return []
    names = few_of(gone, shown=10)
    return [
        f"{len(gone)} series not in the input of the latest predict run left out ({names}); "
        "to merge them, run predict on a folder that holds their inputs too, or delete "
        f"{out / 'series'}/<name> (and {out / 'failed'}/<name>.json)."
    ]
