"""Where a labelled dataset lives (`DataSource`) and what the user said about its ROIs.

``DATA_DIR/dicoms`` beside ``DATA_DIR/labels`` (or the two folders given), the number and
names of the ROIs when known, and what to do with slices a label volume leaves empty; each
checked once, here, with a message naming the fix. How the files then pair is
`sliceseg.dataset.pairing`'s.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sliceseg.errors import ConfigError, PairingError
from sliceseg.io.dicom_files import not_a_folder
from sliceseg.io.roi_values import (
    NUM_LABELS_OPTION,
    parse_roi_names,
    refuse_num_labels_below_one,
)
from sliceseg.user_paths import user_path

__all__ = [
    "UNLABELLED_CHOICES",
    "DataSource",
    "is_background_name",
    "is_roi_names_file",
    "refuse_background_name",
    "refuse_repeated_names",
]

ROI_NAMES_FILE = "labels.txt"
"""The ROI names file, read beside the label folder (``DATA/labels.txt``), never inside it."""


def is_roi_names_file(path: Path) -> bool:
    """Whether ``path`` is named as the ROI names file (`ROI_NAMES_FILE`, in any letter case)."""
    return path.name.lower() == ROI_NAMES_FILE


UNLABELLED_CHOICES = ("skip", "background")
"""What to do with slices a label volume leaves empty: leave them out, or train on them as
background (``--unlabelled-slices``)."""


@dataclass(frozen=True)
class DataSource:
    """A labelled dataset: its DICOM and label folders and what the user said about its ROIs.

    Build it with `DataSource.from_dirs`, which fills in the default folders and checks that
    they exist.

    Attributes:
        images_dir: folder of DICOM files (nested patient folders allowed).
        labels_dir: folder of label maps mirroring ``images_dir``.
        data_dir: the folder holding both by default (``dicoms/``, ``labels/``, ``labels.txt``);
            None when both folders were given on their own.
        num_labels: K, the number of ROIs, when known (checked against the data).
        roi_names: names of ROIs 1..K when given; otherwise ``labels.txt`` or "ROI k".
        unlabelled_slices: slices a label volume leaves empty: "skip" (default) or
            "background".
        label_values: the stored value of each ROI 0..K, 0 first, when known (a model's
            ``label_values``, for evaluation): the label scheme is then taken as given, never
            inferred from the files, and a value outside it is an error naming the file.

    Raises:
        ConfigError: ``num_labels`` < 1, as many ROI names as ``num_labels`` were not given, or
            ``unlabelled_slices`` is not "skip" or "background".
    """

    images_dir: Path
    labels_dir: Path
    data_dir: Path | None = None
    num_labels: int | None = None
    roi_names: tuple[str, ...] | None = None
    unlabelled_slices: str = "skip"
    label_values: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images_dir", user_path(self.images_dir))
        if self.label_values is not None:
            object.__setattr__(self, "label_values", tuple(int(v) for v in self.label_values))
        object.__setattr__(self, "labels_dir", user_path(self.labels_dir))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", user_path(self.data_dir))
        if self.roi_names is not None:
            object.__setattr__(self, "roi_names", parse_roi_names(self.roi_names))
        if self.num_labels is not None and (
            isinstance(self.num_labels, bool) or not isinstance(self.num_labels, (int, np.integer))
        ):
            raise ConfigError(
                f"{NUM_LABELS_OPTION} must be a whole number ≥ 1, got {self.num_labels!r}."
            )
        refuse_num_labels_below_one(self.num_labels)
        if self.unlabelled_slices not in UNLABELLED_CHOICES:
            raise ConfigError(
                f"unlabelled_slices={self.unlabelled_slices!r}: expected one of "
                f"{', '.join(UNLABELLED_CHOICES)}."
            )
        names = self.roi_names
        if names is not None:
            refuse_repeated_names(names, source="roi_names")
            refuse_background_name(names, source="roi_names")
        if names is not None and self.num_labels is not None and len(names) != self.num_labels:
            raise ConfigError(
                f"roi_names: {len(names)} ROI names but num_labels={self.num_labels}; give one "
                "name per ROI 1..K."
            )

    @property
    def check_command(self) -> str:
        """The `sliceseg check` command line that reports on this dataset in full."""
        if self.data_dir:
            return f"sliceseg check {self.data_dir}"
        return f"sliceseg check --images {self.images_dir} --labels {self.labels_dir}"

    @classmethod
    def from_dirs(
        cls,
        data_dir: Path | str | None = None,
        *,
        images_dir: Path | str | None = None,
        labels_dir: Path | str | None = None,
        num_labels: int | None = None,
        roi_names: str | Sequence[str] | None = None,
        unlabelled_slices: str = "skip",
    ) -> DataSource:
        """Resolve the folders (default ``DATA_DIR/dicoms`` and ``DATA_DIR/labels``); check them.

        Args:
            data_dir: the folder holding ``dicoms/`` and ``labels/``; may be None when both
                ``images_dir`` and ``labels_dir`` are given.
            images_dir: overrides ``DATA_DIR/dicoms``.
            labels_dir: overrides ``DATA_DIR/labels``.
            num_labels: K, the number of ROIs, when known.
            roi_names: names of ROIs 1..K.
            unlabelled_slices: "skip" or "background" (see the class).

        Returns:
            The `DataSource`.

        Raises:
            ConfigError: neither ``data_dir`` nor both overrides are given; a bad ``num_labels``
                or ``roi_names`` (see the class).
            PairingError: a folder does not exist (the message lists the folders that do).

        Example:
            >>> DataSource.from_dirs("data/train").images_dir
            PosixPath('data/train/dicoms')
        """
        if data_dir is None and (images_dir is None or labels_dir is None):
            raise ConfigError(
                "no data folder: give DATA_DIR (holding dicoms/ and labels/), or both --images "
                "and --labels (data_dir, or images_dir and labels_dir, in Python or a settings "
                "file)."
            )
        root = user_path(data_dir) if data_dir is not None else Path(".")
        images = user_path(images_dir) if images_dir is not None else root / "dicoms"
        labels = user_path(labels_dir) if labels_dir is not None else root / "labels"
        source = cls(
            images_dir=images,
            labels_dir=labels,
            data_dir=user_path(data_dir) if data_dir is not None else None,
            num_labels=num_labels,
            roi_names=parse_roi_names(roi_names) if roi_names is not None else None,
            unlabelled_slices=unlabelled_slices,
        )
        for folder, role, given in (
            (images, "DICOM", images_dir is not None),
            (labels, "label", labels_dir is not None),
        ):
            if not folder.is_dir():
                _raise_missing(folder, role, is_given=given)
        return source

    def refuse_output_inside(self, out: Path | str) -> None:
        """Refuse an output (folder, or ``preview``'s picture) that is, or lies in, the DICOM or
        the label folder: the pictures and tables written there would be read by the next run
        of the data as label maps without a DICOM (left out, exit 3) or as files that are no
        DICOM. ``train``, ``preview``, ``evaluate`` and ``measure`` call it.

        Raises:
            ConfigError: ``out`` is or lies in ``images_dir`` or ``labels_dir``.

        Example:
            >>> DataSource.from_dirs("data/test").refuse_output_inside("evaluation/")
        """
        target = user_path(out).resolve()
        for folder, role in ((self.labels_dir, "label"), (self.images_dir, "DICOM")):
            if not target.is_relative_to(folder.resolve()):
                continue
            beside = folder.parent / ("results" if target == folder.resolve() else target.name)
            raise ConfigError(
                f"{out}: --out lies in the {role} folder {folder}, where the next run would read "
                f"the files written there as its own; choose a folder outside it (e.g. beside "
                f"it: {beside})."
            )


def refuse_repeated_names(names: Sequence[str], *, source: str) -> None:
    """Refuse ROI names given twice: each ROI is a column of the area tables, found by its name,
    so two ROIs of one name would both show one ROI's areas.

    Args:
        names: the names of ROIs 1..K.
        source: where they came from (``labels.txt``'s path, ``roi_names``, ``--roi-names``).

    Raises:
        ConfigError: a name is given more than once (names the ROIs sharing it and the fix).

    Example:
        >>> refuse_repeated_names(["psoas", "disc"], source="labels.txt")
    """
    rois: dict[str, list[int]] = defaultdict(list)
    for roi, name in enumerate(names, 1):
        rois[name].append(roi)
    repeated = [
        f"'{name}' (ROIs {', '.join(map(str, r))})" for name, r in rois.items() if len(r) > 1
    ]
    if repeated:
        raise ConfigError(
            f"{source}: ROI name {'; '.join(repeated)} given more than once; expected a name of "
            "its own for each ROI 1..K (the area tables have one column per name); rename one."
        )


_BACKGROUND_NAMES = frozenset({"background", "bg", "clear label"})  # "Clear Label": ITK-SNAP's 0


def is_background_name(name: str) -> bool:
    """Whether ``name`` names the background (0), which has no name: given as ROI 1's, it
    shifts every name one ROI up, so ROI 1's areas are called 'background', ROI 2's 'psoas'.

    Example:
        >>> is_background_name(" Background"), is_background_name("psoas")
        (True, False)
    """
    return name.strip().lower() in _BACKGROUND_NAMES


def refuse_background_name(names: Sequence[str], *, source: str) -> None:
    """Refuse a name of the background among the names of ROIs 1..K (`is_background_name`).

    Raises:
        ConfigError: a name names the background (names it, ``source`` and the fix).

    Example:
        >>> refuse_background_name(["psoas", "disc"], source="roi_names")
    """
    for name in names:
        if is_background_name(name):
            raise ConfigError(
                f"{source}: '{name}' names the background (0), which has no name; expected the "
                "names of ROIs 1..K only, ROI 1's first; remove it."
            )


def _raise_missing(folder: Path, role: str, *, is_given: bool) -> None:
    """Refuse a missing folder; one given itself (``measure``'s LABELS_DIR, ``--images``) gets
    no DATA_DIR layout hint, whose flags another command may not have."""
    parent = folder.parent
    if folder.is_file() or (not is_given and parent.is_file()):  # a file given for a folder
        file = folder if folder.is_file() else parent
        holds = f"the {role} files" if file is folder else "dicoms/ and labels/ (DATA_DIR)"
        raise not_a_folder(file, holds)
    found = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    fix = (
        "check the path"
        if is_given
        else "expected DATA_DIR/dicoms/ and DATA_DIR/labels/, or pass images_dir / labels_dir "
        "(--images / --labels)"
    )
    raise PairingError(
        f"{folder}: {role} folder does not exist (folders in {parent}: "
        f"{', '.join(found) or 'none'}); {fix}."
    )
