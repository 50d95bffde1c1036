"""Reading label volumes: Slicer .seg.nrrd header fields, NIfTI RAS → LPS, DICOM-SEG, bad files."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

import slicer_files
from sliceseg.errors import LabelError
from sliceseg.io.dicom_seg import referenced_series_uid
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.volumes import is_volume_name, read_label_volume, strip_volume_suffix

SPACE_DIRECTIONS = np.array([[0.8, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, -5.0]])
ORIGIN = np.array([-100.0, -80.0, 40.0])


AFFINE = np.eye(4)
AFFINE[:3, :3] = SPACE_DIRECTIONS.T
AFFINE[:3, 3] = ORIGIN


def write_slicer_seg(path: Path, voxels: np.ndarray, segments: list[dict[str, str]]) -> Path:
    return slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=AFFINE)


SEGMENTS_125 = [
    {"Name": name, "LabelValue": value, "Layer": "0", "Color": "0.5 0.5 0.5"}
    for name, value in (("vertebral body", "1"), ("right psoas", "2"), ("left psoas", "5"))
]


def _blocks(shape: tuple[int, int, int]) -> np.ndarray:
    voxels = np.zeros(shape, np.uint8)
    voxels[1:4, 2:5, 0] = 1
    voxels[5:7, 1:3, 1] = 2
    voxels[0:2, 0:2, 2] = 5
    return voxels


class TestSlicerSegNrrd:
    def test_names_values_colours_and_geometry_from_the_header(self, tmp_path):
        voxels = _blocks((8, 6, 3))
        path = write_slicer_seg(
            tmp_path / "p01.seg.nrrd",
            voxels,
            [
                {"Name": "vertebral body", "LabelValue": "1", "Layer": "0", "Color": "1 0 0"},
                {"Name": "right psoas", "LabelValue": "2", "Layer": "0", "Color": "0 1 0"},
                {"Name": "left psoas", "LabelValue": "5", "Layer": "0", "Color": "0 0 1"},
            ],
        )
        volume = read_label_volume(path)
        assert volume.kind == "seg.nrrd"
        assert volume.names_by_value == {1: "vertebral body", 2: "right psoas", 5: "left psoas"}
        assert volume.segments[2].colour_rgb == (0.0, 0.0, 1.0)
        np.testing.assert_array_equal(volume.values, voxels)
        np.testing.assert_allclose(volume.origin_mm, ORIGIN)
        np.testing.assert_allclose(volume.spacing_mm, (0.8, 0.6, 5.0))
        np.testing.assert_allclose(volume.directions, np.diag([1.0, 1.0, -1.0]))

    @pytest.mark.parametrize("name", ["p01.seg.nhdr", "p01.nhdr"])
    def test_a_detached_header_is_read_with_the_data_file_beside_it(self, tmp_path, name):
        """3D Slicer can save a segmentation as a .seg.nhdr header with its voxels in a separate
        data file; it was not recognised as a label volume at all."""
        voxels = _blocks((8, 6, 3))
        path = write_slicer_seg(tmp_path / name, voxels, SEGMENTS_125)
        assert (tmp_path / name.replace(".nhdr", ".raw.gz")).is_file()  # as pynrrd names it
        volume = read_label_volume(path)
        assert volume.names_by_value == {1: "vertebral body", 2: "right psoas", 5: "left psoas"}
        np.testing.assert_array_equal(volume.values, voxels)
        np.testing.assert_allclose(volume.origin_mm, ORIGIN)
        np.testing.assert_allclose(volume.spacing_mm, (0.8, 0.6, 5.0))

    def test_a_detached_header_without_its_data_file_names_both(self, tmp_path):
        path = write_slicer_seg(tmp_path / "p01.seg.nhdr", _blocks((8, 6, 3)), SEGMENTS_125)
        (tmp_path / "p01.seg.raw.gz").unlink()
        with pytest.raises(LabelError) as caught:
            read_label_volume(path)
        assert str(caught.value) == (
            f"{path}: its voxels are in the data file {tmp_path / 'p01.seg.raw.gz'} (NRRD 'data "
            "file'), which does not exist; expected it beside the header; copy it there with "
            "the header, or save the segmentation from 3D Slicer as one .seg.nrrd."
        )

    def test_two_layers_are_merged_and_reused_values_renumbered(self, tmp_path):
        layers = np.zeros((2, 4, 4, 2), np.uint8)
        layers[0, 0:2, 0:2, 0] = 1  # "bone", layer 0, value 1
        layers[1, 2:4, 2:4, 1] = 1  # "muscle", layer 1, value 1
        path = write_slicer_seg(
            tmp_path / "two.seg.nrrd",
            layers,
            [
                {"Name": "bone", "LabelValue": "1", "Layer": "0"},
                {"Name": "muscle", "LabelValue": "1", "Layer": "1"},
            ],
        )
        volume = read_label_volume(path)
        assert volume.names_by_value == {1: "bone", 2: "muscle"}
        assert volume.values.shape == (4, 4, 2)
        assert int(np.count_nonzero(volume.values == 1)) == 4
        assert volume.values[3, 3, 1] == 2 and volume.values[0, 0, 0] == 1

    def test_overlapping_segments_are_an_error(self, tmp_path):
        layers = np.zeros((2, 4, 4, 1), np.uint8)
        layers[0, 0:2, 0:2, 0] = 1
        layers[1, 1:3, 1:2, 0] = 1  # overlaps "bone" in voxels (1, 1) only
        path = write_slicer_seg(
            tmp_path / "overlap.seg.nrrd",
            layers,
            [
                {"Name": "bone", "LabelValue": "1", "Layer": "0"},
                {"Name": "muscle", "LabelValue": "1", "Layer": "1"},
            ],
        )
        with pytest.raises(LabelError, match=r"overlap\.seg\.nrrd: segments 'muscle' and 'bone' "):
            read_label_volume(path)

    def test_a_value_without_segment_is_an_error(self, tmp_path):
        path = write_slicer_seg(
            tmp_path / "stray.seg.nrrd",
            _blocks((8, 6, 3)),
            [{"Name": "vertebral body", "LabelValue": "1", "Layer": "0"}],
        )
        with pytest.raises(LabelError, match=r"stray\.seg\.nrrd: voxel values \[2, 5\]"):
            read_label_volume(path)

    def test_the_legacy_format_is_refused_as_it_would_land_on_other_slices(self, tmp_path):
        # Slicer's legacy writer put the origin of the reference grid (index 0) in 'space
        # origin' and the data from 'Segmentation_Extent' on: read by the origin alone, its
        # labels landed 2 planes and 3 columns off, on other DICOM slices, without a word.
        header = slicer_files.slicer_header(
            [{"Name": "vertebral body", "LabelValue": "1"}], shape=(8, 6, 3), ijk_to_lps=AFFINE
        )
        del header["Segmentation_ReferenceImageExtentOffset"]
        header["Segmentation_Extent"] = "3 10 0 5 2 4"
        path = tmp_path / "old.seg.nrrd"
        nrrd.write(str(path), (_blocks((8, 6, 3)) == 1).astype(np.uint8), header, index_order="F")
        with pytest.raises(
            LabelError, match=r"old\.seg\.nrrd: .* legacy format \('Segmentation_Extent: 3 10"
        ) as info:
            read_label_volume(path)
        assert str(info.value).endswith("open it in a current 3D Slicer and save it again.")


class TestNrrdAndNifti:
    def test_plain_nrrd_label_map_has_no_names(self, tmp_path):
        header = {"space": "right-anterior-superior", "space directions": np.eye(3)}
        header["space origin"] = np.array([10.0, 20.0, 30.0])
        nrrd.write(str(tmp_path / "p01.nrrd"), _blocks((8, 6, 3)), header)
        volume = read_label_volume(tmp_path / "p01.nrrd")
        assert volume.kind == "nrrd" and volume.segments == ()
        np.testing.assert_allclose(volume.origin_mm, (-10.0, -20.0, 30.0))  # RAS → LPS
        np.testing.assert_allclose(volume.directions, np.diag([-1.0, -1.0, 1.0]))

    @pytest.mark.parametrize(
        ("space", "to_lps"),
        [
            ("RAS", (-1.0, -1.0, 1.0)),
            ("LPS", (1.0, 1.0, 1.0)),
            ("Right-Anterior-Superior", (-1.0, -1.0, 1.0)),
            ("left-anterior-superior", (1.0, -1.0, 1.0)),
            ("LAS", (1.0, -1.0, 1.0)),
        ],
    )
    def test_every_patient_space_of_the_nrrd_standard_is_turned_to_lps(
        self, tmp_path, space, to_lps
    ):
        """NRRD names a space in full or abbreviated, in any case; slicerio took only the two
        full lower-case names and refused the rest as "truncated or damaged". Directions are
        oblique and the k axis runs downwards."""
        turn = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
        ijk_to_space = np.eye(4)
        ijk_to_space[:3, :3] = turn @ np.diag([0.8, 0.6, -5.0])
        ijk_to_space[:3, 3] = [10.0, 20.0, 30.0]
        header = {"space": space, "space directions": ijk_to_space[:3, :3].T}
        header["space origin"] = ijk_to_space[:3, 3]
        nrrd.write(str(tmp_path / "p01.nrrd"), _blocks((8, 6, 3)), header)
        volume = read_label_volume(tmp_path / "p01.nrrd")
        np.testing.assert_allclose(volume.ijk_to_lps, np.diag([*to_lps, 1.0]) @ ijk_to_space)
        np.testing.assert_array_equal(volume.values, _blocks((8, 6, 3)))

    @pytest.mark.parametrize(
        "space", ["scanner-xyz", "3D-right-handed", "right-anterior-superior-time"]
    )
    def test_a_space_not_tied_to_the_patient_is_named_with_the_fix(self, tmp_path, space):
        header = {"space": space, "space directions": np.eye(3), "space origin": np.zeros(3)}
        nrrd.write(str(tmp_path / "p01.nrrd"), _blocks((8, 6, 3)), header)
        with pytest.raises(LabelError) as caught:
            read_label_volume(tmp_path / "p01.nrrd")
        assert str(caught.value) == (
            f"{tmp_path / 'p01.nrrd'}: NRRD 'space: {space}'; expected a patient space "
            "(left-posterior-superior, right-anterior-superior, left-anterior-superior, or "
            "their abbreviations LPS, RAS, LAS), as 3D Slicer writes; save the label map from "
            "3D Slicer, or give its 'space' in patient axes."
        )

    def test_nrrd_without_geometry_is_an_error(self, tmp_path):
        nrrd.write(str(tmp_path / "bare.nrrd"), _blocks((8, 6, 3)))
        with pytest.raises(LabelError, match=r"bare\.nrrd: NRRD without 'space directions'"):
            read_label_volume(tmp_path / "bare.nrrd")

    def test_nrrd_with_an_origin_but_no_directions_is_an_error(self, tmp_path):
        """Before: read with 1 mm voxels (its 'spacings' ignored), so `check` blamed a
        "resampled volume" instead of the missing 'space directions'."""
        header = {"space": "left-posterior-superior", "space origin": np.array([5.0, 6.0, 7.0])}
        header["spacings"] = [0.8, 0.6, 5.0]
        nrrd.write(str(tmp_path / "half.nrrd"), _blocks((8, 6, 3)), header)
        with pytest.raises(LabelError, match=r"half\.nrrd: NRRD without 'space directions'"):
            read_label_volume(tmp_path / "half.nrrd")

    def test_nrrd_of_1_mm_voxels_at_the_origin_has_geometry(self, tmp_path):
        """Before: refused as "NRRD without 'space directions' / 'space origin'"."""
        header = {"space": "left-posterior-superior", "space directions": np.eye(3)}
        header["space origin"] = np.zeros(3)
        nrrd.write(str(tmp_path / "unit.nrrd"), _blocks((8, 6, 3)), header)
        np.testing.assert_array_equal(
            read_label_volume(tmp_path / "unit.nrrd").ijk_to_lps, np.eye(4)
        )

    def test_nifti_affine_is_turned_from_ras_to_lps(self, tmp_path):
        affine = np.array(
            [[-0.8, 0, 0, 100.0], [0, -0.6, 0, 80.0], [0, 0, 5.0, -20.0], [0, 0, 0, 1]]
        )
        voxels = _blocks((8, 6, 3))
        nib.save(nib.Nifti1Image(voxels, affine), tmp_path / "p01.nii.gz")
        volume = read_label_volume(tmp_path / "p01.nii.gz")
        np.testing.assert_array_equal(volume.values, voxels)
        np.testing.assert_allclose(volume.origin_mm, (-100.0, -80.0, -20.0))
        np.testing.assert_allclose(volume.directions, np.eye(3), atol=1e-7)
        np.testing.assert_allclose(volume.spacing_mm, (0.8, 0.6, 5.0), rtol=1e-6)

    def test_nifti_without_geometry_is_an_error(self, tmp_path):
        """Before: nibabel's stand-in affine (1 mm voxels around the origin) was taken as the
        volume's, so pairing it with a 0.3 mm series blamed a "resampled volume"."""
        nib.save(nib.Nifti1Image(_blocks((8, 6, 3)), None), tmp_path / "bare.nii.gz")
        with pytest.raises(LabelError, match=r"bare\.nii\.gz: NIfTI without geometry \(qform"):
            read_label_volume(tmp_path / "bare.nii.gz")

    def test_nifti_with_only_a_qform_keeps_it(self, tmp_path):
        image = nib.Nifti1Image(_blocks((8, 6, 3)), None)
        image.header.set_qform(np.diag([0.8, 0.6, 5.0, 1.0]), code=1)
        nib.save(image, tmp_path / "q.nii.gz")
        volume = read_label_volume(tmp_path / "q.nii.gz")
        np.testing.assert_allclose(volume.spacing_mm, (0.8, 0.6, 5.0), rtol=1e-6)

    def test_nifti_with_fractions_is_an_error(self, tmp_path):
        data = np.zeros((4, 4, 2), np.float32)
        data[1, 1, 0] = 0.5
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "prob.nii")
        with pytest.raises(LabelError, match=r"prob\.nii: float values that are not whole .* 0\.5"):
            read_label_volume(tmp_path / "prob.nii")

    def test_nifti_with_rounding_noise_shows_it_and_the_fix(self, tmp_path):
        """Before: "not whole numbers (e.g. 1)", the example printed as a whole number."""
        data = np.zeros((4, 4, 2), np.float32)
        data[1, 1, 0] = np.float32(1.0000001)
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "noise.nii")
        with pytest.raises(LabelError) as raised:
            read_label_volume(tmp_path / "noise.nii")
        assert "e.g. 1.0000001" in str(raised.value)
        assert "within 0.001 of one (float rounding)" in str(raised.value)

    def test_rounding_noise_above_255_is_not_told_to_become_uint8(self, tmp_path):
        """A volume may hold values up to 65535: the fix given, ``astype(np.uint8)``, turned
        300 into 44 (another ROI, or none) without a word."""
        data = np.zeros((4, 4, 2), np.float64)
        data[1, 1, 0] = 300.0000001
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "noise.nii")
        with pytest.raises(LabelError) as raised:
            read_label_volume(tmp_path / "noise.nii")
        assert str(raised.value).endswith("save np.rint(label).astype(np.uint16) as the label map.")

    def test_2d_nifti_is_one_plane(self, tmp_path):
        nib.save(nib.Nifti1Image(np.ones((5, 4), np.uint8), np.eye(4)), tmp_path / "one.nii")
        assert read_label_volume(tmp_path / "one.nii").shape == (5, 4, 1)


def _dicom_seg(tmp_path: Path) -> tuple[Path, np.ndarray, str]:
    """A DICOM-SEG made with highdicom directly from phantom DICOMs; returns path, masks, uid."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from sliceseg.phantom.generate import generate_phantom

    summary = generate_phantom(
        tmp_path / "ph", train_subjects=1, test_subjects=0, slices_per_subject=2,
        matrix_sizes=[(64, 64)],
    )  # fmt: skip
    files = sorted((summary.train_dir / "dicoms").rglob("*.dcm"))
    sources = [pydicom.dcmread(f) for f in files]
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 10:20, 10:30] = 1
    masks[1, 30:40, 5:15] = 2
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k,
            segment_label=name,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Muscle,
            algorithm_type="MANUAL",
        )
        for k, name in ((1, "left psoas"), (2, "right psoas"))
    ]
    seg = hd.seg.Segmentation(
        sources, masks, "BINARY", descriptions, hd.UID(), 2, hd.UID(), 1,
        "test", "test", "1", "1",
    )  # fmt: skip
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    return path, masks, str(sources[0].SeriesInstanceUID)


class TestDicomSeg:
    def test_names_series_and_geometry(self, tmp_path):
        path, _masks, uid = _dicom_seg(tmp_path)
        volume = read_label_volume(path)
        assert volume.kind == "dicom-seg" and volume.series_uid == uid
        assert volume.names_by_value == {1: "left psoas", 2: "right psoas"}
        assert sorted(np.unique(volume.values).tolist()) == [0, 1, 2]
        assert int(np.count_nonzero(volume.values == 1)) == 200
        assert int(np.count_nonzero(volume.values == 2)) == 100


def _seg_of(folder: Path, masks: np.ndarray, kind: str = "BINARY", **options) -> Path:
    """A DICOM-SEG made with highdicom on a 3-slice series (48 × 64 pixels) written with pydicom;
    ``masks`` (slices, rows, cols, segments) in InstanceNumber order."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from test_export_geometry import write_series

    write_series(folder / "dicoms", heights_mm=[0.0, 3.0, 6.0])
    files = sorted(folder.joinpath("dicoms").iterdir(), key=lambda f: -int(f.name[1:3]))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k, segment_label=f"s{k}", segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Muscle, algorithm_type="MANUAL",
        )
        for k in range(1, masks.shape[-1] + 1)
    ]  # fmt: skip
    sources = [pydicom.dcmread(f) for f in files]
    seg = hd.seg.Segmentation(sources, masks, kind, descriptions, hd.UID(), 2, hd.UID(), 1,
                              "test", "test", "1", "1", **options)  # fmt: skip
    seg.save_as(folder / "p01.seg.dcm")
    return folder / "p01.seg.dcm"


class TestDicomSegContent:
    """What a DICOM-SEG holds that sliceseg cannot take is said as such, not as a damaged file."""

    def test_overlapping_segments_say_so_and_how_to_remove_the_overlap(self, tmp_path):
        masks = np.zeros((3, 48, 64, 2), bool)
        masks[1, 5:10, 5:10, 0] = masks[1, 8:12, 8:12, 1] = True  # 2 × 2 pixels in both
        path = _seg_of(tmp_path, masks)
        with pytest.raises(LabelError) as caught:
            read_label_volume(path)
        assert str(caught.value) == (
            f"{path}: DICOM-SEG segments overlap (a pixel in two segments); sliceseg needs one "
            "label per pixel; remove the overlap (3D Slicer: Segment Editor, masking 'Allow "
            "overlap' off) and export it again."
        )

    def test_a_fractional_segmentation_says_what_to_save_instead(self, tmp_path):
        masks = np.zeros((3, 48, 64), np.float32)
        masks[1, 5:10, 5:10] = 1.0
        masks[1, 10, 10] = 0.5
        path = _seg_of(tmp_path, masks, "FRACTIONAL")
        with pytest.raises(LabelError) as caught:
            read_label_volume(path)
        assert str(caught.value) == (
            f"{path}: a FRACTIONAL DICOM-SEG (values between 0 and 1); expected one label per "
            "pixel; export a BINARY or LABELMAP segmentation."
        )

    def test_frames_without_positions_say_what_is_missing(self, tmp_path):
        """Before: "cannot read the DICOM-SEG ... ((0020,9113)); the file may be truncated"."""
        import pydicom

        masks = np.zeros((3, 48, 64), bool)
        masks[1, 5:10, 5:10] = True
        path = _seg_of(tmp_path, masks)
        seg = pydicom.dcmread(path)
        for frame in seg.PerFrameFunctionalGroupsSequence:
            del frame.PlanePositionSequence
        seg.save_as(path)
        with pytest.raises(LabelError) as caught:
            read_label_volume(path)
        assert str(caught.value) == (
            f"{path}: DICOM-SEG frames without (0020,9113) PlanePositionSequence; sliceseg "
            "places each frame by its position; export it again from a tool that writes them "
            "(3D Slicer, highdicom, dcmqi)."
        )


class TestTruncated:
    @pytest.mark.parametrize("name", ["p01.seg.nrrd", "p01.nii.gz", "seg.dcm"])
    def test_a_truncated_file_is_one_line_naming_it(self, tmp_path, name):
        if name == "seg.dcm":
            full, _, _ = _dicom_seg(tmp_path)
        elif name.endswith(".nrrd"):
            full = write_slicer_seg(
                tmp_path / name,
                _blocks((8, 6, 3)),
                [{"Name": n, "LabelValue": str(v), "Layer": "0"} for n, v in (("a", 1), ("b", 2))]
                + [{"Name": "c", "LabelValue": "5", "Layer": "0"}],
            )
        else:
            full = tmp_path / name
            nib.save(nib.Nifti1Image(_blocks((40, 40, 20)), np.eye(4)), full)
        data = full.read_bytes()
        cut = tmp_path / "cut" / name
        cut.parent.mkdir()
        cut.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(LabelError, match=rf"cut/{name}: .*truncated") as caught:
            read_label_volume(cut)
        assert "\n" not in str(caught.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(LabelError, match=r"nope\.nii\.gz: label volume does not exist"):
            read_label_volume(tmp_path / "nope.nii.gz")


class TestNames:
    @pytest.mark.parametrize(
        ("name", "stem", "is_volume"),
        [
            ("p01.seg.nrrd", "p01", True),
            ("P01.NII.GZ", "P01", True),
            ("p01.nii", "p01", True),
            ("p01.nrrd", "p01", True),
            ("p01.seg.nhdr", "p01", True),
            ("P01.NHDR", "P01", True),
            ("p01.seg.dcm", "p01", False),
            ("slice_1.png", "slice_1.png", False),
        ],
    )
    def test_suffixes(self, name, stem, is_volume):
        assert strip_volume_suffix(name) == stem
        assert is_volume_name(name) is is_volume


def test_label_volume_properties():
    affine = np.array([[0, 0, 2.0, 1], [0, 3.0, 0, 2], [-4.0, 0, 0, 3], [0, 0, 0, 1]])
    volume = LabelVolume(np.zeros((2, 3, 4), np.uint8), affine, (), Path("x.nii"), "nifti")
    assert volume.shape == (2, 3, 4)
    assert volume.origin_mm == (1.0, 2.0, 3.0)
    assert volume.spacing_mm == (4.0, 3.0, 2.0)
    np.testing.assert_allclose(volume.directions[:, 0], (0, 0, -1))


def _good_volumes(folder: Path) -> dict[str, Path]:
    """One good file of each kind the readers take, small."""
    folder.mkdir(parents=True, exist_ok=True)
    header = {"space": "left-posterior-superior", "space directions": np.eye(3)}
    header["space origin"] = np.array([10.0, 20.0, 30.0])
    segments = [{"Name": n, "LabelValue": str(v), "Layer": "0"} for n, v in (("a", 1), ("b", 2))]
    good = {
        "seg.nrrd": write_slicer_seg(
            folder / "g.seg.nrrd", _blocks((8, 6, 3)), [*segments, {"Name": "c", "LabelValue": "5"}]
        ),
        "nrrd": folder / "g.nrrd",
        "nii.gz": folder / "g.nii.gz",
        "nii": folder / "g.nii",
        "seg.dcm": _dicom_seg(folder / "dicom_seg")[0],
    }
    nrrd.write(str(good["nrrd"]), _blocks((8, 6, 3)), header)
    for kind in ("nii.gz", "nii"):
        nib.save(nib.Nifti1Image(_blocks((8, 6, 3)), np.eye(4)), good[kind])
    return good


def _bad_volumes(folder: Path, good: dict[str, Path]) -> dict[str, str]:
    """Damaged and wrong files beside the good ones; name → what the message must say."""
    for kind, path in good.items():
        data = path.read_bytes()
        for damage, cut in (("zero", b""), ("text", b"not a label volume\n" * 20),
                            ("header", data[:40]), ("data", data[: len(data) // 2]),
                            ("end", data[:-40])):  # fmt: skip
            (folder / f"{damage}.{kind}").write_bytes(cut)
    expected = {f"{damage}.{kind}": "" for damage in ("zero", "text", "header", "data", "end")
                for kind in good}  # fmt: skip
    for kind in ("seg.dcm",):  # not a DICOM-SEG by content: the suffix is not a volume's
        for damage in ("zero", "text", "header"):
            expected[f"{damage}.{kind}"] = "not a label volume"
    header = {"space": "left-posterior-superior", "space directions": np.eye(3)}
    header["space origin"] = np.array([10.0, 20.0, 30.0])
    not_whole = np.zeros((8, 6, 3), np.float32)
    not_whole[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(not_whole, np.eye(4)), folder / "nan.nii.gz")
    nrrd.write(str(folder / "nan.nrrd"), not_whole, header)
    nrrd.write(str(folder / "inf.nrrd"), np.full((8, 6, 3), np.inf, np.float32), header)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 2), np.uint8), np.eye(4)), folder / "4d.nii.gz")
    for name in ("nan.nii.gz", "nan.nrrd", "inf.nrrd"):
        expected[name] = "values are NaN or infinite"
    expected["4d.nii.gz"] = "expected a 3D label map"
    for kind in ("nrrd", "seg.nrrd"):  # a header that promises 10^15 voxels
        text = good[kind].read_bytes()
        start = text.index(b"sizes: ")
        end = text.index(b"\n", start)
        (folder / f"huge.{kind}").write_bytes(
            text[:start] + b"sizes: 100000 100000 100000" + text[end:]
        )
        expected[f"huge.{kind}"] = "cannot read the NRRD file"
    huge = bytearray(good["nii"].read_bytes())
    huge[40:56] = np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], "<i2").tobytes()  # dim[0..7]
    (folder / "huge.nii").write_bytes(bytes(huge))
    expected["huge.nii"] = "cannot read the NIfTI file"
    return expected


def _irregular_dicom_seg(folder: Path) -> Path:
    """A DICOM-SEG of three slices 4 and 6 mm apart: not a regularly spaced volume."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from sliceseg.phantom.generate import generate_phantom

    summary = generate_phantom(folder / "ph", train_subjects=1, test_subjects=0,
                               slices_per_subject=3, matrix_sizes=[(64, 64)])  # fmt: skip
    sources = [pydicom.dcmread(f) for f in sorted((summary.train_dir / "dicoms").rglob("*.dcm"))]
    for source, offset_mm in zip(sources, (0.0, 4.0, 10.0), strict=True):
        x, y, _z = (float(v) for v in source.ImagePositionPatient)
        source.ImagePositionPatient = [x, y, 50.0 + offset_mm]
    masks = np.zeros((3, 64, 64), np.uint8)
    masks[:, 5:10, 5:10] = 1
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="a", segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Muscle, algorithm_type="MANUAL",
    )  # fmt: skip
    seg = hd.seg.Segmentation(sources, masks, "BINARY", [description], hd.UID(), 2, hd.UID(), 1,
                              "test", "test", "1", "1")  # fmt: skip
    seg.save_as(folder / "irregular.seg.dcm")
    return folder / "irregular.seg.dcm"


def _library_error_files(folder: Path, good: dict[str, Path]) -> dict[str, str]:
    """One damaged file per kind of error the readers' libraries raise; name → the error's type
    (the ``__cause__`` of the LabelError), so that each kind is known to be caught."""

    def flipped(data: bytes, start: int) -> bytes:
        return data[:start] + bytes(b ^ 0xFF for b in data[start : start + 16]) + data[start + 16 :]

    nii_gz, nii, plain = (good[k].read_bytes() for k in ("nii.gz", "nii", "nrrd"))
    seg = good["seg.dcm"].read_bytes()
    at = seg.index(b"\x62\x00\x05\x00LO") + 4  # (0062,0005) SegmentLabel, explicit VR "LO"
    big = folder / "big.nii.gz"
    nib.save(nib.Nifti1Image((np.arange(32000).reshape(40, 40, 20) % 7).astype(np.uint8),
                             np.eye(4)), big)  # fmt: skip
    files = {
        "deflate.nii.gz": (flipped(nii_gz, len(nii_gz) // 2), "error"),  # zlib.error
        "cut_stream.nii.gz": (big.read_bytes()[: big.stat().st_size * 2 // 3], "EOFError"),
        "datatype.nii": (nii[:70] + np.int16(190).tobytes() + nii[72:], "HeaderDataError"),
        "type.nrrd": (plain.replace(b"type: uint8", b"type: uin'8"), "KeyError"),
        "deflate.nrrd": (flipped(plain, plain.index(b"\n\n") + 14), "error"),
        "vr.seg.dcm": (seg[:at] + b"U7" + seg[at + 2 :], "NotImplementedError"),
    }
    for name, (data, _kind) in files.items():
        (folder / name).write_bytes(data)
    _irregular_dicom_seg(folder)
    return {name: kind for name, (_data, kind) in files.items()} | {
        "irregular.seg.dcm": "RuntimeError"
    }


class TestBadInputs:
    """Every damaged or wrong volume is one LabelError line naming it; the good ones still read."""

    def test_each_library_error_kind_is_one_line_naming_the_file(self, tmp_path):
        kinds = _library_error_files(tmp_path, _good_volumes(tmp_path / "good"))
        assert len(kinds) == 7
        for name, kind in kinds.items():
            with pytest.raises(LabelError, match="cannot read the") as caught:
                read_label_volume(tmp_path / name)
            message = str(caught.value)
            assert message.startswith(f"{tmp_path / name}: ") and "\n" not in message, message
            assert type(caught.value.__cause__).__name__ == kind, (name, caught.value.__cause__)

    def test_each_bad_file_is_one_line_naming_it(self, tmp_path):
        good = _good_volumes(tmp_path / "good")
        expected = _bad_volumes(tmp_path, good)
        assert len(expected) == 5 * 5 + 4 + 3  # 5 damages × 5 kinds, values, sizes
        for name, says in expected.items():
            with pytest.raises(LabelError) as caught:
                read_label_volume(tmp_path / name)
            message = str(caught.value)
            assert str(tmp_path / name) in message and "\n" not in message, message
            assert says in message, message
        for path in good.values():
            assert read_label_volume(path).values.max() in (2, 5)

    def test_the_referenced_series_of_a_dicom_seg_and_of_a_damaged_one(self, tmp_path):
        path, _masks, uid = _dicom_seg(tmp_path)
        assert referenced_series_uid(path) == uid
        (tmp_path / "zero.seg.dcm").write_bytes(b"")
        with pytest.raises(LabelError, match=r"zero\.seg\.dcm: cannot read the DICOM-SEG header"):
            referenced_series_uid(tmp_path / "zero.seg.dcm")


class TestNiftiForms:
    """A NIfTI's sform and qform: nibabel reads the sform, ITK-based tools may read the qform."""

    def _write(self, path: Path, sform: np.ndarray, qform: np.ndarray) -> Path:
        image = nib.Nifti1Image(_blocks((8, 6, 3)), None)
        image.header.set_sform(sform, code=2)
        image.header.set_qform(qform, code=1)
        nib.save(image, path)
        return path

    def test_disagreeing_forms_are_told_naming_the_file_and_the_form_used(self, tmp_path):
        sform = np.diag([0.8, 0.6, 5.0, 1.0])
        qform = sform.copy()
        qform[2, 3] = 10.0  # two slices further along: the labels land elsewhere in Slicer
        path = self._write(tmp_path / "p01.nii.gz", sform, qform)
        with pytest.warns(
            UserWarning,
            match=r"p01\.nii\.gz: NIfTI sform and qform disagree \(by up to 10 mm\); "
            r"used the sform",
        ) as caught:
            volume = read_label_volume(path)
        assert len(caught) == 1 and "\n" not in str(caught[0].message)
        np.testing.assert_allclose(volume.origin_mm, (0.0, 0.0, 0.0), atol=1e-6)

    def test_agreeing_forms_are_read_quietly(self, tmp_path):
        sform = np.diag([0.8, 0.6, 5.0, 1.0])
        sform[:3, 3] = (-100.0, 80.123456, 40.0)
        path = self._write(tmp_path / "p01.nii.gz", sform, sform)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            volume = read_label_volume(path)
        np.testing.assert_allclose(volume.origin_mm, (100.0, -80.123456, 40.0), atol=1e-4)
