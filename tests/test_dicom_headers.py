"""Tests for sliceseg.io.dicom_headers: the header read decodes each element as pydicom does."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset

from conftest import write_test_dicom
from sliceseg.errors import DicomReadError
from sliceseg.io.dicom import read_slices
from sliceseg.io.dicom_headers import _convert_elements, read_dataset

# Explicit and implicit VR, big endian, no meta header, sequences (nested, private, UN),
# ambiguous VRs ('US or SS' in implicit VR files, LUT descriptors), enhanced multi-frame.
FILES = [
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "ExplVR_BigEndNoMeta.dcm",
    "no_meta.dcm",
    "CT_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "rtstruct.dcm",
    "reportsi.dcm",
    "nested_priv_SQ.dcm",
    "UN_sequence.dcm",
    "examples_palette.dcm",
    "liver_1frame.dcm",
    "emri_small.dcm",
]
# Text in other character sets: Japanese, Korean, Greek, Arabic, German, French (multi-valued).
CHARSET_FILES = ["chrH31.dcm", "chrX1.dcm", "chrGreek.dcm", "chrArab.dcm", "chrFrenMulti.dcm"]


def pydicom_file(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        matches = get_charset_files(name)
        path = matches[0] if matches else None
    if path is None:
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return Path(path)


def elements(ds: Dataset) -> list[tuple[str, str, str]]:
    """(tag, VR, value) of every public element, items of sequences included, as stored."""
    found = []
    for tag, element in ds.items():
        if tag.is_private:
            continue
        assert not isinstance(element, pydicom.dataelem.RawDataElement), tag
        if element.VR == "SQ":
            found.append((str(tag), "SQ", str(len(element.value))))
            found.extend(e for item in element.value for e in elements(item))
        else:
            found.append((str(tag), str(element.VR), repr(element.value)))
    return found


@pytest.mark.parametrize("name", FILES + CHARSET_FILES)
def test_every_public_element_is_decoded_as_pydicom_decodes_it(name):
    path = pydicom_file(name)
    ours, theirs = pydicom.dcmread(path, force=True), pydicom.dcmread(path, force=True)
    for ds in (ours.file_meta, ours):
        _convert_elements(ds)
    for ds in (theirs.file_meta, theirs):
        for _ in ds.iterall():  # pydicom's own traversal converts each element it yields
            pass
    assert elements(ours) == elements(theirs)
    assert elements(ours.file_meta) == elements(theirs.file_meta)


def test_an_element_of_unknown_vr_fails_in_the_reader_naming_the_file(tmp_path):
    data = pydicom_file("MR_small.dcm").read_bytes()
    tag = b"\x28\x00\x30\x00DS"  # (0028,0030) PixelSpacing, explicit VR little endian
    assert data.count(tag) == 1
    path = tmp_path / "bad_vr.dcm"
    path.write_bytes(data.replace(tag, b"\x28\x00\x30\x00Q!"))
    found = r"\(Unknown Value Representation '0x51 0x21' in tag \(0028,0030\)\); the file may be"
    with pytest.raises(DicomReadError, match=rf"^{path}: cannot read the DICOM header {found}"):
        read_dataset(path)


def _enhanced(path: Path, *, per_frame: object, top: object) -> Path:
    """A 2-frame file whose per-frame PixelMeasuresSequence holds ``per_frame`` and whose top
    level holds ``top`` as (0028,0030) PixelSpacing."""
    write_test_dicom(path, np.zeros((2, 4, 4), np.uint16), spacing=None)
    ds = pydicom.dcmread(path)
    frames = []
    for _ in range(2):
        measures = Dataset()
        measures.PixelSpacing = per_frame
        group = Dataset()
        group.PixelMeasuresSequence = [measures]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelSpacing = top
    ds.save_as(path)
    return path


class TestPixelSpacing:
    def test_a_malformed_functional_group_spacing_gives_way_to_the_valid_top_level(self, tmp_path):
        # before: the valid top-level 0.7 mm was hidden and the frames had no spacing at all
        path = _enhanced(tmp_path / "mf.dcm", per_frame=["0.0", "0.0"], top=[0.7, 0.9])
        with pytest.warns(
            UserWarning,
            match=r"mf\.dcm: \(0028,0030\) PixelSpacing .* in the per-frame functional groups is "
            r"malformed or not > 0; using the top-level PixelSpacing \(0\.7, 0\.9\) instead",
        ):
            slices = read_slices(path)
        assert [(s.spacing_mm, s.spacing_source) for s in slices] == [
            ((0.7, 0.9), "PixelSpacing")
        ] * 2

    def test_a_valid_functional_group_spacing_wins_over_a_malformed_top_level(self, tmp_path):
        path = _enhanced(tmp_path / "mf.dcm", per_frame=[0.5, 0.6], top=["-1", "0"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            slices = read_slices(path)
        assert [s.spacing_mm for s in slices] == [(0.5, 0.6)] * 2

    def test_no_valid_spacing_anywhere_is_told_and_missing(self, tmp_path):
        path = _enhanced(tmp_path / "mf.dcm", per_frame=["0.0", "0.0"], top=["-1", "0"])
        with pytest.warns(UserWarning, match=r"mf\.dcm: PixelSpacing .* treating the spacing"):
            slices = read_slices(path)
        assert [(s.spacing_mm, s.spacing_source) for s in slices] == [
            (None, "PixelSpacing (malformed)")
        ] * 2
        # as the functional groups store it, for the refusal to name (they are read first)
        assert [s.malformed_spacing for s in slices] == ["0.0\\0.0"] * 2


class TestImagerPixelSpacing:
    """Issue 19 (inputs): the detector's spacing measured the patient magnified."""

    def imager_file(self, tmp_path: Path, **header: object) -> Path:
        path = write_test_dicom(tmp_path / "dx.dcm", np.zeros((4, 4)), spacing=None)
        ds = pydicom.dcmread(path)
        ds.ImagerPixelSpacing = [0.2, 0.3]
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
        return path

    def test_the_estimated_magnification_is_taken_out(self, tmp_path):
        """Before: 0.2 × 0.3 mm, the detector's: areas 1.25² = 1.56 times the patient's."""
        path = self.imager_file(tmp_path, EstimatedRadiographicMagnificationFactor=1.25)
        with pytest.warns(UserWarning, match=r"dx.dcm: .*ImagerPixelSpacing \(0.2, 0.3\) divided"):
            (image,) = read_slices(path)
        assert image.spacing_mm == pytest.approx((0.16, 0.24))
        # csa_long.csv's spacing_source tells the patient's spacing from the detector's
        assert image.spacing_source == (
            "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"
        )

    @pytest.mark.parametrize("factor", ["0", "-1.2", "nan"])
    def test_a_malformed_magnification_leaves_the_detector_s_spacing(self, tmp_path, factor):
        path = self.imager_file(tmp_path, EstimatedRadiographicMagnificationFactor=factor)
        with pytest.warns(UserWarning, match="areas may be magnified"):
            (image,) = read_slices(path)
        assert (image.spacing_mm, image.spacing_source) == ((0.2, 0.3), "ImagerPixelSpacing")

    def test_pixel_spacing_wins_over_the_detector_s(self, tmp_path):
        path = self.imager_file(
            tmp_path, PixelSpacing=[0.1, 0.1], EstimatedRadiographicMagnificationFactor=1.25
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (image,) = read_slices(path)
        assert image.spacing_mm == (0.1, 0.1)
