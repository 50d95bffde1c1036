"""A dataset's label scheme (stored value → ROI 0..K): given, or inferred from its label files.

`sliceseg.io.roi_values.infer_label_scheme` infers it from the values of every file together; here
a few files with stray values are set aside so that they fail one by one, JPEG-only data has its
values guessed, and a scheme that cannot be inferred is an error naming the files per value.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from sliceseg.dataset.problems import Problem
from sliceseg.dataset.source import DataSource
from sliceseg.errors import LabelError
from sliceseg.io.labels import RawLabel
from sliceseg.io.lossy_labels import dominant_values
from sliceseg.io.roi_values import LabelScheme, infer_label_scheme
from sliceseg.thread_warnings import silenced

__all__ = ["given_scheme", "infer_scheme"]


def given_scheme(source: DataSource) -> LabelScheme | None:
    """The scheme the caller knows (a model's label values), taken as it is; None to infer."""
    values = source.label_values
    if not values:
        return None
    return LabelScheme(values, is_display_scaled=values != tuple(range(len(values))))


def infer_scheme(
    labels: list[RawLabel], num_labels: int | None, problems: list[Problem], *, note: str
) -> LabelScheme | None:
    """The scheme of the lossless label files (of the JPEG ones when there is no other), or None
    with an error appended to ``problems``; ``note`` ends that error (where K came from)."""
    lossless = [raw for raw in labels if not raw.is_lossy]
    raws = lossless or labels
    if not raws:
        return None
    sets = [
        set(np.unique(r.values).tolist()) if not r.is_lossy else dominant_values(r.values)
        for r in raws
    ]
    if not lossless:
        message = (
            "no lossless (PNG/NPY/TIFF) label map: the label values were guessed from the JPEG "
            "files; save labels as PNG or NPY, or pass num_labels."
        )
        problems.append(Problem("warning", "lossy_only", message, tuple(r.source for r in raws)))
    try:
        with silenced():
            return infer_label_scheme(sets, num_labels=num_labels)
    except LabelError as exc:
        # A few files with stray values must not hide the rest of the report: infer the scheme
        # from the files without them; those files then fail one by one when mapped to it.
        common = _scheme_without_rare_values(sets, num_labels)
        if common is not None:
            return common
        by_value: dict[int, list[Path]] = defaultdict(list)
        for raw, values in zip(raws, sets, strict=True):
            for v in values:
                by_value[v].append(raw.source)
        detail = "; ".join(f"{v}: {_count_or_names(p)}" for v, p in sorted(by_value.items()))
        message = f"{exc}{note} Files per value: {detail}."
        problems.append(Problem("error", "label_scheme", message))
        return None


def _scheme_without_rare_values(sets: list[set[int]], num_labels: int | None) -> LabelScheme | None:
    counts: dict[int, int] = defaultdict(int)
    for values in sets:
        for v in values:
            counts[v] += 1
    rare = {v for v, n in counts.items() if n <= max(1, len(sets) // 10)}
    kept = [values for values in sets if not values & rare]
    if not rare or not kept:
        return None
    try:
        with silenced():
            return infer_label_scheme(kept, num_labels=num_labels)
    except LabelError:
        return None


def _count_or_names(paths: list[Path]) -> str:
    names = [f"{p.parent.name}/{p.name}" for p in paths]
    return ", ".join(names) if len(paths) <= 3 else f"{len(paths)} files"
