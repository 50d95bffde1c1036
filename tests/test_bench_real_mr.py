"""The real-MR benchmark's label rule on the real MNI152 template, its files and its scorer."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nilearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import real_mr_data as data
import real_mr_files as files
from real_mr_score import score_slices
from sliceseg.io.dicom import read_slice
from sliceseg.io.labels import read_label_file

MID_BRAIN_MM = 10  # axial level through the basal ganglia: every ROI is large

SCANNER = data.Scanner(
    subject="s99",
    rotation_deg=7.0,
    scale=1.0,
    spacing_mm=(0.9, 1.1),
    shape=(250, 190),
    shift_mm=(3.0, -2.0),
    gamma=1.0,
    bias=(0.0, 0.0, 0.0, 0.0, 0.0),
    gain=1000.0,
    noise_fraction=0.02,
)


@pytest.fixture(scope="module")
def template() -> data.Template:
    """The template, loaded with the network cut: nilearn must read it from its own package."""

    def refuse(*_args, **_kwargs):
        raise OSError("network access during load_template")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        return data.load_template()


@pytest.fixture(scope="module")
def written(template, tmp_path_factory) -> tuple[Path, list[dict[str, object]]]:
    split = tmp_path_factory.mktemp("real_mr") / "test"
    ids = files.series_ids("s99", seed=0, series_number=1)
    rows = files.write_subject(
        split,
        template,
        SCANNER,
        [MID_BRAIN_MM],
        ids=ids,
        seed=0,
        rng=np.random.default_rng(0),
        continuous=True,
    )
    return split, rows


@pytest.mark.slow  # loads the 1 mm MNI152 volumes (a few seconds)
def test_four_rois_are_present_and_sized_on_a_mid_brain_level(written):
    _split, rows = written
    areas = {int(r["roi"]): float(r["area_mm2"]) for r in rows}  # type: ignore[arg-type]
    # The template's own 1 mm level holds about 4200 mm² of WM and 5000 mm² of GM per side.
    assert all(3000 < areas[roi] < 6500 for roi in (1, 2, 3, 4)), areas
    continuous = {int(r["roi"]): float(r["area_continuous_mm2"]) for r in rows}  # type: ignore[arg-type]
    assert all(abs(continuous[k] / areas[k] - 1) < 0.03 for k in areas), (areas, continuous)


@pytest.mark.slow  # loads the 1 mm MNI152 volumes (a few seconds)
def test_right_rois_are_on_the_image_left_in_the_written_files(written):
    split, _rows = written
    label = read_label_file(split / "labels" / "s99" / "slice_001.png").values
    image = read_slice(split / "dicoms" / "s99" / "slice_001.dcm")
    assert image.orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert image.spacing_mm == SCANNER.spacing_mm and image.shape == label.shape
    cols = np.arange(label.shape[1])[None, :] + 0 * label
    x_lps = image.image_position_mm[0] + cols * image.spacing_mm[1]  # LPS: +x is patient left
    centre = {roi: float(x_lps[label == roi].mean()) for roi in (1, 2, 3, 4)}
    assert centre[1] < -15 and centre[3] < -15, centre  # patient right
    assert centre[2] > 15 and centre[4] > 15, centre  # patient left
    # T1: white matter is brighter than grey matter, so image and labels are aligned.
    white = image.pixels[(label == 1) | (label == 2)].mean()
    grey = image.pixels[(label == 3) | (label == 4)].mean()
    assert white > 1.2 * grey


@pytest.mark.slow  # loads the 1 mm MNI152 volumes (a few seconds)
def test_left_and_right_white_matter_are_symmetric(written):
    _split, rows = written
    areas = {int(r["roi"]): float(r["area_mm2"]) for r in rows}  # type: ignore[arg-type]
    assert abs(areas[1] - areas[2]) / areas[2] < 0.10
    assert abs(areas[3] - areas[4]) / areas[4] < 0.10


@pytest.mark.slow  # loads the 1 mm MNI152 volumes (a few seconds)
def test_test_levels_are_never_adjacent_to_training_levels(template):
    train, test = data.split_levels(data.valid_levels(template))
    assert len(train) >= 40 and len(test) >= 15
    assert min(abs(t - z) for t in test for z in train) >= 2
    assert min(train + test) <= -30 and max(train + test) >= 60  # temporal lobes to vertex


def test_scorer_gives_dice_one_on_truth_and_known_values_on_a_shift():
    truth = np.zeros((40, 40), dtype=np.uint8)
    truth[5:15, 5:15] = 1  # 100 pixels
    truth[20:30, 20:30] = 2
    shifted = np.zeros_like(truth)
    shifted[5:15, 7:17] = 1  # shifted 2 columns: overlap 80, same area
    shifted[20:30, 20:32] = 2  # 20 % too large, overlap 100
    spacing = {"a": (0.5, 2.0)}
    same = score_slices({"a": truth}, {"a": truth}, spacing, num_rois=2)
    assert same.dice == (1.0, 1.0) and same.area_error_pct == (0.0, 0.0)
    moved = score_slices({"a": truth}, {"a": shifted}, spacing, num_rois=2)
    assert moved.dice == pytest.approx((0.8, 200 / 220))
    assert moved.area_error_pct == pytest.approx((0.0, 20.0))
    assert moved.worst_dice == pytest.approx(0.8)


def test_baseline_crop_undoes_monai_padding():
    pytest.importorskip("monai")
    import torch
    from monai.transforms import SpatialPad

    from real_mr_baseline import crop_padding

    for shape in ((7, 12), (12, 9), (10, 10)):
        x = torch.arange(float(np.prod(shape))).reshape(1, *shape)
        side = max(shape)
        assert torch.equal(crop_padding(SpatialPad((side, side))(x), shape), x)


def test_neighbour_levels_lie_beside_the_labelled_ones_inside_the_set():
    found = files.neighbour_levels([10.0, 13.0, 20.0], 3.0, (8.0, 22.0))
    assert found == [16.0, 17.0]  # 7 and 23 fall outside; 10 and 13 are labelled themselves
    assert files.neighbour_levels([10.0], 0.0, (0.0, 99.0)) == []


@pytest.mark.slow  # loads the 1 mm MNI152 volumes (a few seconds)
def test_unlabelled_neighbours_are_written_between_and_left_out_of_truth_and_baseline(
    template, tmp_path
):
    from real_mr_baseline import read_cases

    split = tmp_path / "test"
    rows = files.write_subject(
        split,
        template,
        SCANNER,
        [MID_BRAIN_MM],
        ids=files.series_ids("s99", seed=0, series_number=1),
        seed=0,
        rng=np.random.default_rng(0),
        continuous=False,
        neighbours=[MID_BRAIN_MM - 3.0, MID_BRAIN_MM + 3.0],
    )
    dicoms = sorted((split / "dicoms" / "s99").glob("*.dcm"))
    positions = [read_slice(p).position_mm for p in dicoms]
    assert positions == [MID_BRAIN_MM - 3.0, MID_BRAIN_MM, MID_BRAIN_MM + 3.0]
    assert [p.name for p in (split / "labels" / "s99").glob("*.png")] == ["slice_002.png"]
    assert {row["key"] for row in rows} == {"s99/slice_002"}
    assert [case.key for case in read_cases(split, with_labels=True)] == ["s99/slice_002"]
