"""The weights' moving average (`ema_decay`): its arithmetic, what the files hold, resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from conftest import tiny_config
from sliceseg.cli import main
from sliceseg.errors import ConfigError
from sliceseg.models.bundle import load_bundle
from sliceseg.training.averaging import WeightAverage
from sliceseg.training.config import TrainConfig
from sliceseg.training.loop import train


def constant_net(value: float) -> nn.Sequential:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        for tensor in (*net.parameters(), net[1].running_mean, net[1].running_var):
            tensor.fill_(value)
    net[1].num_batches_tracked.fill_(int(value))
    return net


class TestWeightAverage:
    def test_follows_the_warmed_up_exponential_average_of_parameters_and_buffers(self):
        net = constant_net(0.0)
        average = WeightAverage(net, decay=0.9)
        expected = 0.0
        for step, value in enumerate([1.0, 2.0, 4.0, 8.0]):
            net.load_state_dict(constant_net(value).state_dict())
            decay = min(0.9, (1 + step) / (10 + step))
            expected = decay * expected + (1 - decay) * value
            average.update(net)
        state = average.model.state_dict()
        for name in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
            assert torch.allclose(state[name], torch.full_like(state[name], expected)), name
        assert int(state["1.num_batches_tracked"]) == 8  # a counter: the latest, not averaged
        assert average.updates == 4

    def test_never_trains_and_leaves_the_source_alone(self):
        net = constant_net(1.0)
        average = WeightAverage(net, decay=0.5)
        assert not any(p.requires_grad for p in average.model.parameters())
        net.load_state_dict(constant_net(3.0).state_dict())
        average.update(net)
        assert float(net[0].weight.detach().flatten()[0]) == 3.0

    @pytest.mark.parametrize(
        ("decay", "said"),
        [(-0.1, "in"), (1.0, "in"), (1.5, "in"), (True, "a number, got True")],
    )
    def test_a_decay_outside_0_1_is_refused_by_the_settings(self, decay, said):
        with pytest.raises(ConfigError, match=rf"--ema-decay \(ema_decay\) must be {said}"):
            TrainConfig(ema_decay=decay)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_files_hold_the_average_and_a_resumed_run_equals_the_whole_one(
    tiny_phantom, tmp_path, one_thread
):
    data = tiny_phantom / "train"
    settings = dict(epochs=3, ema_decay=0.9, area_calibration=False, seed=4)
    whole = train(tiny_config(data, tmp_path / "whole", **settings), log=lambda _line: None)
    checkpoint = load_bundle(whole.out_dir / "sliceseg_2.pt")
    assert checkpoint.training_state is not None
    averaging = checkpoint.training_state["averaging"]
    assert averaging["updates"] > 0
    trained, held = averaging["trained"], checkpoint.model.state_dict()
    differs = [name for name in held if not torch.equal(held[name], trained[name])]
    assert "encoder.0.0.weight" in differs or len(differs) > len(held) // 2

    part = tmp_path / "part"  # the whole run stopped after epoch 2, as by a crash
    part.mkdir()
    shutil.copy(whole.out_dir / "sliceseg_2.pt", part / "sliceseg_2.pt")
    resumed = train(resume=part / "sliceseg_2.pt", log=lambda _line: None)
    a = load_bundle(whole.out_dir / "sliceseg_3.pt").model.state_dict()
    b = load_bundle(resumed.out_dir / "sliceseg_3.pt").model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_the_flag_reaches_the_settings(tiny_phantom, tmp_path):
    out = tmp_path / "m"
    code = main(
        [
            "train",
            str(tiny_phantom / "train"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--input-shape",
            "64",
            "--ema-decay",
            "0.95",
        ]
    )
    assert code == 0
    assert json.loads((out / "sliceseg_settings.json").read_text())["settings"]["ema_decay"] == 0.95
    assert load_bundle(out / "sliceseg_best.pt").metadata.settings["ema_decay"] == 0.95
