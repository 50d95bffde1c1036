"""Tests for sliceseg.postprocess.calibration: per-ROI area calibration chosen on validation."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from conftest import write_test_dicom
from sliceseg.inference.predict import calibrated_argmax, predict_slices
from sliceseg.io.dicom import read_slice
from sliceseg.model_space.intensity import normalise_intensity
from sliceseg.models.bundle import Bundle
from sliceseg.postprocess.calibration import (
    LOG_WEIGHTS,
    AreaCalibration,
    RoiCalibration,
    choose_area_calibration,
    foreground_margin,
    held_out_area_bias,
    split_in_halves,
)
from sliceseg.postprocess.cleanup import PostProcessing
from test_predict import Threshold, metadata


def random_probabilities(seed: int, classes: int = 4, shape: tuple[int, int] = (24, 20)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(classes, *shape)) * 2.0
    return (np.exp(logits) / np.exp(logits).sum(axis=0)).astype(np.float32)


def disk_slice(true_radius: float, predicted_radius: float, size: int = 80):
    """Truth: a disk of ``true_radius``; log-odds fall by 1 per pixel, zero at ``predicted_radius``.

    The plain argmax draws the disk of ``predicted_radius``; a background weight ``e^t`` the
    disk of radius ``predicted_radius − t``.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    radius = np.hypot(rows - size / 2 + 0.5, cols - size / 2 + 0.5)
    truth = (radius <= true_radius).astype(np.uint8)
    log_odds = (predicted_radius - radius).astype(np.float32)
    return (np.ones_like(truth), log_odds), truth


class TestLabels:
    @pytest.mark.parametrize("log_weight", [0.0, 0.75, -1.25])
    def test_equal_the_argmax_of_the_weighted_probabilities(self, log_weight):
        probs = random_probabilities(seed=3)
        weighted = probs.copy()
        weighted[0] *= np.exp(log_weight)
        label = AreaCalibration(log_weight=log_weight).labels(*foreground_margin(probs))
        assert np.array_equal(label, weighted.argmax(axis=0))

    def test_predict_s_argmax_is_the_plain_argmax_without_a_weight(self):
        probs = torch.from_numpy(random_probabilities(seed=4))
        label = calibrated_argmax(probs, AreaCalibration())
        assert np.array_equal(label, probs.argmax(dim=0).numpy())

    def test_plain_argmax_keeps_torch_s_ties_and_nans_on_views(self):
        """Ties go to the first class, a NaN wins (the first NaN), as torch.argmax decides;
        also on a transposed view (what undoing a reorientation gives)."""
        rng = np.random.default_rng(5)
        probs = torch.from_numpy(rng.integers(0, 3, size=(4, 9, 7)).astype(np.float32) / 4)
        probs[2, 0, 0] = probs[3, 0, 0] = probs[1, 1, 1] = float("nan")
        view = probs.transpose(1, 2)
        for tensor in (probs, view):
            label = calibrated_argmax(tensor, AreaCalibration())
            assert label.dtype == np.uint8 and label.shape == tensor.shape[1:]
            assert np.array_equal(label, tensor.argmax(dim=0).numpy())
        assert calibrated_argmax(probs, AreaCalibration())[0, 0] == 2


class TestChoice:
    def test_a_disk_drawn_one_pixel_too_wide_gets_the_weight_that_undoes_it(self):
        slices = [disk_slice(r, r + 1.0) for r in (12.0, 16.0, 20.0)]
        choice = choose_area_calibration(
            [m for m, _ in slices], [t for _, t in slices], num_classes=2
        )
        roi = choice.per_roi[1]
        assert roi.log_weight == 1.0 and choice.log_weight_of(1) == 1.0
        assert roi.bias_before_pct > 10.0  # (r+1)²/r² − 1: +11 to +17 %
        assert abs(roi.bias_after_pct) < 1.0
        assert roi.error_after_pct < roi.error_before_pct
        assert choice.bias_before_pct == roi.bias_before_pct  # one ROI: overall = its own

    def test_unbiased_areas_keep_the_plain_argmax(self):
        slices = [disk_slice(r, r + 0.05) for r in (12.0, 16.0, 20.0)]
        choice = choose_area_calibration(
            [m for m, _ in slices], [t for _, t in slices], num_classes=2
        )
        assert choice.log_weight_of(1) == 0.0 and choice.is_plain
        assert choice.per_roi[1].bias_after_pct == choice.per_roi[1].bias_before_pct

    def test_a_weight_that_costs_dice_is_refused(self):
        # a large ROI drawn exactly but with low confidence (log-odds 0.3), and a small one
        # drawn twice too large: removing the large ROI would cancel the bias, at a Dice cost
        truth_large = np.zeros((60, 60), np.uint8)
        truth_large[5:55, 5:45] = 1
        odds_large = np.where(truth_large == 1, 0.3, -5.0).astype(np.float32)
        truth_small = np.zeros((60, 60), np.uint8)
        truth_small[10:15, 10:15] = 1
        odds_small = np.full((60, 60), -5.0, np.float32)
        odds_small[8:17, 8:17] = 1.9  # 81 pixels predicted, 25 true
        odds_small[truth_small == 1] = 3.0
        margins = [(np.ones_like(truth_large), odds_large), (np.ones_like(truth_small), odds_small)]
        choice = choose_area_calibration(margins, [truth_large, truth_small], num_classes=2)
        assert choice.per_roi[1].bias_before_pct == pytest.approx(100 * (81 - 25) / 25 / 2)
        assert choice.log_weight_of(1) == 0.0

    def test_the_area_floor_in_mm2_leaves_small_rois_out(self):
        tiny = disk_slice(2.0, 4.0, size=20)  # 12 true pixels, drawn ~4× too large
        large = disk_slice(16.0, 16.05)
        margins, truth = [tiny[0], large[0]], [tiny[1], large[1]]
        counted = choose_area_calibration(margins, truth, num_classes=2, pixel_area_mm2=2.0)
        left_out = choose_area_calibration(margins, truth, num_classes=2, pixel_area_mm2=1.0)
        assert counted.bias_before_pct > 50.0  # 12 px × 2 mm² = 24 mm² ≥ 20 mm²
        assert abs(left_out.bias_before_pct) < 1.0 and left_out.log_weight_of(1) == 0.0

    def test_nothing_to_measure_gives_no_weight(self):
        empty = np.zeros((10, 10), np.uint8)
        margin = (np.ones_like(empty), np.full((10, 10), -3.0, np.float32))
        assert choose_area_calibration([margin], [empty], num_classes=2) == AreaCalibration()

    def test_the_grid_is_symmetric_and_holds_the_plain_argmax(self):
        assert 0.0 in LOG_WEIGHTS and tuple(-w for w in reversed(LOG_WEIGHTS)) == LOG_WEIGHTS


def two_roi_slice(small_radius: float, size: int = 96):
    """The issue's case: ROI 1 a disk of radius 18 drawn exactly, ROI 2 a disk of
    ``small_radius`` drawn 2 px too wide (log-odds fall by 1 per pixel, centres on pixels)."""
    rows, cols = np.mgrid[0:size, 0:size]
    r1, r2 = np.hypot(rows - 30, cols - 30), np.hypot(rows - 70, cols - 70)
    truth = np.zeros((size, size), np.uint8)
    truth[r1 <= 18] = 1
    truth[r2 <= small_radius] = 2
    odds1, odds2 = 18.0 - r1, small_radius + 2.0 - r2
    roi = np.where(odds1 >= odds2, 1, 2).astype(np.uint8)
    return (roi, np.maximum(odds1, odds2).astype(np.float32)), truth


def signed_errors(labels, truth, roi):
    """Mean signed area error (%) of one ROI over slices, by counting pixels."""
    errors = [
        100 * ((p == roi).sum() - (t == roi).sum()) / (t == roi).sum()
        for p, t in zip(labels, truth, strict=True)
    ]
    return float(np.mean(errors))


class TestPerRoi:
    """One weight per ROI: an accurate ROI is never made wrong by another ROI's bias."""

    def test_the_issue_s_two_roi_case_makes_no_roi_worse(self):
        # One weight for both (before): e^1.5, per-ROI errors −0.4 / +46.7 % → −14.7 / +13.4 %.
        # Per ROI: ROI 1 keeps −0.4 % (the 4 pixels at exactly 18 px, log-odds 0, go to the
        # background) and ROI 2 takes e^1, the grid's largest weight: it keeps the pixels whose
        # log-odds R + 2 − r exceed 1, the disks of radius < R + 1 (still 1 px too wide).
        slices = [two_roi_slice(r) for r in (8.0, 9.0, 10.0)]
        margins, truth = [m for m, _ in slices], [t for _, t in slices]
        choice = choose_area_calibration(margins, truth, num_classes=3)
        plain = [np.where(odds > 0, roi, 0) for roi, odds in margins]
        calibrated = [choice.labels(*m) for m in margins]
        true_1 = int((truth[0] == 1).sum())  # 1009 pixels within 18 px, 4 of them at exactly 18
        assert signed_errors(plain, truth, 1) == pytest.approx(-100 * 4 / true_1)  # −0.40 %
        assert signed_errors(calibrated, truth, 1) == pytest.approx(-100 * 4 / true_1)
        assert signed_errors(plain, truth, 2) == pytest.approx(46.70, abs=0.01)
        rows, cols = np.mgrid[0:96, 0:96]
        one_px_wide = [
            np.where(np.hypot(rows - 70, cols - 70) < r + 1.0, 2, 0) for r in (8.0, 9.0, 10.0)
        ]
        assert signed_errors(calibrated, truth, 2) == pytest.approx(
            signed_errors(one_px_wide, truth, 2)
        )
        assert 0 < signed_errors(calibrated, truth, 2) < signed_errors(plain, truth, 2)
        assert choice.log_weight_of(1) == 0.0 and choice.log_weight_of(2) == 1.0
        for roi in (1, 2):
            assert abs(signed_errors(calibrated, truth, roi)) <= abs(
                signed_errors(plain, truth, roi)
            )
            entry = choice.per_roi[roi]
            assert entry.bias_before_pct == pytest.approx(signed_errors(plain, truth, roi))
            assert entry.bias_after_pct == pytest.approx(signed_errors(calibrated, truth, roi))

    def test_an_exact_roi_keeps_weight_zero_and_its_pixels(self):
        slices = [two_roi_slice(r) for r in (8.0, 9.0, 10.0)]
        choice = choose_area_calibration([m for m, _ in slices], [t for _, t in slices],
                                         num_classes=3)  # fmt: skip
        assert choice.per_roi[1].log_weight == 0.0
        assert choice.per_roi[1].describe("exact").endswith("(unchanged)")
        for (roi, odds), _ in slices:
            assert np.array_equal(choice.labels(roi, odds) == 1, (roi == 1) & (odds > 0))

    @pytest.mark.parametrize("weights", [{1: 0.5, 2: -1.0, 3: 1.5}, {2: 2.0}])
    def test_labels_follow_the_rule_written_out(self, weights):
        # the most likely ROI r is kept where p_r > p_background × w_r (float64, by hand)
        probs = random_probabilities(seed=5).astype(np.float64)
        per_roi = {r: RoiCalibration(log_weight=w) for r, w in weights.items()}
        label = AreaCalibration(per_roi=per_roi).labels(
            *foreground_margin(probs.astype(np.float32))
        )
        best = probs[1:].argmax(axis=0) + 1
        w = np.array([0.0] + [weights.get(r, 0.0) for r in (1, 2, 3)])[best]
        p_best = np.take_along_axis(probs, best[None], axis=0)[0]
        expected = np.where(p_best > probs[0] * np.exp(w), best, 0)
        near_tie = np.abs(np.log(p_best / probs[0]) - w) < 1e-5
        assert np.array_equal(label[~near_tie], expected[~near_tie]) and near_tie.sum() < 3

    def test_log_line_names_every_roi_with_its_bias(self):
        choice = AreaCalibration(
            per_roi={
                1: RoiCalibration(
                    0.0, -0.4, -0.4, held_out_before_pct=-0.5, held_out_after_pct=-0.5
                ),
                2: RoiCalibration(2.0, 46.7, -2.5),
                3: RoiCalibration(),
            }
        )
        assert choice.describe(["disc", "psoas", "tiny"]) == (
            "disc: area bias -0.4 → -0.4 % (unchanged; held-out half -0.5 → -0.5 %); "
            "psoas: area bias +46.7 → -2.5 % (background ×7.39); tiny: not measured (unchanged)"
        )
        assert choice.describe().startswith("ROI 1: area bias -0.4 → -0.4 %")


class TestHeldOut:
    def test_halves_keep_each_series_whole_and_balance_slices(self):
        assert split_in_halves(["a", "a", "a", "b", "b", "c"]) == ((0, 1, 2), (3, 4, 5))
        assert split_in_halves(["b", "a", "b", "a"]) == ((1, 3), (0, 2))  # ties: by name
        assert split_in_halves(["s"] * 5) == ((0, 2, 4), (1, 3))  # one series: alternate

    def test_bias_is_measured_with_the_weight_chosen_on_the_other_half(self):
        # series A draws its disks 1 px too wide, series B exactly: chosen on A (e^1) and
        # measured on B, B's disks come out too small; chosen on B (none), A stays too wide
        wide = [disk_slice(r, r + 1.0) for r in (12.0, 16.0)]
        exact = [disk_slice(r, r) for r in (14.0, 18.0)]
        slices = wide + exact
        held = held_out_area_bias([m for m, _ in slices], [t for _, t in slices],
                                  ["A", "A", "B", "B"], num_classes=2)[1]  # fmt: skip
        size, rows, cols = 80, *np.mgrid[0:80, 0:80]
        radius = np.hypot(rows - size / 2 + 0.5, cols - size / 2 + 0.5)

        def error(true_r: float, drawn_r: float) -> float:  # pixels strictly inside drawn_r
            return 100 * ((radius < drawn_r).sum() / (radius <= true_r).sum() - 1)

        plain = [error(12, 13), error(16, 17), error(14, 14), error(18, 18)]
        calibrated = [error(12, 13), error(16, 17), error(14, 13), error(18, 17)]
        assert held.slices == 4
        assert held.bias_plain_pct == pytest.approx(np.mean(plain))
        assert held.bias_calibrated_pct == pytest.approx(np.mean(calibrated))
        assert calibrated[2] < 0 and calibrated[3] < 0  # B shrunk by the weight chosen on A

    def test_validation_stores_it_beside_the_choice(self):
        slices = [disk_slice(r, r + 1.0) for r in (12.0, 14.0, 16.0, 18.0)]
        margins, truth = [m for m, _ in slices], [t for _, t in slices]
        choice = choose_area_calibration(margins, truth, num_classes=2, groups=["A", "A", "B", "B"])
        entry = choice.per_roi[1]
        assert entry.held_out_slices == 4 and entry.held_out_before_pct > 10.0
        assert abs(entry.held_out_after_pct) < 2.0  # both halves choose e^1
        assert "held-out half +" in choice.describe(["disk"])
        restored = AreaCalibration.from_dict(choice.to_dict())
        assert restored == choice


class TestModelFile:
    def test_round_trips_in_the_post_processing_entry(self):
        calibration = AreaCalibration(1.25, 2.0, 0.1, 3.0, 2.5)
        post = PostProcessing(steps={1: ("fill_holes",)}, calibration=calibration)
        assert PostProcessing.from_dict(post.to_dict()).calibration == calibration

    def test_an_entry_from_before_the_calibration_means_no_weight(self):
        post = PostProcessing.from_dict({"steps": {"1": []}, "dice_before": {"1": 0.9}})
        assert post.calibration.log_weight == 0.0 and post.calibration.background_weight == 1.0

    OLDER: ClassVar[
        dict[str, float]
    ] = {  # a model file's entry from before the per-ROI weights: one weight for all
        "log_weight": 2.0,
        "bias_before_pct": 3.0,
        "bias_after_pct": 0.2,
        "error_before_pct": 4.0,
        "error_after_pct": 2.5,
    }

    def test_an_older_single_weight_applies_to_every_roi_as_before(self):
        calibration = AreaCalibration.from_dict(self.OLDER)
        assert calibration.per_roi == {} and calibration.to_dict() == self.OLDER
        assert (
            calibration.describe(["a"]) == "background ×7.39 (validation area bias +3.0 → +0.2 %)"
        )
        probs = random_probabilities(seed=6)
        weighted = probs.copy()
        weighted[0] *= np.exp(2.0)  # the argmax of the weighted probabilities, as 0.1.0 did
        label = calibration.labels(*foreground_margin(probs))
        assert np.array_equal(label, weighted.argmax(axis=0))
        assert all(calibration.log_weight_of(roi) == 2.0 for roi in (1, 2, 3))

    @pytest.mark.parametrize("form", ["older", "per_roi"])
    def test_predict_applies_the_weight_on_the_slice_s_grid(self, tmp_path, form):
        rows, cols = np.mgrid[0:112, 0:96]
        pixels = 1000.0 * np.exp(-((rows - 56.0) ** 2 + (cols - 48.0) ** 2) / (2 * 25.0**2))
        image = read_slice(write_test_dicom(tmp_path / "a.dcm", pixels.astype(np.int16)))
        spacing = image.spacing_mm
        per_roi = AreaCalibration(per_roi={1: RoiCalibration(log_weight=2.0)}).to_dict()
        post = {"area_calibration": self.OLDER if form == "older" else per_roi}
        plain = Bundle(Threshold(), metadata(input_size=32, target_spacing_mm=spacing))
        weighted = Bundle(
            Threshold(), metadata(input_size=32, target_spacing_mm=spacing, postprocessing=post)
        )
        normalised = normalise_intensity(image.pixels)
        # the Threshold network's log-odds are 4 × the normalised intensity
        label = predict_slices(weighted, [image], device="cpu")[0]
        assert np.array_equal(label, (4 * normalised > 2.0).astype(np.uint8))
        assert label.sum() < predict_slices(plain, [image], device="cpu")[0].sum()

    def test_the_report_names_each_roi_s_bias(self, tmp_path):
        from sliceseg.inference.folder import predict_folder

        write_test_dicom(tmp_path / "in" / "a.dcm", np.full((40, 40), 100, np.int16))
        roi = RoiCalibration(2.0, 46.7, -2.5, held_out_before_pct=40.0, held_out_after_pct=1.0)
        post = PostProcessing(calibration=AreaCalibration(per_roi={1: roi})).to_dict()
        meta = metadata(input_size=32, target_spacing_mm=(0.5, 0.8), postprocessing=post)
        run = predict_folder(Bundle(Threshold(), meta), tmp_path / "in", tmp_path / "out")
        assert run.report is not None
        html = run.report.read_text(encoding="utf-8")
        expected = "a: area bias +46.7 → -2.5 % (background ×7.39; held-out half +40.0 → +1.0 %)"
        assert expected in html

    def test_the_report_names_the_weight(self, tmp_path):
        from sliceseg.inference.folder import predict_folder

        rows, cols = np.mgrid[0:40, 0:40]
        pixels = 1000.0 * np.exp(-((rows - 20.0) ** 2 + (cols - 20.0) ** 2) / (2 * 8.0**2))
        write_test_dicom(tmp_path / "in" / "a.dcm", pixels.astype(np.int16))
        calibration = AreaCalibration(2.0, 3.0, 0.2, 4.0, 2.5)
        post = PostProcessing(calibration=calibration).to_dict()
        bundle = Bundle(
            Threshold(), metadata(input_size=32, target_spacing_mm=(0.5, 0.8), postprocessing=post)
        )
        run = predict_folder(bundle, tmp_path / "in", tmp_path / "out")
        assert run.report is not None
        html = run.report.read_text(encoding="utf-8")
        assert "background ×7.39 (validation area bias +3.0 → +0.2 %)" in html
        assert "0.5 × 0.8 mm (row × column)" in html


class TestValidation:
    """Validation chooses the weight ``predict`` will use; ``area_calibration`` turns it off."""

    @staticmethod
    def too_wide(tmp_path, series: tuple[str, ...]):
        """Gaussian blobs whose truth is where the Threshold network's log-odds 4x exceed 1
        (its argmax: x > 0), one slice per entry of ``series``: its SeriesInstanceUID, each
        file in one flat folder (``s0.dcm``, ``s1.dcm``, ...)."""
        import dataclasses

        from sliceseg.model_space.batches import slices_to_spacing

        rows, cols = np.mgrid[0:64, 0:64]
        pixels = 1000.0 * np.exp(-((rows - 32.0) ** 2 + (cols - 32.0) ** 2) / (2 * 12.0**2))
        images = [
            read_slice(write_test_dicom(tmp_path / f"s{i}.dcm", pixels.astype(np.int16),
                                        series_uid=f"1.2.826.0.1.99.{uid}"))
            for i, uid in enumerate(series)
        ]  # fmt: skip
        data = slices_to_spacing(images, images[0].spacing_mm)
        truth = tuple((4 * im[0] > 1.0).long() for im in data.images)
        return dataclasses.replace(data, labels=truth)

    @staticmethod
    def chosen(data, calibrate: bool = True):
        from sliceseg.training.steps import evaluate_spaced

        _, post = evaluate_spaced(
            Threshold(),
            data,
            device=torch.device("cpu"),
            num_classes=2,
            input_size=32,
            divisor=16,
            calibrate=calibrate,
        )
        return post.calibration

    @pytest.mark.parametrize("calibrate, expected", [(True, 1.0), (False, 0.0)])
    def test_a_network_that_draws_too_wide_gets_its_weight(self, tmp_path, calibrate, expected):
        calibration = self.chosen(self.too_wide(tmp_path, ("1", "2")), calibrate)
        assert calibration.log_weight_of(1) == expected
        if calibrate:
            roi = calibration.per_roi[1]
            assert roi.bias_before_pct > 10 and roi.bias_after_pct == 0
            assert roi.held_out_before_pct > 10 and roi.held_out_after_pct == 0

    def test_a_flat_folder_is_split_in_halves_by_series(self, tmp_path):
        """Held-out halves were made by folder: a flat validation folder was one group, so no
        calibration was ever kept; its series (SeriesInstanceUID) are the halves now."""
        data = self.too_wide(tmp_path, ("1", "2", "2", "3"))
        assert data.keys == ("s0", "s1", "s2", "s3")  # one folder: the keys tell nothing
        roi = self.chosen(data).per_roi[1]
        assert roi.log_weight == 1.0 and roi.held_out_slices == 4
        assert roi.held_out_before_pct > 10 and roi.held_out_after_pct == 0
        assert split_in_halves(data.series) == ((1, 2), (0, 3))  # series 2 whole, then 1 and 3

    def test_the_halves_keep_each_patient_whole(self, tmp_path, monkeypatch):
        """Two validation patients of two series each (two sequences or visits): by series,
        patient P1's series A and B went to opposite halves, so a weight was "confirmed" on
        the patient it was chosen on; the halves are the split's patients now."""
        from sliceseg.dataset.pairing import Sample
        from sliceseg.model_space.batches import samples_to_spacing
        from sliceseg.training import steps

        rows, cols = np.mgrid[0:64, 0:64]
        pixels = 1000.0 * np.exp(-((rows - 32.0) ** 2 + (cols - 32.0) ** 2) / (2 * 12.0**2))
        samples = []
        for i, (patient, uid) in enumerate(
            [("P1", "1")] * 2 + [("P1", "2")] * 2 + [("P2", "3")] * 2 + [("P2", "4")] * 2
        ):
            path = write_test_dicom(
                tmp_path / f"s{i}.dcm",
                pixels.astype(np.int16),
                series_uid=f"1.2.826.0.1.99.{uid}",
                patient_id=patient,
            )
            samples.append(Sample(f"s{i}", read_slice(path), (pixels > 500).astype(np.uint8)))
        data = samples_to_spacing(samples, (0.5, 0.8))
        assert split_in_halves(data.series) == ((0, 1, 4, 5), (2, 3, 6, 7))  # P1 in both
        received = []

        def spy(*args, **kwargs):
            received.append(tuple(kwargs["groups"]))
            return choose_area_calibration(*args, **kwargs)

        monkeypatch.setattr(steps, "choose_area_calibration", spy)
        self.chosen(data)
        assert received == [("patient:P1",) * 4 + ("patient:P2",) * 4]
        assert split_in_halves(received[0]) == ((0, 1, 2, 3), (4, 5, 6, 7))

    def test_the_halves_need_one_series_per_slice(self):
        slices = [disk_slice(r, r + 1.0) for r in (12.0, 14.0)]
        with pytest.raises(ValueError, match=r"^1 series keys for 2 slices: give one each$"):
            held_out_area_bias([m for m, _ in slices], [t for _, t in slices], ["A"],
                               num_classes=2)  # fmt: skip

    def test_one_validation_series_cannot_confirm_a_weight(self, tmp_path):
        # the same bias on a single series: no held-out series shows the weight carries over
        roi = self.chosen(self.too_wide(tmp_path, ("1", "1"))).per_roi[1]
        assert roi.log_weight == 0.0 and roi.bias_before_pct > 10
        assert roi.bias_after_pct == roi.bias_before_pct
        assert roi.describe("blob").endswith(
            "(unchanged; held-out half "
            f"{roi.held_out_before_pct:+.1f} → "
            f"{roi.held_out_before_pct:+.1f} %)"
        )


class TestSeriesConfirmation:
    """A weight is kept only when the validation series it was not chosen on confirm it."""

    def test_a_bias_of_one_series_only_is_not_carried_to_the_others(self):
        # series a: ROI 2 drawn 2 px too wide; series b: drawn exactly. Pooled, a weight lowers
        # the bias, but chosen on a it makes b too small, and chosen on b it leaves a unchanged.
        wide = [two_roi_slice(r) for r in (8.0, 9.0)]
        exact = []
        for r in (8.0, 9.0):
            (roi, odds), truth = two_roi_slice(r)
            rows, cols = np.mgrid[0:96, 0:96]
            odds2 = r - np.hypot(rows - 70, cols - 70)  # the small disk drawn exactly
            exact.append(((roi, np.where(roi == 2, odds2, odds).astype(np.float32)), truth))
        slices = wide + exact
        margins, truth = [m for m, _ in slices], [t for _, t in slices]
        pooled = choose_area_calibration(margins, truth, num_classes=3)
        assert pooled.log_weight_of(2) > 0  # without series, the pooled bias wins
        grouped = choose_area_calibration(
            margins, truth, num_classes=3, groups=["a", "a", "b", "b"]
        )
        assert grouped.log_weight_of(2) == 0.0
        assert grouped.per_roi[2].bias_after_pct == grouped.per_roi[2].bias_before_pct


def test_the_setting_must_be_a_boolean():
    from sliceseg.errors import ConfigError
    from sliceseg.training.config import TrainConfig

    with pytest.raises(
        ConfigError,
        match=r"^--area-calibration \(area_calibration\) must be true or false, got 'no'; in a "
        r"settings file, write it without quotes\.$",
    ):
        TrainConfig(area_calibration="no")  # type: ignore[arg-type]
    assert TrainConfig().area_calibration is False  # off by default since issue 18


def test_the_cli_flags_turn_it_on_and_off(tmp_path):
    from sliceseg.cli import build_parser
    from sliceseg.cli.training import user_settings
    from sliceseg.training.config import TrainConfig

    def chosen(*flags: str) -> bool:
        given = user_settings(build_parser().parse_args(["train", "data", *flags]))
        return TrainConfig().with_settings(given).area_calibration

    assert chosen() is False
    assert chosen("--area-calibration") is True
    assert chosen("--no-area-calibration") is False
    settings = tmp_path / "on.toml"
    settings.write_text("area_calibration = true\n")
    assert chosen("--config", str(settings)) is True
    assert chosen("--config", str(settings), "--no-area-calibration") is False
