"""Exports round trip: DICOM-SEG, NIfTI and .seg.nrrd read back with their own libraries.

Each file is read with highdicom, nibabel or pynrrd / slicerio (not with sliceseg), and its label
maps and geometry are compared with the per-slice labels and the DICOM headers read by pydicom.
"""

from __future__ import annotations

import gzip
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import highdicom as hd
import imageio.v3 as iio
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import slicerio
from pydicom.data import get_testdata_file

import slicer_files
from conftest import small_phantom
from sliceseg._version import __version__
from sliceseg.cli import main
from sliceseg.dataset.volume_labels import load_volume_labels
from sliceseg.errors import ConfigError, LabelError
from sliceseg.io.dicom_files import find_dicom_files
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.dicom_seg import SegNotWritten, write_dicom_seg
from sliceseg.io.identity import slices_series_names
from sliceseg.io.volumes import read_label_volume
from sliceseg.measure.spacing import SpacingFallback, with_fallback_spacing
from sliceseg.report.exports import (
    EXPORT_FORMATS,
    export_predictions,
    export_series,
    parse_exports,
)
from sliceseg.report.visualize import roi_colour

NAMES = ["vertebral body", "right psoas", "left psoas", "right erector", "left erector", "fat"]
DICOMDIR = Path(pydicom.data.__file__).parent / "test_files" / "dicomdirtests"


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_phantom(tmp_path_factory, "exports", train_subjects=2, seed=5, matrix=(64, 80))


def headers(files: list[Path]) -> dict[Path, pydicom.Dataset]:
    return {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}


def expected_lps(files: list[Path]) -> tuple[np.ndarray, list[Path]]:
    """The series' ijk→LPS from its headers: i along IOP[:3] × column spacing, j along IOP[3:] ×
    row spacing, k along the normal from the lowest slice; and the files from the lowest up."""
    info = headers(files)
    first = info[files[0]]
    cosines = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(cosines[:3], cosines[3:])
    height = {f: np.array([float(v) for v in info[f].ImagePositionPatient]) @ normal for f in files}
    ordered = sorted(files, key=height.get)
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)
    gaps = np.diff([height[f] for f in ordered])
    step = float(gaps.min()) if len(gaps) else float(first.get("SliceThickness") or 1.0)
    matrix = np.eye(4)
    matrix[:3, 0] = cosines[:3] * col_mm
    matrix[:3, 1] = cosines[3:] * row_mm
    matrix[:3, 2] = normal * step
    matrix[:3, 3] = [float(v) for v in info[ordered[0]].ImagePositionPatient]
    return matrix, ordered


def plane_index(matrix: np.ndarray, ds: pydicom.Dataset) -> int:
    ijk = np.linalg.solve(matrix, [*(float(v) for v in ds.ImagePositionPatient), 1.0])
    assert np.allclose(ijk[:2], 0.0, atol=1e-3)
    assert abs(ijk[2] - round(ijk[2])) < 1e-3
    return round(ijk[2])


def check_seg(path: Path, files: list[Path], labels: dict[Path, np.ndarray], names: list[str]):
    """Read a DICOM-SEG with highdicom: frames per source image, names, colours, algorithm."""
    seg = hd.seg.segread(path)
    info = headers(files)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == info[files[0]].SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == names
    for number, item in enumerate(seg.SegmentSequence, start=1):
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "sliceseg"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == __version__
        colour = hd.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue)
        assert np.allclose(colour.to_rgb(), roi_colour(number), atol=2)
    for f in files:
        pixels = seg.get_pixels_by_source_instance([info[f].SOPInstanceUID], combine_segments=True)
        np.testing.assert_array_equal(pixels[0], labels[f])
    for frame in seg.PerFrameFunctionalGroupsSequence:
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        match = next(f for f in files if info[f].SOPInstanceUID == source.ReferencedSOPInstanceUID)
        np.testing.assert_allclose(
            [float(v) for v in position], [float(v) for v in info[match].ImagePositionPatient]
        )
    shared = seg.SharedFunctionalGroupsSequence[0]
    first = info[files[0]]
    np.testing.assert_allclose(
        [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
        [float(v) for v in first.PixelSpacing],
    )
    np.testing.assert_allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [float(v) for v in first.ImageOrientationPatient],
        atol=1e-6,
    )
    assert seg.PatientID == first.PatientID  # the standard's patient module, copied


def check_nifti(path: Path, files: list[Path], labels: dict[Path, np.ndarray]):
    image = nib.load(path)
    matrix, ordered = expected_lps(files)
    np.testing.assert_allclose(image.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ matrix, atol=1e-4)
    data = np.asanyarray(image.dataobj)
    info = headers(files)
    covered = set()
    for f in ordered:
        k = plane_index(matrix, info[f])
        np.testing.assert_array_equal(data[:, :, k].T, labels[f])
        covered.add(k)
    assert not data[:, :, sorted(set(range(data.shape[2])) - covered)].any()


def check_nrrd(path: Path, files: list[Path], labels: dict[Path, np.ndarray], names: list[str]):
    data, header = nrrd.read(str(path), index_order="F")
    matrix, ordered = expected_lps(files)
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space directions"], matrix[:3, :3].T, atol=1e-6)
    np.testing.assert_allclose(header["space origin"], matrix[:3, 3], atol=1e-6)
    info = headers(files)
    for f in ordered:
        np.testing.assert_array_equal(data[:, :, plane_index(matrix, info[f])].T, labels[f])
    segmentation = slicerio.read_segmentation(str(path), skip_voxels=True)
    assert [s["name"] for s in segmentation["segments"]] == names
    assert [s["labelValue"] for s in segmentation["segments"]] == list(range(1, len(names) + 1))
    assert [s["layer"] for s in segmentation["segments"]] == [0] * len(names)
    for k, segment in enumerate(segmentation["segments"], start=1):
        np.testing.assert_allclose(np.array(segment["color"]) * 255, roi_colour(k), atol=0.01)


def check_all(out: Path, name: str, files: list[Path], labels, names: list[str]) -> None:
    check_seg(out / f"{name}.seg.dcm", files, labels, names)
    check_nifti(out / f"{name}.nii.gz", files, labels)
    check_nrrd(out / f"{name}.seg.nrrd", files, labels, names)


def phantom_labels(phantom: Path, subject: str) -> tuple[list[Path], dict[Path, np.ndarray]]:
    files = sorted((phantom / "train" / "dicoms" / subject).glob("*.dcm"))
    folder = phantom / "train" / "labels" / subject
    return files, {f: slicer_files.read_label(next(folder.glob(f"{f.stem}.*"))) for f in files}


def edited_sub01(
    phantom: Path, folder: Path, edit: Callable[[pydicom.Dataset, int], None]
) -> dict[str, np.ndarray]:
    """The phantom's sub01 written into ``folder``, each file changed by ``edit(ds, n)`` (``n``:
    its place in the series); its label maps by file name."""
    files, labels = phantom_labels(phantom, "sub01")
    folder.mkdir()
    for n, f in enumerate(files):
        ds = pydicom.dcmread(f)
        edit(ds, n)
        ds.save_as(folder / f.name)
    return {f.name: labels[f] for f in files}


class TestRoundTrip:
    def test_phantom_series(self, phantom, tmp_path):
        files, labels = phantom_labels(phantom, "sub01")
        slices = read_series(files[0].parent)
        result = export_series(
            tmp_path, "sub01", slices, [labels[s.source] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert [p.name for p in result.files] == ["sub01.seg.dcm", "sub01.nii.gz", "sub01.seg.nrrd"]
        assert result.notes == ()
        check_all(tmp_path, "sub01", files, labels, NAMES)

    def test_real_ct_series(self, tmp_path):
        """Five 16×16 CT slices (pydicom's dicomdirtests, 2.5 mm apart, top slice first)."""
        files = sorted((DICOMDIR / "98892001" / "CT5N").iterdir())
        slices = read_series(files[0].parent)
        labels = {}
        for n, image in enumerate(slices):
            label = np.zeros(image.shape, np.uint8)
            label[2 : 4 + n, 3:9] = 1
            label[10:14, 1 + n : 3 + n] = 2
            labels[image.source] = label
        export_series(
            tmp_path, "ct", slices, [labels[s.source] for s in slices], ["liver", "spleen"],
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        check_all(tmp_path, "ct", files, labels, ["liver", "spleen"])

    def test_real_ct_series_with_missing_slices(self, tmp_path):
        """Four CT slices at -99.48, 103.02, 104.27, 105.52 mm: 161 empty planes between."""
        files = sorted((DICOMDIR / "77654033" / "CT2").iterdir())
        slices = read_series(files[0].parent)
        labels = {s.source: np.full(s.shape, 1 + n % 2, np.uint8) for n, s in enumerate(slices)}
        export_series(
            tmp_path, "gap", slices, [labels[s.source] for s in slices], ["a", "b"],
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert nib.load(tmp_path / "gap.nii.gz").shape == (16, 16, 165)
        check_all(tmp_path, "gap", files, labels, ["a", "b"])

    def test_real_single_slice_mr(self, tmp_path):
        source = Path(get_testdata_file("MR_small.dcm", download=False))
        slices = read_series_of([source], tmp_path / "in")
        label = np.zeros(slices[0].shape, np.uint8)
        label[20:40, 10:30] = 1
        out = tmp_path / "out"
        export_series(out, "mr", slices, [label], ["muscle"], formats=EXPORT_FORMATS)
        files = [slices[0].source]
        check_all(out, "mr", files, {files[0]: label}, ["muscle"])
        image = nib.load(out / "mr.nii.gz")
        assert image.shape == (64, 64, 1)
        assert image.header.get_zooms()[2] == pytest.approx(0.8)  # (0018,0050) SliceThickness

    def test_a_phantom_series_with_a_missing_slice(self, phantom, tmp_path):
        files, labels = phantom_labels(phantom, "sub02")
        kept = [f for f in files if not f.name.endswith("_s01.dcm")]
        slices = read_series_of(kept, tmp_path / "in")
        copied = {
            s.source: labels[next(f for f in kept if f.name == s.source.name)] for s in slices
        }
        export_series(
            tmp_path / "out", "sub02", slices, [copied[s.source] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert nib.load(tmp_path / "out" / "sub02.nii.gz").shape == (80, 64, 4)
        check_all(tmp_path / "out", "sub02", list(copied), copied, NAMES)


def read_series_of(files: list[Path], folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return read_series(folder)


IMAGER_ORIGIN = "is (0018,1164) ImagerPixelSpacing, the detector's"
MAGNIFIED_ORIGIN = (
    "is (0018,1164) ImagerPixelSpacing divided by (0018,1114) "
    "EstimatedRadiographicMagnificationFactor, the patient's as the scanner estimated it"
)


def _at_the_detector_sub01(
    phantom: Path, folder: Path, magnification: float | None = None
) -> tuple[dict[str, np.ndarray], list]:
    """sub01 with (0018,1164) ImagerPixelSpacing in place of its PixelSpacing (and (0018,1114)
    EstimatedRadiographicMagnificationFactor ``magnification`` where given): its labels by
    file name and its slices (read with the warning that says so)."""

    def at_the_detector(ds: pydicom.Dataset, _: int) -> None:
        ds.ImagerPixelSpacing = ds.PixelSpacing
        del ds.PixelSpacing
        if magnification is not None:
            ds.EstimatedRadiographicMagnificationFactor = magnification

    by_name = edited_sub01(phantom, folder, at_the_detector)
    with pytest.warns(UserWarning, match="ImagerPixelSpacing"):
        return by_name, read_series(folder)


class TestExportsAsLabels:
    @pytest.mark.parametrize("fmt", EXPORT_FORMATS)
    def test_an_export_gives_back_the_per_slice_labels(self, phantom, tmp_path, fmt):
        data = tmp_path / "data"
        shutil.copytree(phantom / "train" / "dicoms", data / "dicoms")
        slices = read_series(data / "dicoms")
        keys = [f"{s.source.parent.name}/{s.source.stem}" for s in slices]
        per_slice = [
            slicer_files.read_label(next((phantom / "train" / "labels").glob(f"{k}.*")))
            for k in keys
        ]
        named = slices_series_names(slices, keys)
        export_predictions(data / "labels", slices, per_slice, named, NAMES, formats=[fmt])
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(data / "labels", data / "dicoms", dicoms)
        assert [p.rule for p in found.pairing.pairs] == [
            "referenced series" if fmt == "seg" else "folder"
        ] * 2
        assert found.names_by_value == ({} if fmt == "nifti" else dict(enumerate(NAMES, 1)))
        by_key = {label.key: label.values for label in found.labels}
        assert sorted(by_key) == sorted(keys)
        for key, label in zip(keys, per_slice, strict=True):
            np.testing.assert_array_equal(by_key[key], label)


WORLD_NAMES = ["Wirbelkörper", "椎体", "Fett – außen", "right erector", "left erector", "fat"]


class TestNamesBeyondAscii:
    """ROI names in German, with a dash, in Chinese: each export keeps them as given."""

    def test_a_seg_nrrd_holds_them_in_utf8_as_3d_slicer_writes_them(self, phantom, tmp_path):
        files, labels = phantom_labels(phantom, "sub01")
        slices = read_series(files[0].parent)
        result = export_series(
            tmp_path, "s", slices, [labels[s.source] for s in slices], WORLD_NAMES,
            formats=["nrrd"],
        )  # fmt: skip
        assert result.notes == ()  # it was "'ascii' codec can't encode" and the series failed
        header = (tmp_path / "s.seg.nrrd").read_bytes().split(b"\n\n", 1)[0]
        assert "Segment0_Name:=Wirbelkörper\n".encode() in header
        assert "Segment1_Name:=椎体\n".encode() in header
        volume = read_label_volume(tmp_path / "s.seg.nrrd")
        assert list(volume.names_by_value.values()) == WORLD_NAMES

    def test_a_dicom_seg_holds_them_in_utf8(self, phantom, tmp_path):
        def latin1(ds: pydicom.Dataset, _: int) -> None:  # a patient name beyond ASCII
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.PatientName = "Müller^Jürgen"

        by_name = edited_sub01(phantom, tmp_path / "in", latin1)
        slices = read_series(tmp_path / "in")
        export_series(
            tmp_path, "s", slices, [by_name[s.source.name] for s in slices], WORLD_NAMES,
            formats=["seg"],
        )  # fmt: skip
        seg = hd.seg.segread(tmp_path / "s.seg.dcm")
        assert [s.SegmentLabel for s in seg.SegmentSequence] == WORLD_NAMES  # was '??', '?'
        assert str(seg.PatientName) == "Müller^Jürgen"


class TestDicomSegSegmentLabels:
    """(0062,0005) SegmentLabel is an LO: 64 characters, and a backslash separates values."""

    LONG = "musculus erector spinae pars lumbalis, " * 2  # 78 characters

    def test_long_and_backslashed_names_stay_distinct_and_single_valued(self, phantom, tmp_path):
        files, labels = phantom_labels(phantom, "sub01")
        slices = read_series(files[0].parent)
        names = [*NAMES[:3], f"{self.LONG}right", f"{self.LONG}left", "fat\\water"]
        with pytest.warns(UserWarning) as said:
            result = export_series(
                tmp_path, "s", slices, [labels[s.source] for s in slices], names,
                formats=["seg"],
            )  # fmt: skip
        assert result.notes == ()
        written = [s.SegmentLabel for s in hd.seg.segread(tmp_path / "s.seg.dcm").SegmentSequence]
        assert written[:3] == NAMES[:3]
        assert written[3] == self.LONG[:64]
        assert written[4] == f"{self.LONG[:60]} (5)"  # cut alike, it was the same as ROI 4's
        assert written[5] == "fat/water"  # it read back as ["fat", "water"]
        assert all(isinstance(label, str) and len(label) <= 64 for label in written)
        assert len(set(written)) == len(written)
        messages = [str(w.message) for w in said if "SegmentLabel" in str(w.message)]
        assert [m.split("'s name")[0] for m in messages] == [
            "DICOM-SEG: ROI 4",
            "DICOM-SEG: ROI 5",
            "DICOM-SEG: ROI 6",
        ]
        assert "'fat\\water' is written as SegmentLabel 'fat/water'" in messages[2]


class TestSeriesNotes:
    def test_an_irregular_series_gets_a_seg_and_a_note(self, phantom, tmp_path):
        def fourth_moved(ds: pydicom.Dataset, n: int) -> None:
            if n == 3:
                ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) - 1.5

        by_name = edited_sub01(phantom, tmp_path / "in", fourth_moved)
        slices = read_series(tmp_path / "in")
        result = export_series(
            tmp_path / "out", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert [p.name for p in result.files] == ["sub01.seg.dcm"]
        assert len(result.notes) == 2
        for note in result.notes:
            assert note.startswith(("sub01: nifti not written: ", "sub01: nrrd not written: "))
            assert "not on a regular grid" in note
            assert "export DICOM-SEG only" not in note  # it is written already
            assert note.endswith(
                "this series' label maps (labels/) hold its predictions; its DICOM-SEG "
                "(sub01.seg.dcm) holds them for a viewer (PACS, OHIF, 3D Slicer) but cannot be "
                "read back as training labels, which need a regular grid."
            )
        with pytest.raises(LabelError, match="not on a regular grid"):  # as the note says
            read_label_volume(result.files[0])

    def test_a_series_measured_with_the_users_fov_gets_no_seg_and_a_plain_note(
        self, phantom, tmp_path
    ):
        by_name = edited_sub01(phantom, tmp_path / "in", lambda ds, _: delattr(ds, "PixelSpacing"))
        fallback = SpacingFallback(fov_mm=(100.0, 100.0))
        slices = [with_fallback_spacing(s, fallback) for s in read_series(tmp_path / "in")]
        result = export_series(
            tmp_path / "out", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert "sub01.seg.dcm" not in [p.name for p in result.files]
        (note,) = [n for n in result.notes if "DICOM-SEG" in n]
        assert "has no PixelSpacing (its spacing came from --fov / --matrix)" in note
        assert note.endswith("; its sub01.nii.gz and sub01.seg.nrrd hold its predictions.")
        assert "attribute" not in note  # not highdicom's own words
        only_seg = export_series(
            tmp_path / "seg", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=["seg"],
        )  # fmt: skip
        assert only_seg.notes[0].endswith("; use --export nifti,nrrd.")  # they hold it

    def test_a_malformed_pixel_spacing_is_not_called_absent_in_the_note(self, phantom, tmp_path):
        """Issue 20 (inputs): the user's --fov over a malformed PixelSpacing was described as
        "has no PixelSpacing", which the file's header contradicts."""

        def malformed(ds: pydicom.Dataset, _: int) -> None:
            ds.PixelSpacing = "0.5"

        by_name = edited_sub01(phantom, tmp_path / "in", malformed)
        fallback = SpacingFallback(fov_mm=(100.0, 100.0))
        with pytest.warns(UserWarning, match="PixelSpacing '0.5' is malformed"):
            slices = [with_fallback_spacing(s, fallback) for s in read_series(tmp_path / "in")]
        assert {s.spacing_source for s in slices} == {"fov/matrix (PixelSpacing malformed)"}
        result = export_series(
            tmp_path / "out", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert "sub01.nii.gz" in [p.name for p in result.files]  # placed as with --fov alone
        (note,) = [n for n in result.notes if "DICOM-SEG" in n]
        assert "has a malformed PixelSpacing (its spacing came from --fov / --matrix)" in note

    def test_imager_pixel_spacing_gets_a_plain_note_naming_what_holds_the_series(
        self, phantom, tmp_path
    ):
        """highdicom's own words were "'FileDataset' object has no attribute 'PixelSpacing'",
        and the note sent the user to NIfTI / NRRD, which cannot place such slices either."""
        by_name, slices = _at_the_detector_sub01(phantom, tmp_path / "in")
        result = export_series(
            tmp_path / "out", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert result.files == ()
        note = result.notes[0]
        assert note == (
            f"sub01: seg not written: {slices[0].source.name} has no PixelSpacing (its spacing "
            f"{IMAGER_ORIGIN}), which a DICOM-SEG takes from its source images; this series' "
            "label maps (labels/) hold its predictions."
        )

    def test_a_magnification_taken_out_is_not_called_the_detector_s_spacing(
        self, phantom, tmp_path
    ):
        """The note said "at the detector" of a spacing divided by (0018,1114)
        EstimatedRadiographicMagnificationFactor: the patient's, as the scanner estimated it."""
        by_name, slices = _at_the_detector_sub01(phantom, tmp_path / "in", magnification=1.25)
        result = export_series(
            tmp_path / "out", "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=["seg"],
        )  # fmt: skip
        assert "the detector's" not in result.notes[0]
        assert f"(its spacing {MAGNIFIED_ORIGIN})" in result.notes[0]

    def test_the_writer_names_its_file_and_the_note_takes_only_its_reason(self, phantom, tmp_path):
        """The DICOM-SEG writer built "<path>: DICOM-SEG not written: <why>" and the exports
        cut both off again to word the note; now the note takes the refusal's reason."""
        by_name, slices = _at_the_detector_sub01(phantom, tmp_path / "in")
        labels = [by_name[s.source.name] for s in slices]
        path = tmp_path / "out" / "sub01.seg.dcm"
        with pytest.raises(SegNotWritten) as refused:
            write_dicom_seg(path, slices, labels, NAMES, colours_rgb=[(1, 2, 3)] * len(NAMES))
        why = f"{slices[0].source.name} has no PixelSpacing (its spacing {IMAGER_ORIGIN})"
        assert str(refused.value).startswith(f"{path}: DICOM-SEG not written: {why}")
        assert refused.value.reason.startswith(why)
        again = pickle.loads(pickle.dumps(refused.value))  # as a worker process sends it
        assert (str(again), again.reason) == (str(refused.value), refused.value.reason)
        result = export_series(tmp_path / "out", "sub01", slices, labels, NAMES, formats=["seg"])
        assert result.notes[0].startswith(f"sub01: seg not written: {why}")

    def test_notes_name_no_written_path_and_point_to_the_label_maps(self, phantom, tmp_path):
        """Slices without (0020,0032): no format can place them. A cohort writes into a temporary
        folder renamed after, so a note naming the file named a folder that is gone; the
        volumes' notes said to "use per-slice label files", a training fix."""
        by_name = edited_sub01(
            phantom, tmp_path / "in", lambda ds, _: delattr(ds, "ImagePositionPatient")
        )
        slices = read_series(tmp_path / "in")
        out = tmp_path / ".sliceseg-tmp.sub01.123" / "exports"
        result = export_series(
            out, "sub01", slices, [by_name[s.source.name] for s in slices], NAMES,
            formats=EXPORT_FORMATS,
        )  # fmt: skip
        assert result.files == ()
        seg, nifti, nrrd_note = result.notes
        assert seg.startswith("sub01: seg not written: highdicom refused the source images")
        assert "--export nifti" not in seg  # they cannot place these slices either
        assert seg.endswith("; this series' label maps (labels/) hold its predictions.")
        for note in result.notes:
            assert str(out) not in note
        for note in (nifti, nrrd_note):
            assert "no ImagePositionPatient in the DICOM header" in note
            assert note.endswith("this series' label maps (labels/) hold its predictions.")

    def test_a_projection_image_gets_no_seg_and_no_advice_that_fails_too(self, tmp_path):
        """Before: highdicom's "'FileDataset' object has no attribute 'PixelSpacing'" and "use
        --export nifti,nrrd", which an ImagerPixelSpacing image cannot have either."""
        source = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        del source.PixelSpacing
        source.ImagerPixelSpacing = [0.2, 0.2]
        source.save_as(tmp_path / "cr.dcm")
        with pytest.warns(UserWarning, match="ImagerPixelSpacing"):
            slices = read_series(tmp_path)
        labels = [np.ones(slices[0].shape, np.uint8)]
        result = export_series(
            tmp_path / "out", "cr", slices, labels, NAMES, formats=EXPORT_FORMATS
        )
        assert result.files == ()
        (note,) = [n for n in result.notes if "DICOM-SEG" in n]
        assert f"has no PixelSpacing (its spacing {IMAGER_ORIGIN})" in note
        assert note.endswith("this series' label maps (labels/) hold its predictions.")

    def test_no_patient_data_in_nifti_and_nrrd(self, phantom, tmp_path):
        files, labels = phantom_labels(phantom, "sub01")
        slices = read_series(files[0].parent)
        export_series(tmp_path, "s", slices, [labels[s.source] for s in slices], NAMES)
        patient = str(pydicom.dcmread(files[0]).PatientID).encode()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz", "s.seg.nrrd"]
        assert patient not in gzip.decompress((tmp_path / "s.nii.gz").read_bytes())
        assert patient not in (tmp_path / "s.seg.nrrd").read_bytes()


class TestParseExports:
    @pytest.mark.parametrize(
        ("text", "formats"),
        [
            (None, ("nifti", "nrrd")),
            ("all", EXPORT_FORMATS),
            ("none", ()),
            ("", ()),
            ("NRRD, seg", ("seg", "nrrd")),
        ],
    )
    def test_values(self, text, formats):
        assert parse_exports(text) == formats

    def test_unknown_format_lists_the_valid_ones(self):
        with pytest.raises(ConfigError, match=r"--export seg,stl: unknown format\(s\) stl; .* seg"):
            parse_exports("seg,stl")


@pytest.mark.slow
def test_predict_exports_match_the_pngs(tiny_model, tiny_phantom, tmp_path):
    dicoms = tiny_phantom / "test" / "dicoms"
    out = tmp_path / "out"
    code = main(["predict", str(tiny_model), str(dicoms), "--out", str(out), "--export", "all"])
    assert code == 0
    (series,) = [p.name for p in (tiny_phantom / "test" / "dicoms").iterdir()]
    files = sorted((dicoms / series).glob("*.dcm"))
    folder = out / "series" / series  # each series' outputs in its own folder
    labels = {f: iio.imread(folder / "labels" / series / f"{f.stem}.png") for f in files}
    names = slicerio.read_segmentation(str(folder / "exports" / f"{series}.seg.nrrd"), True)
    names = [s["name"] for s in names["segments"]]
    assert len(names) == 6
    check_all(folder / "exports", series, files, labels, names)
