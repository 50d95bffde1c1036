"""The phantom: files and layout, true areas, DICOM validity, anatomy, determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from sliceseg.cli import main
from sliceseg.errors import ConfigError
from sliceseg.phantom import shapes
from sliceseg.phantom.anatomy import build_layers
from sliceseg.phantom.generate import (
    DEFAULT_MATRIX_SIZES,
    RESCALE_INTERCEPT,
    RESCALE_SLOPE,
    ROI_NAMES,
    TRUTH_COLUMNS,
    generate_phantom,
    make_phantom_arrays,
    render_slice,
    sample_subject,
    slice_params,
)
from sliceseg.phantom.render import pixel_centres_mm

SMALL_SIZES = [(112, 96), (96, 128)]
SPLITS = ("train", "test")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 train + 2 test subjects × 3 slices on small matrices."""
    out = tmp_path_factory.mktemp("small") / "phantom"
    generate_phantom(
        out, train_subjects=3, test_subjects=2, slices_per_subject=3, matrix_sizes=SMALL_SIZES
    )
    return out


@pytest.fixture(scope="module")
def default_grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 subjects × 3 slices on the default matrices (256 × 256 and 224 × 192)."""
    out = tmp_path_factory.mktemp("default") / "phantom"
    generate_phantom(out, train_subjects=1, test_subjects=1, slices_per_subject=3, seed=3)
    return out


def read_truth(folder: Path) -> list[dict[str, str]]:
    with open(folder / "truth.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_label(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) if path.suffix == ".png" else np.load(path)


def slices_of(folder: Path) -> dict[str, dict[str, object]]:
    """key -> {split, spacing, truth {roi: mm²}, dicom, label}."""
    out: dict[str, dict[str, object]] = {}
    for row in read_truth(folder):
        entry = out.setdefault(row["key"], {"split": row["split"], "truth": {}})
        entry["truth"][int(row["roi"])] = float(row["area_mm2"])
        entry["spacing"] = (float(row["row_spacing_mm"]), float(row["col_spacing_mm"]))
        entry["dicom"] = folder / row["file"]
        labels = folder / row["split"] / "labels"
        entry["label"] = next(labels.glob(f"{row['key']}.*"))
    return out


class TestGeneratePhantom:
    def test_layout_and_summary(self, tmp_path):
        kwargs = {"train_subjects": 2, "test_subjects": 1, "slices_per_subject": 2}
        summary = generate_phantom(tmp_path / "p", matrix_sizes=[(96, 96)], **kwargs)
        assert (summary.n_train_slices, summary.n_test_slices) == (4, 2)
        assert summary.roi_names == ROI_NAMES
        assert summary.truth_csv == tmp_path / "p" / "truth.csv"
        for folder in (summary.out_dir, summary.train_dir, summary.test_dir):
            assert (folder / "labels.txt").read_text().splitlines() == list(ROI_NAMES)
        files = summary.train_dir.rglob("*/*/*.*")
        assert sorted(p.relative_to(summary.train_dir).as_posix() for p in files) == [
            f"{kind}/{subject}/{subject}_s{i:02d}.{suffix}"
            for kind, suffixes in (("dicoms", ("dcm", "dcm")), ("labels", ("png", "npy")))
            for subject, suffix in zip(("sub01", "sub02"), suffixes, strict=True)
            for i in (0, 1)
        ]
        assert sorted(p.name for p in summary.test_dir.rglob("*.dcm")) == [
            "sub03_s00.dcm",
            "sub03_s01.dcm",
        ]

    def test_truth_csv_columns_and_rows(self, small):
        with open(small / "truth.csv", newline="", encoding="utf-8") as f:
            assert tuple(next(csv.reader(f))) == TRUTH_COLUMNS
        rows = read_truth(small)
        assert len(rows) == 5 * 3 * 6
        first = rows[0]
        assert first["key"] == "sub01/sub01_s00"
        assert first["file"] == "train/dicoms/sub01/sub01_s00.dcm"
        assert (first["slice_index"], first["instance_number"]) == ("0", "1")
        assert [r["roi_name"] for r in rows[:6]] == list(ROI_NAMES)
        assert all(float(r["area_mm2"]) > 0 for r in rows)

    def test_png_and_npy_labels_hold_uint8_0_to_6(self, small):
        labels = list((small / "train" / "labels").rglob("*.*"))
        assert {p.suffix for p in labels} == {".png", ".npy"}
        for path in labels:
            label = read_label(path)
            assert label.dtype == np.uint8
            assert set(np.unique(label)) == set(range(7))

    def test_test_subjects_never_in_train(self, small):
        def series(split: str) -> set[str]:
            files = (small / split / "dicoms").rglob("*.dcm")
            return {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in files}

        train, test = series("train"), series("test")
        assert (len(train), len(test)) == (3, 2)
        assert not train & test
        names = {split: {p.name for p in (small / split / "dicoms").iterdir()} for split in SPLITS}
        assert names == {"train": {"sub01", "sub02", "sub03"}, "test": {"sub04", "sub05"}}

    def test_refuses_a_non_empty_folder_without_overwrite(self, tmp_path):
        (tmp_path / "notes.txt").write_text("keep me")
        with pytest.raises(ConfigError, match=r"not empty.*--overwrite"):
            generate_phantom(tmp_path, train_subjects=1, test_subjects=0, slices_per_subject=1)

    @pytest.mark.parametrize("in_the_way", ["file", "folder"])
    def test_refusal_names_out_dir_not_a_flag_phantom_has_not(self, in_the_way, tmp_path, capsys):
        """`sliceseg phantom OUT_DIR` takes its folder as an argument: "choose another --out"
        named a flag it has not."""
        out = tmp_path / "taken"
        if in_the_way == "file":
            out.write_text("keep me")
        else:
            out.mkdir()
            (out / "notes.txt").write_text("keep me")
        assert main(["phantom", str(out), "--train-subjects", "1", "--test-subjects", "0"]) == 2
        why = (
            "exists and is not a folder; choose another OUT_DIR (out_dir)."
            if in_the_way == "file"
            else "folder exists and is not empty; choose another OUT_DIR (out_dir) or pass "
            "--overwrite (overwrite=True)."
        )
        assert capsys.readouterr().err == f"error: {out}: {why}\n"

    def test_overwrite_replaces_an_earlier_phantom(self, tmp_path):
        kwargs = {"slices_per_subject": 1, "matrix_sizes": [(64, 64)]}
        generate_phantom(tmp_path, train_subjects=3, test_subjects=1, **kwargs)
        generate_phantom(tmp_path, train_subjects=1, test_subjects=1, overwrite=True, **kwargs)
        assert sorted(p.name for p in (tmp_path / "train" / "dicoms").iterdir()) == ["sub01"]
        assert len(read_truth(tmp_path)) == 2 * 6

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"train_subjects": 0}, r"train_subjects=0 \(--train-subjects\): expected a whole"),
            ({"slices_per_subject": 2.5}, r"slices_per_subject=2.5"),
            ({"matrix_sizes": [(32, 256)]}, r"matrix size \(32, 256\).*from 64 to 2048"),
            ({"matrix_sizes": []}, r"matrix_sizes is empty"),
        ],
    )
    def test_bad_settings_are_explained(self, tmp_path, kwargs, message):
        with pytest.raises(ConfigError, match=message):
            generate_phantom(tmp_path / "p", **kwargs)
        assert not (tmp_path / "p").exists()

    def test_the_command_line_hears_its_own_option_names(self, tmp_path, capsys):
        # `sliceseg phantom --slices 0` said "slices_per_subject=0", a name it has no option for
        from sliceseg.cli import main

        assert main(["phantom", str(tmp_path / "p"), "--slices", "0"]) == 2
        assert "(--slices): expected a whole number >= 1." in capsys.readouterr().err
        assert not (tmp_path / "p").exists()


class TestTrueAreas:
    @pytest.mark.parametrize("phantom", ["small", "default_grid"])
    def test_label_maps_count_within_one_percent_of_truth(self, phantom, request):
        folder = request.getfixturevalue(phantom)
        counted, true = np.zeros(7), np.zeros(7)
        for entry in slices_of(folder).values():
            label = read_label(entry["label"])
            row_mm, col_mm = entry["spacing"]
            counted += np.bincount(label.ravel(), minlength=7) * row_mm * col_mm
            true[1:] += [entry["truth"][roi] for roi in range(1, 7)]
        relative = counted[1:] / true[1:] - 1
        assert np.all(np.abs(relative) < 0.01), dict(zip(ROI_NAMES, relative.round(4), strict=True))

    def test_truth_equals_a_fine_rasterisation_of_the_shapes(self):
        # Independent of the boundary refinement: paint the labels 16× finer everywhere.
        subject = sample_subject(np.random.default_rng(5), matrix_shape=(128, 112), n_slices=3)
        rendered = render_slice(slice_params(subject, 1), np.random.default_rng(1))
        f = subject.frame
        turn_deg = f.rotation_deg + subject.rotation_drift_deg * 0.5
        frame = shapes.Frame(f.offset_x_mm, f.offset_y_mm, turn_deg)
        xs, ys = pixel_centres_mm(subject)
        row_mm, col_mm = subject.spacing_mm
        fine = 16
        offsets = (np.arange(fine) + 0.5) / fine - 0.5
        grid = shapes.SampleGrid(
            (xs[:, None] + offsets * col_mm).ravel(),
            (ys[:, None] + offsets * row_mm).ravel(),
            frame,
        )
        labels = shapes.paint_labels(build_layers(subject.anatomy, subject.contrast, 0.5), grid)
        areas = np.bincount(labels.ravel(), minlength=7) * row_mm * col_mm / fine**2
        for roi in range(1, 7):
            assert rendered.true_areas_mm2[roi] == pytest.approx(areas[roi], rel=2e-3)

    def test_psoas_grows_along_the_series(self):
        subject = sample_subject(np.random.default_rng(2), matrix_shape=(96, 96), n_slices=5)
        first, last = (
            render_slice(slice_params(subject, i), np.random.default_rng(0)) for i in (0, 4)
        )
        for roi in (2, 3):
            assert last.true_areas_mm2[roi] > 1.1 * first.true_areas_mm2[roi]


class TestDicomFiles:
    def test_headers_and_pixels(self, default_grid):
        entries = slices_of(default_grid)
        for key, entry in entries.items():
            raw = Path(entry["dicom"]).read_bytes()
            assert raw[:128] == b"\0" * 128 and raw[128:132] == b"DICM"
            ds = pydicom.dcmread(entry["dicom"])
            assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
            assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"
            subject = key.split("/")[0]
            assert str(ds.PatientName) == f"Phantom^{subject}"
            assert [float(x) for x in ds.PixelSpacing] == list(entry["spacing"])
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (0.5, -50.0)
            assert (ds.BitsAllocated, ds.PixelRepresentation) == (16, 0)
            label = read_label(entry["label"])
            assert (ds.Rows, ds.Columns) == label.shape
            assert ds.pixel_array.dtype == np.uint16
        shapes_seen = {pydicom.dcmread(e["dicom"]).pixel_array.shape for e in entries.values()}
        assert shapes_seen == set(DEFAULT_MATRIX_SIZES[:2])

    def test_series_uids_and_instance_order(self, small):
        by_series: dict[str, list[tuple[int, float, str]]] = {}
        sop_uids = set()
        for path in sorted((small / "train" / "dicoms").rglob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            by_series.setdefault(ds.SeriesInstanceUID, []).append(
                (int(ds.InstanceNumber), float(ds.SliceLocation), path.stem)
            )
            sop_uids.add(ds.SOPInstanceUID)
        assert len(by_series) == 3 and len(sop_uids) == 9
        for rows in by_series.values():
            assert [r[0] for r in rows] == [1, 2, 3]  # file order = InstanceNumber order
            locations = [r[1] for r in rows]
            assert locations == sorted(locations, reverse=True)  # head to foot
            assert len({r[2].split("_")[0] for r in rows}) == 1

    def test_image_is_the_rescaled_stored_values(self):
        rendered = render_slice(
            slice_params(sample_subject(np.random.default_rng(0), matrix_shape=(64, 64)), 0),
            np.random.default_rng(0),
        )
        stored = (rendered.image - RESCALE_INTERCEPT) / RESCALE_SLOPE
        assert rendered.image.dtype == np.float32
        np.testing.assert_array_equal(stored, np.round(stored))
        assert stored.min() >= 0 and stored.max() <= 65535


class TestAnatomy:
    def test_patient_right_is_on_the_image_left(self, small):
        for entry in slices_of(small).values():
            label = read_label(entry["label"])
            cols = {roi: np.nonzero(label == roi)[1].mean() for roi in (2, 3, 4, 5)}
            assert cols[2] < cols[3] and cols[4] < cols[5]

    def test_muscles_alike_fat_bright_and_look_alikes_unlabelled(self):
        images, labels, _ = make_phantom_arrays(6, size=(128, 128), seed=4, slices_per_subject=2)
        psoas = images[(labels == 2) | (labels == 3)]
        back = images[(labels == 4) | (labels == 5)]
        fat = images[labels == 6]
        assert abs(psoas.mean() / back.mean() - 1) < 0.15
        assert fat.mean() > 1.8 * max(psoas.mean(), back.mean())
        # Intensity alone cannot find the ROIs: unlabelled pixels share the muscle and fat greys.
        low, high = np.percentile(psoas, [10, 90])
        muscle_like = (labels == 0) & (images >= low) & (images <= high)
        assert muscle_like.sum() > psoas.size
        fat_low, fat_high = np.percentile(fat, [10, 90])
        fat_like = (labels == 0) & (images >= fat_low) & (images <= fat_high)
        assert fat_like.sum() > 0.5 * fat.size

    def test_subjects_vary_in_size_spacing_and_matrix(self):
        subjects = [
            sample_subject(np.random.default_rng(i), matrix_shape=DEFAULT_MATRIX_SIZES[i % 4])
            for i in range(12)
        ]
        spacings = {s.spacing_mm for s in subjects}
        assert len(spacings) == 12
        assert any(row != col for row, col in spacings)
        assert all(0.5 < x < 2.5 for spacing in spacings for x in spacing)
        assert len({s.anatomy.fascia_half_width_mm for s in subjects}) == 12


class TestDeterminism:
    def test_same_seed_same_arrays_other_seed_differs(self):
        first = make_phantom_arrays(2, size=(64, 80), seed=11)
        again = make_phantom_arrays(2, size=(64, 80), seed=11)
        other = make_phantom_arrays(2, size=(64, 80), seed=12)
        for a, b in zip(first, again, strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(first[0], other[0])
        assert not np.array_equal(first[1], other[1])

    def test_same_seed_writes_identical_files(self, tmp_path):
        kwargs = {"train_subjects": 1, "test_subjects": 1, "slices_per_subject": 2}
        for name in ("a", "b"):
            generate_phantom(tmp_path / name, matrix_sizes=[(64, 64)], seed=5, **kwargs)
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
        assert len(files) == 2 * 2 * 2 + 4
        for rel in files:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


class TestMakePhantomArrays:
    def test_shapes_dtypes_and_spacings(self):
        images, labels, spacings = make_phantom_arrays(3, size=(72, 88), slices_per_subject=2)
        assert images.shape == labels.shape == (3, 72, 88)
        assert (images.dtype, labels.dtype, spacings.shape) == (np.float32, np.uint8, (3, 2))
        assert labels.max() == 6 and np.all(spacings > 0)
        np.testing.assert_array_equal(spacings[0], spacings[1])  # one subject, one spacing

    def test_bad_size_is_explained(self):
        with pytest.raises(ConfigError, match=r"matrix size \(16, 16\)"):
            make_phantom_arrays(1, size=(16, 16))
