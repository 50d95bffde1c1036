"""Which slices a label folder already labels, paired as ``check`` and training pair them.

``suggest --labels`` leaves these slices out of what it proposes to label next. A slice is
labelled by a label map of its file (every frame of it) or of its frame (``cine_f003.png``), or
by its series' label volume (.seg.nrrd, NIfTI, NRRD, DICOM-SEG) where the volume's plane at the
slice holds an ROI: a plane left empty is a slice still to label, as training skips it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sliceseg.dataset.pairing import image_key, label_key, pair_files, slice_key
from sliceseg.dataset.volume_labels import load_volume_labels
from sliceseg.io.dicom import Slice
from sliceseg.io.labels import LABEL_SUFFIXES

__all__ = ["LabelledSlices", "labelled_slices"]


@dataclass(frozen=True)
class LabelledSlices:
    """What `labelled_slices` found.

    Attributes:
        keys: the `slice_key` of every labelled slice.
        unfit: one line per label volume left out (unreadable, or not on its series' grid),
            naming the file; its slices count as unlabelled.
    """

    keys: frozenset[str]
    unfit: tuple[str, ...] = ()


def labelled_slices(labels_dir: Path, images_dir: Path, slices: Sequence[Slice]) -> LabelledSlices:
    """Find which of ``slices`` (read from ``images_dir``) the label folder labels.

    Pairing is `pair_files`' for label maps and `load_volume_labels`' for label volumes, the
    code ``check`` and training use. Two label maps of one slice (an error for ``check``) still
    label it.

    Args:
        labels_dir: the label folder.
        images_dir: the DICOM folder the slices were read from (keys are relative to it).
        slices: the slices; label volumes are placed on them, so no file is read again.

    Returns:
        The labelled slices' keys and the label volumes left out.

    Example:
        >>> labelled_slices(Path("data/labels"), Path("scans"), slices).keys
        frozenset({'p01/slice_001', 'p01/slice_002'})
    """
    per_file: dict[Path, list[Slice]] = defaultdict(list)
    for image in slices:
        per_file[image.source].append(image)
    volumes = load_volume_labels(
        labels_dir,
        images_dir,
        sorted(per_file),
        read=lambda path: per_file[path],
        leave_out_unfit=True,
    )
    pairing = pair_files(images_dir, labels_dir)
    claimed = volumes.labelled_images  # a volume's series: its label maps are not used
    mapped = {
        (image_key(pair.image_path, images_dir), pair.frame)
        for pair in pairing.pairs
        if pair.image_path not in claimed
    }
    twice = {  # two label maps of one slice: not paired, yet the slice is labelled
        label_key(path, labels_dir)
        for group in pairing.duplicates
        for path in group
        if path.suffix.lower() in LABEL_SUFFIXES
    }
    keys = {label.key for label in volumes.labels}
    for image in slices:
        file = image_key(image.source, images_dir)
        key = slice_key(image, images_dir)
        if {(file, None), (file, image.frame)} & mapped or {file, key} & twice:
            keys.add(key)
    return LabelledSlices(frozenset(keys), tuple(p.message for p in volumes.unfit))
