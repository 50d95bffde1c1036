"""Which label values are ROIs: a dataset's stored values as ROI 0..K (`LabelScheme`, inferred
from all its label maps' values together), a map checked to hold ROIs 0..K only, and the names of
ROIs 1..K.

`infer_label_scheme` decides, once for the whole dataset, which stored values mean ROI 0..K:
plain maps store 0..K; maps saved for viewing store evenly spaced values (0, 40, 80, ... or
0/255) and are "display-scaled". JPEG maps are lossy and are snapped to the scheme's nearest
stored value (`io/lossy_labels.py`), or refused where the values are too close (ROI numbers
0..K) for JPEG noise to be told from another ROI.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import ConfigError, LabelError, option_name
from sliceseg.io.labels import whole_numbers

# How a message asks for K: check / train take it as a flag, Python callers as an argument.
NUM_LABELS_OPTION = option_name("--num-labels", "num_labels")
ROI_NAMES_FLAG = "--roi-names"
"""predict's and measure's flag for the ROI names (``--labels`` is its older name there)."""
ROI_NAMES_OPTION = option_name(ROI_NAMES_FLAG, "roi_names")
_WHERE_K_IS_SET = (
    f"check / train: --num-labels; measure: one name per ROI in {ROI_NAMES_FLAG}; labels.txt: "
    "one name per line"
)
"""Where each command takes the number of ROIs K from, for a message asking to raise it."""

NOT_IN_SCHEME = " are not in the dataset's label scheme"
"""How `LabelScheme.to_classes` says a label map holds values it does not know (evaluate
rewords it as the model's scheme)."""


@dataclass(frozen=True)
class LabelScheme:
    """Which stored values mean ROI 0..K, the same for every file of a dataset.

    Attributes:
        stored_values: sorted stored values, 0 first; position k holds the value of ROI k.
        is_display_scaled: True when the maps were saved for viewing (0, 40, 80, ... or 0/255).
    """

    stored_values: tuple[int, ...]
    is_display_scaled: bool = False

    def __post_init__(self) -> None:
        values = self.stored_values
        if not values or values[0] != 0 or list(values) != sorted(set(values)) or len(values) > 256:
            raise LabelError(
                f"stored_values={values}: expected strictly increasing values starting at 0, "
                "at most 256 of them (background + 255 ROIs)."
            )

    @property
    def num_labels(self) -> int:
        """K, the number of ROIs (background excluded)."""
        return len(self.stored_values) - 1

    def describe(self) -> str:
        """Return the scheme in words, e.g. ``0..6`` or ``0, 40, 80 (display-scaled)``."""
        values = self.stored_values
        if values == tuple(range(len(values))):
            return f"0..{values[-1]}"
        shown = ", ".join(str(v) for v in values[:4]) + (f", ..., {values[-1]}" * (len(values) > 4))
        return shown + (" (display-scaled)" if self.is_display_scaled else "")

    def to_classes(self, values: np.ndarray, *, source: Path | None = None) -> np.ndarray:
        """Map stored values to class indices 0..K.

        Args:
            values: integer array of stored values, any shape.
            source: the file the values came from, named in the error message.

        Returns:
            uint8 array of the same shape, values 0..K.

        Raises:
            LabelError: a value is not one of ``stored_values``.

        Example:
            >>> LabelScheme((0, 40, 80), is_display_scaled=True).to_classes(np.array([0, 80]))
            array([0, 2], dtype=uint8)
        """
        stored = np.asarray(self.stored_values, dtype=np.int64)
        index = np.minimum(np.searchsorted(stored, values), len(stored) - 1)
        known = stored[index] == values
        if not np.all(known):
            unknown = np.unique(np.asarray(values)[~known])
            fix = "fix those pixels"
            if unknown.tolist() == [255] and not self.is_display_scaled:  # a viewer's 0/255 mask
                k = self.num_labels
                fix = (
                    "a mask saved for viewing (0/255)? save the ROI's number "
                    f"({f'1..{k}' if k > 1 else '1'}) in place of 255"
                )
            elif not self.is_display_scaled and unknown.min() > self.num_labels:
                fix += (
                    f", or, if the dataset has ROIs up to {unknown.max()}, raise num_labels to "
                    f"{unknown.max()} ({_WHERE_K_IS_SET})"
                )
            raise LabelError(
                f"{source or 'label map'}: values {_short_list(unknown)} in "
                f"{np.count_nonzero(~known)} pixels{NOT_IN_SCHEME} {self.describe()}; {fix}."
            )
        return index.astype(np.uint8)


def refuse_num_labels_below_one(num_labels: int | None) -> None:
    """Refuse a number of ROIs K below 1 (background is not counted), in the one wording
    ``check``, ``train``, `sliceseg.dataset.source.DataSource` and `infer_label_scheme` share.

    Raises:
        ConfigError: ``num_labels`` < 1 (None, "not given", passes).

    Example:
        >>> refuse_num_labels_below_one(4)
    """
    if num_labels is not None and num_labels < 1:
        raise ConfigError(
            f"{NUM_LABELS_OPTION} must be ≥ 1 (ROIs, background excluded), got {num_labels!r}."
        )


def infer_label_scheme(
    value_sets: Sequence[set[int]], *, num_labels: int | None = None
) -> LabelScheme:
    """Decide, for the whole dataset, which stored values mean ROI 0..K.

    Plain maps store 0..K. Maps whose non-zero values are evenly spaced with a step of 2 or more
    (0, 40, 80, ...; rounding by 1 allowed, so 0, 42, 85, ... fits; or exactly 0/255) are
    display-scaled and mapped to 0..K in order, with a ``UserWarning``. When ``num_labels`` is
    given and every value is <= it, the maps are plain 0..num_labels (ROIs absent from the whole
    dataset still count).

    Args:
        value_sets: the set of values of each lossless label file.
        num_labels: K, the number of ROIs, when known.

    Returns:
        The scheme.

    Raises:
        LabelError: the values are not one consistent scheme (e.g. 0..6 mixed with 0, 40, 80), a
            value is above ``num_labels``, or no map holds any ROI (only background).
        ConfigError: ``num_labels`` < 1.

    Example:
        >>> infer_label_scheme([{0, 40, 80}, {0, 80}]).stored_values
        (0, 40, 80)
    """
    refuse_num_labels_below_one(num_labels)
    values = sorted({int(v) for s in value_sets for v in s} | {0})
    top = values[-1]
    if values[0] < 0:
        raise LabelError(f"label values {_short_list(values)}: negative values are not ROIs.")
    if top == 0:  # even with num_labels given: nothing to learn from or to measure
        raise LabelError(
            "no label map contains any ROI: the label maps hold only background (0); "
            "expected ROIs 1..K; check that the labels were exported with their ROIs."
        )
    if num_labels is not None and top <= num_labels:
        return LabelScheme(tuple(range(num_labels + 1)))
    smallest_step = int(np.diff(values).min())
    if smallest_step == 1:
        _check_num_rois(values, top, num_labels)
        return LabelScheme(tuple(range(top + 1)))
    step = top / round(top / smallest_step)
    ks = [round(v / step) for v in values]
    if any(abs(v - k * step) > 1 for v, k in zip(values, ks, strict=True)):
        raise _inconsistent(values)
    _check_num_rois(values, ks[-1], num_labels)
    num_rois = num_labels if num_labels is not None else ks[-1]
    observed = dict(zip(ks, values, strict=True))
    stored = tuple(observed.get(k, round(k * step)) for k in range(num_rois + 1))
    warnings.warn(
        f"label values {_short_list(values)} look saved for viewing (display-scaled, step "
        f"{step:g}); mapping them to ROIs 0..{num_rois} in order.",
        UserWarning,
        stacklevel=2,
    )
    return LabelScheme(stored, is_display_scaled=True)


def parse_roi_names(names: str | Sequence[str]) -> tuple[str, ...]:
    """Return the names of ROIs 1..K as a tuple; a string is a comma-separated list, as in
    ``--roi-names`` and a settings file, so ``"psoas"`` is one name, never its letters.

    Example:
        >>> parse_roi_names("muscle"), parse_roi_names("psoas, disc"), parse_roi_names(["a"])
        (('muscle',), ('psoas', 'disc'), ('a',))
    """
    if isinstance(names, str):
        return tuple(name.strip() for name in names.split(","))
    return tuple(str(name) for name in names)


def check_class_map(
    label: np.ndarray, image_shape: tuple[int, ...], num_labels: int, *, name: str
) -> None:
    """Refuse a label map that cannot be measured as ROIs 1..K on its image's grid.

    Areas count the pixels equal to 1..K, so any other value (a 0/255 mask, a map with more
    ROIs than names, a resized map's fractions) would be measured as no ROI at all.

    Args:
        label: the label map (rows, cols), any integer, bool or whole-number float dtype.
        image_shape: the shape of its slice's pixels.
        num_labels: K, the number of ROI names given.
        name: the slice's name, for the messages.

    Raises:
        ConfigError: the label map's shape is not its image's.
        LabelError: a value is not a whole number in 0..K.

    Example:
        >>> check_class_map(np.array([[0, 255]]), (1, 2), 1, name="s1")
        Traceback (most recent call last):
        LabelError: s1: label values [255] are not ROIs 0..1 (1 ROI names given); ...
    """
    if label.shape != image_shape:
        raise ConfigError(
            f"{name}: label map is {'×'.join(map(str, label.shape))} but the image is "
            f"{'×'.join(map(str, image_shape))}; a label must be on its image's own grid."
        )
    values = whole_numbers(np.asarray(label), name)
    outside = (values < 0) | (values > num_labels)
    if np.any(outside):
        raise LabelError(
            f"{name}: label values {_short_list(np.unique(values[outside]))} are not ROIs "
            f"0..{num_labels} ({num_labels} ROI names given); give one name per ROI in label "
            "order, or map the values to 0..K first (a 0/255 mask: label // 255)."
        )


def _check_num_rois(values: list[int], top_roi: int, num_labels: int | None) -> None:
    if num_labels is not None and top_roi > num_labels:
        raise LabelError(
            f"label values {_short_list(values)} reach ROI {top_roi}, above num_labels="
            f"{num_labels}; expected values 0..{num_labels}; fix the files holding higher "
            f"values, or raise num_labels ({_WHERE_K_IS_SET})."
        )
    missing = top_roi + 1 - len(values)
    if num_labels is None and 2 * missing > top_roi:
        raise _inconsistent(values)


def _inconsistent(values: list[int]) -> LabelError:
    return LabelError(
        f"label values {_short_list(values)} do not form one scheme; expected 0..K (ROI numbers) "
        "or evenly spaced display values (0, 40, 80, ...) in every file; re-export the odd "
        f"files the same way as the rest, or set {NUM_LABELS_OPTION} to K if ROIs are absent."
    )


def _short_list(values: Sequence[int] | np.ndarray, limit: int = 12) -> str:
    items = [int(v) for v in values]
    shown = ", ".join(str(v) for v in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"
