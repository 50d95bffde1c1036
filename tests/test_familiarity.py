"""Tests of the "unlike the training data" check: the profile, the verdict, the features, and
what `predict` and `suggest` do with a flagged series (sliceseg.measure.familiarity,
sliceseg.models.features, sliceseg.training.profile, sliceseg.inference.familiarity)."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

from conftest import (
    copy_series,
    invert_pixels,
    tiny_config,
    warning_during,
    with_network_checks_open,
)
from sliceseg.cli import main
from sliceseg.engine.model_info import model_summary
from sliceseg.inference.confidence import least_confident
from sliceseg.inference.familiarity import FamiliarityWarning, model_profile
from sliceseg.inference.folder import predict_folder
from sliceseg.inference.suggest import suggest_slices
from sliceseg.measure.familiarity import (
    PROFILE_VERSION,
    TrainingProfile,
    build_profile,
    slice_oddness,
)
from sliceseg.measure.series_verdict import Verdict, judge_series
from sliceseg.measure.slice_traits import (
    INTENSITY_QUANTILES,
    SliceTraits,
    body_at_edges,
    intensity_quantiles,
    roi_geometry,
)
from sliceseg.models import build_model
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.models.features import deepest_features, deepest_module

NAMES = ("disc", "muscle")


def _traits(rng: np.random.Generator, n: int, *, shift: float = 0.0, flip: bool = False):
    """Slices whose features are N(shift, 1) in 8 channels, intensities of a skewed image."""
    out = []
    for _ in range(n):
        image = rng.exponential(1.0, 400) - 1.0  # long bright tail: positive skew
        image = -image if flip else image
        areas = np.array([400.0, 900.0]) * rng.uniform(0.9, 1.1, 2)
        distances = np.array([20.0, 40.0]) + rng.uniform(-2, 2, 2)
        features = rng.normal(shift, 1.0, 8)
        out.append(SliceTraits(features, intensity_quantiles(image), areas, distances))
    return out


@pytest.fixture(scope="module")
def profile() -> TrainingProfile:
    rng = np.random.default_rng(0)
    reference = np.stack([t.features for t in _traits(rng, 40)])
    return build_profile(_traits(rng, 200), reference)


class TestGeometry:
    def test_areas_and_distances_by_hand(self):
        label = np.zeros((20, 20), np.uint8)
        label[0:2, 0:2] = 1  # centroid (0.5, 0.5) px
        label[0:2, 10:12] = 2  # centroid (0.5, 10.5) px; all ROIs: (0.5, 5.5)
        areas, distances = roi_geometry(label, (2.0, 0.5), 3)
        assert areas.tolist() == [4.0, 4.0, 0.0]  # 4 px × 1 mm²
        assert distances[:2].tolist() == [2.5, 2.5]  # 5 columns × 0.5 mm
        assert np.isnan(distances[2])  # absent

    def test_distances_ignore_flips_and_transposes(self):
        label = np.zeros((12, 9), np.uint8)
        label[1:4, 1:3], label[6:11, 4:8] = 1, 2
        base = roi_geometry(label, (1.0, 1.0), 2)[1]
        for changed in (label[::-1], label[:, ::-1], label.T):
            assert np.allclose(roi_geometry(changed, (1.0, 1.0), 2)[1], base)

    def test_intensity_quantiles(self):
        quantiles = intensity_quantiles(np.arange(101.0))
        assert np.allclose(quantiles, [100 * q for q in INTENSITY_QUANTILES])


class TestVerdict:
    def test_like_the_training_data_is_not_flagged(self, profile: TrainingProfile):
        traits = _traits(np.random.default_rng(1), 10)
        verdict = judge_series(profile, traits, NAMES)
        assert not verdict.is_flagged and verdict.describe() == ""

    def test_far_features_are_flagged(self, profile: TrainingProfile):
        # 8 channels shifted by 4 std: distance ≈ 11, far beyond the reference's ≈ 3–5
        verdict = judge_series(profile, _traits(np.random.default_rng(1), 10, shift=4), NAMES)
        assert verdict.is_flagged
        assert verdict.reasons == (verdict.reasons[0],)
        assert verdict.reasons[0].startswith("the network's deepest features are far")

    def test_inverted_intensities_name_the_contrast(self, profile: TrainingProfile):
        verdict = judge_series(profile, _traits(np.random.default_rng(1), 10, flip=True), NAMES)
        assert "intensity quantiles far outside training (inverted contrast?)" in verdict.reasons

    def test_areas_outside_the_trained_range_name_the_roi(self, profile: TrainingProfile):
        traits = _traits(np.random.default_rng(1), 10)
        # muscle at a third of its trained minimum (≈ 810 mm²) on 6 of 10 slices
        small = [
            SliceTraits(t.features, t.intensity, t.areas_mm2 * [1, 0.3], t.distances_mm)
            if i < 6
            else t
            for i, t in enumerate(traits)
        ]
        verdict = judge_series(profile, small, NAMES)
        assert verdict.reasons == ("ROI areas outside the trained range (muscle)",)
        # 4 of 10 slices is not a series unlike the training data
        assert not judge_series(profile, small[4:] + traits[:6], NAMES).is_flagged

    def test_an_roi_no_training_slice_showed_is_said_never_seen(self):
        """An ROI absent from every training slice has no trained range: found on most slices
        of a series it was said to have "areas / positions outside the trained range"."""
        rng = np.random.default_rng(3)

        def with_third(traits: list[SliceTraits], area: float) -> list[SliceTraits]:
            return [
                SliceTraits(t.features, t.intensity, np.append(t.areas_mm2, area * (i < 7)),
                            np.append(t.distances_mm, 30.0 if area * (i < 7) else np.nan))
                for i, t in enumerate(traits)
            ]  # fmt: skip

        trained = build_profile(with_third(_traits(rng, 40), 0.0), None)
        verdict = judge_series(trained, with_third(_traits(rng, 10), 50.0), (*NAMES, "spleen"))
        assert verdict.reasons == ("ROI never seen in training found on most slices (spleen)",)
        seen_on_few = with_third(_traits(rng, 10), 50.0)[5:]  # 2 of 5 slices
        assert not judge_series(trained, seen_on_few, (*NAMES, "spleen")).is_flagged

    def test_a_missing_roi_is_off_and_a_far_one_astray(self, profile: TrainingProfile):
        t = _traits(np.random.default_rng(2), 1)[0]
        missing = SliceTraits(t.features, t.intensity, np.array([0.0, 900.0]), t.distances_mm)
        astray = SliceTraits(t.features, t.intensity, t.areas_mm2, np.array([20.0, 90.0]))
        odd = slice_oddness(profile, [t, missing, astray])
        assert odd.area_off.tolist() == [[False, False], [True, False], [False, False]]
        assert odd.distance_off.tolist() == [[False, False], [False, False], [False, True]]
        assert odd.shape_score.tolist() == [0.0, 0.5, 0.5]

    def test_profile_round_trips_as_plain_data(self, profile: TrainingProfile):
        data = profile.to_dict()
        assert data["version"] == PROFILE_VERSION and isinstance(data["feature_mean"], list)
        assert data["intensity_series_threshold"] is None  # not learnt (no series): no NaN
        again = TrainingProfile.from_dict(data)
        assert np.allclose(again.feature_precision, profile.feature_precision)
        assert again.num_slices == 200 and np.isnan(again.intensity_series_threshold)
        version_3 = {k: v for k, v in data.items() if k != "num_series"} | {"version": 3}
        assert TrainingProfile.from_dict(version_3).num_series == 0  # not known: loads as before

    def test_a_version_2_profile_has_no_edge_check(self, grouped: TrainingProfile):
        new = {"edge_series_threshold", "edge_slice_threshold"}
        old = {k: v for k, v in grouped.to_dict().items() if k not in new} | {"version": 2}
        again = TrainingProfile.from_dict(old)
        assert np.isnan(again.edge_series_threshold) and np.isnan(again.edge_slice_threshold)
        cut = _edge_traits(np.random.default_rng(7), 5, cut=0.4)
        assert not judge_series(again, cut, NAMES).is_flagged
        assert judge_series(grouped, cut, NAMES).is_flagged

    def test_a_version_1_profile_still_judges(self, profile: TrainingProfile):
        new = {"intensity_mean", "intensity_precision", "intensity_series_threshold"}
        new |= {"intensity_slice_threshold", "shape_off_validation"}
        old = {k: v for k, v in profile.to_dict().items() if k not in new} | {"version": 1}
        again = TrainingProfile.from_dict(old)
        assert again.intensity_mean.size == 0 and again.shape_off_validation.size == 0
        rng = np.random.default_rng(1)
        assert not judge_series(again, _traits(rng, 10), NAMES).is_flagged
        assert judge_series(again, _traits(rng, 10, flip=True), NAMES).is_flagged


def _gamma_traits(rng: np.random.Generator, n: int, gamma: float) -> list[SliceTraits]:
    """Like `_traits`, the image's histogram bent by a gamma (then z-scored, as the model's
    input is): a contrast change the range check does not see."""
    out = []
    for t in _traits(rng, n):
        image = (rng.exponential(1.0, 400) + 0.05) ** gamma
        image = (image - image.mean()) / image.std()
        out.append(SliceTraits(t.features, intensity_quantiles(image), t.areas_mm2, t.distances_mm))
    return out


def _body(rng: np.random.Generator, *, cut: float = 0.0, side: int = 64) -> np.ndarray:
    """A noisy dark image with a bright ellipse (the body) inside it; ``cut``: that share of
    the columns removed from the left, so the body reaches the left edge."""
    rows, cols = np.indices((side, side), dtype=np.float64)
    a, b = side * rng.uniform(0.34, 0.4), side * rng.uniform(0.28, 0.34)
    inside = ((rows - side / 2) / b) ** 2 + ((cols - side / 2) / a) ** 2 <= 1
    image = np.where(inside, 1.0, 0.0) + rng.normal(0, 0.03, (side, side))
    return image[:, round(cut * side) :]


def _edge_traits(rng: np.random.Generator, n: int, *, cut: float = 0.0) -> list[SliceTraits]:
    """Like `_gamma_traits` (gamma 1), each with the `body_at_edges` of a `_body` image."""
    return [
        SliceTraits(
            t.features, t.intensity, t.areas_mm2, t.distances_mm, body_at_edges(_body(rng, cut=cut))
        )
        for t in _gamma_traits(rng, n, 1.0)
    ]


@pytest.fixture(scope="module")
def grouped() -> TrainingProfile:
    """A profile of 5 training series × 40 slices (their intensity threshold is learnt)."""
    train = _edge_traits(np.random.default_rng(0), 200)
    return build_profile(train, series=[f"s{i // 40}" for i in range(200)])


class TestLearntThresholds:
    """Thresholds the profile learns from the training series and the validation slices."""

    def test_a_series_unlike_every_training_series_is_flagged(self, grouped: TrainingProfile):
        rng = np.random.default_rng(3)
        assert not judge_series(grouped, _gamma_traits(rng, 10, 1.0), NAMES).is_flagged
        bent = _gamma_traits(rng, 10, 1.3)  # inside the slices' range ± 3 std
        verdict = judge_series(grouped, bent, NAMES)
        assert len(verdict.reasons) == 1
        assert verdict.reasons[0].startswith("intensities unlike every training series (distance")
        # the range check alone (a profile without series) lets it pass
        plain = build_profile(_gamma_traits(np.random.default_rng(0), 200, 1.0))
        assert np.isnan(plain.intensity_series_threshold)
        assert not judge_series(plain, bent, NAMES).is_flagged

    def test_short_series_meet_the_single_slice_threshold(self, grouped: TrainingProfile):
        assert grouped.intensity_slice_threshold > grouped.intensity_series_threshold > 0
        # two slices between the series and the slice threshold: flagged only as a series
        target = (grouped.intensity_series_threshold + grouped.intensity_slice_threshold) / 2
        base = _gamma_traits(np.random.default_rng(4), 1, 1.0)[0]
        step = np.linspace(0.0, 1.0, 7)  # a monotone change of the histogram's shape
        low, high = 0.0, 50.0
        for _ in range(60):  # bisection: the shifted quantiles at distance `target`
            middle = (low + high) / 2
            quantiles = grouped.intensity_mean + middle * step
            below = grouped.intensity_distance(quantiles[None]) < target
            low, high = (middle, high) if below else (low, middle)
        odd = SliceTraits(base.features, quantiles, base.areas_mm2, base.distances_mm)
        assert not judge_series(grouped, [odd, odd], NAMES).is_flagged
        assert (
            judge_series(grouped, [odd] * 3, NAMES)
            .reasons[0]
            .startswith("intensities unlike every training series")
        )

    def test_a_field_of_view_that_cuts_the_body_is_flagged(self, grouped: TrainingProfile):
        rng = np.random.default_rng(8)
        assert body_at_edges(_body(rng)) == 0.0  # the body inside the field of view
        assert grouped.edge_series_threshold == pytest.approx(0.1)  # no training edge: margin
        assert not judge_series(grouped, _edge_traits(rng, 5), NAMES).is_flagged
        assert not judge_series(grouped, _edge_traits(rng, 5, cut=0.1), NAMES).is_flagged
        (reason,) = judge_series(grouped, _edge_traits(rng, 5, cut=0.35), NAMES).reasons
        assert reason.startswith("the body reaches the image's edge (field of view cut? ")
        assert reason.endswith(" of a side, training ≤ 0%)")
        share = float(reason.split("? ")[1].split("%")[0]) / 100
        assert 0.35 < share < 0.6  # the ellipse's chord at the cut, as a share of the side

    def test_one_slice_meets_the_slice_threshold(self):
        rng = np.random.default_rng(9)
        train = _edge_traits(rng, 40)
        touching = SliceTraits(
            *[getattr(train[0], f) for f in ("features", "intensity")],
            train[0].areas_mm2,
            train[0].distances_mm,
            0.3,
        )
        train[0] = touching  # one training slice touches an edge, its series' median does not
        learnt = build_profile(train, series=[f"s{i // 10}" for i in range(40)])
        assert learnt.edge_slice_threshold == pytest.approx(0.4)
        assert learnt.edge_series_threshold == pytest.approx(0.1)
        assert not judge_series(learnt, [touching], NAMES).is_flagged
        assert judge_series(learnt, [touching] * 3, NAMES).is_flagged

    def test_an_roi_the_model_misses_on_validation_does_not_flag(self, profile: TrainingProfile):
        rng = np.random.default_rng(5)
        train = _traits(rng, 100)

        def without_muscle(traits: list[SliceTraits], count: int) -> list[SliceTraits]:
            return [
                SliceTraits(t.features, t.intensity, t.areas_mm2 * [1, 0], t.distances_mm)
                if i < count
                else t
                for i, t in enumerate(traits)
            ]

        checked = without_muscle(_traits(rng, 4), 3)  # the model missed it on 3 of 4
        learnt = build_profile(train, checked=checked)
        assert learnt.shape_off_validation.tolist() == [0.0, 0.75]
        series = _traits(rng, 10)
        # 7 of 10 slices without muscle: more than half, fewer than on validation
        assert not judge_series(learnt, without_muscle(series, 7), NAMES).is_flagged
        assert judge_series(learnt, without_muscle(series, 8), NAMES).reasons == (
            "ROI areas outside the trained range (muscle)",
        )
        assert judge_series(build_profile(train), without_muscle(series, 7), NAMES).is_flagged


def test_few_validation_slices_do_not_flag_slices_like_training():
    """Under five validation slices, the feature threshold came from the training slices'
    distances from a fit that held them: far nearer its mean than any new slice, so a series
    just like training was flagged ("deepest features are far from training")."""
    rng = np.random.default_rng(11)

    def slices(n: int, shift: float = 0.0) -> list[SliceTraits]:  # 64 channels, as a network's
        return [replace(t, features=rng.normal(shift, 1.0, 64)) for t in _traits(rng, n)]

    train = slices(8)
    for reference in (np.stack([t.features for t in slices(3)]), None):
        learnt = build_profile(train, reference)
        alike = [judge_series(learnt, slices(10), NAMES) for _ in range(10)]
        assert sum(v.is_flagged for v in alike) <= 1, [v.describe() for v in alike]
        (reason,) = judge_series(learnt, slices(10, shift=4.0), NAMES).reasons
        assert reason.startswith("the network's deepest features are far from training")


def test_two_training_slices_are_not_held_to_their_own_feature_distances():
    """Two training slices cannot be left out of a fit (one slice has no spread): their own
    distances from the fit that held them set the threshold, and every series like them was
    flagged ("deepest features are far from training"). Only slices outside the fit set it now;
    without a validation slice there is none, and the feature check is off (info says so)."""
    rng = np.random.default_rng(12)

    def slices(n: int) -> list[SliceTraits]:  # 64 channels, as a network's
        return [replace(t, features=rng.normal(0.0, 1.0, 64)) for t in _traits(rng, n)]

    train = slices(2)
    alone = build_profile(train)
    assert np.isnan(alone.feature_threshold)
    assert alone.to_dict()["feature_threshold"] is None  # plain data: not learnt
    assert np.isnan(TrainingProfile.from_dict(alone.to_dict()).feature_threshold)
    for _ in range(10):
        reasons = judge_series(alone, slices(10), NAMES).reasons
        assert not any(r.startswith("the network's deepest features") for r in reasons)
    reference = np.stack([t.features for t in slices(3)])
    learnt = build_profile(train, reference)
    expected = 1.5 * np.quantile(learnt.feature_distance(reference), 0.99)
    assert learnt.feature_threshold == pytest.approx(expected)  # the validation slices' alone


def _flat(phantom: Path, data: Path) -> Path:
    """The phantom's training subjects in one flat folder (``dicoms/sub01_s01.dcm``, ...): their
    series told apart only by their headers (SeriesInstanceUID, PatientID)."""
    for kind in ("dicoms", "labels"):
        (data / kind).mkdir(parents=True)
        for source in sorted((phantom / "train" / kind).glob("*/*")):
            shutil.copyfile(source, data / kind / source.name)
    shutil.copyfile(phantom / "train" / "labels.txt", data / "labels.txt")
    return data


def test_a_flat_folder_of_several_series_learns_the_intensity_threshold(
    tiny_phantom: Path, tmp_path: Path
):
    """The profile grouped training slices by folder: a flat folder of three patients was one
    series, so the intensity threshold (three series at least) was never learnt. It groups by
    series now, the same key as areas and the split: flat or in sub-folders, one profile."""
    from sliceseg.training.profile import training_profile
    from sliceseg.training.run_data import load_training_data

    torch.manual_seed(0)
    network = build_model("unet", num_classes=7, input_size=64, base_channels=8, depth=3)
    runs = []
    for data_dir in (tiny_phantom / "train", _flat(tiny_phantom, tmp_path / "flat")):
        config = tiny_config(data_dir, tmp_path / "m", validation_fraction=0.0)
        data = load_training_data(config, None)
        runs.append((data.train, training_profile(network, data.train, None, num_labels=6,
                                                  divisor=4)))  # fmt: skip
    (nested_train, nested), (flat_train, flat) = runs
    assert np.isfinite(flat.intensity_series_threshold)
    assert flat.intensity_series_threshold == pytest.approx(nested.intensity_series_threshold)
    assert flat.intensity_slice_threshold == pytest.approx(nested.intensity_slice_threshold)
    assert flat.num_series == nested.num_series == 3
    uids = {pydicom.dcmread(p).SeriesInstanceUID for p in (tmp_path / "flat" / "dicoms").iterdir()}
    assert len(uids) == 3 and set(flat_train.series) == uids
    assert flat_train.series == nested_train.series


class TestFeatures:
    def test_unet_bottleneck_and_the_decoder_skipped(self):
        torch.manual_seed(0)
        model = build_model("unet", num_classes=3, input_size=64, base_channels=8, depth=4).eval()
        layer = deepest_module(model, side=64)
        assert layer is model.encoder.stages[-1]  # the last encoder stage: S / 8
        calls = []
        model.head.register_forward_hook(lambda *_: calls.append(1))
        features = deepest_features(model, [torch.rand(1, 50, 70)], divisor=8, layer=layer)
        assert features.shape == (1, 64)  # widths 8, 16, 32, 64
        assert calls == []  # stopped at the bottleneck

    def test_features_are_the_spatial_mean(self):
        torch.manual_seed(0)
        model = build_model("unet", num_classes=3, input_size=64, base_channels=8, depth=4).eval()
        image = torch.rand(1, 64, 64)
        taken = {}
        stage = model.encoder.stages[-1]
        stage.register_forward_hook(lambda _m, _i, out: taken.setdefault("map", out))
        features = deepest_features(model, [image], divisor=8)
        assert np.allclose(features[0], taken["map"].mean(dim=(2, 3))[0].numpy(), atol=1e-6)


# --- with a trained model: the profile in the model file, predict, suggest -----------------


@pytest.fixture(scope="module")
def two_series(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The phantom's test subject, and an inverted-contrast copy of it (folder ``inverted``)."""
    root = tmp_path_factory.mktemp("two") / "scans"
    (subject,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
    shutil.copytree(subject, root / "original")
    copy_series(subject, root / "inverted", invert_pixels)
    return root


def test_training_stores_the_profile(tiny_model: Path):
    profile = model_profile(load_bundle(tiny_model))
    assert profile is not None
    assert profile.num_slices == 6  # 3 subjects × 3 slices, one subject for validation
    assert profile.area_low_mm2.shape == (6,) and (profile.area_high_mm2 > 0).all()
    row = model_summary(tiny_model)["training data profile"]
    assert (
        row == "6 training slices: a series unlike them is flagged and left out of the overall mean"
    )
    assert profile.edge_series_threshold >= 0.1  # learnt: the margin over training's edges


def test_an_older_profile_says_it_has_no_field_of_view_check(tiny_model: Path, tmp_path: Path):
    bundle = load_bundle(tiny_model)
    data = dict(bundle.metadata.familiarity or {})
    data = {k: v for k, v in data.items() if not k.startswith("edge_")} | {"version": 2}
    old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    path = save_bundle(tmp_path / "v2.pt", bundle.model, old)
    assert model_summary(path)["training data profile"].endswith(
        "(no field-of-view check: a profile from before version 3, or not measured; "
        "'sliceseg reprofile MODEL TRAIN_DIR' rebuilds it)"
    )


def test_info_names_the_rois_expected_on_every_slice(tiny_model: Path, tmp_path: Path):
    """ROIs on ≥ 95 % of the training slices (those whose absence scores confidence 0)."""
    bundle = load_bundle(tiny_model)
    data = dict(bundle.metadata.familiarity or {})
    data["presence"] = [1.0, 0.96, 0.5, 0.94, 0.95, 0.0]
    names = bundle.metadata.roi_names
    meta = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    row = model_summary(save_bundle(tmp_path / "p.pt", bundle.model, meta))
    expected = ", ".join([names[0], names[1], names[4]])
    assert row["ROIs expected on every slice"] == (
        f"{expected} (on ≥ 95 % of the training slices): a slice missing one has confidence 0"
    )
    data["presence"] = [0.5] * 6
    meta = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    row = model_summary(save_bundle(tmp_path / "q.pt", bundle.model, meta))
    assert row["ROIs expected on every slice"].startswith("none (on ≥ 95 %")


def test_info_says_when_the_intensity_check_was_not_learnt_and_why(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """Two training patients: the intensity distance's threshold (three series) is not learnt,
    which info did not say; a profile from before version 4 counted series by folder."""
    assert main(["info", str(tiny_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "intensity check: not learnt (needs 3 training series, had 2): only the intensity "
        "range is checked"
    ) in lines
    bundle = load_bundle(tiny_model)
    data = dict(bundle.metadata.familiarity or {})

    def row(familiarity: dict) -> str:
        meta = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": familiarity})
        return model_summary(save_bundle(tmp_path / "p.pt", bundle.model, meta))["intensity check"]

    learnt = data | {"intensity_series_threshold": 2.5, "num_series": 4}
    assert row(learnt) == "learnt by leaving each of the 4 training series out"
    older = {k: v for k, v in data.items() if k != "num_series"} | {"version": 3}
    assert row(older) == (
        "not learnt (fewer than 3 training series, counted by folder before profile version 4; "
        "'sliceseg reprofile MODEL TRAIN_DIR' counts them by SeriesInstanceUID)"
    )
    no_features = data | {"feature_threshold": None}
    meta = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": no_features})
    profile_row = model_summary(save_bundle(tmp_path / "f.pt", bundle.model, meta))
    assert profile_row["training data profile"].endswith(
        "(no feature check: 2 training slices and no validation slice leave no slice outside "
        "the fit to set its threshold; train on 3 or more)"
    )


def test_old_model_file_says_it_has_no_profile(tiny_model: Path, tmp_path: Path):
    bundle = load_bundle(tiny_model)
    old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": None})
    path = save_bundle(tmp_path / "old.pt", bundle.model, old)
    assert model_profile(load_bundle(path)) is None
    assert model_summary(path)["training data profile"].startswith("none: series are not")
    assert model_summary(path)["ROIs expected on every slice"].startswith("not known (no training")
    assert model_summary(path)["intensity check"] == "none (no training data profile)"


def test_inverted_copy_is_flagged_named_and_left_out(
    tiny_model: Path, two_series: Path, tmp_path: Path
):
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    run = predict_folder(model, two_series, tmp_path / "out")
    flagged = [v for v in run.familiarity if v.is_flagged]
    assert len(run.familiarity) == 2 and len(flagged) == 1
    (line,) = [w for w in run.warnings if "unlike the training data" in w]
    # named as csa_long.csv and the cohort command name it (it was "series 2 (inverted/...")
    assert line.startswith("series inverted is unlike the training data: ")
    assert "intensity quantiles far outside training (inverted contrast?)" in line
    wide = pd.read_csv(tmp_path / "out" / "csa.csv", index_col="slice", dtype={"slice": str})
    long = pd.read_csv(tmp_path / "out" / "csa_long.csv")
    slices = wide.loc[[label for label in wide.index if label.isdigit()]]
    is_inverted = slices["file"].str.startswith("inverted/")
    assert slices["unlike_training"].tolist() == is_inverted.astype(int).tolist()
    assert (long["unlike_training"] == long["file"].str.startswith("inverted/")).all()
    # the overall mean is over the original series' slices with the ROI, worked out here
    for roi in run.areas.per_slice.columns:
        kept = slices.loc[~is_inverted, roi]
        assert wide.loc["mean", roi] == pytest.approx(kept[kept > 0].mean(), nan_ok=True)
    assert "without 1 series unlike the training data (3 slices)" in wide.loc["mean", "file"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "1 series unlike the training data</h2>" in html
    assert "inverted contrast?" in html


def test_predict_folder_takes_series_in_the_order_of_their_names(
    tiny_model: Path, tiny_phantom: Path, tmp_path: Path
):
    """sub05's SeriesInstanceUID sorts before sub04's: the series came out sub05 first, where
    the cohort command (and every listing by name) has sub04 first."""
    (subject,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
    for name, uid in (("sub05", "1.2.826.0.1.3680043.8.498.1"), ("sub04", "1.2.826.0.1.9")):
        copy_series(subject, tmp_path / "scans" / name, uid=uid)
    run = predict_folder(tiny_model, tmp_path / "scans", tmp_path / "out", report=False)
    assert [p.key.split("/")[0] for p in run.predictions] == ["sub04"] * 3 + ["sub05"] * 3
    assert run.areas.long["series"].unique().tolist() == ["sub04", "sub05"]
    wide = pd.read_csv(tmp_path / "out" / "csa.csv", index_col="slice", dtype={"slice": str})
    assert [label for label in wide.index if "series" in label][::3] == [
        "mean series sub04",
        "mean series sub05",
    ]


def test_predict_folder_names_a_series_at_the_top_of_dot_as_the_cohort_does(
    tiny_model: Path, tiny_phantom: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``predict_folder(model, ".")``: its folder's name (as `predict`, `suggest`, `measure`),
    not "series"."""
    (subject,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
    shutil.copytree(subject, tmp_path / "sub04")
    monkeypatch.chdir(tmp_path / "sub04")
    run = predict_folder(tiny_model, ".", tmp_path / "out", report=False)
    assert run.areas.long["series"].unique().tolist() == ["sub04"]
    assert [p.name for e in run.exports for p in e.files] == ["sub04.nii.gz", "sub04.seg.nrrd"]


def _cut_columns(keep: float) -> Callable[[pydicom.Dataset], None]:
    """Keep only the left ``keep`` of a file's columns (a narrower field of view that cuts the
    body): an edit for `copy_series`."""

    def cut(ds: pydicom.Dataset) -> None:
        pixels = np.ascontiguousarray(ds.pixel_array[:, : round(keep * ds.Columns)])
        ds.PixelData, ds.Columns = pixels.tobytes(), pixels.shape[1]

    return cut


def test_a_cut_field_of_view_is_flagged_and_named(
    tiny_model: Path, two_series: Path, tmp_path: Path
):
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    scans = tmp_path / "scans"
    shutil.copytree(two_series / "original", scans / "original")
    copy_series(two_series / "original", scans / "cut", _cut_columns(0.6))
    run = predict_folder(model, scans, tmp_path / "out")
    (line,) = [w for w in run.warnings if "unlike the training data" in w]
    assert line.startswith("series cut is unlike the training data: ")  # as csa.csv names it
    assert "the body reaches the image's edge (field of view cut? " in line


def test_review_first_agrees_with_csa_long(tiny_model: Path, two_series: Path, tmp_path: Path):
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    predict_folder(model, two_series, tmp_path / "out")
    long = pd.read_csv(tmp_path / "out" / "csa_long.csv")
    per_slice = long.groupby("file").agg(c=("confidence", "min"), u=("unlike_training", "max"))
    expected = per_slice.sort_values(["u", "c"], ascending=[False, True]).index.tolist()
    html = (tmp_path / "out" / "report.html").read_text()
    review = html.split('id="review"')[1].split("</ol>")[0]
    shown = [item.split("</a>")[0].rsplit(">", 1)[1] for item in review.split("<li>")[1:]]
    assert shown == expected[: len(shown)] and len(shown) == 1  # 10 % of 6 slices, at least 1
    suggested = suggest_slices(model, two_series, n=6, spread=False)
    assert [s.key for s in suggested] == expected
    assert [s.unlike_training for s in suggested] == [True] * 3 + [False] * 3


def test_original_alone_is_not_flagged(tiny_model: Path, two_series: Path, tmp_path: Path):
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    run = predict_folder(model, two_series / "original", tmp_path / "out")
    assert [v.is_flagged for v in run.familiarity] == [False]
    assert not any("unlike the training data" in w for w in run.warnings)


def test_old_model_file_predicts_as_before_and_says_so_once(
    tiny_model: Path, two_series: Path, tmp_path: Path
):
    bundle = load_bundle(tiny_model)
    old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": None})
    path = save_bundle(tmp_path / "old.pt", bundle.model, old)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        run = predict_folder(path, two_series, tmp_path / "out")
    said = [w for w in caught if issubclass(w.category, FamiliarityWarning)]
    assert len(said) == 1 and "no familiarity check in this model file" in str(said[0].message)
    wide = pd.read_csv(tmp_path / "out" / "csa.csv", index_col="slice", dtype={"slice": str})
    assert "unlike_training" not in wide and run.familiarity == []
    slices = wide.loc[[label for label in wide.index if label.isdigit()]]
    for roi in run.areas.per_slice.columns:  # every slice counts, as before
        assert wide.loc["mean", roi] == pytest.approx(
            slices[roi][slices[roi] > 0].mean(), nan_ok=True
        )


def test_a_cohort_says_once_that_an_old_model_file_has_no_check(
    tiny_model: Path, two_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """`predict` said the "no familiarity check" note once per series (each series' writer
    warned it, and the thread-local warning filters reset Python's "once" registry): a
    cohort of 10,000 series printed it 10,000 times. The run says it once."""
    bundle = load_bundle(tiny_model)
    old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": None})
    path = save_bundle(tmp_path / "old.pt", bundle.model, old)
    argv = ["predict", str(path), str(two_series), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu", "--visuals", "none", "--export", "none"]) == 0
    said = capsys.readouterr().err.count("no familiarity check in this model file")
    assert said == 1


def test_a_damaged_profile_says_once_which_checks_are_off(
    tiny_model: Path, two_series: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """NaN or infinite numbers in a hand-edited profile switched the checks they feed off
    without a word (the inverted series was no longer flagged). Predict runs with the other
    checks and says once which are off; a folder's predict too."""
    bundle = load_bundle(with_network_checks_open(tiny_model, tmp_path / "open.pt"))
    data = dict(bundle.metadata.familiarity or {})
    data["intensity_low"] = [float("nan"), *data["intensity_low"][1:]]
    data["feature_threshold"] = float("inf")
    damaged = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    path = save_bundle(tmp_path / "damaged.pt", bundle.model, damaged)
    argv = ["predict", str(path), str(two_series), "--out", str(tmp_path / "out")]
    assert main([*argv, "--device", "cpu", "--visuals", "none", "--export", "none"]) == 0
    err = capsys.readouterr().err
    assert err.count("its training data profile is damaged") == 1
    assert (
        f"{path}: its training data profile is damaged (NaN or infinite numbers in "
        "feature_threshold, intensity_low): the deepest-features check and the intensity range "
        "check are off for every series, the other checks run; 'sliceseg reprofile MODEL "
        "TRAIN_DIR' rebuilds it." in err
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_folder(path, two_series, tmp_path / "folder")
    said = [w for w in caught if "profile is damaged" in str(w.message)]
    assert len(said) == 1 and issubclass(said[0].category, FamiliarityWarning)


def test_flagged_slices_come_first_with_their_turns():
    confidence = [0.9, 0.2, 0.95, 0.3, 0.5]
    series = ["a", "a", "b", "b", "c"]
    flagged = [False, False, True, True, False]
    assert least_confident(confidence, series, n=5, spread=False, flagged=flagged) == [
        3, 2, 1, 4, 0
    ]  # fmt: skip
    assert least_confident(confidence, series, n=5, spread=True, flagged=flagged) == [
        3, 2, 1, 4, 0
    ]  # fmt: skip


def test_cohort_run_flags_marks_and_leaves_out(tiny_model: Path, two_series: Path, tmp_path: Path):
    from sliceseg.inference.cohort import predict_cohort

    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    run = predict_cohort(model, two_series, tmp_path / "out", log=lambda _line: None)
    (line,) = [w for w in run.warnings if "unlike the training data" in w]
    assert line.startswith("series inverted") and "(inverted contrast?)" in line
    out = tmp_path / "out"
    wide = pd.read_csv(out / "csa.csv", index_col="slice", dtype={"slice": str})
    slices = wide.loc[[label for label in wide.index if label.isdigit()]]
    is_inverted = slices["file"].str.startswith("inverted/")
    assert slices["unlike_training"].tolist() == is_inverted.astype(int).tolist()
    long = pd.read_csv(out / "csa_long.csv")
    assert (long["unlike_training"] == long["file"].str.startswith("inverted/")).all()
    for roi in run.merged.areas.per_slice.columns:
        kept = slices.loc[~is_inverted, roi]
        assert wide.loc["mean", roi] == pytest.approx(kept[kept > 0].mean(), nan_ok=True)
        assert wide.loc["n", roi] == (kept > 0).sum()
    assert "without 1 series unlike the training data (3 slices)" in wide.loc["mean", "file"]
    series = pd.read_csv(out / "series.csv", dtype=str, keep_default_na=False)
    flagged = series.set_index("series")["unlike_training"]
    assert flagged.str.contains("inverted contrast").tolist() == [
        name.startswith("inverted") for name in flagged.index
    ]
    report = (out / "report.html").read_text()
    assert "1 series unlike the training data</h2>" in report
    review = report.split("<h2>Review first</h2>")[1]
    assert review.index("inverted") < review.index("original")


def test_merge_and_a_large_run_say_which_series_the_overall_rows_leave_out(
    tiny_model: Path,
    two_series: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    """`merge`, and `predict` past 200 slices (no table printed), never said that csa.csv's
    overall mean and std leave out the series unlike the training data: only the files did."""
    import sliceseg.cli.prediction

    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    out = tmp_path / "out"
    monkeypatch.setattr(sliceseg.cli.prediction, "PRINTED_SLICES", 5)  # 6 slices: not printed
    argv = ["predict", str(model), str(two_series), "--out", str(out), "--device", "cpu"]
    assert main([*argv, "--visuals", "none", "--export", "none"]) == 0
    line = (
        f"the overall mean, std and n of {out / 'csa.csv'}: without 1 series unlike the "
        "training data (3 slices)"
    )
    printed = capsys.readouterr().out
    assert "Cross-sectional area" not in printed and printed.splitlines()[-1] == line
    assert main(["merge", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == line


def test_the_printed_table_says_which_series_its_overall_rows_leave_out():
    """`predict` prints the table with the overall rows' file cells blanked: the mean printed
    there left out a series unlike the training data without a word beside it."""
    from sliceseg.inference.familiarity import SeriesVerdict, with_familiarity
    from sliceseg.measure.areas import SUMMARY_NOTE, AreaTable
    from sliceseg.measure.summary_rows import with_summary_rows

    slices = pd.DataFrame({"file": ["a/1", "a/2", "b/1"], "disc": [100.0, 200.0, 900.0]})
    table = AreaTable(with_summary_rows(slices, (1, 1, 2)), pd.DataFrame(), series=(1, 1, 2))
    verdicts = [
        SeriesVerdict(1, "a/1", "a/2", 2, Verdict(False)),
        SeriesVerdict(2, "b/1", "b/1", 1, Verdict(True, ("contrast",))),
    ]
    lines = with_familiarity(table, verdicts).to_text().splitlines()
    assert lines[-4].split() == ["mean", "150.0"]  # the overall rows: without series b
    assert lines[-1] == (
        f"{SUMMARY_NOTE}; the overall mean, std and n: without 1 series unlike the training "
        "data (1 slice)"
    )
    assert table.to_text().splitlines()[-1] == SUMMARY_NOTE  # nothing left out: nothing said


def test_a_study_of_one_odd_series_keeps_its_overall_rows(
    tiny_model: Path, two_series: Path, tmp_path: Path
):
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    run = predict_folder(model, two_series / "inverted", tmp_path / "out")
    assert [v.is_flagged for v in run.familiarity] == [True]
    wide = pd.read_csv(tmp_path / "out" / "csa.csv", index_col="slice", dtype={"slice": str})
    slices = wide.loc[[label for label in wide.index if label.isdigit()]]
    assert slices["unlike_training"].tolist() == [1, 1, 1]
    for roi in run.areas.per_slice.columns:  # nothing left to average otherwise
        column = slices[roi]
        assert wide.loc["mean", roi] == pytest.approx(column[column > 0].mean(), nan_ok=True)
    note = "every series is unlike the training data (3 slices): over all of them"
    assert note in wide.loc["mean", "file"]
    line = run.warnings[0]  # what predict prints must not contradict the table
    assert line.startswith("series inverted is unlike the training")  # as csa.csv names it
    assert "(unless every series is unlike the training data: then those are over all" in line


# --- the features from the prediction's own passes (one pass, not two) ----------------------


def test_slice_features_keep_only_slices_run_as_the_separate_look_runs_them():
    from sliceseg.engine.probabilities import feature_windows, slice_features

    images = [
        torch.zeros(1, 50, 70),  # padded to (64, 80) = the window: the separate look's input
        torch.zeros(1, 30, 30),  # padded to (32, 32), run in a (64, 80) window: not the same
        torch.zeros(1, 130, 70),  # three windows (rows 0, 48, 66): no single pass
        torch.zeros(1, 64, 80),  # exactly the window
    ]
    # windows: 1 + 1 + 3 + 1; only the first and the last are pooled
    assert feature_windows(images, (64, 80), 16) == [True] + [False] * 4 + [True]
    passes = [torch.tensor([[0.0] * 3]), torch.tensor([[5.0] * 3])]
    found = slice_features(images, (64, 80), passes, 16)
    assert found[1] is None and found[2] is None
    assert found[0].tolist() == [0.0] * 3 and found[0].dtype == np.float64
    assert found[3].tolist() == [5.0] * 3
    # the check reads the last slice alone: the first is not pooled, its row not taken
    wanted = [False, True, True, True]
    assert feature_windows(images, (64, 80), 16, wanted=wanted) == [False] * 5 + [True]
    found = slice_features(images, (64, 80), passes[1:], 16, wanted=wanted)
    assert found[:3] == [None] * 3 and found[3].tolist() == [5.0] * 3


def _engine_look(model: Path, folder: Path, batch_size: int):
    from sliceseg.engine.predictor import Engine
    from sliceseg.io.dicom_folder import read_series

    bundle = load_bundle(model)
    engine = Engine(bundle, torch.device("cpu"))
    slices = read_series(folder)
    spaced = engine.preparation.prepare(slices)
    features: list = []
    labels = engine.labels(slices, spaced=spaced, batch_size=batch_size, features=features)
    return bundle, engine, slices, spaced, labels, features


def test_prediction_features_equal_the_separate_look(tiny_model: Path, two_series: Path):
    from sliceseg.inference.familiarity import PredictionLook, series_traits
    from sliceseg.models.folding import inference_network

    folder = two_series / "original"
    bundle, engine, slices, spaced, labels, features = _engine_look(tiny_model, folder, 1)
    separate = deepest_features(
        inference_network(bundle.model), spaced.images, divisor=engine.divisor
    )
    assert len(features) == len(slices) == 3
    assert np.array_equal(np.stack(features), separate)  # one slice per pass: bit for bit
    looked = series_traits(bundle, slices, labels)  # the check as it was: its own look
    given = series_traits(bundle, slices, labels, seen=PredictionLook(spaced.images, features))
    for old, new in zip(looked, given, strict=True):
        assert np.array_equal(old.features, new.features)
        assert np.array_equal(old.intensity, new.intensity)
        assert np.array_equal(old.areas_mm2, new.areas_mm2)
    # several slices per pass: the same up to float rounding of the batch's size
    *_, batched = _engine_look(tiny_model, folder, 8)
    np.testing.assert_allclose(np.stack(batched), separate, rtol=1e-5, atol=1e-6)


def test_the_check_drops_its_orientation_notes_but_no_other_thread_s_warning(
    tiny_model: Path, two_series: Path, monkeypatch: pytest.MonkeyPatch
):
    """A cohort checks series in writer threads while the main thread decodes: the check's own
    look at slices without orientation drops the notes predict already said, but dropping
    them with a warning filter (process-wide) dropped the other threads' warnings too."""
    from sliceseg.engine.predictor import Preparation, model_preparation
    from sliceseg.inference.familiarity import series_traits
    from sliceseg.io.dicom_folder import read_series

    bundle = load_bundle(tiny_model)
    slices = [replace(image, orientation=None) for image in read_series(two_series / "original")]
    labels = [np.zeros(image.shape, np.uint8) for image in slices]
    prepare = Preparation.prepare
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with warning_during(monkeypatch, Preparation, "prepare", "p02/t1.dcm: odd header"):
            traits = series_traits(bundle, slices, labels)
    assert len(traits) == len(slices) == 3
    assert [str(w.message) for w in caught] == ["p02/t1.dcm: odd header"]
    notes: list[str] = []  # what was dropped: the notes, given back instead of warned
    prepare(model_preparation(bundle), slices, notes=notes)
    assert len(notes) == 1 and "no usable (0020,0037) ImageOrientationPatient in 3" in notes[0]


def test_cohort_check_takes_the_prediction_features(
    tiny_model: Path, two_series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from sliceseg.inference import familiarity
    from sliceseg.inference.cohort import CohortOptions, predict_cohort

    def no_second_look(*_args, **_kwargs):
        raise AssertionError("the familiarity check ran the network again")

    monkeypatch.setattr(familiarity, "deepest_features", no_second_look)
    model = with_network_checks_open(tiny_model, tmp_path / "open.pt")
    run = predict_cohort(
        model, two_series, tmp_path / "out", options=CohortOptions(workers=0), log=lambda _: 0
    )
    assert sorted(run.finished) == ["inverted", "original"] and run.failed == []
    (line,) = [w for w in run.warnings if "unlike the training data" in w]
    assert line.startswith("series inverted") and "(inverted contrast?)" in line


def test_info_says_which_checks_a_damaged_profile_switches_off(tiny_model: Path, tmp_path: Path):
    """`sliceseg info` described a damaged profile as a working one; predict said otherwise."""
    bundle = load_bundle(tiny_model)
    data = dict(bundle.metadata.familiarity or {})
    data["edge_slice_threshold"] = float("inf")
    damaged = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
    row = model_summary(save_bundle(tmp_path / "d.pt", bundle.model, damaged))
    assert row["training data profile"].endswith(
        " (damaged: NaN or infinite numbers in edge_slice_threshold, so predict runs without "
        "the field-of-view check; 'sliceseg reprofile MODEL TRAIN_DIR' rebuilds it)"
    )
    assert "damaged" not in model_summary(bundle)["training data profile"]
