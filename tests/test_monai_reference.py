"""Our metrics and losses against MONAI, the field's reference, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sliceseg.measure.metrics import dice_per_class, hausdorff95_mm
from sliceseg.training.losses import build_loss

monai_metrics = pytest.importorskip("monai.metrics")
monai_losses = pytest.importorskip("monai.losses")


def _random_maps(seed: int, shape=(48, 40), classes=4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, size=(6, 5)).repeat(8, axis=0).repeat(8, axis=1)
    noise = rng.random(shape) < 0.15
    pred = np.where(noise, rng.integers(0, classes, size=shape), true)
    return pred, true


def _one_hot(label: np.ndarray, classes: int) -> torch.Tensor:
    tensor = torch.as_tensor(label).long()
    return torch.nn.functional.one_hot(tensor, classes).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("seed", range(5))
def test_dice_per_class_equals_monai_dice_metric(seed):
    pred, true = _random_maps(seed)
    ours = dice_per_class(pred, true, 4)
    metric = monai_metrics.DiceMetric(include_background=False, reduction="none")
    theirs = metric(_one_hot(pred, 4), _one_hot(true, 4))[0].numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_hausdorff95_is_within_a_pixel_of_monai(seed):
    pred, true = _random_maps(seed, classes=2)
    spacing = (0.7, 1.1)
    ours = hausdorff95_mm(pred == 1, true == 1, spacing)
    theirs = monai_metrics.compute_hausdorff_distance(
        _one_hot(pred, 2), _one_hot(true, 2), percentile=95, spacing=list(spacing)
    )[0, 0].item()
    # Surfaces are defined slightly differently (boundary pixels vs. MONAI's edges); both are
    # 95th percentiles of the same symmetric distances, so they agree to about a pixel.
    assert abs(ours - theirs) <= max(spacing)


def test_dice_ce_loss_equals_monai_over_rois_and_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 24, 24)
    labels = torch.randint(0, 4, (3, 24, 24))
    ours = build_loss("dice_ce")(logits, labels).item()
    reference = monai_losses.DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=False, batch=True
    )
    assert ours == pytest.approx(reference(logits, labels[:, None]).item(), abs=1e-5)
