"""Canonical orientation: the flip/transpose choice, its exact undo, sided areas that never swap."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from torch import nn

from conftest import write_test_dicom
from sliceseg.dataset.pairing import Sample
from sliceseg.errors import BundleError
from sliceseg.inference.folder import predict_folder
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom_folder import read_series
from sliceseg.model_space.batches import samples_to_grid, slices_to_grid
from sliceseg.model_space.orientation import (
    IDENTITY,
    OBLIQUE_TOLERANCE_DEG,
    ORIENTATION_CONVENTION,
    OrientationWarning,
    Reorientation,
    choose_reorientation,
    is_canonicalising,
    orient_slice,
    reorientations_for,
)
from sliceseg.models import bundle as bundle_module
from sliceseg.models.bundle import Bundle, ModelMetadata, load_bundle

ALL_REORIENTATIONS = [
    Reorientation(transpose=t, flip_rows=r, flip_cols=c)
    for t in (False, True)
    for r in (False, True)
    for c in (False, True)
]
STORED_AS = {  # how each variant stores the original's pixel (row, col) grid
    "reversed_rows": lambda a: a[::-1],
    "reversed_cols": lambda a: a[:, ::-1],
    "transposed": lambda a: a.T,
    "rotated": lambda a: a.T[:, ::-1],  # transposed, then columns reversed: a 90° rotation
}
VARIANTS = tuple(STORED_AS)
ROWS, COLS = 36, 50
SPACING = (0.7, 0.9)
BLOBS = ((1, 7.0, (18, 12)), (2, 4.0, (17, 38)))  # ROI, radius px, centre: right on image left


# --------------------------------------------------------------------------- the choice


@pytest.mark.parametrize(
    ("cosines", "plane", "expected"),
    [
        ((1, 0, 0, 0, 1, 0), "axial", (False, False, False)),  # the scanner default, head first
        ((-1, 0, 0, 0, 1, 0), "axial", (False, False, True)),  # columns run toward the right
        ((1, 0, 0, 0, -1, 0), "axial", (False, True, False)),  # rows run toward anterior
        ((-1, 0, 0, 0, -1, 0), "axial", (False, True, True)),  # e.g. prone, stored as seen
        ((0, 1, 0, 1, 0, 0), "axial", (True, False, False)),  # rows and columns swapped
        ((0, -1, 0, 1, 0, 0), "axial", (True, True, False)),  # rotated 90° one way
        ((0, 1, 0, -1, 0, 0), "axial", (True, False, True)),  # rotated 90° the other way
        ((0, -1, 0, -1, 0, 0), "axial", (True, True, True)),
        ((1, 0, 0, 0, 0, -1), "coronal", (False, False, False)),
        ((1, 0, 0, 0, 0, 1), "coronal", (False, True, False)),  # feet up
        ((0, 0, -1, 1, 0, 0), "coronal", (True, False, False)),
        ((0, 1, 0, 0, 0, -1), "sagittal", (False, False, False)),
        ((0, -1, 0, 0, 0, -1), "sagittal", (False, False, True)),  # anterior on image right
        ((0, 0, -1, 0, 1, 0), "sagittal", (True, False, False)),
    ],
)
def test_choice_from_hand_made_cosines(cosines, plane, expected):
    choice = choose_reorientation(cosines)
    assert choice is not None
    flags = choice.reorientation
    assert (flags.transpose, flags.flip_rows, flags.flip_cols) == expected
    assert choice.plane == plane
    assert choice.oblique_deg == pytest.approx(0.0, abs=1e-9)


def _rotated_axial(angle_deg: float) -> tuple[float, ...]:
    a = math.radians(angle_deg)
    return (math.cos(a), math.sin(a), 0.0, -math.sin(a), math.cos(a), 0.0)


@pytest.mark.parametrize(
    ("angle_deg", "expected", "oblique_deg"),
    [
        (10.0, IDENTITY, 10.0),
        (-25.0, IDENTITY, 25.0),
        (65.0, Reorientation(transpose=True, flip_cols=True), 25.0),
        (180.0, Reorientation(flip_rows=True, flip_cols=True), 0.0),
    ],
)
def test_in_plane_rotation_takes_the_nearest_flip_transpose(angle_deg, expected, oblique_deg):
    choice = choose_reorientation(_rotated_axial(angle_deg))
    assert choice is not None
    assert choice.reorientation == expected
    assert choice.oblique_deg == pytest.approx(oblique_deg, abs=1e-6)


def test_unscaled_cosines_are_normalised_and_degenerate_ones_rejected():
    choice = choose_reorientation((0, 2.0, 0, -3.0, 0, 0))
    assert choice is not None and choice.reorientation == Reorientation(True, False, True)
    assert choose_reorientation((0, 0, 0, 0, 1, 0)) is None  # zero row direction
    assert choose_reorientation((1, 0, 0, 1, 0, 0)) is None  # parallel directions
    assert choose_reorientation((1, 0, 0, 0, 1)) is None  # five numbers


# --------------------------------------------------------------------------- apply / undo


def test_apply_on_a_small_array_follows_the_documented_order():
    array = np.arange(6).reshape(2, 3)
    assert Reorientation(transpose=True, flip_cols=True).apply(array).tolist() == [
        [3, 0],
        [4, 1],
        [5, 2],
    ]
    assert Reorientation(flip_rows=True).apply(array).tolist() == [[3, 4, 5], [0, 1, 2]]


@pytest.mark.parametrize("change", ALL_REORIENTATIONS, ids=lambda r: r.describe())
@pytest.mark.parametrize("shape", [(5, 7), (3, 5, 7), (2, 3, 5, 7)])
def test_apply_then_undo_is_exact_for_numpy_and_torch(change, shape):
    array = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    out = change.apply(array)
    assert out.shape == (*shape[:-2], *change.shape(shape[-2:]))
    np.testing.assert_array_equal(change.undo(out), array)
    tensor = torch.from_numpy(array)
    assert torch.equal(change.apply(tensor), torch.from_numpy(out))
    assert torch.equal(change.undo(change.apply(tensor)), tensor)


def test_the_eight_reorientations_are_distinct_permutations():
    array = np.arange(12).reshape(3, 4)
    outputs = {
        change.apply(array).tobytes() + bytes(change.apply(array).shape)
        for change in ALL_REORIENTATIONS
    }
    assert len(outputs) == 8


def test_spacing_swaps_only_on_a_transpose():
    assert Reorientation(transpose=True, flip_rows=True).spacing((0.5, 0.8)) == (0.8, 0.5)
    assert Reorientation(flip_rows=True, flip_cols=True).spacing((0.5, 0.8)) == (0.5, 0.8)
    assert Reorientation(transpose=True).spacing(None) is None


def test_apply_refuses_a_one_dimensional_array():
    with pytest.raises(ValueError, match=r"\(\.\.\., rows, cols\)"):
        Reorientation(flip_rows=True).apply(np.zeros(4))


def test_model_metadata_records_the_same_convention_and_older_files_have_none():
    assert bundle_module.ORIENTATION_CONVENTION == ORIENTATION_CONVENTION
    metadata = ModelMetadata(
        arch="unet", hyperparameters={}, num_classes=3, input_size=64, roi_names=("a", "b")
    )
    assert metadata.to_dict()["orientation"] == "radiological-v1"
    older = {k: v for k, v in metadata.to_dict().items() if k != "orientation"}
    assert ModelMetadata.from_dict(older).orientation is None
    assert is_canonicalising(ORIENTATION_CONVENTION) and not is_canonicalising(None)
    with pytest.raises(
        BundleError, match=r"m\.pt: records orientation convention 'LPS-v9'.*upgrade"
    ):
        is_canonicalising("LPS-v9", source="m.pt")


# --------------------------------------------------------------------------- DICOM variants


def _write_variant(src: Path, dst: Path, kind: str) -> Path:
    """Rewrite a DICOM with its pixels flipped or transposed and its header changed to match.

    The header arithmetic is written out here by hand, independently of ``orient_slice``.
    """
    ds = pydicom.dcmread(src)
    pixels = ds.pixel_array
    row_dir = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
    col_dir = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
    first = np.array([float(v) for v in ds.ImagePositionPatient])
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    rows, cols = pixels.shape
    if kind == "reversed_rows":
        pixels, first, col_dir = pixels[::-1], first + (rows - 1) * row_mm * col_dir, -col_dir
    elif kind == "reversed_cols":
        pixels, first, row_dir = pixels[:, ::-1], first + (cols - 1) * col_mm * row_dir, -row_dir
    elif kind == "transposed":
        pixels, row_dir, col_dir, row_mm, col_mm = pixels.T, col_dir, row_dir, col_mm, row_mm
    elif kind == "rotated":  # transposed, then columns reversed: a 90° rotation
        pixels, row_dir, col_dir, row_mm, col_mm = pixels.T, col_dir, row_dir, col_mm, row_mm
        first = first + (pixels.shape[1] - 1) * col_mm * row_dir
        pixels, row_dir = pixels[:, ::-1], -row_dir
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.Rows, ds.Columns = pixels.shape
    ds.ImageOrientationPatient = [f"{v:.6g}" for v in (*row_dir, *col_dir)]
    ds.ImagePositionPatient = [f"{v:.6g}" for v in first]
    ds.PixelSpacing = [f"{row_mm:.6g}", f"{col_mm:.6g}"]
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


def _write_variants(folder: Path, out: Path) -> dict[str, Path]:
    folders = {"original": folder}
    for kind in VARIANTS:
        for path in sorted(folder.rglob("*.dcm")):
            _write_variant(path, out / kind / path.relative_to(folder), kind)
        folders[kind] = out / kind
    return folders


def _blob_series(folder: Path) -> Path:
    """Two slices: a large ROI on the patient's right (image left), a small one on the left."""
    yy, xx = np.mgrid[:ROWS, :COLS]
    for instance in (1, 2):
        pixels = np.full((ROWS, COLS), 100, dtype=np.uint16)
        for _, radius, (r, c) in BLOBS:
            pixels[(yy - r) ** 2 + (xx - c) ** 2 <= (radius - instance + 1) ** 2] = 1000
        path = write_test_dicom(
            folder / f"blob_{instance}.dcm", pixels, spacing=SPACING, instance=instance
        )
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = ["-20", "-15", str(5 * instance)]
        ds.save_as(path)
    return folder


def _blob_truth(instance: int) -> dict[int, int]:
    yy, xx = np.mgrid[:ROWS, :COLS]
    return {
        roi: int(((yy - r) ** 2 + (xx - c) ** 2 <= (radius - instance + 1) ** 2).sum())
        for roi, radius, (r, c) in BLOBS
    }


class SideModel(nn.Module):
    """A deterministic stand-in: bright pixels on the image's left half are ROI 1, right half ROI 2.

    In the canonical orientation the image's left is the patient's right, so ROI 1 is "right".
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        bright = x[:, 0] > 1.0
        on_left = torch.arange(x.shape[-1], device=x.device) < x.shape[-1] // 2
        right_roi, left_roi = (bright & on_left).float(), (bright & ~on_left).float()
        background = 1.0 - right_roi - left_roi
        return [torch.stack([background, right_roi, left_roi], dim=1) * 20.0 + self.anchor]


def _side_bundle(orientation: str | None = ORIENTATION_CONVENTION) -> Bundle:
    metadata = ModelMetadata(
        arch="unet",
        hyperparameters={},
        num_classes=3,
        input_size=64,
        roi_names=("right blob", "left blob"),
        orientation=orientation,
    )
    return Bundle(SideModel().eval(), metadata)


def _areas_by_name(run) -> dict[tuple[str, str], tuple[int, float]]:
    long = run.areas.long
    return {
        (row.file, row.roi_name): (int(row.pixels), float(row.area_mm2))
        for row in long.itertuples()
    }


def _assert_same_rois_on_own_grid(reference, variant, kind: str) -> None:
    """Areas equal under each ROI's name; each label map lies on its own file's stored grid."""
    original, changed = _areas_by_name(reference), _areas_by_name(variant)
    assert changed.keys() == original.keys()
    for key, (pixels, area) in original.items():
        assert changed[key][0] == pixels, (kind, key)
        assert changed[key][1] == pytest.approx(area, rel=1e-12), (kind, key)
    by_key = {p.key: p.label for p in reference.predictions}
    for prediction in variant.predictions:
        assert prediction.label.shape == prediction.image.shape
        np.testing.assert_array_equal(prediction.label, STORED_AS[kind](by_key[prediction.key]))


@pytest.fixture(scope="module")
def blob_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blobs")
    return _write_variants(_blob_series(root / "original"), root)


def test_a_variant_read_and_oriented_is_the_original_slice(blob_folders):
    original = read_series(blob_folders["original"])
    for kind in VARIANTS:
        variant = read_series(blob_folders[kind])
        changes = reorientations_for(variant)
        assert all(not change.is_identity for change in changes)
        for ref, image, change in zip(original, variant, changes, strict=True):
            oriented = orient_slice(image, change)
            np.testing.assert_array_equal(oriented.pixels, ref.pixels)
            assert oriented.spacing_mm == pytest.approx(ref.spacing_mm)
            assert oriented.orientation == pytest.approx(ref.orientation, abs=1e-9)
            assert oriented.image_position_mm == pytest.approx(ref.image_position_mm, abs=1e-4)


def test_image_and_label_go_to_the_grid_by_the_same_flip(blob_folders):
    original = read_series(blob_folders["original"])[0]
    label = np.zeros(original.shape, dtype=np.uint8)
    label[5:12, 3:9] = 1  # an asymmetric patch near the image's top left
    reference = samples_to_grid([Sample("a", original, label)], 64)
    transposed = read_series(blob_folders["rotated"])[0]
    rotated_label = np.ascontiguousarray(STORED_AS["rotated"](label))
    grid = samples_to_grid([Sample("a", transposed, rotated_label)], 64)
    assert torch.equal(grid.images, reference.images)
    assert torch.equal(grid.labels, reference.labels)
    assert grid.reorientations == (Reorientation(transpose=True, flip_rows=True),)
    assert int(reference.labels.sum()) > 0


@pytest.mark.parametrize("kind", VARIANTS)
def test_sided_areas_are_identical_on_every_variant_under_their_own_names(
    blob_folders, kind, tmp_path
):
    bundle = _side_bundle()
    reference = predict_folder(bundle, blob_folders["original"], tmp_path / "o", report=False)
    variant = predict_folder(bundle, blob_folders[kind], tmp_path / "v", report=False)
    _assert_same_rois_on_own_grid(reference, variant, kind)
    original = _areas_by_name(reference)
    for instance in (1, 2):
        truth = _blob_truth(instance)
        for roi, name in ((1, "right blob"), (2, "left blob")):
            measured = original[(f"blob_{instance}", name)][0]
            assert measured == pytest.approx(truth[roi], rel=0.2), (instance, name)
        assert (
            original[(f"blob_{instance}", "right blob")][0]
            > 2 * original[(f"blob_{instance}", "left blob")][0]
        )


def test_an_older_model_sees_slices_as_stored_so_a_mirrored_series_swaps(blob_folders, tmp_path):
    """What this module prevents: without canonicalisation, right and left swap."""
    older = _side_bundle(orientation=None)
    original = _areas_by_name(
        predict_folder(older, blob_folders["original"], tmp_path / "o", report=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationWarning)  # older models never warn about it
        mirrored = _areas_by_name(
            predict_folder(older, blob_folders["reversed_cols"], tmp_path / "v", report=False)
        )
    assert mirrored[("blob_1", "right blob")][0] == original[("blob_1", "left blob")][0]
    assert mirrored[("blob_1", "left blob")][0] == original[("blob_1", "right blob")][0]


def test_a_model_with_an_unknown_convention_is_refused(blob_folders):
    with pytest.raises(BundleError, match=r"orientation convention 'future-v2'.*upgrade sliceseg"):
        predict_slices(_side_bundle(orientation="future-v2"), read_series(blob_folders["original"]))


@pytest.mark.slow
def test_a_trained_model_gives_identical_phantom_areas_on_every_variant(
    tiny_model, tiny_phantom, tmp_path
):
    folders = _write_variants(tiny_phantom / "test" / "dicoms", tmp_path / "variants")
    bundle = load_bundle(tiny_model)
    assert bundle.metadata.orientation == ORIENTATION_CONVENTION
    reference = predict_folder(bundle, folders["original"], tmp_path / "o", report=False)
    assert sum(pixels for pixels, _ in _areas_by_name(reference).values()) > 0
    for kind in VARIANTS:
        variant = predict_folder(bundle, folders[kind], tmp_path / kind, report=False)
        _assert_same_rois_on_own_grid(reference, variant, kind)


# --------------------------------------------------------------------------- warnings


def _with_orientation(path: Path, cosines: tuple[float, ...] | None) -> Path:
    ds = pydicom.dcmread(path)
    if cosines is None:
        del ds.ImageOrientationPatient
    else:
        ds.ImageOrientationPatient = [f"{v:.6g}" for v in cosines]
    ds.save_as(path)
    return path


def _orientation_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, OrientationWarning)]


def test_an_oblique_slice_is_warned_about_by_file_name(tmp_path):
    pixels = np.arange(48, dtype=np.uint16).reshape(6, 8)
    path = _with_orientation(
        write_test_dicom(tmp_path / "oblique_40.dcm", pixels), _rotated_axial(40.0)
    )
    with pytest.warns(
        OrientationWarning, match=r"oblique_40\.dcm: 1 slice\(s\).*oblique by up to 40\.0°"
    ) as record:
        changes = reorientations_for(read_series(tmp_path))
    assert changes == [IDENTITY]
    assert "tolerance 30°" in _orientation_warnings(record)[0]
    assert OBLIQUE_TOLERANCE_DEG == 30.0
    _with_orientation(path, _rotated_axial(20.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OrientationWarning)
        assert reorientations_for(read_series(tmp_path)) == [IDENTITY]


def test_a_series_without_orientation_warns_once_even_in_many_batches(tmp_path):
    pixels = np.arange(48, dtype=np.uint16).reshape(6, 8)
    for instance in (1, 2, 3):
        _with_orientation(
            write_test_dicom(tmp_path / "a" / f"s{instance}.dcm", pixels, instance=instance), None
        )
    _with_orientation(
        write_test_dicom(tmp_path / "b" / "t1.dcm", pixels, series_uid="1.2.3.9"), None
    )
    images = read_series(tmp_path)
    assert all(image.orientation is None for image in images)
    with pytest.warns(OrientationWarning) as record:
        labels = predict_slices(_side_bundle(), images, batch_size=1)
    messages = _orientation_warnings(record)
    assert len(messages) == 2  # one per series, not one per slice or per batch
    series_a = next(m for m in messages if "s1.dcm" in m)
    assert "no usable (0020,0037) ImageOrientationPatient in 3 slice(s)" in series_a
    assert "taking them as stored" in series_a
    assert "1.2.3.9" in next(m for m in messages if "t1.dcm" in m)
    assert [label.shape for label in labels] == [(6, 8)] * 4


def test_a_warning_names_three_files_and_counts_the_rest(tmp_path):
    """It said "(+2 more files)", where every other list says "and 2 more" (`few_of`)."""
    pixels = np.arange(48, dtype=np.uint16).reshape(6, 8)
    for instance in range(1, 6):
        _with_orientation(
            write_test_dicom(tmp_path / f"s{instance}.dcm", pixels, instance=instance), None
        )
    with pytest.warns(OrientationWarning) as record:
        reorientations_for(read_series(tmp_path))
    (message,) = _orientation_warnings(record)
    first = ", ".join(str(tmp_path / f"s{i}.dcm") for i in (1, 2, 3))
    assert message.startswith(f"{first} and 2 more: no usable (0020,0037) ImageOrientationPatient")


def test_slices_to_grid_checks_one_reorientation_per_slice(blob_folders):
    images = read_series(blob_folders["original"])
    with pytest.raises(ValueError, match="reorientations has 1 entries for 2 slices"):
        slices_to_grid(images, 64, reorientations=[IDENTITY])
    assert len(slices_to_grid([], 64)) == 0
