"""Training: files, safe checkpoints, resume after SIGKILL, two CPU ranks, aspect kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_config
from sliceseg.data.batches import samples_to_grid
from sliceseg.data.samples import load_samples
from sliceseg.errors import ConfigError
from sliceseg.models.bundle import load_bundle
from sliceseg.training.loop import train

pytestmark = pytest.mark.slow

TINY = ["--epochs", "3", "--input-shape", "64", "--batch-size", "4", "--print-checkpoint", "1"]


def sliceseg_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sliceseg", *args]


class TestTrain:
    def test_writes_models_history_and_prints_manual_lines(self, tiny_phantom, tmp_path):
        lines: list[str] = []
        result = train(tiny_config(tiny_phantom / "train", tmp_path / "m"), log=lines.append)
        names = {p.name for p in (tmp_path / "m").iterdir()}
        assert {
            "sliceseg_1.pt",
            "sliceseg_2.pt",
            "sliceseg_best.pt",
            "sliceseg_history.csv",
            "sliceseg_history.png",
            "sliceseg_settings.json",
            "sliceseg_first_batch.png",
        } <= names
        progress = [line for line in lines if line.startswith("Completed epochs:")]
        assert [p.split(" | ")[0] for p in progress] == [
            "Completed epochs: 1/2",
            "Completed epochs: 2/2",
        ]
        assert any(line.startswith("Validation dice: mean ") for line in lines)
        history = pd.read_csv(result.history_csv)
        assert history["epoch"].tolist() == [1, 2]
        assert {"loss", "train_dice", "val_dice", "lr", "elapsed_seconds"} <= set(history.columns)
        assert any(c.startswith("val_dice_vertebral") for c in history.columns)

    def test_checkpoint_opens_with_weights_only_and_rebuilds_the_model(
        self, tiny_phantom, tmp_path
    ):
        result = train(tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=1))
        payload = torch.load(result.final_model, weights_only=True)
        assert payload["metadata"]["arch"] == "unet"
        assert payload["metadata"]["roi_names"][0] == "vertebral body"
        bundle = load_bundle(result.final_model)
        x = torch.randn(1, 1, 64, 64)
        assert torch.equal(bundle.model(x)[0], load_bundle(result.final_model).model(x)[0])
        assert bundle.training_state is not None and len(bundle.training_state["history"]) == 1

    def test_refuses_non_empty_output_without_overwrite(self, tiny_phantom, tmp_path):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "keep.txt").write_text("x")
        with pytest.raises(ConfigError, match="pass --overwrite"):
            train(tiny_config(tiny_phantom / "train", tmp_path / "m"))
        assert (tmp_path / "m" / "keep.txt").read_text() == "x"

    def test_input_size_the_network_cannot_take_is_explained(self, tiny_phantom, tmp_path):
        with pytest.raises(ConfigError, match="input_shape 70 is not divisible by"):
            train(tiny_config(tiny_phantom / "train", tmp_path / "m", input_shape=70))

    def test_pyramid_trains_and_its_loss_falls(self, tiny_phantom, tmp_path):
        config = tiny_config(
            tiny_phantom / "train",
            tmp_path / "p",
            arch="pyramid",
            epochs=6,
            augment=False,
            hyperparameters={"base_channels": 4},
            print_checkpoint=6,
            save_checkpoint=6,
        )
        result = train(config)
        losses = result.history["loss"].to_numpy()
        assert losses[-1] < losses[0]


def test_aspect_kept_on_the_model_grid(tiny_phantom):
    samples, _report = load_samples(tiny_phantom / "train")
    sample = next(s for s in samples if s.image.shape[0] != s.image.shape[1])
    grid = samples_to_grid([sample], 64)
    rows, cols = np.nonzero(grid.images[0, 0].numpy() != 0)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    source_ratio = sample.image.shape[0] / sample.image.shape[1]
    assert height / width == pytest.approx(source_ratio, abs=0.05)


def test_resume_after_sigkill_continues_history_without_loss_or_repeat(tiny_phantom, tmp_path):
    out = tmp_path / "run"
    args = [
        str(tiny_phantom / "train"),
        "--out",
        str(out),
        "--epochs",
        "500",
        "--input-shape",
        "64",
        "--batch-size",
        "4",
        "--print-checkpoint",
        "1",
        "--save-checkpoint",
        "2",
    ]
    process = subprocess.Popen(
        sliceseg_command("train", *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 240
    while not (out / "sliceseg_2.pt").exists():
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = torch.load(out / "sliceseg_2.pt", weights_only=True)["training_state"]["history"]
    done = subprocess.run(
        sliceseg_command("train", "--resume", str(out / "sliceseg_2.pt"), "--epochs", "4"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Resuming from" in done.stdout and "after epoch 2" in done.stdout
    history = pd.read_csv(out / "sliceseg_history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["loss"].iloc[:2].tolist() == pytest.approx([row["loss"] for row in before])
    assert history["elapsed_seconds"].is_monotonic_increasing
    assert (out / "sliceseg_4.pt").is_file()


def test_two_cpu_ranks_end_identical_and_write_one_set_of_files(tiny_phantom, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "sliceseg",
        "train",
        str(tiny_phantom / "train"),
        "--out",
        str(out),
        *TINY,
        "--save-checkpoint",
        "3",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    settings = json.loads((out / "sliceseg_settings.json").read_text())
    assert settings["world_size"] == 2
    first, second = settings["parameter_checksums"]
    assert first == second
    assert done.stdout.count("Completed epochs: 3/3") == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "sliceseg_3.pt",
            "sliceseg_best.pt",
            "sliceseg_history.csv",
            "sliceseg_history.png",
            "sliceseg_settings.json",
            "sliceseg_first_batch.png",
        ]
    )
