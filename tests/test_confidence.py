"""Tests for sliceseg.inference.confidence: scores per slice and ROI, tables, review order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import with_postprocessing
from sliceseg.errors import ConfigError
from sliceseg.inference.confidence import (
    BELIEF_FLOOR,
    ConfidenceCollector,
    _roi_confidence_on_device,
    least_confident,
    measure_with_confidence,
    roi_confidence,
    slice_confidence,
    with_confidence,
)
from sliceseg.inference.predict import predict_slices
from sliceseg.inference.records import RunSettings
from sliceseg.io.dicom import Slice
from sliceseg.io.dicom_folder import scan_dicom_folder
from sliceseg.measure.areas import measure_areas
from sliceseg.measure.spacing import SpacingFallback
from sliceseg.models.bundle import load_bundle
from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
from sliceseg.postprocess.cleanup import PostProcessing


def _probabilities(inside: float, outside: float) -> tuple[np.ndarray, np.ndarray]:
    """Two classes on 4×4: ROI 1 predicted on a 2×2 block, p(ROI) ``inside`` there, else
    ``outside``."""
    label = np.zeros((4, 4), np.uint8)
    label[:2, :2] = 1
    roi = np.where(label == 1, inside, outside)
    return np.stack([1.0 - roi, roi]), label


class TestRoiConfidence:
    def test_sure_of_every_pixel_is_one(self):
        probs, label = _probabilities(1.0, 0.0)
        assert roi_confidence(probs, label) == pytest.approx([1.0])

    def test_soft_dice_by_hand(self):
        """Σp = 4·0.75 + 12·0.25 = 6, 4 pixels predicted, overlap 3: 2·3 / (6 + 4) = 0.6."""
        probs, label = _probabilities(0.75, 0.25)
        assert roi_confidence(probs, label) == pytest.approx([0.6])
        assert roi_confidence(torch.from_numpy(probs), label) == pytest.approx([0.6])

    def test_absent_and_unbelieved_is_one_absent_but_believed_is_low(self):
        label = np.zeros((4, 4), np.uint8)
        nothing = np.stack([np.ones((4, 4)), np.full((4, 4), 0.05)])  # Σp = 0.8 < 1 pixel
        assert roi_confidence(nothing, label) == pytest.approx([1.0])
        believed = np.stack([np.full((4, 4), 0.6), np.full((4, 4), 0.4)])  # Σp = 6.4, none
        assert roi_confidence(believed, label) == pytest.approx([0.0])

    def test_leakage_below_the_floor_is_no_belief(self):
        """A softmax's leak (10⁻⁴ on every pixel of a 512² slice: 26 pixels' worth) does not make
        an absent ROI doubtful; beside a predicted ROI it is left out of Σp: 2·3 / (3 + 4)."""
        label = np.zeros((512, 512), np.uint8)
        leak = np.full((512, 512), 1e-4)
        absent = np.stack([1.0 - leak, leak])
        assert roi_confidence(absent, label) == pytest.approx([1.0])
        probs, label = _probabilities(0.75, BELIEF_FLOOR / 2)
        assert roi_confidence(probs, label) == pytest.approx([6 / 7])
        expected = [1.0, 6 / 7]
        both = np.stack([probs[0], np.zeros((4, 4)), probs[1]])
        label2 = np.where(label == 1, 2, 0).astype(np.uint8)
        assert _roi_confidence_on_device(torch.from_numpy(both), label2) == pytest.approx(expected)

    def test_an_roi_training_always_showed_scores_zero_when_missing(self):
        """Missing though expected: 0 however sure the network is of its absence; an ROI not
        always there keeps 1; a predicted one keeps its soft Dice."""
        probs, label = _probabilities(0.75, 0.25)  # ROI 2's block: 2·3 / (6 + 4) = 0.6
        three = np.stack([probs[0], np.zeros((4, 4)), probs[1]])
        label3 = np.where(label == 1, 2, 0).astype(np.uint8)
        expected = np.array([True, True])
        assert roi_confidence(three, label3, expected) == pytest.approx([0.0, 0.6])
        assert roi_confidence(three, label3, np.array([False, True])) == pytest.approx([1.0, 0.6])
        on_device = _roi_confidence_on_device(torch.from_numpy(three), label3, expected)
        assert on_device == pytest.approx([0.0, 0.6])
        collector = ConfidenceCollector(expected)
        collector(torch.from_numpy(three), label3)
        assert collector.per_roi[0] == pytest.approx([0.0, 0.6])

    def test_always_present_needs_one_flag_per_roi(self):
        probs, label = _probabilities(1.0, 0.0)
        with pytest.raises(ConfigError, match=r"2 ROIs marked always present for 1 ROIs"):
            roi_confidence(probs, label, np.array([True, True]))

    def test_shape_mismatch(self):
        with pytest.raises(
            ConfigError, match=r"shape \(2, 4, 4\) for a label map of shape \(3, 3\)"
        ):
            roi_confidence(np.zeros((2, 4, 4)), np.zeros((3, 3), np.uint8))


def test_slice_confidence_is_the_least_confident_rois():
    assert slice_confidence(np.array([[1.0, 0.5], [0.2, 0.4]])) == pytest.approx([0.5, 0.2])


def _table() -> tuple[object, np.ndarray]:
    images = [
        Slice(np.zeros((4, 4), np.float32), (1.0, 1.0), "PixelSpacing", Path(f"s{i}.dcm"))
        for i in range(3)
    ]
    labels = [np.zeros((4, 4), np.uint8) for _ in images]
    per_roi = np.array([[0.9, 0.8], [0.5, 0.1], [0.7, 0.7]])
    return measure_areas(labels, images, ["a", "b"]), per_roi


class TestWithConfidence:
    def test_columns_hold_the_scores(self):
        areas, per_roi = _table()
        scored = with_confidence(areas, per_roi)
        assert scored.long["confidence"].tolist() == pytest.approx(per_roi.ravel().tolist())
        wide = scored.wide["confidence"]
        assert wide.loc[["1", "2", "3"]].tolist() == pytest.approx([0.8, 0.1, 0.7])
        assert wide.loc[["mean", "std"]].isna().all()

    def test_areas_views_leave_the_confidence_out(self):
        areas, per_roi = _table()
        scored = with_confidence(areas, per_roi)
        assert list(scored.per_slice.columns) == ["a", "b"]
        assert "confidence" not in scored.to_text()

    def test_wrong_count(self):
        areas, per_roi = _table()
        with pytest.raises(ConfigError, match=r"confidence for 2 slices × 2 ROIs, but the table "
                                              r"has 3 slices × 2 ROIs"):  # fmt: skip
            with_confidence(areas, per_roi[:2])

    def test_the_one_ranking_over_the_table_s_slice_scores(self):
        """What the report's "review first" and ``suggest`` rank: slice 2 (0.1), then 3 (0.7)."""
        areas, per_roi = _table()
        scores = with_confidence(areas, per_roi).wide["confidence"].loc[["1", "2", "3"]]
        assert least_confident(scores.tolist(), ["s"] * 3, n=2) == [1, 2]


class TestMeasureWithConfidence:
    def test_a_run_s_settings_measure_the_slices_with_their_scores(self):
        """``predict_folder`` and a cohort's series each measured with their own copy."""
        images = [
            Slice(np.zeros((4, 4), np.float32), None, "none", Path(f"s{i}.dcm")) for i in range(2)
        ]
        labels = [np.pad(np.ones((2, 2), np.uint8), 1), np.zeros((4, 4), np.uint8)]
        settings = RunSettings(("disc",), fallback=SpacingFallback(fov_mm=(2.0, 2.0)))
        per_roi = np.array([[0.9], [0.4]])
        areas = measure_with_confidence(labels, images, ["p/s0", "p/s1"], settings, per_roi)
        assert areas.wide.loc[["1", "2"], "disc"].tolist() == [1.0, 0.0]  # 4 px of 0.5 × 0.5
        assert areas.wide.loc[["1", "2"], "file"].tolist() == ["p/s0", "p/s1"]
        assert areas.wide.loc[["1", "2"], "confidence"].tolist() == [0.9, 0.4]


class TestLeastConfident:
    SCORES = (0.9, 0.2, 0.5, 0.8, 0.7, 0.95, 0.3, 0.1, 0.6)
    SERIES = ("a",) * 3 + ("b",) * 3 + ("c",) * 3

    def test_series_take_turns(self):
        """Turn 1: c 0.1, a 0.2, b 0.7; turn 2 starts with c's 0.3."""
        assert least_confident(self.SCORES, self.SERIES, n=4) == [7, 1, 4, 6]

    def test_without_spread_the_global_order(self):
        assert least_confident(self.SCORES, self.SERIES, n=4, spread=False) == [7, 1, 6, 2]

    def test_bad_n(self):
        with pytest.raises(ConfigError, match="n must be at least 1, got 0"):
            least_confident(self.SCORES, self.SERIES, n=0)


# What predict does after the network, written into a copy of the tiny model: which weights a
# two-epoch training chooses depends on the machine's floating-point path (issue 17).
PINNED = PostProcessing(
    steps={1: ("largest_component",), 2: ("fill_holes",)},
    calibration=AreaCalibration(per_roi={1: RoiCalibration(1.0), 3: RoiCalibration(-0.5)}),
)


def weighted_argmax(probs: np.ndarray, log_weights: dict[int, float]):
    """By hand, in float64: the most likely ROI r where p_r > p_background × e^(log weight of r),
    else background; and the pixels within 1e-5 of that threshold (float32 may differ there)."""
    p = probs.astype(np.float64)
    best = p[1:].argmax(axis=0) + 1
    log_w = np.array([0.0] + [log_weights.get(r, 0.0) for r in range(1, len(p))])[best]
    p_best = np.take_along_axis(p, best[None], axis=0)[0]
    label = np.where(p_best > p[0] * np.exp(log_w), best, 0).astype(np.uint8)
    odds = np.log(np.maximum(p_best, 1e-12)) - np.log(np.maximum(p[0], 1e-12))
    return label, np.abs(odds - log_w) < 1e-5


@pytest.mark.slow
def test_predict_hook_gives_native_probabilities(
    tiny_model: Path, tiny_phantom: Path, tmp_path: Path
):
    """The sink sees each slice's own grid, probabilities summing to 1, and the label: the
    weighted argmax of the model file's per-ROI calibration, then its post-processing."""
    model = with_postprocessing(tiny_model, tmp_path / "pinned.pt", PINNED.to_dict())
    images = scan_dicom_folder(tiny_phantom / "test" / "dicoms").slices
    seen: list[tuple[torch.Tensor, np.ndarray]] = []
    collector = ConfidenceCollector()

    def sink(probs: torch.Tensor, label: np.ndarray) -> None:
        seen.append((probs, label))
        collector(probs, label)

    labels = predict_slices(load_bundle(model), images, device="cpu", on_probabilities=sink)
    assert len(seen) == len(images) == len(labels)
    for (probs, label), image, returned in zip(seen, images, labels, strict=True):
        assert probs.shape == (7, *image.shape)
        np.testing.assert_allclose(probs.sum(dim=0).numpy(), 1.0, atol=1e-4)
        np.testing.assert_array_equal(label, returned)
        expected, near_tie = weighted_argmax(probs.numpy(), {1: 1.0, 3: -0.5})
        assert not ((PINNED.apply(expected) != returned) & ~near_tie).any()
    assert collector.per_roi.shape == (len(images), 6)
    assert ((collector.per_roi >= 0) & (collector.per_roi <= 1)).all()


@pytest.mark.slow
def test_predict_folder_writes_confidence(tiny_model: Path, tiny_phantom: Path, tmp_path: Path):
    from sliceseg.inference.folder import predict_folder

    run = predict_folder(tiny_model, tiny_phantom / "test" / "dicoms", tmp_path / "out")
    wide = pd.read_csv(tmp_path / "out" / "csa.csv", index_col="slice", dtype={"slice": str})
    long = pd.read_csv(tmp_path / "out" / "csa_long.csv")
    per_slice = long.groupby("slice")["confidence"].min().to_numpy()
    np.testing.assert_allclose(wide.loc[["1", "2", "3"], "confidence"], per_slice, atol=1e-12)
    assert long["confidence"].between(0, 1).all()
    page = run.report.read_text(encoding="utf-8")
    assert "Review first (1): " in page
    assert len(list((tmp_path / "out" / "thumbnails").rglob("*.jpg"))) == 3
