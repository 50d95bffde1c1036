"""Tests for sliceseg.model_space.intensity: per-slice z-score and CT's dataset numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from sliceseg.engine import predictor
from sliceseg.errors import BundleError, ConfigError
from sliceseg.inference.predict import predict_slices
from sliceseg.io.dicom import Slice, read_slice
from sliceseg.model_space.batches import slices_to_spacing
from sliceseg.model_space.intensity import (
    PER_SLICE,
    IntensityNormalisation,
    choose_normalisation,
    ct_normalisation,
    normalise_intensity,
)
from sliceseg.model_space.orientation import IDENTITY
from sliceseg.models.bundle import load_bundle
from sliceseg.training.loop import train


class TestNormaliseIntensity:
    def test_mean_zero_std_one_float32(self):
        pixels = np.random.default_rng(0).normal(500.0, 80.0, (64, 48))
        out = normalise_intensity(pixels)
        assert out.dtype == np.float32
        assert out.shape == (64, 48)
        assert abs(float(out.mean())) < 1e-5
        assert abs(float(out.std()) - 1.0) < 1e-5

    def test_a_few_outliers_are_ignored(self):
        rng = np.random.default_rng(1)
        pixels = rng.normal(0.0, 10.0, (100, 100))
        spoiled = pixels.copy()
        spoiled.flat[[5, 500, 5000, 7000, 9999]] = 1e6  # 5 hot pixels, far below 0.5 %
        clean, hot = normalise_intensity(pixels), normalise_intensity(spoiled)
        keep = np.ones(pixels.size, dtype=bool)
        keep[[5, 500, 5000, 7000, 9999]] = False
        assert np.abs(clean.ravel()[keep] - hot.ravel()[keep]).max() < 0.02
        assert hot.max() < 4.0  # the outliers are clipped, not kept at ~1e6 / std

    def test_constant_slice_gives_zeros(self):
        out = normalise_intensity(np.full((8, 8), 1234.0))
        assert out.dtype == np.float32 and not out.any()

    @pytest.mark.parametrize("shape", [(4,), (2, 3, 4), (0, 5)])
    def test_non_2d_is_refused(self, shape):
        with pytest.raises(ValueError, match="one \\(rows, cols\\) slice"):
            normalise_intensity(np.zeros(shape))

    def test_nan_is_refused(self):
        pixels = np.zeros((4, 4))
        pixels[1, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            normalise_intensity(pixels)


class TestCtNormalisation:
    """nnU-Net's CT normalisation: numbers from the training foreground, stored, applied."""

    def test_numbers_from_the_foreground_only(self):
        hu = np.full((40, 50), -1000.0)  # air around the body: background, ignored
        hu.flat[:1000] = np.arange(1000.0)  # foreground 0..999 HU
        label = np.zeros((40, 50), np.uint8)
        label.flat[:1000] = 1
        norm = ct_normalisation([hu], [label])
        # numpy's linear percentiles of 0..999: 0.005 · 999 and 0.995 · 999
        assert norm.clip == pytest.approx((4.995, 994.005))
        assert norm.mean == pytest.approx(499.5)
        assert norm.std == pytest.approx(np.sqrt((1000**2 - 1) / 12.0))  # uniform 0..999
        assert norm.name == "ct_dataset"

    def test_pooled_over_slices(self):
        a, b = np.array([[10.0, 20.0]]), np.array([[30.0, 500.0]])
        norm = ct_normalisation([a, b], [np.array([[1, 1]]), np.array([[2, 0]])])
        assert norm.mean == pytest.approx(20.0)  # 10, 20, 30: 500 HU is background
        assert norm.std == pytest.approx(np.sqrt(200.0 / 3.0))

    def test_apply_clips_then_z_scores_with_the_stored_numbers(self):
        norm = IntensityNormalisation("ct_dataset", clip=(-100.0, 300.0), mean=50.0, std=25.0)
        out = norm.apply(np.array([[-1000.0, 0.0], [75.0, 3000.0]]))
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, [[-6.0, -2.0], [1.0, 10.0]])

    def test_a_ct_slice_reaches_the_network_as_stored(self):
        """At its own spacing a slice is not resampled: the tensor is the formula's, whatever
        the slice's own statistics (a per-slice z-score would give mean 0)."""
        hu = np.array([[-1000.0, 40.0, 60.0], [100.0, 2000.0, 50.0]], dtype=np.float32)
        image = Slice(hu, (0.8, 0.8), "PixelSpacing", Path("ct.dcm"), modality="CT")
        norm = IntensityNormalisation("ct_dataset", clip=(-200.0, 200.0), mean=40.0, std=20.0)
        spaced = slices_to_spacing(
            [image], (0.8, 0.8), reorientations=[IDENTITY], normalisation=norm
        )
        expected = [[-12.0, 0.0, 1.0], [3.0, 8.0, 0.5]]
        np.testing.assert_allclose(spaced.images[0][0].numpy(), expected, atol=1e-6)
        default = slices_to_spacing([image], (0.8, 0.8), reorientations=[IDENTITY])
        np.testing.assert_allclose(default.images[0][0].numpy(), normalise_intensity(hu))

    def test_model_file_entries_round_trip(self):
        norm = IntensityNormalisation("ct_dataset", clip=(-100.0, 300.0), mean=50.0, std=25.0)
        assert norm.to_dict() == {"clip": [-100.0, 300.0], "mean": 50.0, "std": 25.0}
        back = IntensityNormalisation.from_metadata("ct_dataset", norm.to_dict())
        assert back == norm

    def test_files_before_ct_normalisation_are_z_scored_per_slice(self):
        assert IntensityNormalisation.from_metadata("robust_zscore", None) == PER_SLICE
        assert PER_SLICE.to_dict() is None
        pixels = np.random.default_rng(3).normal(100.0, 20.0, (30, 30))
        np.testing.assert_array_equal(PER_SLICE.apply(pixels), normalise_intensity(pixels))

    @pytest.mark.parametrize(
        ("name", "params"), [("minmax", None), ("ct_dataset", None), ("ct_dataset", {"mean": 1})]
    )
    def test_unknown_or_incomplete_entries_are_refused(self, name, params):
        with pytest.raises(BundleError, match=r"m\.pt: intensity normalisation .* upgrade"):
            IntensityNormalisation.from_metadata(name, params, source="m.pt")


class TestChooseNormalisation:
    @pytest.mark.parametrize(
        ("setting", "modalities", "expected"),
        [
            ("auto", ["CT", "CT"], "ct_dataset"),
            ("auto", ["ct"], "ct_dataset"),
            ("auto", [" CT", "CT "], "ct_dataset"),  # padded: CT, as the CT columns read it
            ("auto", ["CT", "MR"], "robust_zscore"),  # mixed: nothing shared to keep
            ("auto", ["MR"], "robust_zscore"),
            ("auto", [""], "robust_zscore"),  # no Modality
            ("slice", ["CT"], "robust_zscore"),
            ("ct", ["MR"], "ct_dataset"),
        ],
    )
    def test_by_setting_and_modality(self, setting, modalities, expected):
        assert choose_normalisation(setting, modalities) == expected

    def test_an_unknown_setting_lists_the_choices(self):
        with pytest.raises(ConfigError, match="normalisation must be one of auto, slice, ct"):
            choose_normalisation("hu", ["CT"])
        flag = "--normalisation (normalisation)"
        with pytest.raises(ConfigError, match=r"^--normalisation \(normalisation\) must be one"):
            choose_normalisation("hu", ["CT"], name=flag)


@pytest.fixture(scope="module")
def ct_phantom(tiny_phantom: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny phantom's training set relabelled (0008,0060) Modality CT (values as HU)."""
    out = tmp_path_factory.mktemp("ct") / "train"
    shutil.copytree(tiny_phantom / "train", out)
    for path in (out / "dicoms").rglob("*.dcm"):
        dataset = pydicom.dcmread(path)
        dataset.Modality = "CT"
        dataset.save_as(path)
    return out


def foreground_hu(data: Path) -> np.ndarray:
    """Every foreground pixel's HU, read with pydicom, PIL and numpy (not sliceseg's readers)."""
    values = []
    for path in sorted((data / "dicoms").rglob("*.dcm")):
        dataset = pydicom.dcmread(path)
        hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
        stem = data / "labels" / path.relative_to(data / "dicoms").with_suffix("")
        png, npy = stem.with_suffix(".png"), stem.with_suffix(".npy")
        label = np.asarray(Image.open(png)) if png.exists() else np.load(npy)
        values.append(hu[label > 0])
    return np.concatenate(values)


@pytest.mark.slow
def test_a_ct_run_stores_its_foreground_numbers_and_predict_applies_them(
    ct_phantom, tmp_path, monkeypatch
):
    lines: list[str] = []
    config = tiny_config(ct_phantom, tmp_path / "m", epochs=1, validation_fraction=0.0)
    meta = load_bundle(train(config, log=lines.append).best_model).metadata
    values = foreground_hu(ct_phantom)
    low, high = np.percentile(values, [0.5, 99.5])
    assert meta.normalisation == "ct_dataset"
    assert meta.intensity is not None
    assert meta.intensity["clip"] == pytest.approx([low, high])
    assert meta.intensity["mean"] == pytest.approx(values.mean())
    assert meta.intensity["std"] == pytest.approx(values.std())
    assert any(line.startswith("Intensity normalisation: CT: HU clipped to [") for line in lines)

    seen: list[torch.Tensor] = []
    real = predictor.spaced_probabilities  # the engine's windows: what the network is fed

    def spy(network, images, **kwargs):
        seen.extend(images)
        return real(network, images, **kwargs)

    monkeypatch.setattr(predictor, "spaced_probabilities", spy)
    image = read_slice(next((ct_phantom / "dicoms").rglob("*.dcm")))
    predict_slices(load_bundle(tmp_path / "m" / "sliceseg_best.pt"), [image], device="cpu")
    (network_input,) = seen
    mean, std = values.mean(), values.std()
    # the air around the body is below the clip: it reaches the network at the lower bound
    assert float(network_input.min()) == pytest.approx((low - mean) / std, abs=1e-4)
    assert float(network_input.max()) <= (high - mean) / std + 1e-4


@pytest.mark.slow
def test_an_mr_run_keeps_the_per_slice_z_score(tiny_phantom, tmp_path):
    config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=1)
    meta = load_bundle(train(config, log=lambda _line: None).best_model).metadata
    assert (meta.normalisation, meta.intensity) == ("robust_zscore", None)


def test_the_familiarity_check_sees_a_ct_models_own_input(monkeypatch):
    """The series check measures the network's features on the input the network gets: for a
    CT model the stored HU numbers, not a per-slice z-score."""
    from sliceseg.inference import familiarity
    from sliceseg.models import build_model
    from sliceseg.models.bundle import Bundle, ModelMetadata

    hu = np.array([[-1000.0, 40.0, 60.0, 80.0]] * 4, dtype=np.float32)
    image = Slice(hu, (0.8, 0.8), "PixelSpacing", Path("ct.dcm"), modality="CT")
    meta = ModelMetadata(
        arch="unet",
        hyperparameters={"depth": 3},
        num_classes=2,
        input_size=32,
        roi_names=("a",),
        orientation=None,  # slices as stored
        target_spacing_mm=(0.8, 0.8),
        normalisation="ct_dataset",
        intensity={"clip": [-200.0, 200.0], "mean": 40.0, "std": 20.0},
    )
    bundle = Bundle(build_model("unet", num_classes=2, input_size=32, depth=3).eval(), meta)
    seen: list[torch.Tensor] = []

    def spy(network, images, *, divisor, pooling):
        seen.extend(images)
        return np.zeros((len(images), 4))

    monkeypatch.setattr(familiarity, "deepest_features", spy)
    familiarity.series_traits(bundle, [image], [np.zeros((4, 4), np.uint8)])
    expected = [[-12.0, 0.0, 1.0, 2.0]] * 4  # (clip(HU, -200, 200) - 40) / 20
    np.testing.assert_allclose(seen[0][0].numpy(), expected, atol=1e-6)


@pytest.mark.slow
def test_preview_shows_what_a_ct_run_feeds_the_network(ct_phantom, monkeypatch):
    from sliceseg.training import preview

    seen = []
    real = preview.first_crops

    def spy(data, **kwargs):
        seen.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(preview, "first_crops", spy)
    config = tiny_config(ct_phantom, Path("unused"), augment=False, validation_fraction=0.0)
    preview.preview_batch(config)
    values = foreground_hu(ct_phantom)  # no validation: training takes every slice's numbers
    low = (np.percentile(values, 0.5) - values.mean()) / values.std()
    lowest = min(float(image.min()) for image in seen[0].images)
    assert lowest == pytest.approx(low, abs=1e-4)  # the air, clipped to the stored bound
