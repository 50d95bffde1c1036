"""The dataset check report: problems found, ROI statistics, and their text and JSON forms.

`check_dataset` (in `sliceseg.dataset.samples`) builds a `CheckReport` from the `Problem`s the
finders of `sliceseg.dataset.problems` return. This module knows pairs and samples
(`sliceseg.dataset.pairing`), never how they are loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg.dataset.pairing import Pairing, Sample
from sliceseg.dataset.problems import Problem, Unmatched, reworded, unmatched_files
from sliceseg.dataset.source import (
    ROI_NAMES_FILE,
    DataSource,
    is_background_name,
    refuse_repeated_names,
)
from sliceseg.errors import ConfigError
from sliceseg.io.identity import relative_to_input
from sliceseg.io.roi_values import LabelScheme
from sliceseg.measure.areas import area_mm2
from sliceseg.wording import few_of


@dataclass(frozen=True)
class RoiStat:
    """How often an ROI appears and how large it is, over the slices that contain it.

    Attributes:
        label: class index k (1..K).
        name: the ROI's name.
        stored_value: the value that stands for ROI k in the label files.
        num_slices: slices containing the ROI.
        mean_area_mm2: mean area over those slices with pixel spacing, None if none has it.
        mean_area_px: mean pixel count over those slices without spacing, None if none.
        num_slices_without_spacing: slices containing the ROI but without spacing.
    """

    label: int
    name: str
    stored_value: int
    num_slices: int
    mean_area_mm2: float | None
    mean_area_px: float | None
    num_slices_without_spacing: int


@dataclass(frozen=True, eq=False)
class CheckReport:
    """What `check_dataset` found: pairing, label scheme, ROI statistics and problems.

    Attributes:
        images_dir: the DICOM folder.
        labels_dir: the label folder.
        pairing: the `Pairing`.
        num_samples: usable slices (a multi-frame file counts once per frame); the samples
            themselves come from `load_samples`, beside the report.
        scheme: the dataset's label scheme, None when it could not be inferred.
        roi_names: names of ROIs 1..K.
        roi_stats: one `RoiStat` per ROI.
        value_files: stored label value -> number of label files holding it.
        problems: errors and warnings, in the order found.
        roi_values_line: where the ROI values of named segments came from and in which order
            (``ROI values from segment names: 1 = ..., 2 = ...; order: ...``); "" when the
            labels name no segment.
    """

    images_dir: Path
    labels_dir: Path
    pairing: Pairing = field(repr=False)  # one entry per slice: `to_text` summarises it
    num_samples: int
    scheme: LabelScheme | None
    roi_names: tuple[str, ...]
    roi_stats: list[RoiStat]
    value_files: dict[int, int]
    problems: list[Problem]
    roi_values_line: str = ""

    @property
    def num_pairs(self) -> int:
        """Number of image/label pairs found."""
        return len(self.pairing.pairs)

    @property
    def errors(self) -> list[Problem]:
        """Problems that make the data unfit for training."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """Problems worth fixing that do not stop training."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def notes(self) -> list[Problem]:
        """Findings for the record only (notes and tables beside the data)."""
        return [p for p in self.problems if p.severity == "note"]

    @property
    def is_trainable(self) -> bool:
        """True when at least one sample is good and no error was found."""
        return self.num_samples > 0 and not self.errors

    def problem_lines(
        self, left_out: str = "error", *, fov_given: bool = False, unlabelled_use: str = ""
    ) -> list[str]:
        """Return one line per problem: severity, message and (up to 3) file names.

        ``left_out``: what an error line starts with instead of "error" (``measure`` says "not
        measured", ``evaluate`` "not evaluated": an error leaves its files out; see
        `count_left_out`). ``fov_given``: ``--fov`` gives the slices without PixelSpacing
        their spacing, so their areas are in mm², not in pixels. ``unlabelled_use``: what the
        caller does with the DICOM files without a label map (``measure``: "not measured"),
        in place of the training wording (`sliceseg.dataset.problems.NOT_TRAINED_ON`); ""
        keeps that.
        """
        return [
            f"{left_out if p.severity == 'error' else p.severity}: "
            f"{self.described(p, fov_given=fov_given, unlabelled_use=unlabelled_use)}"
            for p in self.problems
        ]

    def described(
        self, problem: Problem, *, fov_given: bool = False, unlabelled_use: str = ""
    ) -> str:
        """Return one problem's line without its severity: the message as the command words it
        (see `problem_lines`), then up to 3 of its files, unless it begins with its only one
        (``failed.csv``'s reason)."""
        message = reworded(problem, fov_given=fov_given, unlabelled_use=unlabelled_use)
        message = self._relative_message(message, problem)
        return f"{message}{self._names(message, problem.paths, 3)}"

    def _relative_message(self, message: str, problem: Problem) -> str:
        """``message`` with each file under the data folder named as `_names` names it (a
        reader's ``/abs/d/labels/p01/s2.png: cannot read ...`` beside ``-- labels/p01/s2.png``).
        The line of no pairs at all keeps the folders as given: the layout it expects."""
        if problem.kind == "empty":
            return message
        for folder in (self.images_dir, self.labels_dir):
            if folder.parent != Path(folder.anchor):  # "/" would strip every absolute path
                message = relative_to_input(message, folder.parent)
        return message

    def summary_line(self) -> str:
        """Return one line: counts, then the first errors (or warnings)."""
        first = [self._relative_message(p.message, p) for p in (self.errors or self.warnings)[:2]]
        more = len(self.errors or self.warnings) - len(first)
        return (
            self._counts()
            + (f": {' | '.join(first)}" if first else ".")
            + (f" (and {more} more)" if more > 0 else "")
        )

    def _counts(self) -> str:
        return (
            f"{self.num_pairs} pairs, {self.num_samples} slices, {len(self.errors)} error(s), "
            f"{len(self.warnings)} warning(s)"
        )

    def to_text(self, *, max_names: int = 5) -> str:
        """Return a readable multi-line report; long file lists end with "and N more" (`few_of`)."""
        verdict = "FIT for training" if self.is_trainable else "NOT FIT for training"
        lines = [
            f"Dataset check: {self.images_dir} + {self.labels_dir}",
            f"Verdict: {verdict} ({self._counts()})",
            "",
            f"Pairs: {self.num_pairs} ({self.num_samples} usable slices)",
            self._unmatched_line(),
        ]
        if self.value_files:
            seen = ", ".join(f"{v} ({n} files)" for v, n in sorted(self.value_files.items()))
            lines.append(f"Label values seen: {seen}")
        if self.scheme is not None:
            lines.append(f"Label scheme: {self.scheme.describe()} -> {self.scheme.num_labels} ROIs")
        if self.roi_values_line:
            lines.append(self.roi_values_line)
        if self.roi_stats:
            width = max(len(s.name) for s in self.roi_stats)
            lines += ["", f"ROIs:  k  {'name':<{width}}  slices  mean area"]
            lines += [
                f"      {s.label:>2}  {s.name:<{width}}  {s.num_slices:>6}  {_area(s)}"
                for s in self.roi_stats
            ]
        groups = (("Errors", self.errors), ("Warnings", self.warnings), ("Notes", self.notes))
        for title, group in groups:
            if group:
                lines += ["", f"{title} ({len(group)}):"]
                lines += [self.problem_line(p, max_names=max_names) for p in group]
        return "\n".join(lines)

    @property
    def unmatched(self) -> Unmatched:
        """The files left unpaired, each once as what it is (see `Unmatched`)."""
        return unmatched_files(self.pairing, self.images_dir, self.labels_dir)

    def _unmatched_line(self) -> str:
        """``Unmatched:`` and how many files of each kind `unmatched` holds (a label map whose
        DICOM is unreadable only where there is one: its error line names both files)."""
        found = self.unmatched
        unreadable = len(found.labels_of_unreadable_images)
        of_unreadable = f"{unreadable} label whose DICOM is unreadable, " if unreadable else ""
        return (
            f"Unmatched: {len(found.images_without_labels)} DICOM without label, "
            f"{len(found.labels_without_images)} label without DICOM, "
            f"{of_unreadable}{len(found.skipped)} skipped"
        )

    def problem_line(self, problem: Problem, *, max_names: int = 5) -> str:
        """Return the report's line of one problem: ``  - [kind] message -- a, b``."""
        message = self._relative_message(problem.message, problem)
        return f"  - [{problem.kind}] {message}{self._names(message, problem.paths, max_names)}"

    def _names(self, message: str, paths: tuple[Path, ...], limit: int) -> str:
        """Return " -- a, b and N more" with paths relative to the data folder; "" when
        ``message`` (as `_relative_message` words it) begins with its only file: a reader's
        ``labels/p01/s2.png: cannot read ...`` needs no ``-- labels/p01/s2.png``."""
        if not paths:
            return ""
        relative = [_relative(p, self.images_dir, self.labels_dir) for p in paths]
        if len(relative) == 1 and message.startswith(f"{relative[0]}: "):
            return ""
        return f" -- {few_of(relative, shown=limit)}"

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (paths as strings); the unmatched files
        as `unmatched` holds them, the lists the text's ``Unmatched:`` line counts."""
        scheme, unmatched = self.scheme, self.unmatched
        return {
            "images_dir": str(self.images_dir),
            "labels_dir": str(self.labels_dir),
            "is_trainable": self.is_trainable,
            "num_pairs": self.num_pairs,
            "num_samples": self.num_samples,
            "images_without_labels": [str(p) for p in unmatched.images_without_labels],
            "labels_without_images": [str(p) for p in unmatched.labels_without_images],
            "labels_of_unreadable_images": [
                {"label": str(label), "image": str(image.path), "reason": image.reason}
                for label, image in unmatched.labels_of_unreadable_images.items()
            ],
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in unmatched.skipped],
            "scheme": None
            if scheme is None
            else {
                "stored_values": list(scheme.stored_values),
                "is_display_scaled": scheme.is_display_scaled,
                "num_labels": scheme.num_labels,
            },
            "roi_names": list(self.roi_names),
            "roi_values_line": self.roi_values_line,
            "label_values": {str(v): n for v, n in sorted(self.value_files.items())},
            "rois": [asdict(s) for s in self.roi_stats],
            "problems": [{**asdict(p), "paths": [str(x) for x in p.paths]} for p in self.problems],
        }


def roi_stats(samples: list[Sample], scheme: LabelScheme, names: tuple[str, ...]) -> list[RoiStat]:
    """Count, per ROI, the slices containing it and its mean area (mm², or pixels without spacing).

    Areas are `sliceseg.measure.areas.area_mm2` on the image's own grid, as `measure` gives them.
    """
    stats = []
    for k, name in enumerate(names, start=1):
        areas_mm2, areas_px = [], []
        for sample in samples:
            mask = sample.label == k
            count = int(np.count_nonzero(mask))
            spacing = sample.image.spacing_mm
            if count and spacing is not None:
                areas_mm2.append(area_mm2(mask, spacing))
            elif count:
                areas_px.append(count)
        stats.append(
            RoiStat(
                label=k,
                name=name,
                stored_value=scheme.stored_values[k],
                num_slices=len(areas_mm2) + len(areas_px),
                mean_area_mm2=float(np.mean(areas_mm2)) if areas_mm2 else None,
                mean_area_px=float(np.mean(areas_px)) if areas_px else None,
                num_slices_without_spacing=len(areas_px),
            )
        )
    return stats


def find_roi_names(source: DataSource) -> tuple[list[str] | None, str]:
    """Return (names, where they came from).

    ``source.roi_names`` when given, else the non-empty lines of ``labels.txt`` in
    ``source.data_dir`` or beside ``source.labels_dir``, else (None, ""). The file is UTF-8,
    with or without the byte order mark Windows editors put first.

    Raises:
        ConfigError: ``labels.txt`` is not UTF-8 text, names an ROI twice, has a line for the
            background or a line numbered other than its place (names the file and the fix).
    """
    if source.roi_names is not None:
        return list(source.roi_names), "roi_names"
    folders = ([source.data_dir] if source.data_dir else []) + [source.labels_dir.parent]
    for path in (folder / ROI_NAMES_FILE for folder in folders):
        if path.is_file():
            try:
                lines = path.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
                    f"{exc.start}); expected one ROI name per line; save it as UTF-8 (e.g. "
                    "Notepad: Save as, Encoding UTF-8)."
                ) from exc
            _refuse_misread_lines(lines, path)
            names = [line.strip() for line in lines if line.strip()]
            refuse_repeated_names(names, source=str(path))
            return names, str(path)
    return None, ""


_NUMBERED = re.compile(r"(\d+)\s*[:=.)\t -]\s*(\S.*)")
"""A line numbered as label tools list ROIs: ``0 background``, ``1: psoas``, ``2=disc``."""


def _refuse_misread_lines(lines: Sequence[str], path: Path) -> None:
    """Refuse a line of ``labels.txt`` that names the background, or is numbered other than the
    ROI its place gives it: names are read in line order, so either would put one ROI's areas
    under another's name.

    Raises:
        ConfigError: names the file, the line and the fix.
    """
    roi = 0
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        roi += 1
        numbered = _NUMBERED.fullmatch(text)
        if is_background_name(numbered[2] if numbered else text):
            found = "names the background (0)"
        elif numbered and int(numbered[1]) != roi:
            found = f"is numbered {numbered[1]} but names ROI {roi}"
        else:
            continue
        raise ConfigError(
            f"{path}: line {number} '{text}' {found}; expected ROI 1's name on line 1, ROI 2's "
            "on the next, ... (names are read in line order; the background, 0, has no line); "
            "remove the background's line, or order the lines by ROI number."
        )


def _relative(path: Path, *folders: Path) -> str:
    for folder in folders:
        if path.is_relative_to(folder.parent):
            return path.relative_to(folder.parent).as_posix()
    return str(path)


def _area(stat: RoiStat) -> str:
    parts = []
    if stat.mean_area_mm2 is not None:
        parts.append(f"{stat.mean_area_mm2:.1f} mm²")
    if stat.mean_area_px is not None:
        without = stat.num_slices_without_spacing
        parts.append(f"{stat.mean_area_px:.0f} px on {without} slices without spacing")
    return ", ".join(parts) or "-"


def count_left_out(lines: Sequence[str], left_out: str) -> int:
    """How many of `CheckReport.problem_lines` (given ``left_out``) left files out.

    Example:
        >>> count_left_out(["not measured: a.png: 3×3 ...", "warning: ..."], "not measured")
        1
    """
    return sum(line.startswith(f"{left_out}: ") for line in lines)
