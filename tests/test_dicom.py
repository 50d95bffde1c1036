"""Tests for sliceseg.io.dicom: real pydicom test files plus tiny files written by conftest."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from conftest import warning_during, write_ct_dicom, write_test_dicom
from sliceseg.errors import ConfigError, DicomReadError, LabelError, PairingError
from sliceseg.io.dicom import Slice, read_slice, read_slices
from sliceseg.io.dicom_files import find_dicom_files, is_dicom_file, strip_dicom_suffix
from sliceseg.io.dicom_folder import (
    DicomScan,
    order_slices,
    read_files,
    read_series,
    scan_dicom_folder,
)
from sliceseg.io.dicom_headers import slice_step_mm
from sliceseg.io.series_plan import decode_series, plan_cohort


def pydicom_file(name: str) -> Path:
    """Path of a file shipped with pydicom / pydicom-data (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return Path(path)


def pydicom_reference(path: Path) -> np.ndarray:
    """pydicom's own decoding with the modality LUT, as float32."""
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float32)


def header_spacing(path: Path) -> tuple[float, float]:
    row, col = pydicom.dcmread(path, stop_before_pixels=True).PixelSpacing
    return float(row), float(col)


class TestReadSlices:
    @pytest.mark.parametrize(
        "name",
        [
            "CT_small.dcm",  # uncompressed, signed, RescaleIntercept -1024
            "MR_small.dcm",  # uncompressed, signed
            "MR_small_bigendian.dcm",  # Explicit VR Big Endian
            "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
            "MR2_J2KR.dcm",  # JPEG 2000 lossless, RescaleSlope 3.77
            "JPEG2000.dcm",  # JPEG 2000 (lossy syntax), signed
            "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
            "MR_small_RLE.dcm",  # RLE lossless
            "JPEG-LL.dcm",  # JPEG lossless, process 14
            "JPGExtended.dcm",  # JPEG extended (lossy), 12 bit
        ],
    )
    def test_pixels_match_pydicom_and_spacing_matches_header(self, name):
        path = pydicom_file(name)
        (image,) = read_slices(path)
        assert image.pixels.dtype == np.float32
        np.testing.assert_allclose(image.pixels, pydicom_reference(path), rtol=1e-6)
        assert image.spacing_mm == pytest.approx(header_spacing(path))
        assert image.spacing_source == "PixelSpacing"
        assert image.source == path

    def test_signed_ct_is_in_hounsfield_units(self):
        (image,) = read_slices(pydicom_file("CT_small.dcm"))
        raw = pydicom.dcmread(pydicom_file("CT_small.dcm")).pixel_array
        assert raw.dtype == np.int16
        np.testing.assert_array_equal(image.pixels, raw.astype(np.float32) - 1024)
        assert image.pixels.min() < 0
        assert image.series_uid.startswith("1.3.6.1.4.1.5962")
        assert image.instance_number == 1
        # placed by ImagePositionPatient on the normal; its SliceLocation is kept, not used
        assert image.position_mm == pytest.approx(-75.699997)
        assert image.slice_location_mm == pytest.approx(-77.2040634155)

    def test_compressed_files_decode_to_the_uncompressed_pixels(self):
        reference = read_slices(pydicom_file("MR_small.dcm"))[0].pixels
        for name in ("MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"):
            np.testing.assert_array_equal(read_slices(pydicom_file(name))[0].pixels, reference)

    def test_multi_frame_file_gives_one_slice_per_frame(self):
        path = pydicom_file("emri_small.dcm")
        slices = read_slices(path)
        frames = pydicom.dcmread(path).pixel_array
        assert len(slices) == 10
        assert [s.frame for s in slices] == list(range(10))
        assert {s.num_frames for s in slices} == {10}
        np.testing.assert_array_equal(slices[3].pixels, frames[3].astype(np.float32))
        assert slices[3].name == "emri_small_f003"

    def test_missing_spacing_is_none(self, tmp_path):
        (image,) = read_slices(write_test_dicom(tmp_path / "a.dcm", np.zeros((3, 4)), spacing=None))
        assert image.spacing_mm is None
        assert image.spacing_source == "none"
        assert image.shape == (3, 4)

    def test_enhanced_multi_frame_takes_rescale_and_spacing_from_functional_groups(self):
        path = pydicom_file("eCT_Supplemental.dcm")
        slices = read_slices(path)
        raw = pydicom.dcmread(path).pixel_array
        np.testing.assert_array_equal(slices[1].pixels, raw[1].astype(np.float32) - 1024)
        assert slices[0].spacing_mm == pytest.approx((0.388672, 0.388672))
        assert slices[0].position_mm is not None

    def test_monochrome1_keeps_its_values_and_zero_spacing_warns(self):
        path = pydicom_file("RG1_UNCI.dcm")  # MONOCHROME1, BitsStored 15, PixelSpacing [0, 0]
        with pytest.warns(UserWarning, match=r"PixelSpacing .* not > 0"):
            (image,) = read_slices(path)
        raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
        np.testing.assert_array_equal(image.pixels, raw)  # no rescale in the file
        np.testing.assert_array_equal(image.display_pixels, -raw)
        assert (image.photometric, image.modality_lut) == ("MONOCHROME1", "none")
        assert image.spacing_mm is None

    def test_synthetic_monochrome1_with_rescale(self, tmp_path):
        path = write_test_dicom(
            tmp_path / "m1.dcm",
            np.array([[0, 10], [65535, 100]]),
            photometric="MONOCHROME1",
            slope=2.0,
            intercept=-5.0,
        )
        (image,) = read_slices(path)
        # the rescale of the stored values, as on MONOCHROME2: 2 · stored − 5
        np.testing.assert_array_equal(image.pixels, [[-5.0, 15.0], [131065.0, 195.0]])
        np.testing.assert_array_equal(image.display_pixels, -image.pixels)

    def test_colour_dicom_becomes_grey_luminance_with_a_warning(self):
        path = pydicom_file("SC_rgb_jpeg_dcmtk.dcm")  # JPEG baseline, YBR_FULL
        with pytest.warns(UserWarning, match="colour image"):
            (image,) = read_slices(path)
        rgb = pydicom.dcmread(path).pixel_array.astype(np.float64)
        expected = rgb @ np.array([0.299, 0.587, 0.114])
        np.testing.assert_allclose(image.pixels, expected, atol=1e-3)
        assert image.shape == (100, 100)

    def test_imager_pixel_spacing_is_used_with_a_warning(self, tmp_path):
        path = write_test_dicom(tmp_path / "cr.dcm", np.zeros((4, 4)), spacing=None)
        ds = pydicom.dcmread(path)
        ds.ImagerPixelSpacing = [0.2, 0.3]
        ds.save_as(path)
        with pytest.warns(UserWarning, match="ImagerPixelSpacing"):
            (image,) = read_slices(path)
        assert image.spacing_mm == (0.2, 0.3)
        assert image.spacing_source == "ImagerPixelSpacing"

    def test_preamble_less_file_is_read(self, tmp_path):
        path = write_test_dicom(tmp_path / "bare", np.arange(6).reshape(2, 3), preamble=False)
        (image,) = read_slices(path)
        np.testing.assert_array_equal(image.pixels, np.arange(6).reshape(2, 3))
        assert image.spacing_mm == (0.5, 0.8)

    def test_undecodable_file_names_file_and_transfer_syntax(self):
        path = pydicom_file("JPEG-lossy.dcm")
        with pytest.raises(DicomReadError, match=r"JPEG-lossy\.dcm.*JPEG Extended.*pylibjpeg"):
            read_slices(path)

    def test_a_stream_the_installed_decoders_refuse_is_not_called_corrupt(self):
        """Before: "the decoder is installed, so the compressed pixel data is corrupt": pydicom's
        valid 12-bit JPEG Extended file, which pylibjpeg and Pillow refuse and GDCM decodes."""
        path = pydicom_file("JPEG-lossy.dcm")
        with pytest.raises(DicomReadError, match=r"or a variant only GDCM decodes; try `pip inst"):
            read_slices(path)

    def test_truncated_file_raises_with_file_name(self, tmp_path):
        data = pydicom_file("CT_small.dcm").read_bytes()
        path = tmp_path / "cut.dcm"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DicomReadError, match=r"cut\.dcm.*truncated"):
            read_slices(path)

    def test_file_cut_before_its_pixel_data_is_called_truncated(self, tmp_path):
        path = tmp_path / "header_only.dcm"
        path.write_bytes(pydicom_file("CT_small.dcm").read_bytes()[:600])
        with pytest.raises(DicomReadError, match=r"header_only\.dcm.*CT Image Storage.*truncated"):
            read_slices(path)

    def test_non_dicom_file_raises(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("not an image")
        with pytest.raises(DicomReadError, match=r"notes\.txt: not a DICOM file"):
            read_slices(path)

    def test_a_folder_is_named_as_a_folder_with_the_function_that_reads_one(self, tmp_path):
        write_test_dicom(tmp_path / "p01" / "a.dcm", np.zeros((4, 4)))
        with pytest.raises(DicomReadError, match=r"p01: a folder, not a file; .*read_series"):
            read_slices(tmp_path / "p01")


class TestReadSlice:
    def test_reads_one_frame(self):
        image = read_slice(pydicom_file("emri_small.dcm"), frame=4)
        assert image.frame == 4
        assert image.name == "emri_small_f004"

    def test_frame_out_of_range(self):
        with pytest.raises(ConfigError, match=r"frame=10 requested, the file has 10 frame"):
            read_slice(pydicom_file("emri_small.dcm"), frame=10)


class TestIsDicomFile:
    def test_by_content_not_suffix(self, tmp_path):
        source = pydicom_file("MR_small.dcm")
        for name in ("a.dcm", "b.DCM", "c", "d.txt"):
            shutil.copy(source, tmp_path / name)
            assert is_dicom_file(tmp_path / name)
        (tmp_path / "e.dcm").write_text("hello")
        assert not is_dicom_file(tmp_path / "e.dcm")
        assert not is_dicom_file(tmp_path / "missing.dcm")


class TestFindDicomFiles:
    def test_recursive_sorted_hidden_ignored_others_skipped(self, tmp_path):
        for rel in ("p1/s10.dcm", "p1/s2.dcm", "p2/noext"):
            write_test_dicom(tmp_path / rel, np.zeros((2, 2)))
        (tmp_path / "p1" / "readme.txt").write_text("x")
        (tmp_path / ".hidden").write_text("x")
        write_test_dicom(tmp_path / ".cache" / "x.dcm", np.zeros((2, 2)))
        found, skipped = find_dicom_files(tmp_path)
        assert [p.relative_to(tmp_path).as_posix() for p in found] == [
            "p1/s2.dcm",
            "p1/s10.dcm",
            "p2/noext",
        ]
        assert [s.path.name for s in skipped] == ["readme.txt"]
        assert "not a DICOM file" in skipped[0].reason

    def test_a_linked_patient_folder_is_searched_and_a_link_back_up_is_not(self, tmp_path):
        """Issue found by review: a cohort gathered as links to its patients' folders lost
        every linked patient without a word (``Path.rglob`` does not enter a folder link), in
        predict, check, train and measure alike."""
        store, cohort = tmp_path / "store", tmp_path / "cohort"
        write_test_dicom(store / "p02" / "s1.dcm", np.zeros((2, 2)), series_uid="1.2.826.0.2")
        write_test_dicom(store / "s2.dcm", np.zeros((2, 2)), instance=2)
        write_test_dicom(cohort / "p01" / "s1.dcm", np.zeros((2, 2)))
        (cohort / "p02").symlink_to(store / "p02", target_is_directory=True)
        (cohort / "p01" / "up").symlink_to(cohort, target_is_directory=True)  # a loop
        (cohort / "p01" / "s2.dcm").symlink_to(store / "s2.dcm")
        found, skipped = find_dicom_files(cohort)
        assert [p.relative_to(cohort).as_posix() for p in found] == [
            "p01/s1.dcm",
            "p01/s2.dcm",
            "p02/s1.dcm",
        ]
        assert skipped == []
        assert [s.name for s in plan_cohort(cohort).series] == ["p01", "p02"]

    def test_the_output_folder_is_left_out_however_it_is_reached(self, tmp_path):
        """Issue found by review: a link in the inputs to the output folder (or an --out under
        the inputs reached through a link) was searched, its exports planned, then skipped."""
        cohort, out, store = tmp_path / "cohort", tmp_path / "out", tmp_path / "store"
        write_test_dicom(cohort / "p01" / "s1.dcm", np.zeros((2, 2)))
        write_test_dicom(out / "series" / "p01" / "p01.seg.dcm", np.zeros((2, 2)))
        (cohort / "results").symlink_to(out, target_is_directory=True)
        (cohort / "p01" / "seg.dcm").symlink_to(out / "series" / "p01" / "p01.seg.dcm")
        found, skipped = find_dicom_files(cohort, exclude=out)
        assert [p.relative_to(cohort).as_posix() for p in found] == ["p01/s1.dcm"]
        assert skipped == []
        assert [s.name for s in plan_cohort(cohort, exclude=out).series] == ["p01"]
        (cohort / "results").unlink()
        (cohort / "p01" / "seg.dcm").unlink()
        write_test_dicom(store / "p02" / "s1.dcm", np.zeros((2, 2)), series_uid="1.2.826.0.2")
        write_test_dicom(store / "p02" / "out" / "x.dcm", np.zeros((2, 2)))
        (cohort / "p02").symlink_to(store / "p02", target_is_directory=True)
        found, _ = find_dicom_files(cohort, exclude=cohort / "p02" / "out")  # as given
        assert [p.relative_to(cohort).as_posix() for p in found] == ["p01/s1.dcm", "p02/s1.dcm"]
        found, _ = find_dicom_files(cohort, exclude=store / "p02" / "out")  # by its real path
        assert [p.relative_to(cohort).as_posix() for p in found] == ["p01/s1.dcm", "p02/s1.dcm"]

    def test_missing_folder(self, tmp_path):
        with pytest.raises(PairingError, match="folder does not exist"):
            find_dicom_files(tmp_path / "nope")

    def test_a_file_given_for_the_folder_names_its_folder(self, tmp_path):
        path = write_test_dicom(tmp_path / "s1.dcm", np.zeros((2, 2)))
        # worded as the label folder's and DATA_DIR's refusal (`not_a_folder`)
        expected = rf"s1.dcm: a file, not a folder; .* the DICOM files, e\.g\. {tmp_path}\.$"
        with pytest.raises(PairingError, match=expected):
            find_dicom_files(path)


class TestOrderSlices:
    def test_series_then_instance_then_position_then_name(self, tmp_path):
        def make(name, series, instance, position):
            return Slice(
                pixels=np.zeros((1, 1), np.float32),
                spacing_mm=None,
                spacing_source="none",
                source=tmp_path / name,
                series_uid=series,
                instance_number=instance,
                position_mm=position,
            )

        slices = [
            make("s10", "B", 1, 0.0),
            make("s2", "A", None, 5.0),
            make("s3", "A", 2, 1.0),
            make("s1", "A", 2, -1.0),
            make("s11", "A", None, None),
            make("s9", "A", None, None),
        ]
        names = [s.name for s in order_slices(slices)]
        assert names == ["s1", "s3", "s2", "s9", "s11", "s10"]


class TestScanDicomFolder:
    def test_detects_by_content_and_skips_with_reasons(self, tmp_path):
        source = pydicom_file("MR_small.dcm")
        shutil.copy(source, tmp_path / "a.dcm")
        shutil.copy(source, tmp_path / "b.DCM")
        shutil.copy(source, tmp_path / "c")
        (tmp_path / "notes.txt").write_text("hello")
        (tmp_path / ".DS_Store").write_bytes(b"\0" * 200)
        # Windows' hidden system files: ignored as .DS_Store is, not "skipped: not DICOM"
        (tmp_path / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(200))
        (tmp_path / "DESKTOP.INI").write_text("[.ShellClassInfo]")
        data = source.read_bytes()
        (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 500])
        scan = scan_dicom_folder(tmp_path, progress=True)
        assert isinstance(scan, DicomScan)
        assert [s.source.name for s in scan.slices] == ["a.dcm"]  # b.DCM and c: read, copies
        reasons = {s.path.name: s.reason for s in scan.skipped}
        assert set(reasons) == {"notes.txt", "cut.dcm", "b.DCM", "c"}
        assert "not a DICOM file" in reasons["notes.txt"]
        assert "cut.dcm" in reasons["cut.dcm"] and "truncated" in reasons["cut.dcm"]
        assert reasons["c"] == (
            f"{tmp_path / 'c'}: the same image as {tmp_path / 'a.dcm'} (same series, number, "
            "position and pixels); measured once, from that file; remove the copy."
        )

    def test_a_copy_counts_once_and_another_image_at_its_position_twice(self, tmp_path):
        """A file exported twice would weigh twice in its series' mean; a second acquisition at
        the same position (other pixels) is a slice of its own."""
        pixels = np.arange(16.0).reshape(4, 4)
        write_test_dicom(tmp_path / "s1.dcm", pixels, instance=1)
        write_test_dicom(tmp_path / "s2.dcm", pixels + 1, instance=2)
        shutil.copy(tmp_path / "s1.dcm", tmp_path / "s1_again.dcm")
        changed = pydicom.dcmread(tmp_path / "s1.dcm")
        changed.SOPInstanceUID = pydicom.uid.generate_uid()  # a re-export: new UID, same image
        changed.save_as(tmp_path / "s1_reexport.dcm")
        write_test_dicom(tmp_path / "s3.dcm", pixels + 5, instance=1)  # at s1's position
        slices, skipped = read_files(sorted(tmp_path.glob("*.dcm")))
        assert [s.source.name for s in slices] == ["s1.dcm", "s3.dcm", "s2.dcm"]
        assert {s.path.name for s in skipped} == {"s1_again.dcm", "s1_reexport.dcm"}
        assert all(f"the same image as {tmp_path / 's1.dcm'}" in s.reason for s in skipped)

    def test_a_recompressed_copy_with_its_uid_counts_once(self, tmp_path):
        """Before: a PACS's lossy copy of an image (its SOPInstanceUID kept, pixels changed by
        the compression) was read as a second slice and weighed twice in the series' mean."""
        pixels = np.arange(16.0).reshape(4, 4)
        write_test_dicom(tmp_path / "a.dcm", pixels, instance=1)
        lossy = pydicom.dcmread(tmp_path / "a.dcm")
        lossy.PixelData = (pixels + np.eye(4)).astype(np.uint16).tobytes()
        lossy.save_as(tmp_path / "b.dcm")
        uid_reused = pydicom.dcmread(tmp_path / "a.dcm")  # one UID for every image: kept
        uid_reused.InstanceNumber, uid_reused.ImagePositionPatient = 2, [0.0, 0.0, 2.0]
        uid_reused.save_as(tmp_path / "c.dcm")
        slices, skipped = read_files(sorted(tmp_path.glob("*.dcm")))
        assert [s.source.name for s in slices] == ["a.dcm", "c.dcm"]
        assert [s.describe() for s in skipped] == [
            f"{tmp_path / 'b.dcm'}: the same SOPInstanceUID, series, number and position as "
            f"{tmp_path / 'a.dcm'} but other pixels (recompressed or edited?); measured once, "
            "from that file; remove the copy you do not want measured."
        ]

    def test_orders_slices(self, tmp_path):
        for instance, name in ((3, "x"), (1, "y"), (2, "z")):
            write_test_dicom(tmp_path / f"{name}.dcm", np.zeros((2, 2)), instance=instance)
        scan = scan_dicom_folder(tmp_path)
        assert [s.instance_number for s in scan.slices] == [1, 2, 3]


class TestReadSeries:
    def test_reads_slices(self, tmp_path):
        write_test_dicom(tmp_path / "s1.dcm", np.zeros((3, 4)))
        (image,) = read_series(tmp_path)
        assert image.shape == (3, 4)

    def test_empty_folder(self, tmp_path):
        (tmp_path / "readme.txt").write_text("x")
        with pytest.raises(PairingError, match=r"no DICOM files found \(1 other file"):
            read_series(tmp_path)

    def test_missing_folder(self, tmp_path):
        with pytest.raises(PairingError, match="folder does not exist"):
            read_series(tmp_path / "nope")


class TestStripDicomSuffix:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("slice_1.dcm", "slice_1"),
            ("slice_1.DCM", "slice_1"),
            ("IM0001.IMA", "IM0001"),
            ("1.2.840.113619.5", "1.2.840.113619.5"),
            ("noext", "noext"),
            (".dcm", ".dcm"),
        ],
    )
    def test_strips_only_dicom_suffixes(self, name, expected):
        assert strip_dicom_suffix(name) == expected


def test_reading_real_files_emits_no_unexpected_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_slices(pydicom_file("MR_small_RLE.dcm"))


@pytest.mark.parametrize(("name", "warned"), [("MR_small_padded.dcm", True), ("badVR.dcm", False)])
def test_pydicom_s_own_warnings_name_the_file(name, warned, tmp_path):
    """pydicom warns about padded pixel data or a bad value without saying which file; among
    thousands a user must be told. Planning a folder and reading its slices name it (a file
    skipped while planning is named with its reason instead)."""
    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copy(pydicom_file(name), folder / name)
    shutil.copy(pydicom_file("MR_small.dcm"), folder / "good.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = plan_cohort(folder)
        for series in plan.series:
            decode_series([f.source for f in series.files])
    said = [str(w.message) for w in caught]
    assert all(message.startswith(f"{folder / name}: ") for message in said), said
    assert bool(said) == warned
    skipped = [s.path.name for s in plan.skipped]
    assert skipped == ([] if warned else [name])


def test_a_file_s_warnings_are_its_own_while_another_thread_warns(tmp_path, monkeypatch):
    """A cohort decodes in the main thread while writer threads warn: recording pydicom's
    warnings with `catch_warnings` (process-wide) took the other thread's warning as the
    file's ("<file>: series 7: ...") and never showed it as itself."""
    path = tmp_path / "padded.dcm"
    shutil.copy(pydicom_file("MR_small_padded.dcm"), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warning_during(
            monkeypatch, pydicom.pixels, "pixel_array", "series 7: psoas area varies"
        ):
            slices, _ = decode_series([path])
    said = [str(w.message) for w in caught]
    assert len(slices) == 1 and len(said) == 2, said
    assert said[0] == "series 7: psoas area varies"  # shown as itself, once
    assert said[1].startswith(f"{path}: The pixel data is 8320 bytes long")  # the file's own


def test_a_dicomdir_is_left_out_as_the_index_it_is():
    path = pydicom_file("DICOMDIR")
    with pytest.raises(DicomReadError, match=r"DICOMDIR: a DICOMDIR, the index of a CD/DVD export"):
        read_slices(path)


def test_a_dose_grid_is_not_an_image_to_segment():
    path = pydicom_file("rtdose.dcm")
    with pytest.raises(DicomReadError, match=r"rtdose.dcm: a radiotherapy dose grid, not an image"):
        read_slices(path)


def ct_file(path: Path, stored: np.ndarray, **rescale: Any) -> Path:
    """A CT file of 12-bit unsigned stored values with only the rescale elements given."""
    return write_ct_dicom(path, stored, bits_stored=12, **rescale)


class TestModalityUnits:
    """HU from stored values by the standard's order (issue 17, item 4)."""

    STORED = np.array([[924, 1064]])  # −100 HU (fat) and 40 HU (muscle) at intercept −1024

    def test_intercept_without_slope_takes_slope_1(self, tmp_path):
        """Before: 924 / 1064 reported as they are stored."""
        image = read_slice(ct_file(tmp_path / "a.dcm", self.STORED, intercept=-1024.0))
        np.testing.assert_array_equal(image.pixels, [[-100.0, 40.0]])
        assert image.modality_lut == "rescale"

    def test_slope_without_intercept_takes_intercept_0(self, tmp_path):
        image = read_slice(ct_file(tmp_path / "a.dcm", self.STORED, slope=0.5))
        np.testing.assert_array_equal(image.pixels, [[462.0, 532.0]])

    def test_a_slope_of_0_is_refused_naming_the_file(self, tmp_path):
        """Issue found by review: RescaleSlope 0 made every pixel the intercept (-1024 "HU"),
        read without a word: a blank image to segment and a muscle with no muscle in it."""
        path = ct_file(tmp_path / "a.dcm", self.STORED, slope=0.0, intercept=-1024.0)
        with pytest.raises(DicomReadError, match=r"a.dcm: .*RescaleSlope is 0.*damaged"):
            read_slice(path)

    def test_no_rescale_keeps_the_stored_values_and_says_so(self, tmp_path):
        image = read_slice(ct_file(tmp_path / "a.dcm", self.STORED))
        np.testing.assert_array_equal(image.pixels, [[924.0, 1064.0]])
        assert image.modality_lut == "none"

    def test_monochrome1_ct_is_in_hu(self, tmp_path):
        """Before: mirrored in the 12-bit range first, 4095 − 924 − 1024 = 2147 and
        4095 − 1064 − 1024 = 2007 "HU"."""
        path = ct_file(
            tmp_path / "a.dcm", self.STORED, slope=1.0, intercept=-1024.0, photometric="MONOCHROME1"
        )
        image = read_slice(path)
        np.testing.assert_array_equal(image.pixels, [[-100.0, 40.0]])
        np.testing.assert_array_equal(image.display_pixels, [[100.0, -40.0]])

    def test_the_network_sees_a_monochrome1_slice_as_before(self, tmp_path):
        """The z-score of the negated HU equals that of the values sliceseg 0.1 computed
        (stored values mirrored in the 12-bit range, then rescaled), so old models agree."""
        from sliceseg.model_space.batches import slice_to_spacing
        from sliceseg.model_space.intensity import normalise_intensity

        stored = np.random.default_rng(0).integers(0, 4096, size=(24, 20))
        path = ct_file(
            tmp_path / "a.dcm", stored, slope=1.0, intercept=-1024.0, photometric="MONOCHROME1"
        )
        image = read_slice(path)
        old_values = (4095 - stored) * 1.0 - 1024.0
        seen, _ = slice_to_spacing(image, (0.5, 0.8))  # at its own spacing: no resampling
        np.testing.assert_allclose(seen[0].numpy(), normalise_intensity(old_values), atol=1e-5)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"SpacingBetweenSlices": "3.5", "SliceThickness": "2"}, 3.5),
        ({"SliceThickness": "2"}, 2.0),
        ({"SpacingBetweenSlices": "0", "SliceThickness": "2.5"}, 2.5),
        ({}, None),
    ],
)
def test_slice_step_is_spacing_between_slices_else_thickness(tmp_path, attributes, expected):
    path = write_test_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16))
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    assert slice_step_mm(path) == expected


def test_slice_step_of_a_preamble_less_file(tmp_path):
    """Before: None (so a single-slice NIfTI / seg.nrrd export took 1 mm planes): the file
    was read without ``force``, unlike everywhere else."""
    path = write_test_dicom(tmp_path / "bare", np.zeros((4, 4), np.uint16), preamble=False)
    ds = pydicom.dcmread(path, force=True)
    ds.SliceThickness = "3.5"
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    assert read_slices(path)[0].spacing_mm == (0.5, 0.8)
    assert slice_step_mm(path) == 3.5


def test_slice_step_of_an_unreadable_file_is_none(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"not a dicom")
    assert slice_step_mm(tmp_path / "a.dcm") is None


class TestImageOrientation:
    """(0020,0037) ImageOrientationPatient that is no pixel grid is treated as missing."""

    @pytest.mark.parametrize(
        "cosines",
        [
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # an exporter's placeholder
            [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],  # rows and columns along one axis
            [1.0, 0.0, 0.0, 0.5, 0.5, 0.0],  # 45° apart, column not unit
        ],
    )
    def test_a_degenerate_orientation_is_missing_with_a_warning(self, tmp_path, cosines):
        """Before: kept as read; a NIfTI / seg.nrrd export wrote a singular (or NaN) affine,
        or the series grid blamed "another orientation" comparing a slice with itself, and the
        slice's position along a zero normal was 0.0 mm."""
        from sliceseg.io.series_grid import series_grid

        path = write_test_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16))
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = cosines
        ds.save_as(path)
        with pytest.warns(UserWarning, match=r"a.dcm: ImageOrientationPatient .* not two perp"):
            (image,) = read_slices(path)
        assert image.orientation is None
        assert image.position_mm is None
        with pytest.raises(LabelError, match=r"a.dcm: no ImageOrientationPatient"):
            series_grid([image])

    def test_an_oblique_orientation_gives_the_position_on_the_unit_normal(self, tmp_path):
        path = write_test_dicom(tmp_path / "a.dcm", np.zeros((4, 4), np.uint16), instance=6)
        ds = pydicom.dcmread(path)
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.6, 0.8]  # normal (0, -0.8, 0.6)
        ds.ImagePositionPatient = [0.0, -5.0, 10.0]
        ds.save_as(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (image,) = read_slices(path)
        assert image.orientation == (1.0, 0.0, 0.0, 0.0, 0.6, 0.8)
        assert image.position_mm == pytest.approx(10.0)  # 4 + 6
