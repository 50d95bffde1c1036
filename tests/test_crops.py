"""Tests for sliceseg.model_space.crops: training crops at the target spacing, some on an ROI."""

from __future__ import annotations

import pytest
import torch

from sliceseg.errors import ConfigError
from sliceseg.model_space.batches import SpacedTensors
from sliceseg.model_space.crops import CropDataset, crop_origin_range, extract_crop


def spaced(images: list[torch.Tensor], labels: list[torch.Tensor]) -> SpacedTensors:
    return SpacedTensors(
        images=tuple(images),
        labels=tuple(labels),
        geometries=(),
        keys=tuple(f"s{i}" for i in range(len(images))),
        reorientations=(),
        target_spacing_mm=(1.0, 1.0),
    )


def corner_roi_slice() -> tuple[torch.Tensor, torch.Tensor]:
    """A 200 × 300 slice with a 4 × 4 ROI 3 near its bottom-right corner (16 of 60 000 pixels)."""
    image = torch.randn(1, 200, 300)
    label = torch.zeros(200, 300, dtype=torch.int64)
    label[190:194, 280:284] = 3
    return image, label


def test_crop_origin_range_keeps_crops_inside_or_centres_small_slices():
    assert crop_origin_range(300, 160) == (0, 140)
    assert crop_origin_range(160, 160) == (0, 0)
    assert crop_origin_range(100, 160) == (-30, -30)
    assert crop_origin_range(101, 160) == (-29, -29)


def test_extract_crop_pads_images_with_the_value_and_labels_with_background():
    image = torch.arange(12.0).reshape(1, 3, 4)
    label = torch.ones(3, 4, dtype=torch.int64)
    crop, crop_label = extract_crop(image, label, (-1, 2), 4, pad_value=-5.0)
    assert crop[0, 0].tolist() == [-5.0] * 4  # the row above the slice
    assert crop[0, 1].tolist() == [2.0, 3.0, -5.0, -5.0]  # columns 2, 3, then outside
    assert crop_label.tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]


class TestCropDataset:
    def test_foreground_crops_always_hold_the_small_roi(self):
        image, label = corner_roi_slice()
        crops = CropDataset(
            spaced([image], [label]),
            size=64,
            foreground_fraction=1.0,
            generator=torch.Generator().manual_seed(0),
        )
        for _ in range(20):
            crop, crop_label = crops[0]
            assert crop.shape == (1, 64, 64) and crop_label.shape == (64, 64)
            assert int((crop_label == 3).sum()) == 16  # the whole ROI, clipped to the slice
        assert crops.measured_foreground_share == 1.0

    def test_random_crops_find_the_small_roi_rarely(self):
        image, label = corner_roi_slice()
        crops = CropDataset(
            spaced([image], [label]),
            size=64,
            foreground_fraction=0.0,
            generator=torch.Generator().manual_seed(0),
        )
        hits = sum(bool((crops[0][1] == 3).any()) for _ in range(300))
        # origins uniform over 137 × 237 positions; 64-pixel crops reach the ROI from
        # 10 × 17 of them: 0.5 % of the crops
        assert hits < 15
        assert crops.measured_foreground_share == 0.0

    def test_the_foreground_share_is_the_setting(self):
        image, label = corner_roi_slice()
        crops = CropDataset(
            spaced([image], [label]),
            size=32,
            foreground_fraction=1 / 3,
            generator=torch.Generator().manual_seed(1),
        )
        for _ in range(1500):
            crops[0]
        assert crops.measured_foreground_share == pytest.approx(1 / 3, abs=0.04)

    def test_a_small_slice_is_centred_and_padded_with_its_minimum(self):
        image = torch.full((1, 20, 30), 2.0)
        image[0, 0, 0] = -3.0
        label = torch.ones(20, 30, dtype=torch.int64)
        crop, crop_label = CropDataset(
            spaced([image], [label]), size=40, generator=torch.Generator().manual_seed(0)
        )[0]
        assert crop[0, 0, 0] == -3.0  # padding: the slice's minimum
        assert crop[0, 10, 5] == -3.0  # the slice's own minimum pixel lands at (10, 5)
        assert crop_label[10:30, 5:35].eq(1).all() and int(crop_label.sum()) == 600

    def test_same_seed_same_crops(self):
        image, label = corner_roi_slice()
        data = spaced([image], [label])
        first = [CropDataset(data, size=48, generator=torch.Generator().manual_seed(5))[0]]
        again = [CropDataset(data, size=48, generator=torch.Generator().manual_seed(5))[0]]
        assert torch.equal(first[0][0], again[0][0]) and torch.equal(first[0][1], again[0][1])

    def test_bad_settings_are_config_errors(self):
        image, label = corner_roi_slice()
        with pytest.raises(ConfigError, match="foreground_fraction must be in"):
            CropDataset(
                spaced([image], [label]),
                size=48,
                foreground_fraction=1.5,
                generator=torch.Generator(),
            )
        with pytest.raises(ConfigError, match="needs labelled slices"):
            data = SpacedTensors((image,), None, (), ("a",), (), (1.0, 1.0))
            CropDataset(data, size=48, generator=torch.Generator())


class TestForegroundBalance:
    """Eight slices: ROI 1 on every one, ROI 2 (small) on slice 7 only."""

    @staticmethod
    def rare_roi_set() -> SpacedTensors:
        images, labels = [], []
        for index in range(8):
            label = torch.zeros(120, 120, dtype=torch.int64)
            label[10:60, 10:60] = 1
            if index == 7:
                label[100:104, 100:104] = 2
            images.append(torch.full((1, 120, 120), float(index)))  # the image names its slice
            labels.append(label)
        return spaced(images, labels)

    def share_on_roi_2(self, balance: str, draws: int = 800) -> float:
        crops = CropDataset(
            self.rare_roi_set(),
            size=32,
            foreground_fraction=1.0,
            foreground_balance=balance,
            generator=torch.Generator().manual_seed(0),
        )
        hits = sum(bool((crops[i % 8][1] == 2).any()) for i in range(draws))
        return hits / draws

    def test_roi_balance_centres_half_the_crops_on_the_rare_roi(self):
        # "roi": ROI 2 is drawn with probability 1/2 whatever slice was asked for.
        assert self.share_on_roi_2("roi") == pytest.approx(0.5, abs=0.06)

    def test_slice_balance_sees_the_rare_roi_only_on_its_slice(self):
        # "slice": slice 7 is asked 1/8 of the time, and then ROI 2 is one of its two ROIs.
        assert self.share_on_roi_2("slice") == pytest.approx(1 / 16, abs=0.03)

    def test_a_moved_crop_comes_from_the_slice_that_holds_the_roi(self):
        crops = CropDataset(
            self.rare_roi_set(),
            size=32,
            foreground_fraction=1.0,
            foreground_balance="roi",
            generator=torch.Generator().manual_seed(1),
        )
        for _ in range(200):
            image, label = crops[0]
            if (label == 2).any():
                assert float(image.max()) == 7.0  # slice 7's pixels, not slice 0's
            else:
                assert float(image.max()) == 0.0

    def test_an_unknown_balance_is_refused(self):
        with pytest.raises(ConfigError, match="foreground_balance must be one of slice, roi"):
            CropDataset(
                self.rare_roi_set(),
                size=32,
                foreground_balance="class",
                generator=torch.Generator().manual_seed(0),
            )
