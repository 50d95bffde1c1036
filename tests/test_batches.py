"""Tests for sliceseg.model_space.batches: the spacing that shows a whole slice (``view``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sliceseg.dataset.pairing import Sample
from sliceseg.errors import ConfigError
from sliceseg.io.dicom import Slice
from sliceseg.model_space.batches import native_crop_share, whole_slice_spacing
from sliceseg.model_space.orientation import IDENTITY
from sliceseg.training.config import TrainConfig


def sample(rows: int, cols: int, spacing_mm: tuple[float, float] | None) -> Sample:
    image = Slice(np.zeros((rows, cols), np.float32), spacing_mm, "PixelSpacing", Path("a.dcm"))
    return Sample(key="a", image=image, label=np.zeros((rows, cols), np.uint8))


def spacing(samples: list[Sample], input_size: int) -> tuple[float, float]:
    return whole_slice_spacing(samples, input_size, reorientations=[IDENTITY] * len(samples))


class TestWholeSliceSpacing:
    def test_the_median_extent_fits_the_crop(self):
        # extents 409.6 mm (×3) and 256 mm (×2): median 409.6 mm / 160 = 2.56 mm
        samples = [sample(512, 512, (0.8, 0.8))] * 3 + [sample(256, 256, (1.0, 1.0))] * 2
        assert spacing(samples, 160) == pytest.approx((2.56, 2.56))

    def test_the_longer_side_decides_and_the_aspect_is_kept(self):
        # 200 × 0.7 = 140 mm rows, 300 × 1.1 = 330 mm columns: 330 / 160 = 2.0625 on both axes
        assert spacing([sample(200, 300, (0.7, 1.1))], 160) == pytest.approx((2.0625, 2.0625))

    def test_slices_coarse_enough_keep_their_median_spacing(self):
        # 100 × 2 mm = 200 mm fits 160 pixels at 1.25 mm: the median 2 mm stays
        assert spacing([sample(100, 100, (2.0, 2.0))], 160) == (2.0, 2.0)

    def test_a_share_of_the_extent_fits_the_crop(self):
        # 512 × 0.8 = 409.6 mm; 70 % of it is 286.72 mm over 160 pixels = 1.792 mm
        samples = [sample(512, 512, (0.8, 0.8))]
        got = whole_slice_spacing(samples, 160, share=0.7, reorientations=[IDENTITY])
        assert got == pytest.approx((1.792, 1.792))

    def test_without_any_spacing_the_median_rule_applies(self):
        assert spacing([sample(300, 300, None)], 160) == (1.0, 1.0)


def test_the_view_setting_is_checked():
    assert TrainConfig().view == "auto"
    with pytest.raises(
        ConfigError, match=r"--view \(view\) must be one of auto, native, whole, wide"
    ):
        TrainConfig(view="all")


def test_a_crop_at_the_median_spacing_shows_its_share_of_the_median_slice():
    ct = [sample(512, 512, (0.8, 0.8))] * 3 + [sample(256, 256, (1.0, 1.0))] * 2
    assert native_crop_share(ct, 160, reorientations=[IDENTITY] * 5) == pytest.approx(0.3125)
    mr = [sample(300, 250, (1.2, 1.0))]  # the mean spacing 1.1 mm × 160 = 176 of 360 mm
    assert native_crop_share(mr, 160, reorientations=[IDENTITY]) == pytest.approx(176 / 360)
    assert native_crop_share([sample(300, 300, None)], 160, reorientations=[IDENTITY]) is None


def test_auto_view_trains_a_ct_sized_slice_wide_and_an_mr_sized_one_native():
    ct = [sample(512, 512, (0.8, 0.8))]  # a crop shows 31 %: wide, 0.7 × 409.6 / 160 mm
    assert TrainConfig().chosen_view(ct) == "wide"
    assert TrainConfig().view_spacing(ct) == pytest.approx((1.792, 1.792))
    mr = [sample(320, 320, (1.0, 1.0))]  # 160 of 320 mm: 50 %, native
    assert TrainConfig().chosen_view(mr) == "native"
    assert TrainConfig().view_spacing(mr) is None
    edge = [sample(400, 400, (1.0, 1.0))]  # exactly 40 %: native; a pixel more: wide
    assert TrainConfig().chosen_view(edge) == "native"
    assert TrainConfig().chosen_view([sample(401, 401, (1.0, 1.0))]) == "wide"
    assert TrainConfig(view="native").chosen_view(ct) == "native"
    assert TrainConfig(input_shape=256).chosen_view(ct) == "native"  # 256 × 0.8 = 50 %
    assert TrainConfig().chosen_view([sample(512, 512, None)]) == "native"


def test_the_wide_view_shows_seventy_percent_of_the_median_slice():
    samples = [sample(400, 400, (1.0, 1.0))]  # 400 mm: 0.7 × 400 / 160 = 1.75 mm
    assert TrainConfig(view="wide").view_spacing(samples) == pytest.approx((1.75, 1.75))
    assert TrainConfig(view="whole").view_spacing(samples) == pytest.approx((2.5, 2.5))
    assert TrainConfig(view="native").view_spacing(samples) is None


@pytest.fixture(scope="module")
def fine_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import small_phantom

    return small_phantom(tmp_path_factory, "fine", train_subjects=3, seed=5, matrix=(96, 96))


def test_training_says_when_auto_view_coarsens_and_the_model_keeps_that_grid(
    fine_phantom, tmp_path, capsys
):
    import pydicom

    from sliceseg.cli import main
    from sliceseg.models.bundle import load_bundle

    headers = [pydicom.dcmread(f) for f in sorted((fine_phantom / "train").rglob("*.dcm"))]
    extents = [
        max(h.Rows * float(h.PixelSpacing[0]), h.Columns * float(h.PixelSpacing[1]))
        for h in headers
    ]
    wide_mm = 0.7 * float(np.median(extents)) / 32  # a 32-pixel crop shows 70 % of a slice
    out = tmp_path / "m"
    args = ["train", str(fine_phantom / "train"), "--out", str(out), "--epochs", "1"]
    args += ["--validation-fraction", "0"]  # every subject trains: the median over them all
    assert main([*args, "--input-shape", "32"]) == 0
    printed = capsys.readouterr().out
    assert "View auto: a 32-pixel crop at the training slices' median spacing would show" in printed
    assert "where it shows 70 % (view wide; --view native keeps the median spacing)" in printed
    spacing = load_bundle(out / "sliceseg_best.pt").metadata.target_spacing_mm
    assert spacing == pytest.approx((wide_mm, wide_mm), rel=1e-6)
    assert main([*args, "--input-shape", "32", "--view", "native", "--overwrite"]) == 0
    assert "View auto" not in capsys.readouterr().out
    assert load_bundle(out / "sliceseg_best.pt").metadata.target_spacing_mm[0] < wide_mm / 2


def test_a_view_that_a_set_spacing_overrides_is_said_not_silently_ignored(
    fine_phantom, tmp_path, capsys
):
    from sliceseg.cli import main
    from sliceseg.models.bundle import load_bundle

    args = ["train", str(fine_phantom / "train"), "--epochs", "1", "--input-shape", "32"]
    args += ["--validation-fraction", "0"]
    assert main([*args, "--out", str(tmp_path / "a"), "--target-spacing", "2.5"]) == 0
    assert "View" not in capsys.readouterr().out  # auto, with a spacing given: nothing to say
    first = tmp_path / "a" / "sliceseg_best.pt"
    tuned = [*args, "--out", str(tmp_path / "b"), "--init-from", str(first), "--view", "whole"]
    assert main(tuned) == 0
    printed = capsys.readouterr().out
    assert (
        "View whole has no effect: the target spacing is set (2.5 × 2.5 mm, the --init-from "
        "model's grid)" in printed
    )
    assert load_bundle(tmp_path / "b" / "sliceseg_best.pt").metadata.target_spacing_mm == (2.5, 2.5)
    given = [*args, "--out", str(tmp_path / "c"), "--target-spacing", "3", "--view", "wide"]
    assert main(given) == 0
    assert (
        "View wide has no effect: the target spacing is set (3 × 3 mm, --target-spacing "
        "(target_spacing_mm)); leave out --target-spacing (target_spacing_mm) (or, "
        "fine-tuning, train a new model) to let the view choose it." in capsys.readouterr().out
    )
