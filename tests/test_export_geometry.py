"""Exports in patient space: a one-pixel marker lands where the DICOM standard puts its pixel.

Each series is built with pydicom from known (0020,0032) ImagePositionPatient, (0020,0037)
ImageOrientationPatient and (0028,0030) PixelSpacing. The marker's world position is computed
with the standard's formula (C.7.6.2.1.1): ``IPP + column · Δcolumn · IOP[:3] + row · Δrow ·
IOP[3:]``, and compared with where nibabel (RAS affine), pynrrd (LPS space directions / origin)
and pydicom (per-frame positions of the DICOM-SEG) put the exported marker.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from sliceseg.dataset.volume_labels import load_volume_labels
from sliceseg.errors import LabelError
from sliceseg.io.dicom_files import find_dicom_files
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.volumes import read_label_volume
from sliceseg.phantom.files import dicom_bytes, series_ids
from sliceseg.report.exports import EXPORT_FORMATS, export_series

NAMES = ["left", "right"]
MARKER = (5, 7)  # (row, column) of the marker pixel, value 2


def rotation(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis``."""
    x, y, z = np.asarray(axis) / np.linalg.norm(axis)
    a = np.radians(angle_deg)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def write_series(
    folder: Path,
    *,
    heights_mm: list[float],
    row_direction: tuple[float, ...] = (1, 0, 0),
    column_direction: tuple[float, ...] = (0, 1, 0),
    origin_mm: tuple[float, float, float] = (-100.0, -80.0, 20.0),
    spacing_mm: tuple[float, float] = (0.5, 0.8),
    shape: tuple[int, int] = (48, 64),
    step_header_mm: float = 3.0,
    tilt_shift_mm: float = 0.0,
) -> None:
    """One file per height along the normal, written in reverse order (never sorted by name);
    slice n lies ``n × tilt_shift_mm`` further along the columns (a CT gantry tilt)."""
    folder.mkdir(parents=True)
    ids = series_ids("geo", seed=1, series_number=1)
    row, column = np.asarray(row_direction, float), np.asarray(column_direction, float)
    normal = np.cross(row, column)
    for n, height in reversed(list(enumerate(heights_mm))):
        path = folder / f"f{len(heights_mm) - n:02d}.dcm"
        path.write_bytes(
            dicom_bytes(
                np.zeros(shape, np.uint16), ids=ids, seed=1, instance_number=n + 1,
                spacing_mm=spacing_mm, first_pixel_mm=(0, 0), location_mm=height,
                thickness_mm=step_header_mm, step_mm=step_header_mm, rescale=(1, 0),
            )
        )  # fmt: skip
        ds = pydicom.dcmread(path)
        position = np.asarray(origin_mm) + height * normal + n * tilt_shift_mm * column
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row, *column)]
        ds.save_as(path)


def pixel_lps(position, orientation, spacing, row: int, column: int) -> np.ndarray:
    """The DICOM standard's pixel centre: IPP + column·Δc·IOP[:3] + row·Δr·IOP[3:]."""
    ipp = np.array([float(v) for v in position])
    iop = np.array([float(v) for v in orientation])
    row_mm, column_mm = (float(v) for v in spacing)
    return ipp + column * column_mm * iop[:3] + row * row_mm * iop[3:]


def export_marker(folder: Path, out: Path, marked_instance: int):
    """Export a series whose ``marked_instance`` holds the marker; every slice has a 1 at (0, 0)."""
    slices = read_series(folder)
    labels, target = [], None
    for image in slices:
        label = np.zeros(image.shape, np.uint8)
        label[0, 0] = 1
        ds = pydicom.dcmread(image.source, stop_before_pixels=True)
        if int(ds.InstanceNumber) == marked_instance:
            label[MARKER] = 2
            target = pixel_lps(ds.ImagePositionPatient, ds.ImageOrientationPatient,
                               ds.PixelSpacing, *MARKER)  # fmt: skip
        labels.append(label)
    result = export_series(out, "geo", slices, labels, NAMES, formats=EXPORT_FORMATS)
    return slices, labels, target, result


def nifti_marker(path: Path) -> np.ndarray:
    image = nib.load(path)
    (ijk,) = np.argwhere(np.asanyarray(image.dataobj) == 2)
    x, y, z, _ = image.affine @ [*ijk, 1.0]
    return np.array([-x, -y, z])  # RAS → LPS


def nrrd_marker(path: Path) -> np.ndarray:
    data, header = nrrd.read(str(path), index_order="F")
    assert header["space"] == "left-posterior-superior"
    (ijk,) = np.argwhere(data == 2)
    return header["space origin"] + ijk @ np.asarray(header["space directions"])


def seg_marker(path: Path) -> np.ndarray:
    seg = pydicom.dcmread(path)
    frames = seg.pixel_array.reshape(-1, int(seg.Rows), int(seg.Columns))
    shared = seg.SharedFunctionalGroupsSequence[0]
    found = []
    for pixels, frame in zip(frames, seg.PerFrameFunctionalGroupsSequence, strict=True):
        if frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber != 2:
            continue
        for row, column in np.argwhere(pixels):
            found.append(
                pixel_lps(
                    frame.PlanePositionSequence[0].ImagePositionPatient,
                    shared.PlaneOrientationSequence[0].ImageOrientationPatient,
                    shared.PixelMeasuresSequence[0].PixelSpacing, row, column,
                )
            )  # fmt: skip
    (position,) = found
    return position


READERS = {"seg": seg_marker, "nifti": nifti_marker, "nrrd": nrrd_marker}
SUFFIXES = {"seg": ".seg.dcm", "nifti": ".nii.gz", "nrrd": ".seg.nrrd"}
TILTED = rotation((1, 1, 0), 25)
SERIES = {
    "head first supine": {"heights_mm": [0, 3, 6, 9]},
    "feet first supine": {"heights_mm": [0, 3, 6, 9], "row_direction": (-1, 0, 0)},
    "head first prone": {
        "heights_mm": [0, 3, 6, 9], "row_direction": (-1, 0, 0), "column_direction": (0, -1, 0),
        "spacing_mm": (0.7, 0.6), "shape": (50, 40),
    },
    "oblique": {
        "heights_mm": [0, 2.5, 5, 7.5], "row_direction": tuple(TILTED @ [1, 0, 0]),
        "column_direction": tuple(TILTED @ [0, 1, 0]), "spacing_mm": (0.9, 0.6),
        "step_header_mm": 2.5,
    },
    "descending positions": {"heights_mm": [0, -3, -6, -9]},
    "a missing slice": {"heights_mm": [0, 3, 9, 12]},
    "one slice": {"heights_mm": [0]},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SERIES))
def test_the_marker_is_at_its_pixel_s_position_in_every_format(tmp_path, case):
    write_series(tmp_path / "in", **SERIES[case])
    marked = 2 if len(SERIES[case]["heights_mm"]) > 1 else 1
    _, _, target, result = export_marker(tmp_path / "in", tmp_path / "out", marked)
    assert result.notes == ()
    for fmt, reader in READERS.items():
        got = reader(tmp_path / "out" / f"geo{SUFFIXES[fmt]}")
        np.testing.assert_allclose(got, target, atol=1e-3, err_msg=fmt)


def test_slices_off_a_regular_grid_are_not_written_to_a_volume(tmp_path):
    """Gaps of 4.4 mm then 5.6 mm: each gap is within 12% of 5 mm, but the fourth slice lies
    1.8 mm (0.36 of a plane) from the plane a 5 mm grid gives it. A volume must not move it."""
    write_series(tmp_path / "in", heights_mm=[0, 4.4, 8.8, 13.2, 18.8, 24.4, 30.0])
    _, _, target, result = export_marker(tmp_path / "in", tmp_path / "out", 4)
    for fmt in ("nifti", "nrrd"):
        path = tmp_path / "out" / f"geo{SUFFIXES[fmt]}"
        if path.exists():
            np.testing.assert_allclose(READERS[fmt](path), target, atol=0.5, err_msg=fmt)
        else:
            assert any(
                note.startswith(f"geo: {fmt} not written: ") and "regular grid" in note
                for note in result.notes
            )
    np.testing.assert_allclose(seg_marker(tmp_path / "out" / "geo.seg.dcm"), target, atol=1e-3)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_an_export_reads_back_as_the_training_labels(tmp_path, fmt):
    """An oblique series whose (0018,0088) SpacingBetweenSlices (3 mm) is not its step (2.5 mm)."""
    case = dict(SERIES["oblique"], step_header_mm=3.0)
    write_series(tmp_path / "data" / "dicoms" / "geo", **case)
    slices, labels, _, _ = export_marker(tmp_path / "data" / "dicoms" / "geo",
                                              tmp_path / "out", 2)  # fmt: skip
    (tmp_path / "data" / "labels").mkdir()
    shutil.copy(tmp_path / "out" / f"geo{SUFFIXES[fmt]}", tmp_path / "data" / "labels")
    dicoms, _ = find_dicom_files(tmp_path / "data" / "dicoms")
    found = load_volume_labels(tmp_path / "data" / "labels", tmp_path / "data" / "dicoms", dicoms)
    by_name = {label.image.source.name: label.values for label in found.labels}
    assert sorted(by_name) == sorted(s.source.name for s in slices)
    for image, label in zip(slices, labels, strict=True):
        np.testing.assert_array_equal(by_name[image.source.name], label)
    assert found.names_by_value == ({} if fmt == "nifti" else {1: "left", 2: "right"})


@pytest.mark.parametrize(
    "heights_mm",
    [[0, 3, 6.1, 9], [0, 3, 6.04, 9, 12, 15], [0, 0.5, 1.0, 1.55, 2.0]],
    ids=["3 mm, one 0.1 mm off", "3 mm, one 0.04 mm off", "0.5 mm, one 0.05 mm off"],
)
def test_slices_a_little_off_their_grid_read_back_from_every_format(tmp_path, heights_mm):
    """Positions as scanners round them: NIfTI and NRRD placed each slice on its plane (within
    0.2 of a step), but the DICOM-SEG was written and could not be read back (highdicom's
    1% rule for "regularly spaced" frames): "cannot read the DICOM-SEG"."""
    write_series(tmp_path / "data" / "dicoms" / "geo", heights_mm=heights_mm)
    slices, labels, _, result = export_marker(tmp_path / "data" / "dicoms" / "geo",
                                              tmp_path / "out", 2)  # fmt: skip
    assert result.notes == ()
    dicoms, _ = find_dicom_files(tmp_path / "data" / "dicoms")
    for fmt, suffix in SUFFIXES.items():
        folder = tmp_path / "data" / f"labels_{fmt}"
        folder.mkdir()
        shutil.copy(tmp_path / "out" / f"geo{suffix}", folder)
        found = load_volume_labels(folder, tmp_path / "data" / "dicoms", dicoms)
        by_name = {label.image.source.name: label.values for label in found.labels}
        for image, label in zip(slices, labels, strict=True):
            np.testing.assert_array_equal(by_name[image.source.name], label, err_msg=fmt)


def test_the_dicom_seg_of_a_gantry_tilted_series_says_why_it_is_no_training_label(tmp_path):
    """Its frames are stacked 15° from their normal: readable by a viewer, not as a volume;
    the reader called it "truncated or damaged" and sent the user to save it again."""
    write_series(tmp_path / "in", heights_mm=[0, 5, 10, 15], tilt_shift_mm=1.34)
    export_marker(tmp_path / "in", tmp_path / "out", 2)
    path = tmp_path / "out" / "geo.seg.dcm"
    with pytest.raises(LabelError) as caught:
        read_label_volume(path)
    assert str(caught.value) == (
        f"{path}: cannot read the DICOM-SEG as a volume: its frames are not on a regular grid "
        "(Frame positions do not form a regularly-spaced volume.): slices at irregular gaps, or "
        "stacked obliquely to their normal (a gantry tilt); a viewer shows it, but use per-slice "
        "label files for this series as training labels."
    )


def test_a_slice_with_another_pixel_spacing_is_not_misplaced_in_the_dicom_seg(tmp_path):
    """One slice of four has 0.6 mm rows where the others have 0.5 mm: the DICOM-SEG's one
    PixelSpacing put its marker at row 5 0.5 mm off (its last row 4.7 mm)."""
    write_series(tmp_path / "in", heights_mm=[0, 3, 6, 9])
    odd = next(p for p in (tmp_path / "in").iterdir() if pydicom.dcmread(p).InstanceNumber == 2)
    ds = pydicom.dcmread(odd)
    ds.PixelSpacing = ["0.6", "0.8"]
    ds.save_as(odd)
    _, _, target, result = export_marker(tmp_path / "in", tmp_path / "out", 2)
    path = tmp_path / "out" / "geo.seg.dcm"
    if path.exists():
        np.testing.assert_allclose(seg_marker(path), target, atol=1e-3)
    else:
        (note,) = [n for n in result.notes if n.startswith("geo: seg not written: ")]
        assert f"slice {odd.name} has 48×64 pixels of (0.6, 0.8) mm" in note
        assert "one pixel grid per series" in note


def test_a_slice_of_another_size_gives_a_note_not_a_traceback(tmp_path):
    write_series(tmp_path / "in", heights_mm=[0, 3, 6])
    write_series(tmp_path / "other", heights_mm=[9], shape=(32, 64))
    shutil.copy(next((tmp_path / "other").iterdir()), tmp_path / "in" / "z.dcm")
    slices = read_series(tmp_path / "in")
    labels = [np.zeros(s.shape, np.uint8) for s in slices]
    result = export_series(tmp_path / "out", "geo", slices, labels, NAMES, formats=["seg"])
    assert result.files == ()
    (note,) = result.notes
    assert "\n" not in note
    assert note.startswith("geo: seg not written: ")
    assert "slice z.dcm has 32×64 pixels" in note


def test_a_tilted_slice_is_named_with_its_angle_and_a_fix_that_works(tmp_path):
    """A slice tilted 3° about the x axis: no format can hold the series, so the notes must
    not send the user from one to the other, and must say what differs."""
    write_series(tmp_path / "in", heights_mm=[0, 3, 6])
    tilted = next(p for p in (tmp_path / "in").iterdir() if pydicom.dcmread(p).InstanceNumber == 2)
    ds = pydicom.dcmread(tilted)
    turn = rotation((1, 0, 0), 3)
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*turn @ [1, 0, 0], *turn @ [0, 1, 0])]
    ds.save_as(tilted)
    _, _, _, result = export_marker(tmp_path / "in", tmp_path / "out", 1)
    assert result.files == ()
    by_format = {note.split(" ")[1]: note for note in result.notes}
    for fmt in ("nifti", "nrrd"):
        assert f"slice {tilted.name} has another orientation" in by_format[fmt]
        assert "3.00° from the first" in by_format[fmt]
        assert "--export seg" not in by_format[fmt]
    assert "--export nifti" not in by_format["seg"]  # NIfTI and NRRD failed on it too
    assert by_format["seg"].endswith("; this series' label maps (labels/) hold its predictions.")


def test_a_mirrored_slice_s_seg_note_names_no_format_that_failed(tmp_path):
    """One slice's rows run right to left: no format holds the series."""
    write_series(tmp_path / "in", heights_mm=[0, 3, 6])
    files = (tmp_path / "in").iterdir()
    mirrored = next(p for p in files if pydicom.dcmread(p).InstanceNumber == 2)
    ds = pydicom.dcmread(mirrored)
    ds.ImageOrientationPatient = ["-1", "0", "0", "0", "1", "0"]
    ds.save_as(mirrored)
    _, _, _, result = export_marker(tmp_path / "in", tmp_path / "out", 1)
    assert result.files == ()
    (seg,) = [note for note in result.notes if note.startswith("geo: seg not written: ")]
    assert "--export" not in seg
    assert seg.endswith("; this series' label maps (labels/) hold its predictions.")


def write_enhanced(path: Path, heights_mm: list[float], *, thickness_mm: float = 3.0) -> None:
    """One enhanced MR file, coronal (rows toward the feet), its frames stored highest first;
    position, orientation, spacing and thickness only in the functional groups."""
    write_series(path.parent.parent / "single", heights_mm=[0.0], shape=(20, 30))
    ds = pydicom.dcmread(next((path.parent.parent / "single").iterdir()))
    row, column = np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
    origin, normal = np.array([-10.0, 20.0, 50.0]), np.cross(row, column)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                    "SliceThickness", "SpacingBetweenSlices", "SliceLocation"):  # fmt: skip
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.NumberOfFrames = len(heights_mm)
    ds.PixelData = np.zeros((len(heights_mm), 20, 30), np.uint16).tobytes()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = ["0.5", "0.8"], str(thickness_mm)
    plane = Dataset()
    plane.ImageOrientationPatient = [f"{v:g}" for v in (*row, *column)]
    shared = Dataset()
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for height in sorted(heights_mm, reverse=True):
        position = Dataset()
        position.ImagePositionPatient = [f"{v:g}" for v in origin + height * normal]
        frames.append(Dataset())
        frames[-1].PlanePositionSequence = [position]
    ds.PerFrameFunctionalGroupsSequence = frames
    path.parent.mkdir(parents=True)
    ds.save_as(path)


def test_an_enhanced_multi_frame_file_places_each_frame_at_its_position(tmp_path):
    write_enhanced(tmp_path / "in" / "mf.dcm", [0, 3, 6, 9])
    slices = read_series(tmp_path / "in")
    labels = [np.zeros(image.shape, np.uint8) for image in slices]
    (marked,) = [n for n, image in enumerate(slices) if image.frame == 1]
    labels[marked][MARKER] = 2
    row, column = np.array([1.0, 0, 0]), np.array([0, 0, -1.0])
    target = np.array([-10.0, 26.0, 50.0]) + MARKER[1] * 0.8 * row + MARKER[0] * 0.5 * column
    result = export_series(tmp_path / "out", "geo", slices, labels, NAMES, formats=EXPORT_FORMATS)
    assert result.notes == ()
    for fmt, reader in READERS.items():
        got = reader(tmp_path / "out" / f"geo{SUFFIXES[fmt]}")
        np.testing.assert_allclose(got, target, atol=1e-3, err_msg=fmt)
    seg = pydicom.dcmread(tmp_path / "out" / "geo.seg.dcm")
    sources = {
        float(frame.PlanePositionSequence[0].ImagePositionPatient[1]): int(
            frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber
        )
        for frame in seg.PerFrameFunctionalGroupsSequence
    }
    assert sources == {29.0: 1, 26.0: 2, 23.0: 3, 20.0: 4}  # frames stored highest first


def test_a_one_frame_enhanced_file_keeps_its_slice_thickness(tmp_path):
    """Its (0018,0050) SliceThickness lies in the PixelMeasuresSequence: the volumes took 1 mm."""
    write_enhanced(tmp_path / "in" / "mf.dcm", [0], thickness_mm=3.0)
    slices = read_series(tmp_path / "in")
    labels = [np.ones(slices[0].shape, np.uint8)]
    export_series(tmp_path / "out", "geo", slices, labels, NAMES, formats=("nifti", "nrrd"))
    assert nib.load(tmp_path / "out" / "geo.nii.gz").header.get_zooms() == pytest.approx(
        (0.8, 0.5, 3.0)
    )
    header = nrrd.read_header(str(tmp_path / "out" / "geo.seg.nrrd"))
    np.testing.assert_allclose(header["space directions"][2], [0.0, 3.0, 0.0], atol=1e-9)


@pytest.mark.parametrize(
    ("heights_mm", "edit", "thickness_mm"),
    [
        ([0], {"SpacingBetweenSlices": "0"}, 3.0),  # a one-slice scan's "no step"
        ([0], {"SpacingBetweenSlices": None, "SliceThickness": None}, 1.0),  # as the NIfTI's
        ([0, 3, 6], {"SliceThickness": ""}, 3.0),  # type 2: present and empty; the step
        ([0, 3, 6], {"SliceThickness": None}, 3.0),
    ],
    ids=["one slice, step 0", "one slice, no step or thickness", "empty thickness", "none"],
)
def test_a_dicom_seg_reads_back_whatever_the_images_say_of_step_and_thickness(
    tmp_path, heights_mm, edit, thickness_mm
):
    """highdicom copies both into the DICOM-SEG's pixel measures: a step of 0 or an empty
    thickness gave a file that highdicom (and `check` / `train` on it) could not read back, and
    a missing thickness no DICOM-SEG at all."""
    write_series(tmp_path / "in", heights_mm=heights_mm)
    for path in (tmp_path / "in").iterdir():
        ds = pydicom.dcmread(path)
        for keyword, value in edit.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)
    marked = len(heights_mm) // 2 + 1
    _, _, target, result = export_marker(tmp_path / "in", tmp_path / "out", marked)
    assert [p.name for p in result.files if p.suffix == ".dcm"] == ["geo.seg.dcm"], result.notes
    path = tmp_path / "out" / "geo.seg.dcm"
    np.testing.assert_allclose(seg_marker(path), target, atol=1e-3)
    measures = pydicom.dcmread(path).SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SliceThickness) == thickness_mm
    volume = read_label_volume(path)  # as `check` and `train` read it
    assert int(np.count_nonzero(volume.values == 2)) == 1
