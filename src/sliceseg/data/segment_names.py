"""One label value per segment name across a dataset: renumber the files that disagree.

3D Slicer numbers segments in the order they were added, so two researchers (or one, on two
days) give "left psoas" different values. With names in the files this is fixable: each name
gets one value, the files that disagree are renumbered, and a warning lists every change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.volumes import LabelVolume


@dataclass(frozen=True)
class SegmentMapping:
    """One value per segment name across a dataset.

    Attributes:
        values_by_name: the dataset's value of each ROI name (names as first spelled).
        remaps: per volume file, old value → new value, for the values that change.
        warnings: one line per renumbered file, listing the renumbering.
    """

    values_by_name: dict[str, int]
    remaps: dict[Path, dict[int, int]]
    warnings: list[str]

    @property
    def names_by_value(self) -> dict[int, str]:
        """ROI name of each value."""
        return {v: n for n, v in self.values_by_name.items()}


def _normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def harmonise_segments(
    volumes: Sequence[LabelVolume],
    *,
    roi_names: Sequence[str] | None = None,
    names_source: str = "the ROI names",
) -> SegmentMapping:
    """Give each segment name one value across the dataset; renumber the files that disagree.

    Names match ignoring case and repeated spaces. With ``roi_names`` (e.g. ``labels.txt``),
    name ``n`` gets value ``n + 1`` and every segment name must be among them. Without, each
    name keeps the value most files give it (ties: the first file's); a name whose value is
    taken by a more common name gets the next free value. Unnamed volumes are left as they are.

    Args:
        volumes: the dataset's label volumes.
        roi_names: names of ROIs 1..K, when known.
        names_source: where ``roi_names`` came from, for messages (e.g. ``labels.txt``).

    Returns:
        The value of each name, the per-file renumbering and one warning line per changed file.

    Raises:
        LabelError: a segment name is not in ``roi_names`` (the message lists the known names).

    Example:
        >>> mapping = harmonise_segments([read_label_volume(p) for p in volume_paths])
        >>> mapping.warnings
        ["p02.seg.nrrd: segments renumbered to match the dataset: 'left psoas' 3 → 2, ..."]
    """
    named = [v for v in volumes if v.segments]
    if roi_names is not None:
        values = {_normalise_name(n): i + 1 for i, n in enumerate(roi_names)}
        spelled = {_normalise_name(n): str(n) for n in roi_names}
        for volume in named:
            unknown = [s.name for s in volume.segments if _normalise_name(s.name) not in values]
            if unknown:
                raise LabelError(
                    f"{volume.source}: segment name(s) {unknown} not in {names_source} "
                    f"({', '.join(map(str, roi_names))}); rename the segments in 3D Slicer or "
                    f"add the names to {names_source}."
                )
    else:
        values, spelled = _majority_values(named)
    remaps: dict[Path, dict[int, int]] = {}
    lines = []
    for volume in named:
        remap = {
            s.label_value: values[_normalise_name(s.name)]
            for s in volume.segments
            if values[_normalise_name(s.name)] != s.label_value
        }
        if remap:
            remaps[volume.source] = remap
            names = volume.names_by_value
            changes = ", ".join(f"'{names[old]}' {old} → {new}" for old, new in remap.items())
            lines.append(
                f"{volume.source.name}: segments renumbered to match the dataset: {changes}"
            )
    by_value = {spelled[name]: value for name, value in values.items()}
    return SegmentMapping(dict(sorted(by_value.items(), key=lambda kv: kv[1])), remaps, lines)


def _majority_values(volumes: Sequence[LabelVolume]) -> tuple[dict[str, int], dict[str, str]]:
    votes: dict[str, Counter[int]] = defaultdict(Counter)
    spelled: dict[str, str] = {}
    first_value: dict[str, int] = {}
    for volume in volumes:
        for segment in volume.segments:
            name = _normalise_name(segment.name)
            votes[name][segment.label_value] += 1
            spelled.setdefault(name, segment.name)
            first_value.setdefault(name, segment.label_value)

    def best(name: str) -> tuple[int, int]:
        counter = votes[name]
        value = max(counter, key=lambda v: (counter[v], v == first_value[name], -v))
        return value, counter[value]

    wanted = {name: best(name) for name in votes}
    values: dict[str, int] = {}
    taken: set[int] = set()
    # The best-supported names choose first; ties keep the order of first appearance.
    for name in sorted(wanted, key=lambda n: -wanted[n][1]):
        value = wanted[name][0]
        if value in taken:
            value = max(taken | {v for c in votes.values() for v in c}) + 1
        values[name] = value
        taken.add(value)
    return values, spelled


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
