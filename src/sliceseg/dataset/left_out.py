"""The slices a measuring command (``measure``, ``evaluate``) leaves out, and why.

One bad file must not stop the rest: a label map the dataset check finds unusable (unreadable,
on another grid, a value above the ROI count, ...) and a slice whose spacing is unknown are
left out, each named on one line with the fix, and the others are measured. `LeftOutFiles`
gives both commands the lines naming them and ``failed.csv``'s table
(`sliceseg.io.tables.FAILED_COLUMNS`, as ``predict`` lists its failed series). When no
labelled slice is left, these commands and training refuse in one line (`no_slice_refusal`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sliceseg.dataset.check import CheckReport
from sliceseg.dataset.pairing import Pair, Sample
from sliceseg.dataset.problems import Problem
from sliceseg.dataset.source import DataSource
from sliceseg.errors import ConfigError
from sliceseg.io.identity import series_name_key
from sliceseg.io.series_plan import CohortPlan
from sliceseg.io.tables import failed_table
from sliceseg.measure.spacing import SpacingFallback, resolve_spacing

__all__ = ["LeftOutFiles", "leave_out_unusable", "no_slice_refusal"]


_RUN_LEVEL = frozenset({"empty"})
"""Problems of the whole run, not of a file: no DICOM pairs with any label map. The command's
own refusal says it; a line naming it as a file left out would say it twice."""


_UNPAIRED_LABELS = frozenset({"unmatched_label", "near_miss"})
"""Label maps without a DICOM (those a rename would pair on the rename's line): none is
measured, so each is a file left out."""


@dataclass(frozen=True)
class LeftOutFiles:
    """The files a measuring command left out, as it names them: its lines and ``failed.csv``.

    Attributes:
        report: the dataset check, after `leave_out_unusable`.
        left_out: what a line of a file left out starts with ("not measured").
        fallback: the spacing given for files without PixelSpacing (``--fov`` rewords the
            note on them: their areas are in mm²).
        unlabelled_use: what the command does with DICOMs without a label map (see
            `CheckReport.problem_lines`).

    Example:
        >>> files = LeftOutFiles(report, "not measured", SpacingFallback(), "not measured")
        >>> files.lines[0]
        'not measured: .../p01/bad.dcm: no PixelSpacing (0028,0030) in the file ...'
    """

    report: CheckReport
    left_out: str
    fallback: SpacingFallback
    unlabelled_use: str

    @property
    def lines(self) -> list[str]:
        """One line per problem of the files (`CheckReport.problem_lines`), to log before any
        refusal; a problem of the whole run (`_RUN_LEVEL`) is left to the refusal."""
        return self._per_file.problem_lines(self.left_out, **self._wording)

    def refusal(self, verb: str, source: DataSource) -> str:
        """The one line a measuring command refuses with when it left every slice out
        (`no_slice_refusal`, pointing at the lines logged before it).

        Example:
            >>> files.refusal("measure", source)
            'nothing to measure in labels: 1 problem(s) left out every labelled slice ...'
        """
        return no_slice_refusal(verb, self.report, source, logged_as=self.left_out, **self._wording)

    def failed_table(self, plan: CohortPlan) -> pd.DataFrame:
        """``failed.csv``'s table: one row per problem that left files out (`_failed_rows`),
        their series named as ``predict`` names them from ``plan`` (`plan_cohort` of the
        DICOM folder)."""
        return failed_table(_failed_rows(self._per_file, _series_of_files(plan), **self._wording))

    @property
    def _per_file(self) -> CheckReport:
        kept = [p for p in self.report.problems if p.kind not in _RUN_LEVEL]
        return replace(self.report, problems=kept)

    @property
    def _wording(self) -> dict[str, Any]:
        return {
            "fov_given": self.fallback.fov_mm is not None,
            "unlabelled_use": self.unlabelled_use,
        }


def no_slice_refusal(
    verb: str,
    report: CheckReport,
    source: DataSource,
    *,
    logged_as: str = "",
    fov_given: bool = False,
    unlabelled_use: str = "",
) -> str:
    """The one line a command refuses with when no labelled slice is left: "nothing to
    <verb>", then why, said once: no DICOM pairs with any label map (that line alone), else how
    many problems left a labelled slice out and the first of them. A label map without a DICOM
    (`_UNPAIRED_LABELS`) labels no slice: its line stands among the others but is not counted.

    Args:
        verb: what the command would do ("measure", "evaluate", "train on").
        report: the dataset check (after `leave_out_unusable` for a measuring command).
        source: the dataset (its label folder and ``check`` command are named).
        logged_as: what the lines of the files left out, logged before the refusal, start
            with ("not measured"); "" where none was logged (training refuses at once).
        fov_given, unlabelled_use: as `CheckReport.problem_lines` words the first problem.

    Example:
        >>> no_slice_refusal("train on", report, source)
        'nothing to train on in data/labels: 2 problem(s) left out every labelled slice; ...'
    """
    run_level = [p for p in report.errors if p.kind in _RUN_LEVEL]
    left_slices_out = [p for p in report.errors if p.kind not in _RUN_LEVEL | _UNPAIRED_LABELS]
    if run_level:
        why = f": {run_level[0].message}"
    elif left_slices_out:
        first = report.described(
            left_slices_out[0], fov_given=fov_given, unlabelled_use=unlabelled_use
        )
        among = f" (among the `{logged_as}:` lines)" if logged_as else ""
        why = (
            f" in {source.labels_dir}: {len(left_slices_out)} problem(s) left out every "
            f"labelled slice{among}; the first: {first}"
        )
    else:  # not expected: no slice, yet no problem left one out
        why = f" in {source.labels_dir}: {report.summary_line()}"
    return (
        f"nothing to {verb}{why.removesuffix('.')}; run `{source.check_command}` for the "
        "full report."
    )


def leave_out_unusable(
    samples: Sequence[Sample], report: CheckReport, fallback: SpacingFallback
) -> tuple[list[Sample], CheckReport]:
    """Leave out the samples whose spacing `resolve_spacing` refuses, each an error of the
    report, and make the label maps without a DICOM an error too: none of them is measured.

    Refused: no PixelSpacing (or a malformed one) without ``--fov`` or ``--pixels``, a
    ``--matrix`` that is not the image's shape. Without a fallback the report's warning on
    slices without spacing ("their areas are in pixels") is dropped: those slices are not
    measured at all, and their own lines say so. (A label map without a DICOM, on its line or
    the rename line, is a warning for training, which goes on without it; a measuring command
    was asked for its areas.)

    Returns:
        ``(the samples kept, the report with an error per problem that leaves files out)``.

    Example:
        >>> samples, report = leave_out_unusable(samples, report, SpacingFallback())
    """
    kept: list[Sample] = []
    refused: dict[str, Problem] = {}  # by message: the frames of one file, one line
    for sample in samples:
        try:
            resolve_spacing(sample.image, fallback)
        except ConfigError as error:
            message = str(error)  # names the file
            refused.setdefault(
                message, Problem("error", "spacing", message, (sample.image.source,))
            )
        else:
            kept.append(sample)
    has_fallback = fallback.fov_mm is not None or fallback.pixels_only
    problems = [
        replace(p, severity="error") if p.kind in _UNPAIRED_LABELS else p
        for p in report.problems
        if has_fallback or p.kind != "no_spacing"
    ]
    problems += refused.values()
    return kept, replace(report, problems=problems, num_samples=len(kept))


def _failed_rows(
    report: CheckReport,
    series_of: Mapping[Path, str],
    *,
    fov_given: bool = False,
    unlabelled_use: str = "",
) -> list[dict[str, object]]:
    """One ``failed.csv`` row per error of the report: what it left out of the tables, and why.

    Args:
        report: the dataset check, after `leave_out_unusable`.
        series_of: each DICOM file's series as the tables name it (``predict``'s names).
        fov_given, unlabelled_use: as `CheckReport.problem_lines` words the reason.

    Returns:
        Rows with ``series`` (the names of the series of its slices, ``, ``-joined; None where
        no DICOM of the input pairs with the file), ``slices`` (how many slices it leaves out;
        None where not known) and ``reason`` (its line, naming the files).

    Example:
        >>> _failed_rows(report, {Path("scans/p01/a.dcm"): "p01"})
        [{'series': 'p01', 'slices': 1, 'reason': 'scans/p01/a.dcm: no PixelSpacing ...'}]
    """
    pairs_of: dict[Path, list[Pair]] = defaultdict(list)  # one pass, not one per error
    for pair in report.pairing.pairs:
        pairs_of[pair.label_path].append(pair)
        pairs_of[pair.image_path].append(pair)
    rows: list[dict[str, object]] = []
    for problem in report.errors:
        pairs = list(dict.fromkeys(p for path in problem.paths for p in pairs_of.get(path, ())))
        series = sorted({series_of[p.image_path] for p in pairs if p.image_path in series_of})
        reason = report.described(problem, fov_given=fov_given, unlabelled_use=unlabelled_use)
        rows.append(
            {
                "series": ", ".join(sorted(series, key=series_name_key)) or None,
                "slices": len({(p.image_path, p.frame) for p in pairs}) or None,
                "reason": reason,
            }
        )
    return rows


def _series_of_files(plan: CohortPlan) -> dict[Path, str]:
    """Each DICOM file of the plan with its series' name (as ``predict`` names it), for
    `_failed_rows`."""
    return {f.source: series.name for series in plan.series for f in series.files}
