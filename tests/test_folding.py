"""Tests for sliceseg.models.folding: folded batch norms, size-free networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sliceseg.models import build_model
from sliceseg.models.folding import fold_batch_norms, inference_network, is_size_free


def trained_batch_norm_unet() -> nn.Module:
    """A U-Net whose batch norms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, input_size=64, depth=4, norm="batch")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_folding_keeps_the_output_and_removes_the_norms():
    model = trained_batch_norm_unet()
    x = torch.randn(2, 1, 64, 96)
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # input untouched
    with torch.no_grad():
        assert torch.allclose(folded(x)[0], model(x)[0], atol=1e-4)
        assert torch.allclose(inference_network(model)(x)[0], model(x)[0], atol=1e-4)


@pytest.mark.parametrize(
    ("norm", "expected"), [("batch", True), ("none", True), ("instance", False), ("group", False)]
)
def test_size_free_means_no_statistics_over_space(norm, expected):
    model = build_model("unet", num_classes=3, input_size=64, depth=4, norm=norm)
    assert is_size_free(model) is expected


def test_a_size_free_network_predicts_a_crop_as_the_whole_image_does_inside():
    """Away from the borders (beyond the receptive field) a pixel does not see the image size."""
    model = trained_batch_norm_unet()
    x = torch.randn(1, 1, 192, 192)
    with torch.no_grad():
        whole = model(x)[0]
        part = model(x[:, :, 32:160, 32:160])[0]
    assert torch.allclose(whole[:, :, 80:112, 80:112], part[:, :, 48:80, 48:80], atol=1e-4)
