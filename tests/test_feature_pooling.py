"""The deepest features averaged over the body (profile version 5), and older profiles' whole-slice
mean: what the "unlike the training data" check compares (issue 21's false alarm on a clean
series framed more tightly than every training series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import copy_series, invert_pixels
from sliceseg.inference.familiarity import model_profile
from sliceseg.measure.familiarity import TrainingProfile
from sliceseg.measure.feature_pooling import BODY_POOLING, SLICE_POOLING, feature_pooling_of
from sliceseg.measure.slice_traits import body_at_edges, body_mask, intensity_quantiles
from sliceseg.models import build_model
from sliceseg.models.bundle import ModelMetadata, load_bundle, save_bundle
from sliceseg.models.features import deepest_features, deepest_module


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", num_classes=3, input_size=64, base_channels=8, depth=4).eval()


def _box(side: int, top: int, left: int, size: int = 32) -> torch.Tensor:
    """A textured body (``size``² from ``top``, ``left``) on a flat background of ``side``²."""
    generator = torch.Generator().manual_seed(1)
    image = torch.zeros(1, side, side)
    image[:, top : top + size, left : left + size] = 1 + 0.5 * torch.rand(
        1, size, size, generator=generator
    )
    return image


class TestPooling:
    def test_the_body_cells_alone_make_the_features(self):
        """Body on whole 8-pixel cells: the features are the mean of those cells of the map."""
        model = _network()
        layer = deepest_module(model, side=64)
        maps: list[torch.Tensor] = []
        layer.register_forward_hook(lambda _m, _i, out: maps.append(out))
        image = _box(64, top=16, left=8)  # rows 16–47, columns 8–39: cells 2–5 and 1–4
        body = deepest_features(model, [image], divisor=8, layer=layer)
        whole = deepest_features(model, [image], divisor=8, layer=layer, pooling=SLICE_POOLING)
        first, second = maps  # (1, C, 8, 8) each: the same pass twice
        assert torch.equal(first, second)
        expected = first[0, :, 2:6, 1:5].mean(dim=(1, 2)).double().numpy()
        np.testing.assert_allclose(body[0], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(whole[0], first[0].mean(dim=(1, 2)).numpy(), atol=1e-7)
        assert not np.allclose(body[0], whole[0], atol=1e-4)

    def test_more_background_around_the_body_moves_the_body_features_less(self):
        model = _network()
        tight, framed = _box(64, 16, 16), _box(128, 48, 48)  # one body, twice the field of view
        moved = {}
        for pooling in (BODY_POOLING, SLICE_POOLING):
            a, b = deepest_features(model, [tight, framed], divisor=8, pooling=pooling)
            moved[pooling] = np.linalg.norm(a - b) / np.linalg.norm(a)
        assert moved[BODY_POOLING] < 0.5 * moved[SLICE_POOLING]

    def test_a_flat_slice_has_no_body_and_keeps_the_plain_mean(self):
        model = _network()
        flat = torch.zeros(1, 64, 64)
        assert not body_mask(flat[0].numpy()).any()
        body = deepest_features(model, [flat], divisor=8)
        whole = deepest_features(model, [flat], divisor=8, pooling=SLICE_POOLING)
        np.testing.assert_array_equal(body, whole)

    def test_an_unknown_pooling_is_refused(self):
        with pytest.raises(ValueError, match="unknown feature pooling 'max'"):
            deepest_features(_network(), [torch.zeros(1, 64, 64)], divisor=8, pooling="max")


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (7, 5), (64, 64), (97, 131)])
def test_the_body_of_a_slice_is_the_same_with_or_without_its_quantiles(shape):
    """The pooling's partial sort finds the same 1st / 99th percentiles as `np.quantile`."""
    rng = np.random.default_rng(sum(shape))
    for image in (rng.normal(size=shape), rng.gamma(2.0, size=shape).astype(np.float32)):
        image.ravel()[: image.size // 3] = image.min()  # ties, as padding makes them
        given = body_mask(image, intensity_quantiles(image))
        np.testing.assert_array_equal(body_mask(image), given)


def test_the_edge_check_and_the_pooling_share_one_body():
    image = np.zeros((50, 50))
    image[10:40, 0:30] = 1.0
    body = body_mask(image)
    assert body.sum() == 900 and body[10:40, 0:30].all()
    assert body_at_edges(image) == pytest.approx(0.6)  # the left edge: 30 of 50 rows


class TestProfiles:
    def test_a_new_profile_says_body_and_older_ones_mean_the_whole_slice(self, tiny_model: Path):
        familiarity = load_bundle(tiny_model).metadata.familiarity
        assert familiarity is not None and familiarity["version"] == 5
        assert familiarity["feature_pooling"] == BODY_POOLING
        older = {k: v for k, v in familiarity.items() if k != "feature_pooling"} | {"version": 4}
        assert TrainingProfile.from_dict(older).feature_pooling == SLICE_POOLING
        assert feature_pooling_of(older) == SLICE_POOLING
        assert feature_pooling_of(None) == SLICE_POOLING
        with pytest.raises(ValueError, match="unknown feature pooling 'max'"):
            TrainingProfile.from_dict({**familiarity, "feature_pooling": "max"})

    def test_an_older_model_file_is_checked_with_the_whole_slice_mean(
        self, tiny_model: Path, tiny_phantom: Path, tmp_path: Path
    ):
        """The prediction's features, and the check's, are those its profile was built with."""
        from sliceseg.engine.predictor import Engine
        from sliceseg.inference.familiarity import series_traits
        from sliceseg.io.dicom_folder import read_series
        from sliceseg.models.folding import inference_network

        bundle = load_bundle(tiny_model)
        data = {k: v for k, v in (bundle.metadata.familiarity or {}).items()}
        data = {k: v for k, v in data.items() if k != "feature_pooling"} | {"version": 4}
        old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": data})
        path = save_bundle(tmp_path / "v4.pt", bundle.model, old)
        (subject,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
        slices = read_series(subject)
        for model, pooling in ((tiny_model, BODY_POOLING), (path, SLICE_POOLING)):
            loaded = load_bundle(model)
            engine = Engine(loaded, torch.device("cpu"))
            spaced = engine.preparation.prepare(slices)
            features: list = []
            labels = engine.labels(slices, spaced=spaced, batch_size=1, features=features)
            network = inference_network(loaded.model)
            expected = deepest_features(network, spaced.images, divisor=engine.divisor,
                                        pooling=pooling)  # fmt: skip
            np.testing.assert_array_equal(np.stack(features), expected)
            looked = series_traits(loaded, slices, labels)  # the check's own look
            np.testing.assert_array_equal(np.stack([t.features for t in looked]), expected)
            assert model_profile(loaded).feature_pooling == pooling


# --- pooled only where the check reads: at most MAX_SLICES slices of a series ----------------


@pytest.fixture(scope="module")
def long_and_short(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A series of 20 slices, its inverted-contrast copy (flagged) and the 3-slice test subject."""
    from sliceseg.phantom.generate import generate_phantom

    made = tmp_path_factory.mktemp("long") / "phantom"
    generate_phantom(made, train_subjects=1, test_subjects=1, slices_per_subject=20, seed=7,
                     matrix_sizes=[(96, 96)])  # fmt: skip
    root = tmp_path_factory.mktemp("scans") / "scans"
    (long,) = sorted((made / "test" / "dicoms").iterdir())
    (short,) = sorted((tiny_phantom / "test" / "dicoms").iterdir())
    copy_series(long, root / "long")
    copy_series(long, root / "long_inverted", invert_pixels)
    copy_series(short, root / "short")
    return root


def _cohort(model: Path, scans: Path, out: Path):
    from sliceseg.inference.cohort import CohortOptions, predict_cohort

    options = CohortOptions(workers=0)  # the network and the check in this process
    return predict_cohort(model, scans, out, options=options, log=lambda _line: None)


def _counting_pooled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the slices whose deepest features are pooled (`FeatureTap`: the prediction's
    and any look of the check's own; over the body, each finds its body first)."""
    from sliceseg.models import features

    found: list[int] = []
    pooled = features.pooled

    def counted(output: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        found.extend([1] * len(output))
        return pooled(output, weights)

    monkeypatch.setattr(features, "pooled", counted)
    return found


def _pooling_every_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prediction as before: every slice's features pooled, the check picking its own."""
    from sliceseg.engine.predictor import Engine

    labels = Engine.labels

    def every(self, images, *, feature_slices=None, **options):
        return labels(self, images, **options)

    monkeypatch.setattr(Engine, "labels", every)


def test_a_cohort_pools_only_the_features_the_check_reads(
    tiny_model: Path, long_and_short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each slice's body was found for its pooled features, though the check reads those of
    16 slices a series: about 2 ms a 256² slice wasted on long series."""
    pooled = _counting_pooled(monkeypatch)
    run = _cohort(tiny_model, long_and_short, tmp_path / "out")
    assert sorted(run.finished) == ["long", "long_inverted", "short"] and run.failed == []
    assert len(pooled) == 16 + 16 + 3  # and no second look at the network for the check
    (line,) = [w for w in run.warnings if "unlike the training data" in w]
    assert line.startswith("series long_inverted") and "(inverted contrast?)" in line


def test_a_model_file_without_a_profile_pools_no_features(
    tiny_model: Path, long_and_short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    bundle = load_bundle(tiny_model)
    old = ModelMetadata.from_dict({**bundle.metadata.to_dict(), "familiarity": None})
    model = save_bundle(tmp_path / "old.pt", bundle.model, old)
    pooled = _counting_pooled(monkeypatch)
    run = _cohort(model, long_and_short, tmp_path / "out")
    assert sorted(run.finished) == ["long", "long_inverted", "short"] and pooled == []


def test_a_cohort_writes_what_it_wrote_when_every_slice_was_pooled(
    tiny_model: Path, long_and_short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    _cohort(tiny_model, long_and_short, tmp_path / "now")
    _pooling_every_slice(monkeypatch)
    pooled = _counting_pooled(monkeypatch)
    _cohort(tiny_model, long_and_short, tmp_path / "before")
    assert len(pooled) == 20 + 20 + 3
    for name in ("csa.csv", "csa_long.csv"):
        assert (tmp_path / "now" / name).read_text() == (tmp_path / "before" / name).read_text()
    now, before = (pd.read_csv(tmp_path / d / "series.csv", dtype=str) for d in ("now", "before"))
    assert now["unlike_training"].tolist() == before["unlike_training"].tolist()
    assert now["unlike_training"].notna().tolist() == [False, True, False]


@pytest.mark.parametrize("name", ["long", "long_inverted", "short"])
def test_the_check_reads_the_numbers_it_read_when_every_slice_was_pooled(
    tiny_model: Path, long_and_short: Path, name: str
):
    from sliceseg.engine.predictor import Engine
    from sliceseg.inference.familiarity import (
        PredictionLook,
        check_series,
        checked_slices,
        series_traits,
    )
    from sliceseg.io.dicom_folder import read_series

    bundle = load_bundle(tiny_model)
    engine = Engine(bundle, torch.device("cpu"))
    slices = read_series(long_and_short / name)
    spaced = engine.preparation.prepare(slices)
    every: list = []  # before: every slice pooled, the check picking its slices
    engine.labels(slices, spaced=spaced, features=every)
    chosen = checked_slices(len(slices))
    assert len(chosen) == min(len(slices), 16)
    some: list = []
    labels = engine.labels(slices, spaced=spaced, features=some, feature_slices=chosen)
    assert [i for i, row in enumerate(some) if row is not None] == chosen
    for i in chosen:
        assert np.array_equal(some[i], every[i])  # bit for bit
    was, now = (PredictionLook(spaced.images, rows) for rows in (every, some))
    before, after = (series_traits(bundle, slices, labels, seen=s) for s in (was, now))
    for old, new in zip(before, after, strict=True):
        assert np.array_equal(old.features, new.features)
        assert np.array_equal(old.intensity, new.intensity)
    assert {before[i].features.shape for i in chosen} == {(128,)}  # measured: 128 channels
    profile = model_profile(bundle)
    assert profile is not None
    measured = np.stack([before[i].features for i in chosen])
    distances = profile.feature_distance(np.stack([after[i].features for i in chosen]))
    assert np.array_equal(distances, profile.feature_distance(measured))
    verdicts = [check_series(bundle, slices, labels, seen=s) for s in (was, now)]
    assert verdicts[0] == verdicts[1]
    assert verdicts[1].is_flagged == (name == "long_inverted")
