"""Left/right ROI pairs on the wrong side of the patient: a mirrored label volume, swapped names."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom

from sliceseg.dataset.laterality import mirrored_side_problems, side_pairs
from sliceseg.dataset.pairing import Sample
from sliceseg.dataset.samples import check_dataset
from sliceseg.io.dicom import Slice
from test_export_geometry import write_series

ROWS, COLS = 48, 64


def psoas_label() -> np.ndarray:
    """ROI 1 'left psoas' on the image's right (columns 45..50: the patient's left when rows run
    along +x), ROI 2 'right psoas' on its left (columns 12..17)."""
    label = np.zeros((ROWS, COLS), np.uint8)
    label[30:36, 45:51] = 1
    label[30:36, 12:18] = 2
    return label


def axial(z: float, *, orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0)) -> Slice:
    return Slice(
        pixels=np.zeros((ROWS, COLS), np.float32),
        source=Path(f"s{z:g}.dcm"),
        spacing_mm=(0.5, 0.8),
        spacing_source="PixelSpacing",
        image_position_mm=(-25.2, -11.75, z),
        orientation=orientation,
    )


NAMES = ("left psoas", "right psoas", "vertebral body")


class TestSidePairs:
    def test_names_that_differ_only_in_left_and_right_pair_up(self):
        names = ["Right Psoas major", "vertebral body", "left psoas major", "left-erector", "x"]
        assert side_pairs(names) == [(3, 1)]


class TestMirroredSideProblems:
    def test_labels_on_their_own_sides_say_nothing(self):
        samples = [Sample(f"p01/s{z}", axial(z), psoas_label()) for z in (0, 5)]
        assert mirrored_side_problems(samples, [Path("p01.nii.gz")] * 2, NAMES) == []

    def test_a_feet_first_series_read_right_says_nothing(self):
        """Rows run along -x: the patient's left is on the image's left."""
        flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        sample = Sample("p01/s0", axial(0, orientation=flipped), psoas_label()[:, ::-1])
        assert mirrored_side_problems([sample], [Path("p01.nii.gz")], NAMES) == []

    def test_labels_turned_180_degrees_are_named_with_where_they_lie(self):
        samples = [Sample(f"p01/s{z}", axial(z), np.rot90(psoas_label(), 2)) for z in (0, 5)]
        samples.append(Sample("p02/s0", axial(0), psoas_label()))
        files = [Path("p01.nii.gz")] * 2 + [Path("p02.nii.gz")]
        (problem,) = mirrored_side_problems(samples, files, NAMES)
        assert problem.severity == "warning" and problem.kind == "mirrored_sides"
        assert problem.paths == (Path("p01.nii.gz"),)
        assert problem.message == (
            "1 label file(s) put ROI 1 (left psoas) on the patient's right of ROI 2 (right "
            "psoas), in 2 of the 2 slices holding both (LPS x -13 mm vs 14 mm; the patient's "
            "left is +x): mirrored labels (a NIfTI saved with its LPS affine as RAS turns them "
            "180° in-plane) or swapped names; open the file over its DICOM series in a viewer, "
            "and save it with the series' own affine or fix the names"
        )


def test_check_warns_of_a_centred_nifti_saved_with_its_lps_affine_as_ras(tmp_path):
    """The FOV centred on the isocentre: the mirrored grid falls on the DICOM's own, so the
    volume was read onto the slices turned 180° without a word."""
    data = tmp_path / "data"
    origin = (-(COLS - 1) / 2 * 0.8, -(ROWS - 1) / 2 * 0.5, 20.0)
    write_series(data / "dicoms" / "p01", heights_mm=[0, 5, 10], origin_mm=origin)
    files = sorted((data / "dicoms" / "p01").iterdir())
    positions = {float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in files}
    ijk_to_lps = np.diag([0.8, 0.5, 5.0, 1.0])
    ijk_to_lps[:3, 3] = (*origin[:2], min(positions))
    voxels = np.stack([psoas_label().T] * 3, axis=-1)
    (data / "labels").mkdir()
    nib.save(nib.Nifti1Image(voxels, ijk_to_lps), data / "labels" / "p01.nii.gz")  # LPS as RAS
    (data / "labels.txt").write_text("left psoas\nright psoas\n")
    report = check_dataset(data)
    (problem,) = [p for p in report.warnings if p.kind == "mirrored_sides"]
    assert problem.paths == (data / "labels" / "p01.nii.gz",)
    assert "in 3 of the 3 slices holding both" in problem.message


class TestSidePairsLikeThePlausibilityCheck:
    """`side_pairs` read only the words left / right, while the area tables' left/right ratio
    check (`sided_pairs_from_names`) pairs "psoas_L" / "psoas_R" and "lt" / "rt" too: labels
    so named were never checked for mirrored sides."""

    def test_short_side_words_pair_up_as_in_the_area_tables(self):
        names = ["psoas_R", "vertebral body", "psoas_L", "Lt erector", "Rt erector"]
        assert side_pairs(names) == [(3, 1), (4, 5)]

    def test_labels_turned_180_degrees_are_named_for_short_side_names(self):
        samples = [Sample(f"p01/s{z}", axial(z), np.rot90(psoas_label(), 2)) for z in (0, 5)]
        names = ("psoas_L", "psoas_R", "vertebral body")
        (problem,) = mirrored_side_problems(samples, [Path("p01.nii.gz")] * 2, names)
        assert problem.message.startswith(
            "1 label file(s) put ROI 1 (psoas_L) on the patient's right of ROI 2 (psoas_R), in "
            "2 of the 2 slices holding both"
        )
