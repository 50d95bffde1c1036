"""3D Slicer segmentations: .seg.nrrd and plain .nrrd label maps (or their detached .nhdr headers)
read (pynrrd), a series' labels written as .seg.nrrd with ROI names and colours (slicerio).

Slicer segmentations with several layers (overlapping segments stored as 4D) are merged into one
label map when the segments do not overlap; each segment keeps its value unless two layers reuse
a value, then segment ``n`` (header order) gets value ``n + 1``.

Segment names are UTF-8 in the header, as 3D Slicer writes them; pynrrd (also under slicerio) reads
and writes its header as ASCII only, so names are read and written here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sliceseg.errors import LabelError
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_headers import slice_step_mm
from sliceseg.io.files import atomic_path
from sliceseg.io.label_volume import (
    FILE_ERRORS,
    LabelVolume,
    Segment,
    as_3d,
    as_labels,
    check_roi_values,
    unreadable,
)
from sliceseg.io.series_grid import series_grid
from sliceseg.thread_warnings import silenced

_NRRD_ERRORS: tuple[type[BaseException], ...] = (
    *FILE_ERRORS,
    KeyError,  # pynrrd: an unknown 'type' or 'encoding'
    IndexError,
    StopIteration,  # pynrrd: an empty file
)


def read_nrrd(path: Path) -> LabelVolume:
    """Read a 3D Slicer segmentation (.seg.nrrd: named segments, layers merged) or a plain NRRD
    label map (no names), geometry in LPS; a detached header (.seg.nhdr, .nhdr) with its data
    file (`detached_data_file`) too.

    Read with pynrrd (which slicerio wraps): slicerio takes only the two full lower-case names
    of a 'space' and refuses the others the NRRD standard allows ("RAS", "LAS", any case).

    Raises:
        LabelError: the file is truncated or damaged, its data file is missing, is in Slicer's
            legacy format, has no geometry or a space that is not the patient's, is not 3D,
            holds negative or non-whole values, overlapping segments, or values without a
            segment in its header.

    Example:
        >>> read_nrrd(Path("labels/p01.seg.nrrd")).names_by_value
        {1: 'vertebral body', 2: 'right psoas major'}
    """
    import nrrd
    from nrrd.errors import NRRDError

    _check_data_file(path)
    try:
        with silenced():
            voxels, header = nrrd.read(str(path), index_order="F")
        text = _header_text(path)  # segment names as UTF-8, which pynrrd drops
        _check_not_legacy(header, path)
        affine = _ijk_to_lps(header, path)
        header_segments = _header_segments(header, text)
    except (*_NRRD_ERRORS, NRRDError) as exc:
        raise unreadable(path, exc, "NRRD file") from exc
    if not header_segments:
        return LabelVolume(as_labels(as_3d(voxels, path), path), affine, (), path, "nrrd")
    values, segments = _merge_layers(np.asarray(voxels), header_segments, path)
    return LabelVolume(values, affine, segments, path, "seg.nrrd")


def detached_data_file(path: Path) -> Path | None:
    """The separate data file a NRRD header names ('data file', as 3D Slicer writes beside a
    .seg.nhdr), resolved as pynrrd does (relative to the header's folder); None when the voxels
    follow the header in the same file, or the header cannot be read (the reader says why).

    Example:
        >>> detached_data_file(Path("labels/p01.seg.nhdr"))
        PosixPath('labels/p01.seg.raw.gz')
    """
    import nrrd
    from nrrd.errors import NRRDError

    try:
        with silenced():
            header = nrrd.read_header(str(path))
    except (*_NRRD_ERRORS, NRRDError):
        return None
    name = header.get("datafile", header.get("data file"))
    return None if name is None else path.parent / str(name)


def _check_data_file(path: Path) -> None:
    """Refuse a detached header whose data file is not there (pynrrd: "No such file").

    Raises:
        LabelError: names the header and the data file.
    """
    data = detached_data_file(path)
    if data is not None and not data.is_file():
        raise LabelError(
            f"{path}: its voxels are in the data file {data} (NRRD 'data file'), which does not "
            "exist; expected it beside the header; copy it there with the header, or save the "
            "segmentation from 3D Slicer as one .seg.nrrd."
        )


_PATIENT_SPACES = {
    name: np.diag([*signs, 1.0])
    for names, signs in (
        (("left-posterior-superior", "lps"), (1.0, 1.0, 1.0)),
        (("right-anterior-superior", "ras"), (-1.0, -1.0, 1.0)),
        (("left-anterior-superior", "las"), (1.0, -1.0, 1.0)),
    )
    for name in names
}
"""NRRD's 3D patient spaces (full and abbreviated names, lower case), each to LPS."""


def _ijk_to_lps(header: dict[str, Any], path: Path) -> np.ndarray:
    """The voxel → LPS affine from 'space', 'space directions' and 'space origin'.

    Raises:
        LabelError: 'space directions' or 'space origin' is absent (identity would stand in
            for them), or 'space' names no patient axes (scanner-xyz, 3D-right-handed, a
            space with time).
    """
    if "space directions" not in header or "space origin" not in header:
        raise LabelError(
            f"{path}: NRRD without 'space directions' / 'space origin'; its voxels cannot be "
            "placed on the DICOM slices; save it from 3D Slicer, which writes the geometry."
        )
    space = str(header.get("space", "left-posterior-superior"))  # none: LPS, as ITK reads it
    to_lps = _PATIENT_SPACES.get(space.strip().lower())
    if to_lps is None:
        raise LabelError(
            f"{path}: NRRD 'space: {space}'; expected a patient space (left-posterior-superior, "
            "right-anterior-superior, left-anterior-superior, or their abbreviations LPS, RAS, "
            "LAS), as 3D Slicer writes; save the label map from 3D Slicer, or give its 'space' "
            "in patient axes."
        )
    directions = np.asarray(header["space directions"], dtype=np.float64)
    directions = directions[~np.isnan(directions).any(axis=1)]  # a layer axis is "none"
    affine = np.eye(4)
    affine[:3, :3] = directions.T  # one row per axis in the file, one column here
    affine[:3, 3] = np.asarray(header["space origin"], dtype=np.float64)
    return to_lps @ affine


def _check_not_legacy(header: dict[str, Any], path: Path) -> None:
    """Refuse 3D Slicer's legacy segmentation format, marked by ``Segmentation_Extent``.

    Its 'space origin' is the reference grid's index 0, and the voxels start at the extent's
    first index: placed by the origin alone they land whole planes and pixels off, on other
    DICOM slices. Slicer itself reads such a file with another reader, and saves it anew with
    the origin on the first voxel (``Segmentation_ReferenceImageExtentOffset``).

    Raises:
        LabelError: the header has ``Segmentation_Extent``.
    """
    if "Segmentation_Extent" in header:
        raise LabelError(
            f"{path}: a 3D Slicer segmentation in the legacy format ('Segmentation_Extent: "
            f"{header['Segmentation_Extent']}' in the header), whose 'space origin' is not its "
            "first voxel's, so its labels would land on other slices; expected the current "
            "format; open it in a current 3D Slicer and save it again."
        )


_NAME_LINE = re.compile(r"^Segment(\d+)_Name:=(.*)$", re.MULTILINE)
_SEGMENT_FIELD = re.compile(r"^Segment(\d+)_(LabelValue|Layer|Color)$")


def _header_text(path: Path) -> str:
    """The NRRD header (up to the blank line before the data) as UTF-8 text."""
    header = b""
    with open(path, "rb") as file:
        while (chunk := file.read(1 << 16)) and not re.search(rb"\r?\n\r?\n", header + chunk):
            header += chunk
        header += chunk
    text = re.split(rb"\r?\n\r?\n", header, maxsplit=1)[0].decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n")


def _header_segments(header: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """Each segment's fields (3D Slicer's ``Segment<N>_*``), in header index order: ``name``
    (read as UTF-8 from ``text``: pynrrd drops the bytes of "ö" or "椎"), ``labelValue``,
    ``layer`` and ``color`` where given.

    Raises:
        ValueError: a number that does not parse.
    """
    indices = {int(m[1]) for key in header if (m := re.match(r"Segment(\d+)_", key))}
    segments: dict[int, dict[str, Any]] = {index: {} for index in sorted(indices)}
    for index, name in _NAME_LINE.findall(text):
        segments[int(index)]["name"] = name
    for key, value in header.items():
        if match := _SEGMENT_FIELD.match(key):
            field = {"LabelValue": "labelValue", "Layer": "layer", "Color": "color"}[match[2]]
            text_value = str(value).strip()
            parsed = [float(v) for v in text_value.split()] if field == "color" else int(text_value)
            segments[int(match[1])][field] = parsed
    return list(segments.values())


def _merge_layers(
    voxels: np.ndarray, header: list[dict[str, Any]], path: Path
) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """One label map from a Slicer segmentation's layers; check every value has a segment."""
    layers = as_labels(voxels if voxels.ndim == 4 else voxels[np.newaxis], path, ndim=4)
    values = [int(s.get("labelValue", 1)) for s in header]
    # Slicer < 4.11 wrote one segment per layer without a Layer field.
    in_layer = [int(s.get("layer", i if voxels.ndim == 4 else 0)) for i, s in enumerate(header)]
    renumber = len(set(values)) < len(values)
    merged = np.zeros(layers.shape[1:], dtype=np.uint16)
    segments: list[Segment] = []
    for index, info in enumerate(header):
        name = str(info.get("name", f"Segment_{index + 1}"))
        if not 0 <= in_layer[index] < layers.shape[0]:
            raise LabelError(
                f"{path}: segment '{name}' is in layer {in_layer[index]}, the file has "
                f"{layers.shape[0]}; save the segmentation again from 3D Slicer."
            )
        mask = layers[in_layer[index]] == values[index]
        value = index + 1 if renumber else values[index]
        clash = merged[mask]
        if np.any(clash):
            other = next(s.name for s in segments if s.label_value == int(clash[clash > 0][0]))
            raise LabelError(
                f"{path}: segments '{name}' and '{other}' overlap in "
                f"{int(np.count_nonzero(clash))} voxels; sliceseg needs one label per pixel; "
                "remove the overlap in Slicer (Segment Editor, masking: 'Allow overlap' off)."
            )
        merged[mask] = value
        segments.append(Segment(name, value, _colour(info)))
    _check_declared(layers, values, in_layer, path)
    return merged.astype(np.uint8) if merged.max() <= 255 else merged, tuple(segments)


def _check_declared(layers: np.ndarray, values: list[int], in_layer: list[int], path: Path) -> None:
    for layer in range(layers.shape[0]):
        declared = {v for v, n in zip(values, in_layer, strict=True) if n == layer}
        stray = sorted(set(np.unique(layers[layer]).tolist()) - declared - {0})
        if stray:
            raise LabelError(
                f"{path}: voxel values {stray} (layer {layer}) have no Segment<N>_LabelValue in "
                f"the header (declared: {sorted(declared)}); save the segmentation again from "
                "3D Slicer."
            )


def _colour(info: dict[str, Any]) -> tuple[float, float, float] | None:
    colour = info.get("color")
    if colour is None or len(colour) != 3:
        return None
    r, g, b = (float(c) for c in colour)
    return r, g, b


def write_seg_nrrd(
    path: Path | str,
    slices: Sequence[Slice],
    labels: Sequence[np.ndarray],
    roi_names: Sequence[str],
    *,
    colours_rgb: Sequence[tuple[int, int, int]],
) -> Path:
    """Write the series' labels as a 3D Slicer segmentation (.seg.nrrd) with names and colours.

    Written with slicerio, the 3D Slicer team's library: one layer, ``Segment<k-1>_Name`` = ROI
    name, ``_LabelValue`` = ``k``, ``_Color`` = the ROI's colour, geometry in LPS.

    Args:
        path: the ``.seg.nrrd`` to write (atomically).
        slices: the series' slices, any order.
        labels: (rows, cols) label maps, one per slice.
        roi_names: names of ROIs 1..K.
        colours_rgb: the (r, g, b) colour, 0–255, of ROIs 1..K.

    Returns:
        ``path``.

    Raises:
        LabelError: the slices do not form one regular grid, or a value exceeds K.

    Example:
        >>> write_seg_nrrd(out / "p01.seg.nrrd", slices, labels, names, colours_rgb=colours)
    """
    import slicerio

    step_mm = slice_step_mm(slices[0].source, frame=slices[0].frame) if len(slices) == 1 else None
    grid = series_grid(slices, step_mm=step_mm)
    voxels = grid.volume(labels)
    check_roi_values(voxels, roi_names, slices[0])
    # pynrrd writes ASCII only: a stand-in name now, the UTF-8 name into the header after
    stand_ins = {f"sliceseg-roi-{k}": name for k, name in enumerate(roi_names, 1)}
    segments = [
        {
            "id": f"Segment_{k}",
            "name": f"sliceseg-roi-{k}",
            "labelValue": k,
            "layer": 0,
            "color": [round(c / 255, 6) for c in colour],
            "colorAutoGenerated": False,
            "nameAutoGenerated": False,
        }
        for k, (name, colour) in enumerate(zip(roi_names, colours_rgb, strict=True), start=1)
    ]
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": grid.ijk_to_lps,
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "segments": segments,
    }
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation, compression_level=6)
        _write_names(tmp, stand_ins)
    return Path(path)


def _write_names(path: Path, stand_ins: dict[str, str]) -> None:
    """Put each segment's name, UTF-8 as 3D Slicer writes it, in place of its stand-in."""
    data = path.read_bytes()
    header, data = data.split(b"\n\n", 1)
    for stand_in, name in stand_ins.items():
        header = header.replace(f"_Name:={stand_in}\n".encode(), f"_Name:={name}\n".encode(), 1)
    path.write_bytes(header + b"\n\n" + data)
