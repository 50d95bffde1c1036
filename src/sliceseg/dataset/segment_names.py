"""One label value per segment name across a dataset: ROI values 1..K, in one documented order.

3D Slicer numbers segments in the order they were added, so two researchers (or one, on two
days) give "left psoas" different values. With names in the files this is fixable: each name
gets one value, the files that disagree are renumbered, and the check report says so.

The order, without a ``labels.txt`` (`harmonise_segments` with ``roi_names=None``):

1. names match ignoring case and repeated spaces ("Left  Psoas" is "left psoas"); an ROI is
   spelled as it first appears, and a report line lists the other spellings;
2. the ROIs are the union of the names of all files; a name missing from some files is still
   an ROI, and a report line names the files that lack it;
3. each name's *usual value* is the value most files give it (a tie: the value in the first
   of those files, files in natural path order, ``p2`` before ``p10``); names are sorted by
   usual value, then by first appearance (files in that order, each file's segments by value);
4. ROI k is the k-th name: values 1..K.

Why this order, not alphabetical or first appearance alone: a dataset whose files agree keeps
its values (ROI k is the segment users see as value k in Slicer, nothing is renumbered), one
odd file among many is the one renumbered, and where no value is agreed on (every file
different) the first file's order decides: still one order, read from the files alone.
Alphabetical order would renumber every consistent dataset; first appearance alone would let
the first file (or one that lacks a segment) renumber all the others. A ``labels.txt`` (one
name per line) overrides all of this: name n is ROI n.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sliceseg.dataset.problems import Problem
from sliceseg.errors import LabelError
from sliceseg.io.dicom_files import natural_key
from sliceseg.io.label_volume import LabelVolume

SEGMENT_ORDER = (
    "each name's most common value over the files (a tie: the first file's, files in path "
    "order), then first appearance; add labels.txt (one name per line) to choose the order"
)
"""How the ROI values follow from segment names without ``labels.txt``, for the check report."""


@dataclass(frozen=True)
class SegmentMapping:
    """One value per segment name across a dataset.

    Attributes:
        values_by_name: the dataset's value of each ROI name (names as first spelled), 1..K.
        remaps: per volume file, old value → new value, for the values that change.
        problems: check-report warnings: files renumbered ("renumbered"), one ROI spelled
            several ways ("segment_spelling"), segments some files lack ("missing_segment").
        values_line: one line stating the ROI values and their order ("" without names).
        is_from_segment_names: the order came from the segment names (no ``roi_names``).
    """

    values_by_name: dict[str, int]
    remaps: dict[Path, dict[int, int]]
    problems: list[Problem] = field(default_factory=list)
    values_line: str = ""
    is_from_segment_names: bool = False

    @property
    def names_by_value(self) -> dict[int, str]:
        """ROI name of each value."""
        return {v: n for n, v in self.values_by_name.items()}


def _normalise_name(name: str) -> str:
    """The form in which segment names match: case-folded, spaces collapsed and trimmed."""
    return " ".join(name.split()).casefold()


def harmonise_segments(
    volumes: Sequence[LabelVolume],
    *,
    roi_names: Sequence[str] | None = None,
    names_source: str = "the ROI names",
) -> SegmentMapping:
    """Give each segment name one value 1..K across the dataset; renumber the files that disagree.

    With ``roi_names`` (e.g. ``labels.txt``), name ``n`` gets value ``n + 1`` and every segment
    name must be among them (ignoring case and spaces). Without, the order is the module's
    (`SEGMENT_ORDER`): usual value, then first appearance. Unnamed volumes are left as they are.

    Args:
        volumes: the dataset's label volumes.
        roi_names: names of ROIs 1..K, when known.
        names_source: where ``roi_names`` came from, for messages (e.g. ``labels.txt``).

    Returns:
        The value of each name, the per-file renumbering, the report lines.

    Raises:
        LabelError: a segment name is not in ``roi_names`` (the message lists the known names).

    Example:
        >>> mapping = harmonise_segments([read_label_volume(p) for p in volume_paths])
        >>> mapping.values_line
        "ROI values from segment names: 1 = vertebral body, 2 = left psoas; order: ..."
    """
    named = sorted((v for v in volumes if v.segments), key=lambda v: natural_key(str(v.source)))
    if not named:
        return SegmentMapping({}, {})
    if roi_names is not None:
        _check_known(named, roi_names, names_source)
        order = [_normalise_name(n) for n in roi_names]
        spelled = {_normalise_name(n): str(n) for n in roi_names}
        source, how = names_source, f"as listed in {names_source}"
    else:
        order, spelled = _dataset_order(named)
        source, how = "segment names", SEGMENT_ORDER
    values = {name: k for k, name in enumerate(order, start=1)}
    remaps, problems = _renumber(named, values)
    if roi_names is None:
        problems += _spelling_problems(named, spelled)
    problems += _missing_problems(named, spelled) + _merged_problems(named)
    by_name = {spelled[name]: value for name, value in values.items()}
    listed = ", ".join(f"{v} = {n}" for n, v in by_name.items())
    line = f"ROI values from {source}: {listed}; order: {how}"
    return SegmentMapping(by_name, remaps, problems, line, roi_names is None)


def _check_known(named: Sequence[LabelVolume], roi_names: Sequence[str], source: str) -> None:
    known = {_normalise_name(n) for n in roi_names}
    for volume in named:
        unknown = [s.name for s in volume.segments if _normalise_name(s.name) not in known]
        if unknown:
            raise LabelError(
                f"{volume.source}: segment name(s) {unknown} not in {source} "
                f"({', '.join(map(str, roi_names))}); rename the segments in 3D Slicer or "
                f"add the names to {source}."
            )


def _dataset_order(volumes: Sequence[LabelVolume]) -> tuple[list[str], dict[str, str]]:
    """The names (normalised) in the module's order, and each one's first spelling."""
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    first_file: dict[tuple[str, int], int] = {}
    first_seen: dict[str, int] = {}
    spelled: dict[str, str] = {}
    for index, volume in enumerate(volumes):
        for segment in sorted(volume.segments, key=lambda s: s.label_value):
            name = _normalise_name(segment.name)
            votes[name][segment.label_value] += 1
            first_file.setdefault((name, segment.label_value), index)
            first_seen.setdefault(name, len(first_seen))
            spelled.setdefault(name, segment.name)

    def usual(name: str) -> int:
        counter = votes[name]
        return min(counter, key=lambda v: (-counter[v], first_file[(name, v)]))

    return sorted(votes, key=lambda name: (usual(name), first_seen[name])), spelled


def _renumber(
    volumes: Sequence[LabelVolume], values: dict[str, int]
) -> tuple[dict[Path, dict[int, int]], list[Problem]]:
    remaps: dict[Path, dict[int, int]] = {}
    problems = []
    for volume in volumes:
        remap = {
            s.label_value: values[_normalise_name(s.name)]
            for s in volume.segments
            if values[_normalise_name(s.name)] != s.label_value
        }
        if remap:
            remaps[volume.source] = remap
            names = volume.names_by_value
            changes = ", ".join(f"'{names[old]}' {old} → {new}" for old, new in remap.items())
            message = f"{volume.source.name}: segments renumbered to match the dataset: {changes}"
            problems.append(Problem("warning", "renumbered", message, (volume.source,)))
    return remaps, problems


def _spelling_problems(volumes: Sequence[LabelVolume], spelled: dict[str, str]) -> list[Problem]:
    """One warning per ROI whose segments are spelled differently (case, spaces)."""
    others: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for volume in volumes:
        for segment in volume.segments:
            name = _normalise_name(segment.name)
            if segment.name != spelled[name]:
                others[name][segment.name].append(volume.source)
    problems = []
    for name, spellings in others.items():
        listed = ", ".join(f"'{s}' ({len(paths)} file(s))" for s, paths in spellings.items())
        message = (
            f"segment '{spelled[name]}' is also spelled {listed}: names that differ only in case "
            f"or spaces are one ROI, named '{spelled[name]}'"
        )
        paths = tuple(dict.fromkeys(p for ps in spellings.values() for p in ps))
        problems.append(Problem("warning", "segment_spelling", message, paths))
    return problems


def _missing_problems(volumes: Sequence[LabelVolume], spelled: dict[str, str]) -> list[Problem]:
    """One warning per segment name that some named files lack (their slices lack the ROI)."""
    holders: dict[str, set[Path]] = defaultdict(set)
    for volume in volumes:
        for segment in volume.segments:
            holders[_normalise_name(segment.name)].add(volume.source)
    problems = []
    for name, files in holders.items():
        lacking = tuple(v.source for v in volumes if v.source not in files)
        if lacking:
            message = (
                f"segment '{spelled[name]}' is in {len(files)} of {len(volumes)} segmentation "
                f"files; in the {len(lacking)} without it the ROI counts as background: add the "
                "segment there if the tissue is visible"
            )
            problems.append(Problem("warning", "missing_segment", message, lacking))
    return problems


def _merged_problems(volumes: Sequence[LabelVolume]) -> list[Problem]:
    """One warning per file that names two of its segments alike: they become one ROI."""
    problems = []
    for volume in volumes:
        by_name: dict[str, list[str]] = defaultdict(list)
        for segment in volume.segments:
            by_name[_normalise_name(segment.name)].append(
                f"'{segment.name}' ({segment.label_value})"
            )
        for same in (names for names in by_name.values() if len(names) > 1):
            message = (
                f"{volume.source.name}: segments {' and '.join(same)} have one name (ignoring "
                "case and spaces) and are merged into one ROI; rename one in 3D Slicer if they "
                "are different tissues"
            )
            problems.append(Problem("warning", "merged_segments", message, (volume.source,)))
    return problems


def relabel(values: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    """Apply an old → new value map to a label array in one pass (swaps are safe)."""
    if not remap:
        return values
    top = max(int(values.max()), *remap.keys(), *remap.values())
    table = np.arange(top + 1, dtype=np.int64)
    for old, new in remap.items():
        table[old] = new
    dtype = np.uint8 if table.max() <= 255 else np.uint16
    return table[values].astype(dtype)
