"""Label volumes as training labels: read those paired with a series, take each slice's plane.

A label folder may hold, beside (or instead of) per-slice label files, one label volume per
series (a 3D Slicer ``.seg.nrrd``, a NIfTI / NRRD label map, or a DICOM-SEG); which series each
one labels is `sliceseg.dataset.volume_pairing`'s (a series labelled twice is an error here).
Each slice then takes the volume's plane at its own position (`slice_plane`), never by order.
Named segments (Slicer, DICOM-SEG) must mean the same value in every file; where they do not,
`sliceseg.dataset.segment_names.harmonise_segments` renumbers them and says so. Slices the volume
leaves empty are skipped or kept as background (``unlabelled="skip" | "background"``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from sliceseg.dataset.pairing import Pair, Pairing, slice_key
from sliceseg.dataset.problems import Problem
from sliceseg.dataset.segment_names import SegmentMapping, harmonise_segments, relabel
from sliceseg.dataset.source import UNLABELLED_CHOICES
from sliceseg.dataset.volume_pairing import (
    VolumePair,
    VolumePairing,
    find_label_volumes,
    pair_volumes,
)
from sliceseg.errors import ConfigError, DicomReadError, LabelError
from sliceseg.io.dicom import Slice, read_slices
from sliceseg.io.dicom_files import SkippedFile
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.slice_geometry import TOLERANCE_VOXELS
from sliceseg.io.volume_slices import locate_slice_plane
from sliceseg.io.volumes import read_label_volume


@dataclass(frozen=True, eq=False)
class SliceLabel:
    """One DICOM slice and its labels, taken from a volume.

    Attributes:
        key: the slice's `slice_key` under the DICOM folder (``p01/slice_1``).
        image: the slice.
        values: (rows, cols) label values on the slice's grid (after `harmonise_segments`).
        volume: the volume file it came from.
    """

    key: str
    image: Slice
    values: np.ndarray
    volume: Path


@dataclass(frozen=True, eq=False)
class SeriesLabels:
    """What one volume gives its series: labelled slices, those it leaves empty, its labelled
    planes that no slice lies on (``untaken``: (axis 0..2, plane index) pairs), and how many
    planes apart its slices lie (``plane_stride``: 2 or more where the volume is finer along
    the normal than the series, as one drawn on a thinner reconstruction is)."""

    volume: LabelVolume
    labelled: list[tuple[Slice, np.ndarray]]
    unlabelled: list[Slice]
    untaken: tuple[tuple[int, int], ...] = ()
    plane_stride: int = 1


@dataclass(frozen=True, eq=False)
class VolumeLabels:
    """The labels that a label folder's volumes give, ready to join per-slice labels.

    Attributes:
        labels: one per labelled slice (``unlabelled="background"`` includes empty slices).
        unlabelled: (slice key, volume) of every slice its volume leaves empty or does not reach.
        pairing: the volume pairing.
        segments: the value of each segment name, the renumbering, its report lines.
        skipped: DICOM files of paired series that could not be read.
        unnamed: the paired volumes that name no segment (NIfTI, plain NRRD).
        unfit: an error per volume left out (``leave_out_unfit``), naming the file.
        untaken: per volume, its labelled planes no DICOM slice lies on (`SeriesLabels`).
        empty: the paired volumes without a label voxel (all their slices are unlabelled).
        finer_planes: per volume finer along the normal than its series (untaken planes
            between the slices): (planes per slice, plane spacing in mm).
    """

    labels: list[SliceLabel]
    unlabelled: list[tuple[str, Path]]
    pairing: VolumePairing
    segments: SegmentMapping = field(default_factory=lambda: SegmentMapping({}, {}))
    skipped: list[SkippedFile] = field(default_factory=list)
    unnamed: list[Path] = field(default_factory=list)
    unfit: list[Problem] = field(default_factory=list)
    untaken: dict[Path, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    finer_planes: dict[Path, tuple[int, float]] = field(default_factory=dict)
    empty: list[Path] = field(default_factory=list)

    @property
    def names_by_value(self) -> dict[int, str]:
        """ROI name of each label value, from named segments ({} when none)."""
        return self.segments.names_by_value

    @property
    def labelled_images(self) -> set[Path]:
        """DICOM files whose labels come from a volume, or from two (an error): either way they
        are not 'without labels', nor paired with per-slice label files."""
        pairs = [*self.pairing.pairs, *(p for group in self.pairing.duplicates for p in group)]
        return {path for pair in pairs for path in pair.image_paths}


def series_labels(
    volume: LabelVolume,
    slices: Sequence[Slice],
    *,
    unlabelled: str = "skip",
    tolerance_voxels: float = TOLERANCE_VOXELS,
) -> SeriesLabels:
    """Give every slice of a series the volume's plane at its position.

    When the slices hold several series (one DICOM folder, several SeriesInstanceUIDs), the one
    series whose grid the volume matches is used. An empty volume (no label voxel: 3D Slicer
    saves an all-empty segmentation as one voxel, on no grid of ours) leaves every slice empty.

    Args:
        volume: the label volume.
        slices: the DICOM slices, any order.
        unlabelled: "skip" leaves slices with an empty (all-background) plane, or outside the
            volume, out; "background" keeps them as all-background labels.
        tolerance_voxels: as `slice_plane`.

    Returns:
        The labelled slices (series order kept) and the unlabelled ones.

    Raises:
        ConfigError: ``unlabelled`` is not "skip" or "background".
        LabelError: the grids differ (see `slice_plane`), or the volume reaches no slice.

    Example:
        >>> result = series_labels(read_label_volume(Path("labels/p01.seg.nrrd")), slices)
        >>> len(result.labelled), len(result.unlabelled)
        (8, 4)
    """
    if unlabelled not in UNLABELLED_CHOICES:
        raise ConfigError(
            f"unlabelled_slices={unlabelled!r}: expected one of {', '.join(UNLABELLED_CHOICES)}."
        )
    groups: dict[str, list[Slice]] = defaultdict(list)
    for image in slices:
        groups[image.series_uid].append(image)
    if volume.series_uid and volume.series_uid in groups:
        groups = {volume.series_uid: groups[volume.series_uid]}
    if not volume.values.any():  # its geometry says nothing: one voxel, anywhere
        return _empty_volume_labels(volume, groups, unlabelled)
    results, errors = [], []
    for members in groups.values():
        try:
            results.append(_one_series(volume, members, unlabelled, tolerance_voxels))
        except LabelError as exc:
            errors.append(exc)
    if len(results) == 1:
        return results[0]
    if results:
        raise LabelError(
            f"{volume.source}: the volume fits {len(results)} of the {len(groups)} series in its "
            "DICOM folder; put each series in its own folder (one volume per series)."
        )
    raise errors[0]


def _empty_volume_labels(
    volume: LabelVolume, groups: Mapping[str, list[Slice]], unlabelled: str
) -> SeriesLabels:
    """Every slice of the volume's one series left empty (all background with "background").

    Raises:
        LabelError: the folder holds several series: an empty volume's geometry cannot say
            which one it was drawn on.
    """
    if len(groups) > 1:
        raise LabelError(
            f"{volume.source}: the segmentation is empty, and its DICOM folder holds "
            f"{len(groups)} series, so which one it was drawn on cannot be told; put each series "
            "in its own folder (one volume per series)."
        )
    (members,) = groups.values()
    kept = [(s, np.zeros(s.shape, dtype=volume.values.dtype)) for s in members]
    return SeriesLabels(volume, kept if unlabelled == "background" else [], list(members))


def _one_series(
    volume: LabelVolume, slices: Sequence[Slice], unlabelled: str, tolerance: float
) -> SeriesLabels:
    _check_stacking(volume, slices, tolerance)
    labelled: list[tuple[Slice, np.ndarray]] = []
    empty: list[Slice] = []
    taken: dict[int, set[int]] = defaultdict(set)  # normal axis -> plane indices
    for image in slices:
        found = locate_slice_plane(volume, image, tolerance_voxels=tolerance)
        if found is not None:
            taken[found.normal_axis].add(found.index)
        if found is not None and np.any(found.values):
            labelled.append((image, found.values))
            continue
        empty.append(image)
        if unlabelled == "background":
            labelled.append((image, np.zeros(image.shape, dtype=volume.values.dtype)))
    if not taken:
        raise LabelError(
            f"{volume.source}: the volume reaches none of the {len(slices)} slices of series "
            f"{slices[0].series_uid or slices[0].source.parent} ({_extent(volume, slices)}); "
            "expected the segmentation of this series; check the pairing of file names."
        )
    untaken = _untaken_planes(volume, taken)
    return SeriesLabels(volume, labelled, empty, untaken, _plane_stride(taken))


def _check_stacking(volume: LabelVolume, slices: Sequence[Slice], tolerance: float) -> None:
    """Refuse a volume whose planes are stacked along another line than the slices are.

    A CT series acquired with a gantry tilt stacks its slices obliquely to their normal; a
    volume of planes along the normal over it (3D Slicer's loading, dcm2niix's tilt
    correction) holds slice n's labels a different distance sideways on each plane: a whole
    number of pixels put them on other pixels without a word, a fraction blamed a half-voxel
    shift. Other misfits (orientation, spacing) are `locate_slice_plane`'s to name.
    """
    placed = [s for s in slices if s.image_position_mm is not None and s.orientation]
    if len(placed) < 2 or not placed[0].spacing_mm or placed[0].orientation is None:
        return
    cosines = np.asarray(placed[0].orientation, dtype=np.float64)
    normal = np.cross(cosines[:3], cosines[3:])
    normal /= np.linalg.norm(normal)
    positions = np.asarray([s.image_position_mm for s in placed], dtype=np.float64)
    heights = positions @ normal
    span = float(heights.max() - heights.min())
    axis = int(np.argmax(np.abs(volume.directions.T @ normal)))
    in_plane = [abs(float(volume.directions[:, a] @ normal)) < 1e-3 for a in range(3) if a != axis]
    if span <= 0 or volume.shape[axis] < 2 or not all(in_plane):
        return
    drift = positions[np.argmax(heights)] - positions[np.argmin(heights)] - span * normal
    step = volume.ijk_to_lps[:3, axis]
    volume_drift = span * step / float(step @ normal) - span * normal
    off_mm = float(np.linalg.norm(drift - volume_drift))
    if off_mm <= tolerance * min(placed[0].spacing_mm):
        return
    angles = [np.degrees(np.arctan(np.linalg.norm(d) / span)) for d in (drift, volume_drift)]
    raise LabelError(
        f"{volume.source}: the slices of series {placed[0].series_uid or placed[0].source.parent} "
        f"are stacked {angles[0]:.2f}° from their normal (a gantry tilt: "
        f"{np.linalg.norm(drift):.3g} mm sideways over {span:.3g} mm), the volume's planes "
        f"{angles[1]:.2f}°, so its voxels lie up to {off_mm:.3g} mm off the DICOM pixels; "
        "expected a volume stacked as the slices are (3D Slicer's loading of a tilted CT and "
        "dcm2niix's tilt correction stack planes along the normal); use per-slice label files "
        "for this series."
    )


def _untaken_planes(volume: LabelVolume, taken: dict[int, set[int]]) -> tuple[tuple[int, int], ...]:
    """The volume's labelled planes that no slice lies on (a DICOM file missing, say)."""
    if len(taken) != 1:  # slices along several axes: no one stack of planes to compare
        return ()
    ((axis, indices),) = taken.items()
    others = tuple(a for a in range(3) if a != axis)
    labelled = np.flatnonzero(np.any(volume.values, axis=others))
    return tuple((axis, int(k)) for k in labelled if int(k) not in indices)


def _plane_stride(taken: dict[int, set[int]]) -> int:
    """The fewest planes between two slices' planes (1 where that cannot be told)."""
    if len(taken) != 1 or len(indices := next(iter(taken.values()))) < 2:
        return 1
    return int(np.diff(sorted(indices)).min())


def _extent(volume: LabelVolume, slices: Sequence[Slice]) -> str:
    if slices[0].orientation is None:
        return "no orientation"
    cosines = np.asarray(slices[0].orientation)
    normal = np.cross(cosines[:3], cosines[3:])
    heights = [np.asarray(s.image_position_mm) @ normal for s in slices if s.image_position_mm]
    corners = np.asarray(
        [
            volume.ijk_to_lps @ np.array([i, j, k, 1.0])
            for i in (0, volume.shape[0] - 1)
            for j in (0, volume.shape[1] - 1)
            for k in (0, volume.shape[2] - 1)
        ]
    )[:, :3]
    along = corners @ normal
    return (
        f"slices at {min(heights):.1f} to {max(heights):.1f} mm along the normal, the volume "
        f"at {along.min():.1f} to {along.max():.1f} mm"
    )


def load_volume_labels(
    labels_dir: Path | str,
    images_dir: Path | str,
    image_paths: Sequence[Path],
    *,
    roi_names: Sequence[str] | None = None,
    names_source: str = "the ROI names",
    unlabelled: str = "skip",
    read: Callable[[Path], list[Slice]] = read_slices,
    leave_out_unfit: bool = False,
) -> VolumeLabels:
    """Read, pair, check and harmonise every label volume of a label folder.

    Args:
        labels_dir: the label folder.
        images_dir: the DICOM folder.
        image_paths: its DICOM files.
        roi_names: names of ROIs 1..K, when known (``labels.txt``); segment names must be in it.
        names_source: where ``roi_names`` came from, for messages.
        unlabelled: "skip" or "background", as `series_labels`.
        read: reads one DICOM file into slices (the caller's cache, or `read_slices`).
        leave_out_unfit: leave out, with an error in ``unfit``, a volume that would raise the
            LabelError below (``measure``, ``evaluate``: one bad file must not stop the rest).

    Returns:
        One `SliceLabel` per labelled slice, the unlabelled slices, the pairing, the names,
        the volumes left out.

    Raises:
        LabelError: a volume is unreadable, truncated or does not fit its series; a segment
            name is unknown (not with ``leave_out_unfit``). The message names the volume.
        ConfigError: ``unlabelled`` is not "skip" or "background".

    Example:
        >>> found = load_volume_labels(Path("d/labels"), Path("d/dicoms"), dicom_files)
        >>> len(found.labels), found.names_by_value
        (24, {1: 'vertebral body', 2: 'right psoas major'})
    """
    labels_dir, images_dir = Path(labels_dir), Path(images_dir)
    pairing = pair_volumes(find_label_volumes(labels_dir), labels_dir, images_dir, image_paths)
    unfit: list[Problem] | None = [] if leave_out_unfit else None
    skipped: list[SkippedFile] = []
    names = partial(harmonise_segments, roi_names=roi_names, names_source=names_source)
    series = _fitting_series(pairing.pairs, read, unlabelled, names, unfit, skipped)
    volumes = [volume for volume, _ in series]
    mapping = names(volumes)
    labels: list[SliceLabel] = []
    left_out: list[tuple[str, Path]] = []
    for volume, result in series:
        remap = mapping.remaps.get(volume.source, {})
        for image, values in result.labelled if result else []:
            key = slice_key(image, images_dir)
            labels.append(SliceLabel(key, image, relabel(values, remap), volume.source))
        empty = result.unlabelled if result else []
        left_out += [(slice_key(image, images_dir), volume.source) for image in empty]
    unnamed = [volume.source for volume in volumes if not volume.segments]
    untaken = {volume.source: result.untaken for volume, result in series if result}
    finer = {
        volume.source: (result.plane_stride, volume.spacing_mm[result.untaken[0][0]])
        for volume, result in series
        if result and result.untaken and result.plane_stride > 1
    }
    blank = [volume.source for volume in volumes if not volume.values.any()]
    return VolumeLabels(
        labels, left_out, pairing, mapping, skipped, unnamed, unfit or [], untaken, finer, blank
    )


def _fitting_series(
    pairs: Sequence[VolumePair],
    read: Callable[[Path], list[Slice]],
    unlabelled: str,
    names: Callable[[list[LabelVolume]], SegmentMapping],
    unfit: list[Problem] | None,
    skipped: list[SkippedFile],
) -> list[tuple[LabelVolume, SeriesLabels | None]]:
    """Each volume, its names checked, and its series' labels (None: no slice readable).

    A volume that raises a LabelError goes to ``unfit`` as an error (raised when it is None).
    """
    fitting: list[tuple[LabelVolume, SeriesLabels | None]] = []
    for pair in pairs:
        try:
            volume = read_label_volume(pair.volume)
            names([volume])  # a segment name that is not in labels.txt
            slices = []
            for path in pair.image_paths:
                try:
                    slices.extend(read(path))
                except DicomReadError as exc:
                    skipped.append(SkippedFile(path, str(exc)))
            result = series_labels(volume, slices, unlabelled=unlabelled) if slices else None
        except LabelError as exc:
            if unfit is None:
                raise
            unfit.append(Problem("error", "unfit_volume", str(exc), (pair.volume,)))
            continue
        fitting.append((volume, result))
    return fitting


def merge_pairing(pairing: Pairing, found: VolumeLabels) -> Pairing:
    """The per-slice pairing with the volumes' slices added as pairs (label path = the volume).

    DICOM files a volume labels are no longer "without labels"; volumes without a series join
    the labels without images; DICOM files of paired series that could not be read are skipped.
    """
    claimed = found.labelled_images
    volume_pairs = [Pair(s.key, s.image.source, s.volume) for s in found.labels]
    return Pairing(
        pairs=[p for p in pairing.pairs if p.image_path not in claimed] + volume_pairs,
        images_without_labels=[p for p in pairing.images_without_labels if p not in claimed],
        labels_without_images=pairing.labels_without_images + found.pairing.unmatched,
        skipped=pairing.skipped + found.skipped,
        duplicates=pairing.duplicates,
    )
