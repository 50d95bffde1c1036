"""Training: files, safe checkpoints, progress events, Dice counting, two CPU ranks, aspect kept."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import one_slice_patients, tiny_config
from sliceseg.cli import main
from sliceseg.dataset.samples import load_samples
from sliceseg.dataset.split import split_by_patient
from sliceseg.engine.model_info import model_summary
from sliceseg.errors import ConfigError, PairingError
from sliceseg.model_space.batches import samples_to_grid
from sliceseg.models.bundle import load_bundle
from sliceseg.postprocess.calibration import LOG_WEIGHTS
from sliceseg.training import loop, validation
from sliceseg.training.distributed import parameter_checksum
from sliceseg.training.loop import DiceCounter, train
from sliceseg.training.progress import ProgressEvent

TINY = ["--epochs", "3", "--input-shape", "64", "--batch-size", "4", "--print-checkpoint", "1"]


def sliceseg_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sliceseg", *args]


@pytest.mark.slow
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
        prefix = "Post-processing chosen on validation: "
        chosen = [line for line in lines if line.startswith(prefix)]
        assert chosen and all(" | area calibration: " in line for line in chosen)

    def test_model_file_records_target_spacing_and_postprocessing(self, tiny_phantom, tiny_model):
        meta = load_bundle(tiny_model).metadata
        truth = pd.read_csv(tiny_phantom / "truth.csv")
        train_rows = truth[truth["split"] == "train"]
        assert meta.target_spacing_mm is not None
        for axis, column in enumerate(("row_spacing_mm", "col_spacing_mm")):
            spacings = train_rows[column]
            assert spacings.min() <= meta.target_spacing_mm[axis] <= spacings.max()
        assert meta.postprocessing is not None
        assert set(meta.postprocessing["steps"]) <= {str(roi) for roi in range(1, 7)}
        assert all(0.0 <= d <= 1.0 for d in meta.postprocessing["dice_before"].values())
        calibration = meta.postprocessing["area_calibration"]
        assert set(calibration["per_roi"]) == {str(roi) for roi in range(1, 7)}  # one per ROI
        assert all(c["log_weight"] in LOG_WEIGHTS for c in calibration["per_roi"].values())
        assert np.isfinite(calibration["bias_before_pct"])  # validation ROIs were measured

    def test_a_checkpoint_at_an_unvalidated_epoch_carries_its_own_post_processing(
        self, tiny_phantom, tmp_path
    ):
        # progress (and validation) due at epochs 1 and 3, a checkpoint at 2: before issue 17
        # sliceseg_2.pt carried the post-processing and calibration chosen for epoch 1's weights
        from sliceseg.models import required_divisor
        from sliceseg.training.run_data import load_training_data
        from sliceseg.training.steps import evaluate_spaced

        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=3, print_checkpoint=3,
                             save_checkpoint=2, device="cpu")  # fmt: skip
        result = train(config, log=lambda _line: None)
        assert np.isfinite(result.history.set_index("epoch").loc[2, "val_dice"])
        checkpoint = load_bundle(tmp_path / "m" / "sliceseg_2.pt")
        meta = checkpoint.metadata
        data = load_training_data(config, None)
        _, own = evaluate_spaced(
            checkpoint.model,
            data.validation,
            device=torch.device("cpu"),
            num_classes=meta.num_classes,
            input_size=meta.input_size,
            divisor=required_divisor(meta.arch, meta.hyperparameters),
        )
        stored = json.dumps(meta.postprocessing, sort_keys=True)
        assert stored == json.dumps(own.to_dict(), sort_keys=True)

    def test_the_log_line_gives_each_roi_s_area_bias(self):
        from types import SimpleNamespace

        from sliceseg.postprocess.calibration import AreaCalibration, RoiCalibration
        from sliceseg.postprocess.cleanup import PostProcessing
        from sliceseg.training.loop import report_progress

        names = ("disc", "psoas")
        session = SimpleNamespace(
            config=SimpleNamespace(planned_epochs=5, epochs=5),
            data=SimpleNamespace(roi_names=names, validation=[object()]),
        )
        row = {"epoch": 1, "dice_loss": 0.5, "train_dice": 0.5, "val_dice": 0.5, "lr": 1e-3,
               "elapsed_seconds": 1.0, "val_dice_disc": 0.4, "val_dice_psoas": 0.6}  # fmt: skip
        calibration = AreaCalibration(
            per_roi={1: RoiCalibration(0.0, -0.4, -0.4), 2: RoiCalibration(2.0, 46.7, -2.5)}
        )
        lines: list[str] = []
        report_progress(session, row, PostProcessing(calibration=calibration),
                        log=lines.append, on_checkpoint=None)  # fmt: skip
        assert lines[-1] == (
            "Post-processing chosen on validation: none | area calibration: disc: area bias "
            "-0.4 → -0.4 % (unchanged); psoas: area bias +46.7 → -2.5 % (background ×7.39)"
        )

    def test_the_validation_line_names_the_rois_validation_cannot_score(self):
        """An ROI on no validation slice has no Dice: it left the line, the mean and the best
        model's choice without a word, so 'mean 0.900' read as every ROI's."""
        from types import SimpleNamespace

        from sliceseg.training.loop import report_progress

        names = ("disc", "psoas", "fat")
        session = SimpleNamespace(
            config=SimpleNamespace(planned_epochs=5, epochs=5),
            data=SimpleNamespace(roi_names=names, validation=[object()]),
        )
        row = {"epoch": 1, "dice_loss": 0.5, "train_dice": 0.5, "val_dice": 0.9, "lr": 1e-3,
               "elapsed_seconds": 1.0, "val_dice_disc": 0.9, "val_dice_psoas": float("nan"),
               "val_dice_fat": float("nan")}  # fmt: skip
        lines: list[str] = []
        report_progress(session, row, log=lines.append, on_checkpoint=None)
        assert lines[-1] == (
            "Validation dice: mean 0.900 | disc 0.900 | not in the validation labels, not "
            "scored: psoas, fat"
        )

    def test_ctrl_c_names_the_checkpoint_to_resume_and_what_is_lost(self, tiny_phantom, tmp_path):
        """Ctrl-C said only 'interrupted; files already written are kept': not which epochs
        were lost, nor the checkpoint the run goes on from (or that there is none)."""
        out = tmp_path / "m"

        def stop_at_epoch_2(event: ProgressEvent) -> None:
            if event.epoch == 2:
                raise KeyboardInterrupt

        lines: list[str] = []
        config = tiny_config(tiny_phantom / "train", out, epochs=3, save_checkpoint=1)
        with pytest.raises(KeyboardInterrupt):
            train(config, log=lines.append, on_checkpoint=stop_at_epoch_2)
        assert lines[-1] == (
            f"Interrupted: the epochs after sliceseg_1.pt are lost; `sliceseg train --resume "
            f"{out / 'sliceseg_1.pt'}` goes on from it."
        )
        lines.clear()
        config = tiny_config(tiny_phantom / "train", tmp_path / "n", epochs=3, save_checkpoint=3)
        with pytest.raises(KeyboardInterrupt):
            train(config, log=lines.append, on_checkpoint=stop_at_epoch_2)
        assert lines[-1] == (
            "Interrupted before the first checkpoint (one every 3 epochs, --save-checkpoint): "
            "there is nothing to resume from; a smaller --save-checkpoint loses less."
        )

    def test_a_new_run_into_a_used_folder_removes_the_earlier_runs_checkpoints(
        self, tiny_phantom, tmp_path
    ):
        """Yesterday's sliceseg_94.pt beside today's sliceseg_2.pt read as today's latest."""
        out = tmp_path / "m"
        out.mkdir()
        for name in ("sliceseg_94.pt", "sliceseg_3.pt", "sliceseg_notes.pt", "other_5.pt"):
            (out / name).write_bytes(b"an earlier run")
        lines: list[str] = []
        train(tiny_config(tiny_phantom / "train", out, epochs=2, overwrite=True), log=lines.append)
        assert (
            f"Removed 2 file(s) an earlier run left in {out}: sliceseg_3.pt, sliceseg_94.pt."
            in lines
        )
        kept = sorted(p.name for p in out.glob("*.pt"))
        assert kept == [
            "other_5.pt",
            "sliceseg_1.pt",
            "sliceseg_2.pt",
            "sliceseg_best.pt",
            "sliceseg_notes.pt",
        ]
        assert (out / "sliceseg_notes.pt").read_bytes() == b"an earlier run"  # not a checkpoint
        # fine-tuning from a checkpoint of that folder keeps it (and starts from it)
        again = tiny_config(tiny_phantom / "train", out, epochs=1, overwrite=True)
        train(dataclasses.replace(again, init_from=str(out / "sliceseg_2.pt")), log=lines.append)
        assert (out / "sliceseg_2.pt").is_file() and (out / "sliceseg_1.pt").is_file()
        assert f"Starting from the weights of {out / 'sliceseg_2.pt'}." in lines

    def test_the_held_out_series_are_logged_recorded_and_shown_by_info(
        self, tiny_phantom, tmp_path, capsys
    ):
        """The split goes by PatientID or series; nothing said which series validated."""
        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=1)
        samples, _ = load_samples(config.data_source())
        _, validation = split_by_patient(samples, validation_fraction=0.2, seed=config.seed)
        (subject,) = {s.key.split("/")[0] for s in validation}  # one of the three subjects
        lines: list[str] = []
        result = train(config, log=lines.append)
        assert lines[1] == f"Held out for validation: 1 series (3 slices): {subject} (3 slices)."
        recorded = [{"series": subject, "slices": 3}]
        assert json.loads(result.settings_json.read_text())["validation_series"] == recorded
        for model in (result.best_model, result.final_model):
            assert load_bundle(model).metadata.validation_series == ((subject, 3),)
        assert main(["info", str(result.best_model)]) == 0
        row = f"validation series (held out): 1 series (3 slices): {subject} (3 slices)"
        assert row in capsys.readouterr().out.splitlines()

    def test_an_overwrite_run_that_fails_early_leaves_no_earlier_settings_file(
        self, tiny_phantom, tmp_path, monkeypatch
    ):
        """The earlier run's settings file stayed until the new run ended: a new run that
        failed after its first checkpoint left that checkpoint beside the old settings."""
        out = tmp_path / "m"
        train(tiny_config(tiny_phantom / "train", out, epochs=1), log=lambda _line: None)
        assert json.loads((out / "sliceseg_settings.json").read_text())["epochs_completed"] == 1
        trained = loop.train_epoch

        def fail_at_epoch_2(session, epoch, *args, **kwargs):
            if epoch == 2:
                raise RuntimeError("injected")
            return trained(session, epoch, *args, **kwargs)

        monkeypatch.setattr(loop, "train_epoch", fail_at_epoch_2)
        again = tiny_config(tiny_phantom / "train", out, epochs=3, overwrite=True)
        with pytest.raises(RuntimeError, match="injected"):
            train(again, log=lambda _line: None)
        assert not (out / "sliceseg_settings.json").exists()
        assert pd.read_csv(out / "sliceseg_history.csv")["epoch"].tolist() == [1]
        assert load_bundle(out / "sliceseg_1.pt").metadata.settings["epochs"] == 3

    def test_the_best_model_records_of_how_many_epochs_it_is_the_best(
        self, tiny_phantom, tmp_path, monkeypatch
    ):
        """`sliceseg info` on a _best.pt gave its epoch, not of how many the run trained."""
        dice = iter((0.9, 0.5))

        def validate(session, row):
            return {**row, "val_dice": next(dice)}, None

        monkeypatch.setattr(validation, "validate", validate)
        config = tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=2)
        result = train(config, log=lambda _line: None)
        end = {"epochs_completed": 2, "ended_by": "planned epochs: 2 of 2", "best_val_dice": 0.9}
        assert load_bundle(result.best_model).metadata.run_end == end
        assert load_bundle(result.final_model).metadata.run_end is None  # a checkpoint
        assert model_summary(result.best_model)["trained epochs"] == (
            "1: the best by validation Dice (0.900) of the 2 epochs the run trained "
            "(it ended by planned epochs: 2 of 2)"
        )

    def test_a_refused_run_into_a_used_folder_keeps_the_earlier_runs_models(
        self, tiny_phantom, tmp_path
    ):
        """--overwrite with a mistyped data folder: the run stops before training, and the
        models of the earlier run are still there."""
        out = tmp_path / "m"
        out.mkdir()
        for name in ("sliceseg_50.pt", "sliceseg_best.pt"):
            (out / name).write_bytes(b"an earlier run")
        config = tiny_config(tmp_path / "trian", out, overwrite=True)
        with pytest.raises(PairingError, match="DICOM folder does not exist"):
            train(config, log=lambda _line: None)
        assert sorted(p.name for p in out.glob("*.pt")) == ["sliceseg_50.pt", "sliceseg_best.pt"]

    def test_one_training_slice_trains_and_says_the_profile_needs_two(self, tiny_phantom, tmp_path):
        """Two patients of one L3 slice each: one trains, one validates; the run used to end
        in an internal error after training, in the profile of the training data."""
        data = one_slice_patients(tiny_phantom, tmp_path / "l3")
        lines: list[str] = []
        result = train(tiny_config(data, tmp_path / "m", epochs=1), log=lines.append)
        assert lines[0].startswith("Training on 1 slices, validating on 1 ")
        assert (
            "No training data profile in sliceseg_best.pt: it needs at least 2 training slices, "
            "this run has 1; predict will not say which series are unlike the training data."
        ) in lines
        assert result.epochs_completed == 1
        assert load_bundle(result.best_model).metadata.familiarity is None

    def test_without_validation_the_best_model_is_this_runs_not_an_earlier_ones(
        self, tiny_phantom, tmp_path
    ):
        """No validation set: the best model is the last; an earlier run's was kept instead."""
        out = tmp_path / "m"
        lines: list[str] = []
        for shape in (32, 64):
            config = tiny_config(tiny_phantom / "train", out, epochs=1, input_shape=shape)
            config = dataclasses.replace(config, validation_fraction=0.0, overwrite=True)
            train(config, log=lines.append)
        assert (
            f"Removed 5 file(s) an earlier run left in {out}: sliceseg_1.pt, sliceseg_best.pt, "
            "sliceseg_settings.json, sliceseg_history.csv, sliceseg_history.png." in lines
        )
        assert load_bundle(out / "sliceseg_best.pt").metadata.settings["input_shape"] == 64

    def test_checkpoint_opens_with_weights_only_and_holds_the_trained_weights(
        self, tiny_phantom, tmp_path
    ):  # the model is their moving average (ema_decay); the state carries them as trained
        result = train(tiny_config(tiny_phantom / "train", tmp_path / "m", epochs=1))
        payload = torch.load(result.final_model, weights_only=True)
        assert payload["metadata"]["arch"] == "unet"
        assert payload["metadata"]["roi_names"][0] == "vertebral body"
        assert payload["metadata"]["hyperparameters"]["depth"] == 5  # resolved, plain data
        assert payload["metadata"]["settings"]["augment_params"]["rot_range"] == 10.0
        bundle = load_bundle(result.final_model)
        # the checksum train() took of the model in memory, before anything was written
        trained = json.loads(result.settings_json.read_text())["parameter_checksums"][0]
        assert bundle.training_state is not None
        average = parameter_checksum(bundle.model)
        bundle.model.load_state_dict(bundle.training_state["averaging"]["trained"])
        assert parameter_checksum(bundle.model) == pytest.approx(trained, rel=1e-12)
        assert average != pytest.approx(trained, rel=1e-6)
        assert [row["epoch"] for row in bundle.training_state["history"]] == [1]

    def test_on_checkpoint_gets_every_print_checkpoint(self, tiny_phantom, tmp_path):
        events: list[ProgressEvent] = []
        config = tiny_config(
            tiny_phantom / "train", tmp_path / "m", epochs=5, print_checkpoint=2, save_checkpoint=5
        )
        result = train(config, log=lambda _line: None, on_checkpoint=events.append)
        assert [e.epoch for e in events] == [1, 2, 4, 5]
        assert {e.epochs for e in events} == {5}
        rows = result.history.set_index("epoch")
        for event in events:
            row = rows.loc[event.epoch]
            assert event.dice_loss == row["dice_loss"] and event.learning_rate == row["lr"]
            assert event.val_dice == pytest.approx(row["val_dice"])
            assert next(iter(event.val_dice_per_roi)) == "vertebral body"
            for name, dice in event.val_dice_per_roi.items():
                assert dice == pytest.approx(row[f"val_dice_{name}"], nan_ok=True)

    def test_refuses_non_empty_output_without_overwrite(self, tiny_phantom, tmp_path):
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "keep.txt").write_text("x")
        with pytest.raises(ConfigError, match="pass --overwrite"):
            train(tiny_config(tiny_phantom / "train", tmp_path / "m"))
        assert (tmp_path / "m" / "keep.txt").read_text() == "x"

    def test_input_size_the_network_cannot_take_is_explained(self, tiny_phantom, tmp_path):
        with pytest.raises(
            ConfigError, match=r"--input-shape \(input_shape\) 70 is not divisible by"
        ):
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


@pytest.mark.slow
def test_aspect_kept_on_the_model_grid(tiny_phantom):
    samples, _report = load_samples(tiny_phantom / "train")
    sample = next(s for s in samples if s.image.shape[0] != s.image.shape[1])
    grid = samples_to_grid([sample], 64)
    rows, cols = np.nonzero(grid.images[0, 0].numpy() != 0)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    source_ratio = sample.image.shape[0] / sample.image.shape[1]
    assert height / width == pytest.approx(source_ratio, abs=0.05)


@pytest.mark.slow
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
    # each rank holds 3 of the 6 training slices, fewer than a batch: it trains on them
    history = pd.read_csv(out / "sliceseg_history.csv")
    assert np.isfinite(history["loss"]).all(), history
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


def one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


class TestDiceCounter:
    def test_pools_counts_over_batches_by_hand(self):
        truth = torch.zeros(2, 20, 20, dtype=torch.long)
        truth[0, :10, :10] = 1  # 100 pixels of ROI 1 in the first slice
        pred = truth.clone()
        pred[1, :10, :2] = 1  # 20 false positives in the second slice
        counter = DiceCounter(3)
        counter.update(one_hot_logits(pred[:1], 3), truth[:1])
        counter.update(one_hot_logits(pred[1:], 3), truth[1:])
        dice = counter.per_roi()
        assert dice[0] == pytest.approx(200 / 220)  # 2·100 / (2·100 + 20 + 0), pooled
        assert np.isnan(dice[1])  # ROI 2 absent from both
        assert counter.mean() == pytest.approx(200 / 220)

    def test_matches_monai_dice_metric_on_random_maps(self):
        monai_metrics = pytest.importorskip("monai.metrics")
        generator = torch.Generator().manual_seed(0)
        num_classes, batches = 4, []
        counter = DiceCounter(num_classes)
        for _ in range(3):
            logits = torch.randn(2, num_classes, 16, 16, generator=generator)
            labels = torch.randint(0, num_classes, (2, 16, 16), generator=generator)
            counter.update(logits, labels)
            batches.append((logits.argmax(1), labels))
        # MONAI averages per image; one image of every pixel gives the pooled Dice.
        pred = torch.cat([p.reshape(-1) for p, _ in batches])[None, :, None]
        truth = torch.cat([t.reshape(-1) for _, t in batches])[None, :, None]
        metric = monai_metrics.DiceMetric(include_background=False, reduction="none")
        expected = metric(one_hot_logits(pred, num_classes), one_hot_logits(truth, num_classes))
        np.testing.assert_allclose(counter.per_roi(), expected[0].numpy(), rtol=1e-6)


class TestDistributedLoader:
    """The loader of one rank of a torchrun run (built without a process group)."""

    @staticmethod
    def loader_of(rank: int, world_size: int, slices: int, batch_size: int, **settings):
        from sliceseg.model_space.batches import SpacedTensors
        from sliceseg.training.config import TrainConfig
        from sliceseg.training.distributed import DistributedContext
        from sliceseg.training.session import _build_loader

        # every slice alike: what a crop shows depends only on the draws that cut it
        image = torch.arange(16 * 16.0).reshape(1, 16, 16)
        label = torch.zeros(16, 16, dtype=torch.int64)
        label[2:5, 9:13] = 1
        labels = tuple(label.clone() for _ in range(slices))
        data = SpacedTensors(
            images=tuple(image.clone() for _ in range(slices)),
            labels=labels,
            geometries=(),
            keys=tuple(f"p{i}/s" for i in range(slices)),
            reorientations=(),
            target_spacing_mm=(1.0, 1.0),
        )
        config = TrainConfig(input_shape=8, batch_size=batch_size, **settings)
        context = DistributedContext(rank=rank, world_size=world_size)
        generators = {  # as set_up seeds them
            "shuffle": torch.Generator().manual_seed(config.seed),
            "augment": torch.Generator().manual_seed(config.seed * 1000 + rank + 1),
        }
        return _build_loader(config, context, data, generators)

    def test_each_rank_trains_when_its_share_is_smaller_than_a_batch(self):
        # 6 slices on 2 ranks: 3 each, fewer than a batch of 4; a batch of 3 per rank, not none
        for rank in (0, 1):
            loader, sampler = self.loader_of(rank, 2, slices=6, batch_size=4)
            assert sampler is not None and len(sampler) == 3
            assert [len(labels) for _images, labels in loader] == [3]

    def test_ranks_drop_their_last_partial_batch_when_they_have_a_whole_one(self):
        loader, _sampler = self.loader_of(1, 2, slices=10, batch_size=4)
        assert [len(labels) for _images, labels in loader] == [4]  # 5 for this rank

    def test_ranks_with_loader_workers_cut_crops_of_their_own(self):
        crops = []
        for rank in (0, 1):
            torch.manual_seed(0)  # every rank's global generator is seeded alike (`_run`)
            loader, _sampler = self.loader_of(rank, 2, slices=16, batch_size=8, num_workers=1)
            crops.append(next(iter(loader))[0])
        assert not torch.equal(crops[0], crops[1])


@pytest.mark.parametrize(("given", "missing"), [("RANK", "WORLD_SIZE"), ("WORLD_SIZE", "RANK")])
def test_half_of_torchruns_variables_is_refused(monkeypatch, given, missing):
    """With RANK alone every process trained the whole run into the same folder; with
    WORLD_SIZE alone (above 1) the process group could not start: a KeyError's traceback."""
    from sliceseg.errors import ConfigError
    from sliceseg.training.distributed import init_distributed

    monkeypatch.delenv(missing, raising=False)
    monkeypatch.setenv(given, "1")
    with pytest.raises(ConfigError) as raised:
        init_distributed(torch.device("cpu"))
    assert str(raised.value) == (
        f"{given} is set but {missing} is not: start several training processes with torchrun "
        "(it sets both), or unset it for one process."
    )


def test_every_rank_returns_the_best_validation_dice_of_rank_0(tmp_path):
    """Only rank 0 validates: the other ranks of a torchrun run returned nan, so `sliceseg
    train` printed on each "no validation Dice to choose by: the last epoch's weights"."""
    from types import SimpleNamespace

    from sliceseg.training.distributed import DistributedContext
    from sliceseg.training.loop import finish
    from sliceseg.training.state import TrainingState

    class SecondRank(DistributedContext):
        def barrier(self) -> None:
            pass

        def gather_floats(self, value: float) -> list[float]:
            return [0.8125, value]  # rank 0's value first, as all_gather gives it

    session = SimpleNamespace(
        context=SecondRank(rank=1, world_size=2),
        model=torch.nn.Linear(2, 2),
        out_dir=tmp_path,
        path=lambda suffix: tmp_path / f"sliceseg_{suffix}",
    )
    state = TrainingState(
        epoch=3,
        planned_epochs=3,
        max_minutes=None,
        elapsed_seconds=1.0,
        best_val_dice=None,  # this rank never validated
        history=(),
        optimizer={},
    )
    result = finish(session, state, log=print)  # type: ignore[arg-type]
    assert result.best_val_dice == 0.8125
