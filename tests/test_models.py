"""One contract for every registered model, plus the pyramid's published sizes and the registry."""

from __future__ import annotations

import pytest
import torch

from sliceseg.errors import ConfigError
from sliceseg.models import MODELS, build_model, default_hyperparameters, required_divisor

NUM_CLASSES = 3
SIZE = 64
# Tiny variants for speed; every other hyper-parameter keeps its default.
TINY = {
    "unet": {"base_channels": 8, "depth": 4, "max_channels": 32},
    "pyramid": {"base_channels": 2},
}


def tiny_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, num_classes=NUM_CLASSES, input_size=SIZE, **TINY[arch])


def test_every_registered_model_has_a_tiny_variant():
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("arch", sorted(MODELS))
class TestModelContract:
    def test_training_outputs_start_with_full_resolution_logits(self, arch):
        model = tiny_model(arch).train()
        outputs = model(torch.randn(2, 1, SIZE, SIZE))
        assert isinstance(outputs, list)
        assert outputs[0].shape == (2, NUM_CLASSES, SIZE, SIZE)
        for aux in outputs[1:]:
            assert aux.shape[:2] == (2, NUM_CLASSES)
            assert SIZE % aux.shape[-1] == 0 and aux.shape[-1] == aux.shape[-2]

    def test_eval_returns_one_element(self, arch):
        model = tiny_model(arch).eval()
        with torch.no_grad():
            outputs = model(torch.randn(2, 1, SIZE, SIZE))
        assert len(outputs) == 1
        assert outputs[0].shape == (2, NUM_CLASSES, SIZE, SIZE)

    def test_gradient_reaches_every_parameter(self, arch):
        model = tiny_model(arch).train()
        outputs = model(torch.randn(2, 1, SIZE, SIZE))
        sum(o.square().mean() for o in outputs).backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert missing == []

    def test_rebuilt_from_hyperparameters_and_state_dict_is_identical(self, arch):
        hyper = {**default_hyperparameters(arch, input_size=SIZE), **TINY[arch]}
        assert all(isinstance(v, (int, float, bool, str)) for v in hyper.values())
        model = build_model(arch, num_classes=NUM_CLASSES, input_size=SIZE, **hyper).eval()
        torch.manual_seed(1)
        clone = build_model(arch, num_classes=NUM_CLASSES, input_size=SIZE, **hyper).eval()
        clone.load_state_dict(model.state_dict())
        x = torch.randn(1, 1, SIZE, SIZE)
        with torch.no_grad():
            assert torch.equal(model(x)[0], clone(x)[0])

    def test_input_size_not_divisible_is_a_config_error(self, arch):
        divisor = required_divisor(arch, TINY[arch])
        with pytest.raises(ConfigError, match=rf"not divisible by {divisor}.*use {SIZE}"):
            build_model(arch, num_classes=NUM_CLASSES, input_size=SIZE + 2, **TINY[arch])

    def test_batch_not_divisible_is_a_config_error(self, arch):
        model = tiny_model(arch).eval()
        with pytest.raises(ConfigError, match=r"62×62 is not divisible"):
            model(torch.randn(1, 1, 62, 62))

    def test_batch_without_channel_axis_is_a_config_error(self, arch):
        with pytest.raises(ConfigError, match=r"expects images of shape \(B, 1, H, W\)"):
            tiny_model(arch)(torch.randn(1, SIZE, SIZE))


class TestPyramid:
    def test_published_widths_at_256(self):
        hyper = default_hyperparameters("pyramid", input_size=256)
        assert hyper["base_channels"] == 16
        model = build_model("pyramid", num_classes=7, input_size=256)
        assert model.widths == [16, 32, 64, 128, 256]

    def test_stage2_sees_image_plus_stage1_probabilities(self):
        model = build_model("pyramid", num_classes=7, input_size=64, base_channels=2)
        assert model.stage1.input_conv[0].in_channels == 1
        assert model.stage2.input_conv[0].in_channels == 1 + 7

    def test_widths_below_one_are_a_config_error(self):
        assert default_hyperparameters("pyramid", input_size=8)["base_channels"] == 0
        with pytest.raises(ConfigError, match=r"widths would be < 1"):
            build_model("pyramid", num_classes=3, input_size=8)

    def test_required_divisor_is_twice_the_stage_downsampling(self):
        assert required_divisor("pyramid", {"levels": 5}) == 32


class TestUNet:
    def test_deep_supervision_at_half_and_quarter(self):
        model = tiny_model("unet").train()
        shapes = [o.shape[-1] for o in model(torch.randn(1, 1, SIZE, SIZE))]
        assert shapes == [SIZE, SIZE // 2, SIZE // 4]

    def test_without_deep_supervision_one_output(self):
        model = build_model(
            "unet", num_classes=3, input_size=SIZE, deep_supervision=False, **TINY["unet"]
        )
        assert len(model.train()(torch.randn(1, 1, SIZE, SIZE))) == 1

    def test_widths_are_capped(self):
        model = build_model(
            "unet", num_classes=3, input_size=SIZE, base_channels=8, depth=5, max_channels=32
        )
        assert model.widths == [8, 16, 32, 32, 32]

    @pytest.mark.parametrize(
        ("hyper", "message"),
        [
            ({"base_channels": 4}, r"base_channels must be >= 8, got 4"),
            (
                {"norm": "layer"},
                r"norm 'layer' is unknown; use one of instance, batch, group, none",
            ),
            ({"dropout_rate": 1.0}, r"dropout_rate must be a number in \[0, 1\)"),
        ],
    )
    def test_bad_values_are_config_errors(self, hyper, message):
        with pytest.raises(ConfigError, match=message):
            build_model("unet", num_classes=3, input_size=SIZE, **hyper)

    def test_defaults_divisor(self):
        assert required_divisor("unet", default_hyperparameters("unet", input_size=256)) == 16


class TestRegistry:
    def test_unknown_arch_lists_the_known_ones(self):
        with pytest.raises(ConfigError, match=r"'resnet' is unknown; use one of 'unet', 'pyramid'"):
            build_model("resnet", num_classes=3, input_size=SIZE)

    def test_unknown_hyperparameter_lists_the_valid_ones(self):
        with pytest.raises(
            ConfigError, match=r"widht unknown for 'unet'; valid ones: base_channels"
        ):
            build_model("unet", num_classes=3, input_size=SIZE, widht=3)

    def test_specs_have_descriptions(self):
        assert all(spec.description for spec in MODELS.values())


def test_an_unknown_pyramid_kernel_size_names_the_allowed_ones():
    from sliceseg.errors import ConfigError
    from sliceseg.models.pyramid import PyramidNet

    with pytest.raises(ConfigError, match=r"kernel_size 4 is unknown; use one of 3, 5"):
        PyramidNet(num_classes=3, input_size=64, base_channels=4, kernel_size=4)
