"""Tests for sliceseg.augment.transforms: parameters, the draw, and the pure application."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from sliceseg.augment.transforms import (
    AugmentationDraw,
    AugmentParams,
    affine_matrices,
    apply_augmentation,
    augment_batch,
    sample_augmentation,
)
from sliceseg.errors import ConfigError

GEOMETRY_ONLY = {"intensity": False}
NOTHING = {"rotation": False, "warping": False, "cropping": False, "intensity": False}


def square_batch(batch: int = 1, size: int = 64, side: int = 32, value: int = 1):
    """Images with a bright centred square of ``side`` pixels and labels with ``value`` there."""
    start = (size - side) // 2
    labels = torch.zeros(batch, size, size, dtype=torch.int64)
    labels[:, start : start + side, start : start + side] = value
    return (labels > 0).float()[:, None], labels


def sided_batch(batch: int = 2, size: int = 16):
    """Asymmetric images and labels: label 2 on the left, 3 on the right, 5 in the top rows."""
    images = torch.arange(batch * size * size, dtype=torch.float32).reshape(batch, 1, size, size)
    labels = torch.zeros(batch, size, size, dtype=torch.int64)
    labels[:, 4:12, 1:6] = 2
    labels[:, 6:10, 9:15] = 3
    labels[:, 0:2, 3:8] = 5
    return images, labels


def extent(mask: torch.Tensor) -> tuple[int, int]:
    """(rows, cols) spanned by the True pixels of a 2D mask."""
    rows = mask.any(dim=1).nonzero()
    cols = mask.any(dim=0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


class TestAugmentParams:
    def test_defaults_never_flip(self):
        assert AugmentParams().flip_pairs is None

    def test_dict_round_trip_is_plain_data(self):
        params = AugmentParams(
            aug_prob=0.3, flip_pairs=((2, 3), (4, 5)), blur_sigma_range=None, gamma_range=(0.8, 1.2)
        )
        data = params.to_dict()
        assert data["flip_pairs"] == [[2, 3], [4, 5]]
        assert data["gamma_range"] == [0.8, 1.2]
        assert AugmentParams.from_dict(data) == params

    def test_manual_style_keys_and_values(self):
        params = AugmentParams.from_dict(
            {
                "Aug prob": "0.25",
                "rotRange": 20,
                "ROTATION": "yes",
                "warp-range": 0.8,
                "cropping": 0,
            }
        )
        assert params.aug_prob == 0.25 and params.rot_range == 20.0
        assert params.rotation is True and params.cropping is False and params.warp_range == 0.8

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"aug_prob": 1.5}, "aug_prob .*1.5"),
            ({"aug_prob": float("nan")}, "aug_prob"),
            ({"rot_range": -3}, "rot_range .*-3"),
            ({"warp_range": 0.0}, "warp_range"),
            ({"crop_range": 1.2}, "crop_range .*1.2"),
            ({"gamma_range": (1.5, 0.5)}, "gamma_range"),
            ({"noise_std_range": (-0.1, 0.1)}, "noise_std_range"),
            ({"blur_sigma_range": 2.0}, "blur_sigma_range"),
            ({"rotation": "maybe"}, "rotation .*maybe"),
            ({"flip_pairs": ((2, 2),)}, "flip_pairs"),
            ({"flip_pairs": ((0, 1),)}, "flip_pairs"),
            ({"flip_pairs": ((1, 2), (2, 3))}, "flip_pairs"),
            ({"elastic_spacing": 2}, r"elastic_spacing must be a number in \[4, 256\], got 2"),
            ({"elastic_magnitude": -1}, "elastic_magnitude .*-1"),
            ({"elastic": "sometimes"}, "elastic must be true or false"),
        ],
    )
    def test_bad_values_name_the_setting(self, kwargs, match):
        with pytest.raises(ConfigError, match=match):
            AugmentParams(**kwargs)

    def test_unknown_key_lists_valid_names(self):
        with pytest.raises(ConfigError, match=r"rot_rnage.*valid settings: aug_prob"):
            AugmentParams.from_dict({"rot_rnage": 5})


class TestAffineMatrices:
    def test_rotation_90_is_counter_clockwise_like_rot90(self):
        images, labels = sided_batch(batch=1, size=9)
        draw = dataclasses.replace(
            AugmentationDraw.identity(1), theta=affine_matrices(1, rotation_deg=90.0)
        )
        out_images, out_labels = apply_augmentation(images, labels, draw)
        assert torch.equal(out_labels, torch.rot90(labels, k=1, dims=(-2, -1)))
        torch.testing.assert_close(
            out_images, torch.rot90(images, k=1, dims=(-2, -1)), atol=1e-4, rtol=0
        )

    def test_rotation_keeps_angles_on_non_square_images(self):
        theta = affine_matrices(1, rotation_deg=90.0, image_shape=(32, 64))
        # rows (H) and columns (W) swap roles: x_in = -y_out * H / W
        assert theta[0, 0, 1].item() == pytest.approx(-0.5)
        assert theta[0, 1, 0].item() == pytest.approx(2.0)

    def test_warp_half_width_halves_a_centred_square(self):
        images, labels = square_batch()
        draw = dataclasses.replace(
            AugmentationDraw.identity(1), theta=affine_matrices(1, scale_xy=(0.5, 1.0))
        )
        _, out = apply_augmentation(images, labels, draw)
        rows, cols = extent(out[0] == 1)
        assert rows == 32
        assert abs(cols - 16) <= 1

    def test_centred_crop_zooms_in(self):
        images, labels = square_batch(side=16)
        draw = dataclasses.replace(
            AugmentationDraw.identity(1), theta=affine_matrices(1, crop_fraction=0.5)
        )
        _, out = apply_augmentation(images, labels, draw)
        rows, cols = extent(out[0] == 1)
        assert abs(rows - 32) <= 1 and abs(cols - 32) <= 1

    def test_identity(self):
        assert torch.equal(affine_matrices(3), torch.eye(2, 3).expand(3, 2, 3))


class TestSampleAugmentation:
    def test_aug_prob_zero_gives_the_identity_draw(self):
        g = torch.Generator().manual_seed(0)
        draw = sample_augmentation(
            8, AugmentParams(aug_prob=0.0, flip_pairs=((2, 3),)), generator=g
        )
        assert not any(mask.any() for mask in draw.active().values())

    def test_same_seed_same_draw(self):
        params = AugmentParams(aug_prob=0.7, flip_pairs=((2, 3),))
        first = sample_augmentation(6, params, generator=torch.Generator().manual_seed(3))
        second = sample_augmentation(6, params, generator=torch.Generator().manual_seed(3))
        for field in dataclasses.fields(AugmentationDraw):
            a, b = getattr(first, field.name), getattr(second, field.name)
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b

    def test_ranges_are_respected(self):
        params = AugmentParams(aug_prob=1.0, rot_range=0.0, warp_range=0.5, cropping=False)
        draw = sample_augmentation(200, params, generator=torch.Generator().manual_seed(1))
        scales = draw.theta[:, [0, 1], [0, 1]]  # 1 / scale on the diagonal, no rotation
        assert scales.min() >= 1.0 - 1e-6 and scales.max() <= 2.0 + 1e-6
        low, high = params.gamma_range or (1.0, 1.0)
        assert draw.gamma.min() >= low - 1e-6 and draw.gamma.max() <= high + 1e-6
        assert draw.gamma.min() < 0.8 < 1.25 < draw.gamma.max()  # the whole default range is used
        assert draw.blur_sigma_px.min() >= 0.5 - 1e-6

    def test_gpu_generator_is_refused(self):
        class FakeGenerator:
            device = torch.device("meta")

        with pytest.raises(ValueError, match=r"CPU torch\.Generator"):
            sample_augmentation(2, AugmentParams(), generator=FakeGenerator())


class TestApplyAugmentation:
    def test_identity_returns_the_input_exactly(self):
        images, labels = sided_batch(batch=4)
        out_images, out_labels = apply_augmentation(images, labels, AugmentationDraw.identity(4))
        assert torch.equal(out_images, images) and torch.equal(out_labels, labels)

    def test_flip_mirrors_and_swaps_pairs(self):
        images, labels = sided_batch()
        params = AugmentParams(aug_prob=1.0, flip_pairs=((2, 3),), **NOTHING)
        draw = sample_augmentation(2, params, generator=torch.Generator().manual_seed(0))
        out_images, out_labels = apply_augmentation(images, labels, draw)
        mirrored = torch.flip(labels, dims=(-1,))
        expected = mirrored.clone()
        expected[mirrored == 2], expected[mirrored == 3] = 3, 2
        assert torch.equal(out_labels, expected)
        torch.testing.assert_close(out_images, torch.flip(images, dims=(-1,)), atol=1e-3, rtol=0)

    def test_image_and_label_move_together(self):
        images, labels = square_batch(batch=8, side=24)
        params = AugmentParams(aug_prob=1.0, rot_range=30.0, warp_range=0.7, **GEOMETRY_ONLY)
        draw = sample_augmentation(8, params, generator=torch.Generator().manual_seed(5))
        out_images, out_labels = apply_augmentation(images, labels, draw)
        bright, square = out_images[:, 0] > 0.5, out_labels == 1
        disagree = (bright != square).sum(dim=(1, 2)).float()
        assert (disagree <= 0.1 * square.sum(dim=(1, 2))).all()  # only boundary pixels differ

    def test_padding_uses_each_image_minimum(self):
        images = torch.full((2, 1, 16, 16), 5.0)
        images[1] = -3.0
        images[:, :, 8, 8] = 10.0
        labels = torch.ones(2, 16, 16, dtype=torch.int64)
        draw = dataclasses.replace(
            AugmentationDraw.identity(2), theta=affine_matrices(2, scale_xy=(0.5, 0.5))
        )
        out_images, out_labels = apply_augmentation(images, labels, draw)
        assert out_images[0, 0, 0, 0] == 5.0 and out_images[1, 0, 0, 0] == -3.0
        assert out_labels[:, 0, 0].tolist() == [0, 0]

    def test_shape_mismatch_is_refused(self):
        images, labels = sided_batch(batch=2)
        with pytest.raises(ValueError, match="draw is for 3 samples"):
            apply_augmentation(images, labels, AugmentationDraw.identity(3))
        with pytest.raises(ValueError, match="labels must be integer"):
            apply_augmentation(images, labels.float(), AugmentationDraw.identity(2))


class TestAugmentBatch:
    def test_label_values_are_preserved(self):
        generator = torch.Generator().manual_seed(0)
        images, labels = sided_batch(batch=8, size=32)
        labels[:, 20:30, 20:30] = 7
        allowed = set(labels.unique().tolist()) | {0}
        for params in (
            AugmentParams(aug_prob=1.0, rot_range=45.0, warp_range=0.6, crop_range=0.6),
            AugmentParams(aug_prob=0.5, flip_pairs=((2, 3),)),
        ):
            for _ in range(10):
                out_images, out_labels = augment_batch(images, labels, params, generator=generator)
                assert set(out_labels.unique().tolist()) <= allowed
                assert out_labels.dtype == torch.int64 and out_images.shape == images.shape

    def test_no_flip_without_flip_pairs(self):
        images, labels = sided_batch(batch=4)
        params = AugmentParams(aug_prob=1.0, **NOTHING)
        out_images, out_labels = augment_batch(
            images, labels, params, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(out_labels, labels) and torch.equal(out_images, images)

    def test_aug_prob_zero_returns_the_input_exactly(self):
        images, labels = sided_batch(batch=4)
        params = AugmentParams(aug_prob=0.0, flip_pairs=((2, 3),))
        out_images, out_labels = augment_batch(
            images, labels, params, generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(out_images, images) and torch.equal(out_labels, labels)

    def test_same_seed_same_output(self):
        images, labels = sided_batch(batch=4, size=32)
        params = AugmentParams(aug_prob=0.8, flip_pairs=((2, 3),))
        first = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(9))
        second = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(9))
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
        third = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(10))
        assert not torch.equal(first[0], third[0])

    def test_random_crop_grows_a_centred_square(self):
        images, labels = square_batch(batch=16, side=6)
        params = AugmentParams(aug_prob=1.0, crop_range=0.8, rotation=False, warping=False)
        _, out = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(2))
        for label in out:
            rows, cols = extent(label == 1)
            assert abs(rows - 6 / 0.8) <= 1 and abs(cols - 6 / 0.8) <= 1

    def test_intensity_changes_images_only(self):
        images, labels = sided_batch(batch=4, size=32)
        params = AugmentParams(aug_prob=1.0, rotation=False, warping=False, cropping=False)
        out_images, out_labels = augment_batch(
            images, labels, params, generator=torch.Generator().manual_seed(4)
        )
        assert torch.equal(out_labels, labels)
        assert not torch.allclose(out_images, images)
        assert torch.isfinite(out_images).all()


ELASTIC_ONLY = {**NOTHING, "elastic": True}


class TestElastic:
    def test_off_by_default_and_the_other_draws_do_not_move(self):
        assert AugmentParams().elastic is False
        off = sample_augmentation(8, AugmentParams(), generator=torch.Generator().manual_seed(3))
        on = sample_augmentation(
            8, AugmentParams(elastic=True), generator=torch.Generator().manual_seed(3)
        )
        assert off.elastic is None and on.elastic is not None
        for name in ("theta", "flip", "gamma", "contrast", "brightness", "blur_sigma_px"):
            assert torch.equal(getattr(off, name), getattr(on, name)), name
        assert off.noise_seed == on.noise_seed

    def test_zero_magnitude_is_the_identity(self):
        images, labels = square_batch(batch=4, side=24)
        params = AugmentParams(aug_prob=1.0, elastic_magnitude=0.0, **ELASTIC_ONLY)
        out_images, out_labels = augment_batch(
            images, labels, params, generator=torch.Generator().manual_seed(1)
        )
        assert torch.equal(out_images, images) and torch.equal(out_labels, labels)

    def test_deforms_image_and_label_together_by_a_few_pixels(self):
        images, labels = square_batch(batch=8, size=96, side=48)
        params = AugmentParams(
            aug_prob=1.0, elastic_spacing=16.0, elastic_magnitude=2.0, **ELASTIC_ONLY
        )
        draw = sample_augmentation(
            8, params, generator=torch.Generator().manual_seed(7), image_shape=(96, 96)
        )
        out_images, out_labels = apply_augmentation(images, labels, draw)
        assert bool(draw.active()["elastic"].all())
        assert set(out_labels.unique().tolist()) <= {0, 1}
        changed = (out_labels != labels).sum(dim=(1, 2))
        assert (changed > 20).all()  # every sample's square edge moved
        rows, cols = zip(*(extent(label == 1) for label in out_labels), strict=True)
        assert all(abs(side - 48) <= 12 for side in rows + cols)  # a few pixels, not a new shape
        bright, square = out_images[:, 0] > 0.5, out_labels == 1
        disagree = (bright != square).sum(dim=(1, 2)).float()
        assert (disagree <= 0.05 * square.sum(dim=(1, 2))).all()

    def test_same_seed_same_field_and_samples_left_off_are_untouched(self):
        images, labels = square_batch(batch=16, size=64, side=32)
        params = AugmentParams(aug_prob=0.5, **ELASTIC_ONLY)
        first = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(4))
        again = augment_batch(images, labels, params, generator=torch.Generator().manual_seed(4))
        assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
        draw = sample_augmentation(
            16, params, generator=torch.Generator().manual_seed(4), image_shape=(64, 64)
        )
        assert draw.elastic is not None and 0 < int(draw.elastic.sum()) < 16
        kept = ~draw.elastic
        assert torch.equal(first[1][kept], labels[kept])
