"""Label volumes as training labels: pairing, planes per slice, renumbering, unlabelled slices."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest

import slicer_files
from conftest import small_phantom
from sliceseg.cli import main
from sliceseg.dataset import volume_report
from sliceseg.dataset.samples import check_dataset, load_samples, load_usable_samples
from sliceseg.dataset.source import DataSource
from sliceseg.dataset.volume_labels import load_volume_labels, series_labels
from sliceseg.dataset.volume_pairing import find_label_volumes, pair_volumes
from sliceseg.errors import ConfigError, LabelError, PairingError
from sliceseg.io.dicom_files import find_dicom_files
from sliceseg.io.dicom_folder import read_series
from sliceseg.io.label_volume import LabelVolume
from sliceseg.io.volumes import read_label_volume
from sliceseg.measure.areas import measure_areas
from sliceseg.training.config import TrainConfig
from test_export_geometry import write_series


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 subjects × 4 slices, 64×64, per-slice labels and labels.txt."""
    return small_phantom(
        tmp_path_factory, "volume_labels", train_subjects=3, seed=3, matrix=(64, 64)
    )


def names_of(phantom: Path) -> list[str]:
    return (phantom / "labels.txt").read_text().split("\n")[:-1]


def dataset_with_volumes(phantom: Path, tmp_path: Path) -> Path:
    """sub01 as labels/sub01.seg.nrrd, sub02 per-slice files, sub03 as labels/sub03/Seg..."""
    data = tmp_path / "data"
    shutil.copytree(phantom / "train" / "dicoms", data / "dicoms")
    shutil.copytree(phantom / "train" / "labels" / "sub02", data / "labels" / "sub02")
    names = names_of(phantom)
    for subject, target in (("sub01", "sub01.seg.nrrd"), ("sub03", "sub03/Segmentation.seg.nrrd")):
        voxels, affine, _ = slicer_files.phantom_volume(
            data / "dicoms" / subject, phantom / "train" / "labels" / subject
        )
        segments = slicer_files.named_segments(names)
        slicer_files.write_slicer_seg(data / "labels" / target, voxels, segments, ijk_to_lps=affine)
    return data


class TestPairing:
    def test_rules_folder_parent_folder_file_and_unmatched(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        (data / "labels" / "sub09.nii.gz").write_bytes(b"")  # no such series
        dicoms, _ = find_dicom_files(data / "dicoms")
        volumes = find_label_volumes(data / "labels")
        assert [v.relative_to(data / "labels").as_posix() for v in volumes] == [
            "sub01.seg.nrrd",
            "sub03/Segmentation.seg.nrrd",
            "sub09.nii.gz",
        ]
        pairing = pair_volumes(volumes, data / "labels", data / "dicoms", dicoms)
        assert [(p.key, p.rule, len(p.image_paths)) for p in pairing.pairs] == [
            ("sub01", "folder", 4),
            ("sub03", "parent folder", 4),
        ]
        assert [p.name for p in pairing.unmatched] == ["sub09.nii.gz"]

    def test_a_volume_per_file(self, phantom, tmp_path):
        data = tmp_path / "d"
        shutil.copytree(phantom / "train" / "dicoms" / "sub01", data / "dicoms" / "sub01")
        target = data / "labels" / "sub01" / "sub01_s02.nii.gz"
        target.parent.mkdir(parents=True)
        target.write_bytes(b"")
        dicoms, _ = find_dicom_files(data / "dicoms")
        pairing = pair_volumes([target], data / "labels", data / "dicoms", dicoms)
        assert [(p.key, p.rule, p.image_paths[0].name) for p in pairing.pairs] == [
            ("sub01/sub01_s02", "file", "sub01_s02.dcm")
        ]


class TestLoadVolumeLabels:
    def test_volumes_give_the_per_slice_labels_and_names(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(
            data / "labels", data / "dicoms", dicoms, roi_names=names_of(phantom)
        )
        assert found.names_by_value == dict(enumerate(names_of(phantom), start=1))
        assert sorted(label.key for label in found.labels) == [
            f"{s}/{s}_s{j:02d}" for s in ("sub01", "sub03") for j in range(4)
        ]
        for label in found.labels:
            per_slice = next((phantom / "train" / "labels").glob(f"{label.key}.*"))
            np.testing.assert_array_equal(label.values, slicer_files.read_label(per_slice))
        assert {p.parent.name for p in found.labelled_images} == {"sub01", "sub03"}
        assert found.segments.problems == [] and found.unlabelled == []

    def test_areas_equal_those_of_the_per_slice_labels_and_the_truth(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(data / "labels", data / "dicoms", dicoms)
        names = names_of(phantom)
        images = [label.image for label in found.labels]
        from_volumes = measure_areas([label.values for label in found.labels], images, names)
        per_slice = [
            slicer_files.read_label(next((phantom / "train" / "labels").glob(f"{label.key}.*")))
            for label in found.labels
        ]
        from_files = measure_areas(per_slice, images, names)
        np.testing.assert_array_equal(from_volumes.per_slice.values, from_files.per_slice.values)
        with open(phantom / "truth.csv") as handle:
            truth = {
                (r["key"], r["roi_name"]): float(r["area_mm2"]) for r in csv.DictReader(handle)
            }
        measured = from_volumes.per_slice
        for row, label in enumerate(found.labels):
            for name in names:
                true = truth[(label.key, name)]
                assert measured[name].iloc[row] == pytest.approx(true, rel=0.2, abs=40.0)

    def test_unlabelled_slices_skip_or_background(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        voxels = volume.values.copy()
        voxels[:, :, 1] = 0  # plane 1 (the second slice from the top) left unlabelled
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=volume.ijk_to_lps)
        dicoms, _ = find_dicom_files(data / "dicoms")
        skip = load_volume_labels(data / "labels", data / "dicoms", dicoms)
        background = load_volume_labels(
            data / "labels", data / "dicoms", dicoms, unlabelled="background"
        )
        assert skip.unlabelled == [("sub01/sub01_s01", path)]
        assert len(skip.labels) == 7 and len(background.labels) == 8
        kept = next(label for label in background.labels if label.key == "sub01/sub01_s01")
        assert not kept.values.any()
        with pytest.raises(ConfigError, match=r"unlabelled_slices='none': expected one of skip"):
            load_volume_labels(data / "labels", data / "dicoms", dicoms, unlabelled="none")

    def test_a_segmentation_cropped_as_slicer_5_saves_it_labels_the_right_files(
        self, phantom, tmp_path
    ):
        # Slicer 5 crops to the segments' bounding box, moves 'space origin' to its first
        # voxel and keeps the crop's start in Segmentation_ReferenceImageExtentOffset.
        data = dataset_with_volumes(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        voxels = volume.values.copy()
        voxels[:, :, [0, 3]] = 0  # only the slices on planes 1 and 2 (s01, s02) labelled
        low = np.argwhere(voxels).min(axis=0)
        high = np.argwhere(voxels).max(axis=0) + 1
        assert low.tolist() != [0, 0, 0] and low[2] == 1
        cropped = voxels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
        moved = volume.ijk_to_lps.copy()
        moved[:3, 3] += moved[:3, :3] @ low
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_slicer_seg(
            path, cropped, segments, ijk_to_lps=moved, extent_offset=tuple(low.tolist())
        )
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(
            data / "labels", data / "dicoms", dicoms, unlabelled="background"
        )
        names = names_of(phantom)
        ours = [label for label in found.labels if label.key.startswith("sub01")]
        areas = measure_areas([s.values for s in ours], [s.image for s in ours], names).per_slice
        per_slice = [
            slicer_files.read_label(next((phantom / "train" / "labels").glob(f"{s.key}.*")))
            for s in ours
        ]
        truth = measure_areas(per_slice, [s.image for s in ours], names).per_slice
        for row, label in enumerate(ours):
            for name in names:  # s00 and s03, outside the crop: background, 0 mm²
                expected = 0.0 if label.key[-3:] in ("s00", "s03") else truth[name].iloc[row]
                assert areas[name].iloc[row] == pytest.approx(expected), (label.key, name)
        assert sorted(key for key, _ in found.unlabelled if key.startswith("sub01")) == [
            "sub01/sub01_s00",
            "sub01/sub01_s03",
        ]

    def test_a_missing_dicom_slice_is_fine(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        (data / "dicoms" / "sub01" / "sub01_s02.dcm").unlink()
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(data / "labels", data / "dicoms", dicoms)
        keys = [label.key for label in found.labels if label.key.startswith("sub01")]
        assert keys == ["sub01/sub01_s00", "sub01/sub01_s01", "sub01/sub01_s03"]
        for label in found.labels:
            per_slice = next((phantom / "train" / "labels").glob(f"{label.key}.*"))
            np.testing.assert_array_equal(label.values, slicer_files.read_label(per_slice))

    def test_labels_on_a_plane_without_its_dicom_are_named_not_dropped_silently(
        self, phantom, tmp_path
    ):
        # The per-slice label of a missing DICOM is a warning; the volume's was not (its area
        # vanished from `measure`'s table without a word).
        data = dataset_with_volumes(phantom, tmp_path)
        (data / "dicoms" / "sub01" / "sub01_s02.dcm").unlink()
        _, report = load_samples(data)
        (problem,) = [p for p in report.problems if p.kind == "untaken_planes"]
        # phantom_volume puts the top slice (s00, highest z) at k = 0: s02 is k = 2
        assert problem.message.startswith(
            "sub01.seg.nrrd: 1 labelled plane(s) (k = 2) lie on no DICOM slice of the series; "
            "their labels are not used; add the missing DICOM file(s)"
        )
        assert problem.paths == (data / "labels" / "sub01.seg.nrrd",)
        assert report.is_trainable and report.num_samples == 11

    def test_a_volume_finer_only_along_the_normal_is_named_with_its_fix(self, phantom, tmp_path):
        """Drawn on a thin reconstruction (6 planes per slice): the planes between the slices
        were blamed on missing DICOM files, and the fix given was to add them."""
        data = volume_dataset(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        fine = np.repeat(volume.values, 6, axis=2)[:, :, :19]  # slice k on plane 6 k
        affine = volume.ijk_to_lps.copy()
        affine[:3, 2] /= 6
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_slicer_seg(path, fine, segments, ijk_to_lps=affine)
        samples, report = load_samples(data)
        step = volume.spacing_mm[2]
        (problem,) = [p for p in report.problems if p.kind == "untaken_planes"]
        assert problem.severity == "warning" and problem.paths == (path,)
        assert problem.message == (
            f"sub01.seg.nrrd: its planes lie {step / 6:.3g} mm apart along the slice normal, the "
            f"series' slices {step:.3g} mm (6 planes per slice: drawn on a thinner "
            "reconstruction); only the planes on the slices are used, the labels of 15 planes "
            "between them are not; give the segmentation this series as its reference geometry "
            "(Segment Editor: Specify geometry, oversampling 1) and save it again"
        )
        reference, _ = load_samples(phantom / "train")
        by_key = {s.key: s.label for s in reference}
        assert len(samples) == 12
        for sample in samples:
            np.testing.assert_array_equal(sample.label, by_key[sample.key])

    def test_many_untaken_planes_are_named_eight_and_counted(self):
        """It ended the list with ", ...", where every other list says "and 2 more" (`few_of`)."""
        found = SimpleNamespace(
            untaken={Path("p01.seg.nrrd"): [(2, k) for k in range(10)]}, finer_planes={}
        )
        (problem,) = volume_report._untaken_problems(found)
        planes = ", ".join(f"k = {k}" for k in range(8))
        assert problem.message.startswith(
            f"p01.seg.nrrd: 10 labelled plane(s) ({planes} and 2 more) lie on no DICOM slice"
        )

    def test_unknown_segment_names_name_the_file(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        dicoms, _ = find_dicom_files(data / "dicoms")
        with pytest.raises(LabelError, match=r"sub01\.seg\.nrrd: segment name\(s\) \['vertebral"):
            load_volume_labels(
                data / "labels", data / "dicoms", dicoms, roi_names=["liver"], names_source="x.txt"
            )

    def test_a_volume_of_another_series_is_an_error(self, phantom, tmp_path):
        data = dataset_with_volumes(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        shifted = volume.ijk_to_lps.copy()
        shifted[2, 3] += 2.0  # 2 mm along z: between the planes of the series
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_slicer_seg(path, volume.values, segments, ijk_to_lps=shifted)
        dicoms, _ = find_dicom_files(data / "dicoms")
        with pytest.raises(LabelError, match=r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: .* 2 mm "):
            load_volume_labels(data / "labels", data / "dicoms", dicoms)

    def test_a_dicom_seg_pairs_by_the_series_it_references(self, phantom, tmp_path):
        from test_volumes import _dicom_seg

        seg, masks, _uid = _dicom_seg(tmp_path / "made")
        data = tmp_path / "data"
        shutil.copytree(tmp_path / "made" / "ph" / "train" / "dicoms", data / "dicoms")
        (data / "labels").mkdir()
        shutil.copy(seg, data / "labels" / "anything.dcm")
        dicoms, _ = find_dicom_files(data / "dicoms")
        found = load_volume_labels(data / "labels", data / "dicoms", dicoms)
        assert [p.rule for p in found.pairing.pairs] == ["referenced series"]
        assert found.names_by_value == {1: "left psoas", 2: "right psoas"}
        by_position = sorted(found.labels, key=lambda s: -s.image.image_position_mm[2])
        for label, mask in zip(by_position, masks, strict=True):
            np.testing.assert_array_equal(label.values, mask)


class TestSeriesLabels:
    def test_the_series_the_volume_fits_is_chosen_among_several(self, phantom):
        slices = read_series(phantom / "train" / "dicoms")  # three series in one list
        voxels, affine, _ = slicer_files.phantom_volume(
            phantom / "train" / "dicoms" / "sub02", phantom / "train" / "labels" / "sub02"
        )
        volume = LabelVolume(voxels, affine, (), Path("sub02.nii.gz"), "nifti")
        result = series_labels(volume, slices)
        assert {image.source.parent.name for image, _ in result.labelled} == {"sub02"}
        assert len(result.labelled) == 4


def tilted_series(folder: Path, *, drift_mm: float, step_mm: float = 5.0) -> list:
    """Four axial slices (0.7 mm pixels) stacked as a CT gantry tilted about x stacks them:
    each ``step_mm`` up along the normal, ``drift_mm`` along +y (posterior)."""
    heights = [0.0, step_mm, 2 * step_mm, 3 * step_mm]
    write_series(folder, heights_mm=heights, spacing_mm=(0.7, 0.7), tilt_shift_mm=drift_mm)
    return sorted(read_series(folder), key=lambda image: image.image_position_mm[2])


def marks(image) -> np.ndarray:
    """A different mark on each slice: rows 10..12, columns 20 + 2n, value 1."""
    label = np.zeros(image.shape, np.uint8)
    n = round((image.image_position_mm[2] - 20.0) / 5.0)
    label[10:13, 20 + 2 * n] = 1
    return label


def nifti_over(slices: list, path: Path, *, k_step_lps: tuple[float, float, float]) -> Path:
    """The slices' marks as a NIfTI (nibabel, RAS), cropped in-plane to rows 5..19 and columns
    15..34 as 3D Slicer saves a segmentation's extent, its planes stacked along ``k_step_lps``."""
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = np.column_stack([[0.7, 0, 0], [0, 0.7, 0], k_step_lps])
    ijk_to_lps[:3, 3] = np.add(slices[0].image_position_mm, [15 * 0.7, 5 * 0.7, 0.0])
    voxels = np.stack([marks(image)[5:20, 15:35].T for image in slices], axis=-1)
    nib.save(nib.Nifti1Image(voxels, np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_lps), path)
    return path


class TestGantryTilt:
    def test_a_volume_stacked_as_the_tilted_slices_lands_on_their_pixels(self, tmp_path):
        slices = tilted_series(tmp_path / "p01", drift_mm=1.34)  # a 15° tilt
        path = nifti_over(slices, tmp_path / "p01.nii.gz", k_step_lps=(0.0, 1.34, 5.0))
        result = series_labels(read_label_volume(path), slices)
        assert len(result.labelled) == 4
        for image, values in result.labelled:
            np.testing.assert_array_equal(values, marks(image))

    def test_planes_along_the_normal_are_refused_naming_the_tilt(self, tmp_path):
        """Each slice 0.7 mm (one pixel) further posterior: a volume of planes along the normal
        (3D Slicer's loading of a tilted CT) put slice n's labels n pixels off, without a word."""
        slices = tilted_series(tmp_path / "p01", drift_mm=0.7)
        path = nifti_over(slices, tmp_path / "p01.nii.gz", k_step_lps=(0.0, 0.0, 5.0))
        with pytest.raises(LabelError) as caught:
            series_labels(read_label_volume(path), slices)
        assert str(caught.value) == (
            f"{path}: the slices of series {slices[0].series_uid} are stacked 7.97° from their "
            "normal (a gantry tilt: 2.1 mm sideways over 15 mm), the volume's planes 0.00°, so "
            "its voxels lie up to 2.1 mm off the DICOM pixels; expected a volume stacked as the "
            "slices are (3D Slicer's loading of a tilted CT and dcm2niix's tilt correction "
            "stack planes along the normal); use per-slice label files for this series."
        )


def test_check_counts_a_nifti_whose_sform_and_qform_disagree_among_its_warnings(tmp_path):
    """The warning was printed above the report, whose verdict said "0 warning(s)"."""
    slices = tilted_series(tmp_path / "data" / "dicoms" / "p01", drift_mm=0.0)
    (tmp_path / "data" / "labels").mkdir()
    path = nifti_over(slices, tmp_path / "data" / "labels" / "p01.nii.gz", k_step_lps=(0, 0, 5))
    image = nib.load(path)
    qform = image.affine.copy()
    qform[2, 3] += 5.0  # one plane higher
    image.header.set_qform(qform, code=1)
    nib.save(image, path)
    (tmp_path / "data" / "labels.txt").write_text("mark\n")
    report = check_dataset(tmp_path / "data")
    (warning,) = [p for p in report.warnings if "sform and qform disagree" in p.message]
    assert warning.message.startswith(f"{path}: NIfTI sform and qform disagree (by up to 5 mm)")
    assert report.num_samples == 4


def volume_dataset(phantom: Path, tmp_path: Path, *, names_file: bool = False) -> Path:
    """Every subject as labels/<subject>.seg.nrrd with the phantom's ROI names; no labels.txt."""
    data = tmp_path / "vols"
    shutil.copytree(phantom / "train" / "dicoms", data / "dicoms")
    for subject in ("sub01", "sub02", "sub03"):
        voxels, affine, _ = slicer_files.phantom_volume(
            data / "dicoms" / subject, phantom / "train" / "labels" / subject
        )
        segments = slicer_files.named_segments(names_of(phantom))
        target = data / "labels" / f"{subject}.seg.nrrd"
        slicer_files.write_slicer_seg(target, voxels, segments, ijk_to_lps=affine)
    if names_file:
        shutil.copy(phantom / "labels.txt", data / "labels.txt")
    return data


class TestCheckWithVolumes:
    def test_same_rois_areas_and_names_as_the_per_slice_labels(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path)
        samples, report = load_samples(data)
        reference_samples, reference = load_samples(phantom / "train")
        assert report.is_trainable and report.problems == []
        assert report.roi_names == reference.roi_names == tuple(names_of(phantom))
        assert report.num_pairs == reference.num_pairs == 12
        assert report.roi_stats == reference.roi_stats
        assert report.scheme == reference.scheme
        by_key = {s.key: s.label for s in reference_samples}
        assert sorted(s.key for s in samples) == sorted(by_key)
        for sample in samples:
            np.testing.assert_array_equal(sample.label, by_key[sample.key])

    def test_renumbered_segments_are_fixed_and_reported(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path)
        path = data / "labels" / "sub02.seg.nrrd"
        volume = read_label_volume(path)
        names = names_of(phantom)
        swapped = relabel_values(volume.values, {2: 3, 3: 2})
        values = [1, 3, 2, 4, 5, 6]  # right and left psoas saved the other way round
        segments = slicer_files.named_segments(names, values)
        slicer_files.write_slicer_seg(path, swapped, segments, ijk_to_lps=volume.ijk_to_lps)
        samples, report = load_samples(data)
        reference_samples, _ = load_samples(phantom / "train")
        by_key = {s.key: s.label for s in reference_samples}
        for sample in samples:
            np.testing.assert_array_equal(sample.label, by_key[sample.key])
        (line,) = [p.message for p in report.problems if p.kind == "renumbered"]
        assert line == (
            f"sub02.seg.nrrd: segments renumbered to match the dataset: '{names[1]}' 3 → 2, "
            f"'{names[2]}' 2 → 3"
        )

    def test_unlabelled_slices_are_reported_and_the_flag_keeps_them(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        voxels = volume.values.copy()
        voxels[:, :, :2] = 0
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=volume.ijk_to_lps)
        skip, report = load_samples(data)
        (line,) = [p.message for p in report.problems if p.kind == "unlabelled_slices"]
        assert line.startswith("sub01.seg.nrrd: 2 slice(s) the volume leaves empty, left out")
        source = DataSource.from_dirs(data, unlabelled_slices="background")
        background, _ = load_samples(source)
        assert (len(skip), len(background)) == (10, 12)

    def test_slices_labelled_twice_are_one_error_per_volume(self, phantom, tmp_path):
        """The per-slice maps kept beside their series' .seg.nrrd were one error line per
        slice: a 40-slice series, 40 lines saying the same."""
        data = volume_dataset(phantom, tmp_path)
        shutil.copytree(phantom / "train" / "labels" / "sub01", data / "labels" / "sub01")
        report = check_dataset(data)
        (duplicate,) = [p for p in report.errors if p.kind == "duplicate"]
        assert not report.is_trainable
        assert duplicate.message == (
            "4 slice(s) labelled twice, by their label maps and by the volume sub01.seg.nrrd "
            "(e.g. sub01/sub01_s00: sub01_s00.png); expected one label per slice; remove the "
            "label maps or the volume."
        )
        assert [p.name for p in duplicate.paths] == ["sub01.seg.nrrd"] + [
            f"sub01_s0{i}.png" for i in range(4)
        ]

    def test_a_detached_seg_nhdr_labels_its_series_and_its_data_file_is_not_skipped(
        self, phantom, tmp_path
    ):
        data = volume_dataset(phantom, tmp_path)
        volume = read_label_volume(data / "labels" / "sub02.seg.nrrd")
        (data / "labels" / "sub02.seg.nrrd").unlink()
        segments = slicer_files.named_segments(names_of(phantom))
        target = data / "labels" / "sub02.seg.nhdr"
        slicer_files.write_slicer_seg(target, volume.values, segments, ijk_to_lps=volume.ijk_to_lps)
        samples, report = load_samples(data)
        reference_samples, _ = load_samples(phantom / "train")
        assert report.is_trainable and report.problems == []
        assert report.pairing.skipped == []  # sub02.seg.raw.gz is the header's, not a stray file
        by_key = {s.key: s.label for s in reference_samples}
        assert sorted(s.key for s in samples) == sorted(by_key)
        for sample in samples:
            np.testing.assert_array_equal(sample.label, by_key[sample.key])

    @pytest.mark.parametrize("geometry", ["painted_then_erased", "never_painted"])
    @pytest.mark.parametrize("unlabelled", ["skip", "background"])
    def test_an_empty_slicer_segmentation_is_named_empty(
        self, phantom, tmp_path, geometry, unlabelled
    ):
        """Slicer saves a segmentation whose segments are all empty as one voxel: on the
        reference grid it was 'N slice(s) the volume leaves empty'; on VTK's default grid a
        refusal blaming the pixel spacing (save on the DICOM series) that stopped the check."""
        data = volume_dataset(phantom, tmp_path)
        path = data / "labels" / "sub01.seg.nrrd"
        grid = read_label_volume(path).ijk_to_lps
        affine = grid if geometry == "painted_then_erased" else np.diag([-1.0, -1.0, 1.0, 1.0])
        segments = slicer_files.named_segments(names_of(phantom))
        slicer_files.write_empty_slicer_seg(path, segments, ijk_to_lps=affine)
        source = DataSource.from_dirs(data, unlabelled_slices=unlabelled)
        samples, report = load_samples(source)
        (problem,) = [p for p in report.problems if p.kind == "empty_volume"]
        action = (
            "left out (--unlabelled-slices background trains on them as background)"
            if unlabelled == "skip"
            else "used as background (--unlabelled-slices background)"
        )
        assert problem.message == (
            "sub01.seg.nrrd: the segmentation is empty (none of its segments holds a voxel; 3D "
            f"Slicer saves it as a single voxel), its 4 slice(s) {action}; paint the segments "
            "and save it again, or remove the file"
        )
        assert problem.severity == "warning" and problem.paths == (path,)
        assert [p.kind for p in report.problems] == ["empty_volume"]
        ours = [s for s in samples if s.key.startswith("sub01")]
        assert len(ours) == (0 if unlabelled == "skip" else 4)
        assert not any(s.label.any() for s in ours) and len(samples) == 8 + len(ours)

    def test_an_empty_segmentation_in_a_folder_of_two_series_labels_neither(
        self, phantom, tmp_path
    ):
        """An empty volume skipped the choice of its series: every series of its DICOM folder
        (a scout beside the axials, two contrasts) became its slices, all background with
        --unlabelled-slices background, and evaluate would have scored them against zeros."""
        data = volume_dataset(phantom, tmp_path)
        for dicom in sorted((data / "dicoms" / "sub02").iterdir()):
            shutil.copy(dicom, data / "dicoms" / "sub01" / f"other_{dicom.name}")
        path = data / "labels" / "sub01.seg.nrrd"
        segments = slicer_files.named_segments(names_of(phantom))
        grid = read_label_volume(path).ijk_to_lps
        slicer_files.write_empty_slicer_seg(path, segments, ijk_to_lps=grid)
        source = DataSource.from_dirs(data, unlabelled_slices="background")
        samples, report = load_usable_samples(source)
        assert not any(s.key.startswith("sub01") for s in samples)
        assert [p.message for p in report.problems if path in p.paths] == [
            f"{path}: the segmentation is empty, and its DICOM folder holds 2 series, so which "
            "one it was drawn on cannot be told; put each series in its own folder (one volume "
            "per series)."
        ]

    def test_mixed_with_per_slice_files(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        (data / "labels" / "sub03.seg.nrrd").unlink()
        shutil.copytree(phantom / "train" / "labels" / "sub03", data / "labels" / "sub03")
        samples, report = load_samples(data)
        assert report.is_trainable and len(samples) == 12
        assert report.roi_names == tuple(names_of(phantom))


def add_nifti_beside(data: Path, subject: str) -> Path:
    """Save the subject's .seg.nrrd labels again as labels/<subject>.nii.gz (nibabel, RAS)."""
    import nibabel as nib

    volume = read_label_volume(data / "labels" / f"{subject}.seg.nrrd")
    ras_from_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    path = data / "labels" / f"{subject}.nii.gz"
    nib.save(nib.Nifti1Image(volume.values, ras_from_lps @ volume.ijk_to_lps), path)
    return path


TWICE = (
    r"2 label volumes for the series 'sub01' \(sub01\.nii\.gz, sub01\.seg\.nrrd\); expected one "
    r"label volume per series; keep one of them"
)


class TestASeriesLabelledByTwoVolumes:
    """A NIfTI beside a .seg.nrrd of one series: neither is used, one line names both."""

    def test_check_says_unfit_naming_the_series_and_both_files(self, phantom, tmp_path, capsys):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        add_nifti_beside(data, "sub01")
        report = check_dataset(data)
        (twice,) = [p for p in report.errors if p.kind == "duplicate"]
        assert re.fullmatch(TWICE + r" \(delete or rename the others\)\.", twice.message)
        assert report.num_pairs == 8 and not report.is_trainable
        assert [p.kind for p in report.problems] == ["duplicate"]  # not "without labels"
        assert main(["check", str(data)]) == 1
        assert re.search(TWICE, capsys.readouterr().out)

    def test_training_refuses_with_the_line(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        add_nifti_beside(data, "sub01")
        with pytest.raises(PairingError, match=TWICE):
            load_samples(data)

    def test_measure_leaves_the_series_out_and_names_both(self, phantom, tmp_path, capsys):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        add_nifti_beside(data, "sub01")
        dicoms, out = str(data / "dicoms"), tmp_path / "out"
        code = main(["measure", str(data / "labels"), "--dicoms", dicoms, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 3, err
        (line,) = [line for line in err.splitlines() if line.startswith("not measured: ")]
        assert re.match("not measured: " + TWICE, line), line
        files = set(pd_column(out / "csa.csv", "file"))
        assert {f.split("/")[0] for f in files if "/" in f} == {"sub02", "sub03"}

    def test_evaluate_leaves_the_series_out_and_names_both(self, phantom, tmp_path, capsys):
        from test_evaluate import model_with_values

        data = volume_dataset(phantom, tmp_path, names_file=True)
        add_nifti_beside(data, "sub01")
        model = model_with_values(tmp_path / "m.pt", range(7), names_of(phantom))
        code = main(["evaluate", str(model), str(data), "--out", str(tmp_path / "ev")])
        err = capsys.readouterr().err
        assert code == 3, err
        (line,) = [line for line in err.splitlines() if line.startswith("not evaluated: ")]
        assert re.match("not evaluated: " + TWICE, line), line
        keys = set(pd_column(tmp_path / "ev" / "evaluation_per_slice.csv", "key"))
        assert {key.split("/")[0] for key in keys} == {"sub02", "sub03"}


def relabel_values(values: np.ndarray, remap: dict[int, int]) -> np.ndarray:
    out = values.copy()
    for old, new in remap.items():
        out[values == old] = new
    return out


class TestCheckCommandOnBadVolumes:
    @pytest.mark.parametrize(
        ("damage", "expected"),
        [
            ("spacing", r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: pixel spacing along the image"),
            ("orientation", r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: orientation differs by 5"),
            ("between", r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: the slice plane falls 1\.5 mm"),
            ("names", r"sub01\.seg\.nrrd: segment name\(s\) \['liver'\] not in .*labels\.txt"),
            ("truncated", r"sub01\.seg\.nrrd: cannot read the NRRD file .* truncated"),
            ("wider", r"sub01\.seg\.nrrd: in-plane size 64×70 voxels does not fit .* 64×64"),
            (
                "oversampled",
                r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: .* the volume is 2× finer, as 3D "
                r"Slicer saves a segmentation with oversampling factor 2; set its geometry to this "
                r"series with oversampling factor 1 \(Segment Editor: Specify geometry\) and save "
                r"it again",
            ),
        ],
    )
    def test_one_line_and_exit_2(self, phantom, tmp_path, capsys, damage, expected):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        path = data / "labels" / "sub01.seg.nrrd"
        volume = read_label_volume(path)
        voxels, affine = volume.values, volume.ijk_to_lps.copy()
        names = names_of(phantom)
        if damage == "spacing":
            affine[:3, :3] *= np.diag([2.0, 2.0, 1.0])
        elif damage == "orientation":
            angle = np.radians(5.0)
            turn = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0]])
            affine[:2, :3] = turn @ affine[:3, :3]
        elif damage == "between":
            affine[2, 3] += 1.5
        elif damage == "names":
            names = [*names[:5], "liver"]
        elif damage == "wider":
            voxels = np.concatenate([voxels, np.zeros((6, *voxels.shape[1:]), voxels.dtype)])
        elif damage == "oversampled":  # Slicer's factor 2: half the voxel, corners kept
            voxels = voxels.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
            affine[:3, 3] -= affine[:3, :3] @ np.full(3, 0.25)
            affine[:3, :3] /= 2.0
        segments = slicer_files.named_segments(names)
        slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=affine)
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[:-200])
        code = main(["check", str(data)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.count("\n") == 1 and err.startswith("error: ")
        assert re.search(expected, err), err


@pytest.mark.slow
def test_a_slicer_segmentation_trains_a_model_with_its_names(phantom, tmp_path):
    from sliceseg.models.bundle import load_bundle
    from sliceseg.training.loop import train

    data = volume_dataset(phantom, tmp_path)
    names = ["spine", "psoas R", "psoas L", "erector R", "erector L", "fat"]
    for subject in ("sub01", "sub02", "sub03"):
        path = data / "labels" / f"{subject}.seg.nrrd"
        volume = read_label_volume(path)
        segments = slicer_files.named_segments(names)
        slicer_files.write_slicer_seg(path, volume.values, segments, ijk_to_lps=volume.ijk_to_lps)
    config = TrainConfig(
        data_dir=str(data), out_dir=str(tmp_path / "model"), epochs=1, input_shape=64,
        batch_size=4, print_checkpoint=1, save_checkpoint=1,
    )  # fmt: skip
    result = train(config, log=lambda _line: None)
    assert list(load_bundle(result.best_model).roi_names) == names


def test_measure_gives_the_same_table_from_volumes(phantom, tmp_path):
    import pandas as pd

    data = volume_dataset(phantom, tmp_path, names_file=True)
    dicoms = str(data / "dicoms")
    out_volumes, out_files = tmp_path / "from_volumes", tmp_path / "from_files"
    assert (
        main(["measure", str(data / "labels"), "--dicoms", dicoms, "--out", str(out_volumes)]) == 0
    )
    labels = str(phantom / "train" / "labels")
    assert main(["measure", labels, "--dicoms", dicoms, "--out", str(out_files)]) == 0
    from_volumes = pd.read_csv(out_volumes / "csa.csv")
    from_files = pd.read_csv(out_files / "csa.csv")
    pd.testing.assert_frame_equal(from_volumes, from_files)
    assert len(from_volumes) == 12 + 3 * 3 + 3  # slices, mean / std / n per series, overall


def test_the_setting_is_checked_where_it_is_given(phantom, tmp_path, capsys):
    with pytest.raises(
        ConfigError,
        match=r"--unlabelled-slices \(unlabelled_slices\) must be one of skip, background",
    ):
        TrainConfig(data_dir="x", unlabelled_slices="all")
    with pytest.raises(ConfigError, match=r"unlabelled_slices='all': expected one of skip"):
        DataSource.from_dirs(phantom / "train", unlabelled_slices="all")
    data = volume_dataset(phantom, tmp_path)
    assert main(["check", str(data), "--unlabelled-slices", "background"]) == 0
    assert "Verdict: FIT for training" in capsys.readouterr().out


# Four series labelled in 3D Slicer with the phantom's six segment names in shuffled values:
# SHUFFLED[subject][i] is the value that file gives the phantom's ROI i + 1. Each name's usual
# value (most common over the files, a tie: sub01's) is worked out by hand:
#   vertebral body 1 1 2 3 -> 1   right psoas 2 5 4 2 -> 2   left psoas   3 2 3 5 -> 3
#   right erector  4 3 6 4 -> 4   left erector 5 6 5 6 -> 5 (tie)   fat 6 4 1 1 -> 1
# Vertebral body and fat share 1; vertebral body appears first (sub01's value 1, fat's is 6),
# so the ROI values are 1 = vertebral body, 2 = fat, 3 = right psoas, ..., 6 = left erector:
# phantom value v becomes SHUFFLED_ROI[v]. (Before, fat got value 7: "reach ROI 7".)
SHUFFLED = {
    "sub01": [1, 2, 3, 4, 5, 6],
    "sub02": [1, 5, 2, 3, 6, 4],
    "sub03": [2, 4, 3, 6, 5, 1],
    "sub04": [3, 2, 5, 4, 6, 1],
}
SHUFFLED_ROI = np.array([0, 1, 3, 4, 5, 6, 2], np.uint8)
SHUFFLED_ORDER = [0, 5, 1, 2, 3, 4]  # phantom ROI indices in the documented order


@pytest.fixture(scope="module")
def phantom4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 subjects × 3 slices, 64×64, per-slice labels and labels.txt."""
    return small_phantom(
        tmp_path_factory, "shuffled", train_subjects=4, seed=5, matrix=(64, 64),
        slices_per_subject=3,
    )  # fmt: skip


def shuffled_dataset(phantom: Path, tmp_path: Path, *, dicom_seg: str = "") -> Path:
    """Every subject as labels/<subject>.seg.nrrd with its SHUFFLED values; no labels.txt.

    ``dicom_seg`` names one subject saved as a DICOM-SEG (segment numbers shuffled alike).
    """
    data = tmp_path / "shuffled"
    shutil.copytree(phantom / "train" / "dicoms", data / "dicoms")
    names = names_of(phantom)
    for subject, values in SHUFFLED.items():
        table = np.array([0, *values], np.uint8)
        if subject == dicom_seg:
            numbered = dict(zip(values, names, strict=True))
            write_dicom_seg(data, phantom / "train" / "labels" / subject, subject, table, numbered)
            continue
        voxels, affine, _ = slicer_files.phantom_volume(
            data / "dicoms" / subject, phantom / "train" / "labels" / subject
        )
        segments = slicer_files.named_segments(names, values)
        target = data / "labels" / f"{subject}.seg.nrrd"
        slicer_files.write_slicer_seg(target, table[voxels], segments, ijk_to_lps=affine)
    return data


def write_dicom_seg(
    data: Path, label_dir: Path, subject: str, table: np.ndarray, names: dict[int, str]
) -> None:
    """labels/<subject>.seg.dcm made with highdicom: segment number n is named ``names[n]``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    files = sorted((data / "dicoms" / subject).glob("*.dcm"))
    sources = [pydicom.dcmread(f) for f in files]
    masks = np.stack([table[slicer_files.read_label(label_dir / f"{f.stem}.png")] for f in files])
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=names[number],
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Muscle,
            algorithm_type="MANUAL",
        )
        for number in sorted(names)
    ]
    seg = hd.seg.Segmentation(
        sources, masks, "BINARY", descriptions, hd.UID(), 2, hd.UID(), 1,
        "test", "test", "1", "1",
    )  # fmt: skip
    seg.save_as(data / "labels" / f"{subject}.seg.dcm")


class TestShuffledSegmentValues:
    @pytest.mark.parametrize("dicom_seg", ["", "sub03"])
    def test_check_gives_values_1_to_6_in_the_documented_order(self, phantom4, tmp_path, dicom_seg):
        data = shuffled_dataset(phantom4, tmp_path, dicom_seg=dicom_seg)
        samples, report = load_samples(data)
        reference, _ = load_samples(phantom4 / "train")
        names = names_of(phantom4)
        assert report.is_trainable and report.errors == []
        assert report.roi_names == tuple(names[i] for i in SHUFFLED_ORDER)
        assert report.scheme is not None and report.scheme.stored_values == tuple(range(7))
        by_key = {s.key: s.label for s in reference}
        assert sorted(s.key for s in samples) == sorted(by_key) and len(samples) == 12
        for sample in samples:
            np.testing.assert_array_equal(sample.label, SHUFFLED_ROI[by_key[sample.key]])
        renumbered = [p.paths[0].name for p in report.problems if p.kind == "renumbered"]
        seg3 = "sub03.seg.dcm" if dicom_seg else "sub03.seg.nrrd"
        assert renumbered == ["sub01.seg.nrrd", "sub02.seg.nrrd", seg3, "sub04.seg.nrrd"]

    def test_the_check_report_states_the_values_and_the_order(self, phantom4, tmp_path, capsys):
        data = shuffled_dataset(phantom4, tmp_path)
        assert main(["check", str(data)]) == 0
        out = capsys.readouterr().out
        names = names_of(phantom4)
        listed = ", ".join(f"{k} = {names[i]}" for k, i in enumerate(SHUFFLED_ORDER, start=1))
        assert "Verdict: FIT for training" in out
        assert (
            f"\nROI values from segment names: {listed}; order: each name's most common value "
            "over the files (a tie: the first file's, files in path order), then first "
            "appearance; add labels.txt (one name per line) to choose the order\n"
        ) in out

    def test_labels_txt_order_wins(self, phantom4, tmp_path):
        data = shuffled_dataset(phantom4, tmp_path)
        shutil.copy(phantom4 / "labels.txt", data / "labels.txt")
        samples, report = load_samples(data)
        reference, _ = load_samples(phantom4 / "train")
        names = names_of(phantom4)
        assert report.is_trainable and report.roi_names == tuple(names)
        by_key = {s.key: s.label for s in reference}
        for sample in samples:
            np.testing.assert_array_equal(sample.label, by_key[sample.key])
        listed = ", ".join(f"{k} = {name}" for k, name in enumerate(names, start=1))
        path = data / "labels.txt"
        assert report.roi_values_line == (
            f"ROI values from {path}: {listed}; order: as listed in {path}"
        )
        assert report.roi_values_line in report.to_text().split("\n")

    def test_a_segment_missing_from_some_files_is_still_an_roi(self, phantom4, tmp_path):
        data = shuffled_dataset(phantom4, tmp_path)
        names = names_of(phantom4)
        for subject in ("sub01", "sub02"):  # their fat (phantom ROI 6) was never segmented
            path = data / "labels" / f"{subject}.seg.nrrd"
            volume = read_label_volume(path)
            fat = SHUFFLED[subject][5]
            voxels = np.where(volume.values == fat, 0, volume.values).astype(np.uint8)
            kept = [(n, v) for n, v in zip(names, SHUFFLED[subject], strict=True) if v != fat]
            segments = slicer_files.named_segments([n for n, _ in kept], [v for _, v in kept])
            slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=volume.ijk_to_lps)
        # fat is now 1 in sub03 and sub04 only: usual value 1, first seen after vertebral body;
        # the others as before, so the order is unchanged and K is still 6.
        report = check_dataset(data)
        assert report.is_trainable
        assert report.roi_names == tuple(names[i] for i in SHUFFLED_ORDER)
        (problem,) = [p for p in report.problems if p.kind == "missing_segment"]
        assert problem.message.startswith(
            f"segment '{names[5]}' is in 2 of 4 segmentation files; in the 2 without it the ROI "
            "counts as background"
        )
        assert [p.name for p in problem.paths] == ["sub01.seg.nrrd", "sub02.seg.nrrd"]

    def test_unnamed_label_files_beside_renumbered_segments_are_flagged(self, phantom4, tmp_path):
        data = shuffled_dataset(phantom4, tmp_path)
        (data / "labels" / "sub04.seg.nrrd").unlink()
        shutil.copytree(phantom4 / "train" / "labels" / "sub04", data / "labels" / "sub04")
        report = check_dataset(data)
        (problem,) = [p for p in report.problems if p.kind == "unnamed_labels"]
        assert problem.message.startswith(
            "3 label file(s) without segment names are read with the ROI values of the segment "
            "names (renumbered)"
        )


@pytest.mark.slow
def test_shuffled_segments_train_and_predict_with_names_in_order(phantom4, tmp_path):
    import pandas as pd

    from conftest import tiny_config
    from sliceseg.inference.folder import predict_folder
    from sliceseg.models.bundle import load_bundle
    from sliceseg.training.loop import train

    data = shuffled_dataset(phantom4, tmp_path)
    names = names_of(phantom4)
    expected = [names[i] for i in SHUFFLED_ORDER]
    result = train(tiny_config(data, tmp_path / "model", epochs=1), log=lambda _line: None)
    bundle = load_bundle(result.best_model)
    assert list(bundle.roi_names) == expected
    assert tuple(bundle.metadata.label_values) == tuple(range(7))
    out = tmp_path / "predicted"
    predict_folder(bundle, data / "dicoms" / "sub01", out, report=False, exports=())
    columns = list(pd.read_csv(out / "csa.csv").columns)  # file, then one column per ROI
    assert [c for c in columns if c in names] == expected


class TestCheckCommandOnDamagedVolumeFiles:
    """Through ``sliceseg check``: one line naming the damaged file, exit 2, no traceback."""

    @pytest.mark.parametrize("kind", ["seg.nrrd", "nrrd", "nii.gz"])
    @pytest.mark.parametrize("damage", ["zero", "text", "header", "data"])
    def test_one_line_and_exit_2(self, phantom, tmp_path, capsys, kind, damage):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        good = data / "labels" / "sub01.seg.nrrd"
        whole = good.read_bytes()
        bad = data / "labels" / f"sub01.{kind}"
        good.unlink()
        cut = {"zero": b"", "text": b"not a volume\n" * 9, "header": whole[:40]}
        bad.write_bytes(cut.get(damage, whole[: len(whole) // 2]))
        code = main(["check", str(data)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        assert f"sub01.{kind}: " in err and "Traceback" not in err
        bad.unlink()
        good.write_bytes(whole)  # the good file in its place: the check passes again
        assert main(["check", str(data)]) == 0


def damage_volume(data: Path, damage: str) -> Path:
    """Damage sub01's label volume, or make it unfit for its series; return the file."""
    path = data / "labels" / "sub01.seg.nrrd"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-200])
        return path
    if damage == "text":
        path.unlink()
        path = data / "labels" / "sub01.nii.gz"
        path.write_text("not a volume\n" * 9)
        return path
    volume = read_label_volume(path)
    voxels, affine = volume.values, volume.ijk_to_lps.copy()
    if damage == "wider":
        voxels = np.concatenate([voxels, np.zeros((6, *voxels.shape[1:]), voxels.dtype)])
    elif damage == "between":
        affine[2, 3] += 1.5
    names = names_of(data)
    segments = slicer_files.named_segments([*names[:5], "liver"] if damage == "names" else names)
    slicer_files.write_slicer_seg(path, voxels, segments, ijk_to_lps=affine)
    return path


def good_areas(csv_path: Path) -> dict[str, list[float]]:
    """The rows of csa.csv of sub02 and sub03 slices: file → the row's numbers (the areas)."""
    import pandas as pd

    table = pd.read_csv(csv_path)
    rows = table[table["file"].astype(str).str.match(r"sub0[23]/sub0[23]_s\d\d$")]
    numbers = rows.select_dtypes("number")
    return {str(k): list(v) for k, v in zip(rows["file"], numbers.to_numpy(), strict=True)}


BAD_VOLUME_LINES = {
    "truncated": r"sub01\.seg\.nrrd: cannot read the NRRD file .* truncated",
    "text": r"sub01\.nii\.gz: cannot read the NIfTI file .* save it again",
    "wider": r"sub01\.seg\.nrrd: in-plane size 64×70 voxels does not fit .* 64×64",
    "between": r"sub01\.seg\.nrrd: slice sub01_s00\.dcm: the slice plane falls 1\.5 mm",
    "names": r"sub01\.seg\.nrrd: segment name\(s\) \['liver'\] not in .*labels\.txt",
}


class TestMeasureAndEvaluateLeaveOutBadVolumes:
    """A damaged or unfitting label volume among good ones: named, left out, the rest measured."""

    @pytest.mark.parametrize("damage", list(BAD_VOLUME_LINES))
    def test_measure_names_the_volume_and_measures_the_others(
        self, phantom, tmp_path, capsys, damage
    ):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        bad = damage_volume(data, damage)
        dicoms, out = str(data / "dicoms"), tmp_path / "out"
        code = main(["measure", str(data / "labels"), "--dicoms", dicoms, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 3, err
        assert "Traceback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("not measured: ")]
        assert re.search(BAD_VOLUME_LINES[damage], line), line
        assert bad.name in line
        reference = tmp_path / "reference"
        labels = str(phantom / "train" / "labels")
        assert main(["measure", labels, "--dicoms", dicoms, "--out", str(reference)]) == 0
        measured = good_areas(out / "csa.csv")
        assert len(measured) == 8
        assert measured == good_areas(reference / "csa.csv")
        files = set(pd_column(out / "csa.csv", "file"))
        assert not any(name.startswith("sub01/") for name in files)

    def test_measure_with_every_volume_damaged_names_each_then_refuses(
        self, phantom, tmp_path, capsys
    ):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        for subject in ("sub01", "sub02", "sub03"):
            path = data / "labels" / f"{subject}.seg.nrrd"
            path.write_bytes(path.read_bytes()[:-200])
        dicoms, out = str(data / "dicoms"), str(tmp_path / "out")
        code = main(["measure", str(data / "labels"), "--dicoms", dicoms, "--out", out])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = err.strip().splitlines()  # each volume on its line, then the one refusal
        assert len(lines) == 4 and lines[-1].startswith("error: "), err
        for subject, line in zip(("sub01", "sub02", "sub03"), lines, strict=False):
            assert line.startswith("not measured: ") and f"{subject}.seg.nrrd: cannot read" in line
        assert "nothing to measure" in lines[-1] and "Traceback" not in err

    @pytest.mark.parametrize("damage", ["text", "wider"])
    def test_evaluate_names_the_volume_and_evaluates_the_others(
        self, phantom, tmp_path, capsys, damage
    ):
        from test_evaluate import model_with_values

        data = volume_dataset(phantom, tmp_path, names_file=True)
        bad = damage_volume(data, damage)
        model = model_with_values(tmp_path / "m.pt", range(7), names_of(phantom))
        code = main(["evaluate", str(model), str(data), "--out", str(tmp_path / "ev")])
        err = capsys.readouterr().err
        assert code == 3, err
        assert "Traceback" not in err
        (line,) = [line for line in err.splitlines() if line.startswith("not evaluated: ")]
        assert re.search(BAD_VOLUME_LINES[damage], line) and bad.name in line, line
        keys = set(pd_column(tmp_path / "ev" / "evaluation_per_slice.csv", "key"))
        assert keys == {f"{s}/{s}_s{j:02d}" for s in ("sub02", "sub03") for j in range(4)}
        reference = tmp_path / "reference"
        assert main(["evaluate", str(model), str(phantom / "train"), "--out", str(reference)]) == 0
        manual = manual_areas(tmp_path / "ev" / "evaluation_per_slice.csv")
        expected = manual_areas(reference / "evaluation_per_slice.csv")
        assert manual == {k: v for k, v in expected.items() if k[0] in keys}

    def test_check_and_training_still_refuse_the_data(self, phantom, tmp_path):
        data = volume_dataset(phantom, tmp_path, names_file=True)
        damage_volume(data, "truncated")
        with pytest.raises(LabelError, match=r"sub01\.seg\.nrrd: cannot read the NRRD file"):
            load_samples(data)
        with pytest.raises(LabelError, match=r"sub01\.seg\.nrrd: cannot read the NRRD file"):
            check_dataset(data)


def manual_areas(path: Path) -> dict[tuple[str, str], float]:
    """(slice key, ROI name) → the manual area of an evaluation's per-slice table."""
    import pandas as pd

    table = pd.read_csv(path)
    return {
        (str(k), str(n)): float(a)
        for k, n, a in zip(table["key"], table["roi_name"], table["area_manual_mm2"], strict=True)
    }


def pd_column(csv_path: Path, column: str) -> list[str]:
    import pandas as pd

    return [str(v) for v in pd.read_csv(csv_path)[column].dropna()]
