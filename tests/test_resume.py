"""Resume: the TrainingState record, explicit overrides, and a SIGKILLed run continued."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import full_disk_on_write, tiny_config
from sliceseg.cli import main
from sliceseg.errors import BundleError, ConfigError
from sliceseg.io.files import TEMP_PREFIX
from sliceseg.models.bundle import load_bundle
from sliceseg.training import loop, validation
from sliceseg.training.config import TrainConfig
from sliceseg.training.loop import train
from sliceseg.training.state import TRAINING_STATE_VERSION, TrainingState, resume_config

EPOCHS = 20
RUN = [
    "--epochs",
    str(EPOCHS),
    "--input-shape",
    "64",
    "--batch-size",
    "4",
    "--print-checkpoint",
    "3",
    "--save-checkpoint",
    "3",
    "--device",
    "cpu",
    "--seed",
    "3",
]
# One thread per process: the two runs below train side by side, and the sums inside each
# convolution are then done in one fixed order, so the runs can be compared bit for bit.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def a_state(**changes) -> TrainingState:
    values = dict(
        epoch=4,
        planned_epochs=40,
        max_minutes=None,
        elapsed_seconds=90.0,
        best_val_dice=0.5,
        history=({"epoch": 1.0, "loss": 2.0},),
        optimizer={},
    )
    values.update(changes)
    return TrainingState(**values)


class TestTrainingState:
    def test_round_trips_through_a_weights_only_file(self, tmp_path):
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
        generator = torch.Generator().manual_seed(5)
        state = a_state(
            optimizer=optimizer.state_dict(),
            rng={"torch": torch.get_rng_state(), "augment": generator.get_state()},
            max_minutes=3.0,
        )
        torch.save({"training_state": state.to_dict()}, tmp_path / "s.pt")
        data = torch.load(tmp_path / "s.pt", weights_only=True)["training_state"]
        back = TrainingState.from_dict(data)
        assert data["format_version"] == TRAINING_STATE_VERSION
        assert (back.epoch, back.planned_epochs, back.max_minutes) == (4, 40, 3.0)
        assert (back.elapsed_seconds, back.best_val_dice) == (90.0, 0.5)
        assert back.history == ({"epoch": 1.0, "loss": 2.0},)
        assert torch.equal(back.rng["augment"], generator.get_state())
        saved = optimizer.state_dict()["state"][0]["exp_avg"]
        assert torch.equal(back.optimizer["state"][0]["exp_avg"], saved)
        assert back.remaining_seconds == pytest.approx(90.0)

    def test_a_newer_format_is_refused_in_one_line(self):
        data = {**a_state().to_dict(), "format_version": TRAINING_STATE_VERSION + 1}
        with pytest.raises(BundleError, match=r"^ckpt\.pt: training state format 2 is newer"):
            TrainingState.from_dict(data, source="ckpt.pt")

    def test_an_unversioned_state_is_refused(self):
        data = a_state().to_dict()
        del data["format_version"]
        with pytest.raises(BundleError, match="predates versioned checkpoints"):
            TrainingState.from_dict(data)


class TestResumeConfig:
    SETTINGS = TrainConfig(data_dir="d", epochs=40, max_minutes=5.0).to_dict()

    def test_keeps_the_checkpoint_settings_and_says_what_is_left_of_the_budget(self):
        config, notes = resume_config(self.SETTINGS, a_state(max_minutes=5.0), {})
        assert (config.epochs, config.max_minutes, config.data_dir) == (40, 5.0, "d")
        assert notes == (
            "Resuming from checkpoint after epoch 4 of 40, 0 hrs 3 mins 30 secs left of the "
            "5-minute budget.",
        )

    def test_an_explicit_override_is_applied_and_named_once(self):
        config, notes = resume_config(
            self.SETTINGS, a_state(max_minutes=5.0), {"epochs": 60, "batch_size": 4}
        )
        assert config.epochs == 60
        assert notes[-1] == "Overriding the checkpoint's settings as given: epochs 40 → 60."

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            ({"arch": "pyramid"}, r"--arch \(arch\) cannot change when resuming"),
            ({"seed": 9}, r"--seed \(seed\) cannot change when resuming"),
            (
                {"context_slices": 1},
                r"--context-slices \(context_slices\) cannot change when resuming",
            ),
            ({"ema_decay": 0.99}, r"--ema-decay \(ema_decay\) cannot change when resuming"),
            (
                {"normalisation": "ct"},
                r"--normalisation \(normalisation\) cannot change when resuming",
            ),
            ({"init_from": "other.pt"}, r"--init-from \(init_from\) cannot change when resuming"),
            ({"epochs": 4}, "already completed 4 of 4 planned epochs; give --epochs above 4"),
        ],
    )
    def test_refuses_what_would_not_continue_the_run(self, override, message):
        with pytest.raises(ConfigError, match=message):
            resume_config(self.SETTINGS, a_state(), override)

    def test_a_checkpoint_from_before_the_weight_average_resumes_without_one(self):
        older = {k: v for k, v in self.SETTINGS.items() if k != "ema_decay"}
        config, _notes = resume_config(older, a_state(max_minutes=5.0), {})
        assert config.ema_decay == 0.0
        assert TrainConfig().ema_decay == 0.998

    def test_a_spent_budget_is_refused(self):
        with pytest.raises(ConfigError, match="already spent its 1-minute budget"):
            resume_config(self.SETTINGS, a_state(max_minutes=1.0), {})

    def test_a_run_that_stopped_at_its_budget_is_refused_unless_it_grows(self):
        """The run stopped because its next epoch would pass the budget, before spending it:
        a resume trained one epoch more, past the budget, at a learning rate near 0."""
        stopped = a_state(max_minutes=5.0, elapsed_seconds=280.0, budget_spent=True)
        with pytest.raises(
            ConfigError, match=r"^checkpoint: the run already stopped at its 5-minute budget"
        ):
            resume_config(self.SETTINGS, stopped, {})
        config, _notes = resume_config(self.SETTINGS, stopped, {"max_minutes": 8.0})
        assert config.max_minutes == 8.0


def test_both_config_and_resume_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="give either config or resume="):
        train(TrainConfig(data_dir=str(tmp_path)), resume=tmp_path / "x.pt")


def test_a_resume_from_another_folder_says_where_its_data_path_came_from(tmp_path, monkeypatch):
    """The checkpoint keeps data_dir as typed ("data/train"); resumed from elsewhere it read
    'data/train/dicoms: DICOM folder does not exist', not where the path came from."""
    from sliceseg.training.state import check_data_found

    (tmp_path / "data" / "train").mkdir(parents=True)
    config = TrainConfig(data_dir="data/train", labels_dir="data/labels")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        check_data_found(config, {}, source="m/sliceseg_4.pt")
    assert str(caught.value) == (
        "m/sliceseg_4.pt: its run read labels_dir 'data/labels' (as typed when it started), not "
        f"found from {tmp_path}; resume from the folder the run started in, or give it again: "
        "sliceseg train --labels DIR --resume m/sliceseg_4.pt."
    )
    check_data_found(config, {"labels_dir": "/elsewhere/labels"}, source="m/sliceseg_4.pt")
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(ConfigError, match=r"read data_dir 'data/train' .* train DATA --resume"):
        check_data_found(config, {}, source="m/sliceseg_4.pt")


def test_cli_resume_from_another_folder_names_the_checkpoint_s_data_path(
    tmp_path, monkeypatch, capsys
):
    from sliceseg.models.bundle import save_bundle
    from test_model_info import small_unet
    from test_predict import metadata

    settings = TrainConfig(data_dir="data/train", epochs=4, input_shape=32).to_dict()
    state = TrainingState(epoch=2, planned_epochs=4, max_minutes=None, elapsed_seconds=1.0,
                          best_val_dice=None, history=(), optimizer={})  # fmt: skip
    meta = metadata(hyperparameters={"depth": 3}, input_size=32, settings=settings)
    checkpoint = tmp_path / "m" / "sliceseg_2.pt"
    save_bundle(checkpoint, small_unet(), meta, training_state=state.to_dict())
    monkeypatch.chdir(tmp_path)  # the run started elsewhere, where data/train was
    assert main(["train", "--resume", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "its run read data_dir 'data/train' (as typed when it started), not found" in err
    assert f"sliceseg train DATA --resume {checkpoint}." in err


def test_a_new_run_into_a_killed_runs_folder_names_the_resume(tmp_path, capsys):
    """The command of a killed run, typed again, said only 'pass --overwrite', which removes
    the checkpoints it could have gone on from."""
    out = tmp_path / "m"
    out.mkdir()
    for name in ("sliceseg_10.pt", "sliceseg_20.pt", "sliceseg_best.pt"):
        (out / name).write_bytes(b"an earlier run")
    before = snapshot_files(out)
    assert main(["train", str(tmp_path / "data"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {out}: holds the checkpoints of an earlier run (the latest: sliceseg_20.pt); "
        f"continue it with `sliceseg train --resume {out / 'sliceseg_20.pt'}`, or choose another "
        "--out, or pass --overwrite to start over there (its checkpoints are removed)."
    ]
    assert snapshot_files(out) == before


@pytest.mark.slow
class TestResumeInProcess:
    def test_cli_passes_only_typed_flags_and_logs_the_override(
        self, tiny_phantom, tmp_path, capsys
    ):
        out = tmp_path / "m"
        train(tiny_config(tiny_phantom / "train", out, epochs=2), log=lambda _line: None)
        code = main(["train", "--resume", str(out / "sliceseg_2.pt"), "--epochs", "3"])
        printed = capsys.readouterr().out
        assert code == 0
        overrides = [line for line in printed.splitlines() if line.startswith("Overriding")]
        assert overrides == ["Overriding the checkpoint's settings as given: epochs 2 → 3."]
        assert f"Resuming from {out / 'sliceseg_2.pt'} after epoch 2 of 3." in printed
        history = pd.read_csv(out / "sliceseg_history.csv")
        assert history["epoch"].tolist() == [1, 2, 3]

    def test_resuming_a_run_that_stopped_at_its_budget_trains_nothing(
        self, tiny_phantom, tmp_path, capsys
    ):
        out, ticks = tmp_path / "m", iter(range(0, 10_000, 8))  # 8 s per reading of the clock
        config = tiny_config(tiny_phantom / "train", out, epochs=None, max_minutes=2.0)
        result = train(config, log=lambda _line: None, clock=lambda: float(next(ticks)))
        # at 120 s, after epoch 2's validation, its checkpoint (8 s) and an epoch of 16 s with
        # its validation and checkpoint (8 s each) would pass 120 s
        assert result.epochs_completed == 2
        last = out / "sliceseg_2.pt"
        before = snapshot_files(out)
        settings = json.loads((out / "sliceseg_settings.json").read_text())
        assert settings["ended_by"] == "time budget: the next epoch would have passed 2 minutes"
        spent = load_bundle(last).training_state["elapsed_seconds"]  # type: ignore[index]
        assert settings["elapsed_seconds"] == spent
        assert main(["train", "--resume", str(last)]) == 2
        err = capsys.readouterr().err
        assert f"error: {last}: the run already stopped at its 2-minute budget" in err
        assert "Traceback" not in err and snapshot_files(out) == before

    @pytest.mark.parametrize(
        ("dice", "removed", "best_epoch"),
        [
            ((0.5, 0.6, 0.55, 0.9), None, 2),  # the checkpoint's best: the checkpoint itself
            ((0.7, 0.6, 0.55, 0.9), None, 1),  # an earlier epoch's checkpoint file
            ((0.7, 0.6, 0.55, 0.9), "sliceseg_1.pt", 2),  # ... gone: the checkpoint's own
        ],
    )
    def test_resuming_an_earlier_checkpoint_drops_the_abandoned_epochs_best(
        self, tiny_phantom, tmp_path, monkeypatch, dice, removed, best_epoch
    ):
        """Epochs 1-4 validated at ``dice``: the best model is epoch 4's. A resume from epoch 2
        kept that best model of the epochs it abandons, though it was never this run's."""

        def validate(session, row):
            return {**row, "val_dice": dice[int(row["epoch"]) - 1]}, None

        monkeypatch.setattr(validation, "validate", validate)
        out = tmp_path / "m"
        train(tiny_config(tiny_phantom / "train", out, epochs=4), log=lambda _line: None)
        assert load_bundle(out / "sliceseg_best.pt").metadata.epoch == 4
        if removed:
            (out / removed).unlink()
        kept = load_bundle(out / f"sliceseg_{best_epoch}.pt").model.state_dict()
        lines: list[str] = []
        result = train(resume=out / "sliceseg_2.pt", overrides={"epochs": 3}, log=lines.append)
        best = load_bundle(out / "sliceseg_best.pt")
        assert best.metadata.epoch == best_epoch
        assert all(torch.equal(v, best.model.state_dict()[k]) for k, v in kept.items())
        assert result.best_val_dice == dice[best_epoch - 1]
        settings = json.loads((out / "sliceseg_settings.json").read_text())
        assert settings["best_val_dice"] == dice[best_epoch - 1]
        replaced = [line for line in lines if line.startswith("Replaced sliceseg_best.pt")]
        assert len(replaced) == 1 and f"with epoch {best_epoch}'s model" in replaced[0]
        assert (
            f"sliceseg_3.pt, sliceseg_4.pt in {out}: of the epochs after 2 that this resume "
            "abandons; kept, but not this run's (it replaces each one it reaches)." in lines
        )
        assert (out / "sliceseg_4.pt").exists()  # kept: a resume from the wrong file loses nothing


def test_a_resume_rewrites_the_history_to_its_checkpoints_epochs(
    tiny_phantom, tmp_path, monkeypatch
):
    """A resume from an earlier checkpoint kept the rows of the epochs it abandons in the
    history until its own first checkpoint: a resume stopped before then left them there.
    Each epoch's validation Dice is a number of its own, so the rows tell the runs apart."""
    dice = iter(range(1, 100))

    def validate(session, row):
        return {**row, "val_dice": next(dice) / 100}, None

    monkeypatch.setattr(validation, "validate", validate)
    out = tmp_path / "m"
    train(tiny_config(tiny_phantom / "train", out, epochs=4), log=lambda _line: None)
    trained = loop.train_epoch

    def fail_at_epoch_3(session, epoch, *args, **kwargs):
        if epoch == 3:
            raise RuntimeError("injected")
        return trained(session, epoch, *args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", fail_at_epoch_3)
    with pytest.raises(RuntimeError, match="injected"):
        train(resume=out / "sliceseg_2.pt", log=lambda _line: None)
    history = pd.read_csv(out / "sliceseg_history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert history["val_dice"].tolist() == [0.01, 0.02]
    monkeypatch.setattr(loop, "train_epoch", trained)
    result = train(resume=out / "sliceseg_2.pt", log=lambda _line: None)
    history = pd.read_csv(out / "sliceseg_history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # each epoch once, the last resume's
    assert history["val_dice"].tolist() == [0.01, 0.02, 0.05, 0.06]
    assert result.history["val_dice"].tolist() == history["val_dice"].tolist()


def test_checkpoints_a_resume_abandons_are_named_and_kept(tmp_path):
    """Resumed from sliceseg_2.pt for one more epoch, the folder kept sliceseg_4.pt to
    sliceseg_8.pt of the abandoned epochs beside the run's last, sliceseg_3.pt, without a word:
    sliceseg_8.pt read as the latest."""
    from sliceseg.training.output_folder import note_abandoned_checkpoints

    for name in ("sliceseg_2.pt", "sliceseg_10.pt", "sliceseg_4.pt", "sliceseg_best.pt",
                 "other_8.pt"):  # fmt: skip
        (tmp_path / name).write_bytes(b"x")
    lines: list[str] = []
    note_abandoned_checkpoints(tmp_path, "sliceseg", 2, lines.append)
    assert lines == [
        f"sliceseg_4.pt, sliceseg_10.pt in {tmp_path}: of the epochs after 2 that this resume "
        "abandons; kept, but not this run's (it replaces each one it reaches)."
    ]
    note_abandoned_checkpoints(tmp_path, "sliceseg", 10, lines.append)
    assert len(lines) == 1 and (tmp_path / "sliceseg_10.pt").exists()


def snapshot_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def sliceseg_train(*args: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sliceseg", "train", *args]
    with log.open("w") as stream:
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=ENV)


def checkpoints(folder: Path) -> dict[int, Path]:
    found = (re.fullmatch(r"sliceseg_(\d+)\.pt", p.name) for p in folder.glob("*.pt"))
    return {int(m.group(1)): folder / m.group(0) for m in found if m}


def kill_after_second_checkpoint(process: subprocess.Popen, out: Path, log: Path) -> Path:
    deadline = time.monotonic() + 120
    while len(checkpoints(out)) < 2:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no second checkpoint within 120 s"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return checkpoints(out)[max(checkpoints(out))]


@pytest.mark.slow
def test_sigkilled_run_resumed_matches_the_uninterrupted_run(tiny_phantom, tmp_path):
    data = str(tiny_phantom / "train")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    uninterrupted = sliceseg_train(data, "--out", str(whole), *RUN, log=tmp_path / "whole.log")
    killed = sliceseg_train(data, "--out", str(broken), *RUN, log=tmp_path / "killed.log")
    last = kill_after_second_checkpoint(killed, broken, tmp_path / "killed.log")
    resumed_at = int(last.stem.split("_")[1])
    assert 6 <= resumed_at < EPOCHS  # killed mid-run, after its second checkpoint
    done = subprocess.run(
        [sys.executable, "-m", "sliceseg", "train", "--resume", str(last)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"after epoch {resumed_at} of {EPOCHS}." in done.stdout
    assert "Overriding" not in done.stdout
    assert uninterrupted.wait(timeout=300) == 0, (tmp_path / "whole.log").read_text()

    resumed = pd.read_csv(broken / "sliceseg_history.csv")
    reference = pd.read_csv(whole / "sliceseg_history.csv")
    assert resumed["epoch"].tolist() == list(range(1, EPOCHS + 1))  # each epoch exactly once
    assert (broken / f"sliceseg_{EPOCHS}.pt").is_file()
    lr = resumed["lr"].to_numpy()
    assert lr == pytest.approx(reference["lr"].to_numpy(), rel=1e-12)
    assert lr[resumed_at] > 0 and np.all(np.diff(lr) < 0)  # the schedule goes on decaying
    assert resumed["elapsed_seconds"].is_monotonic_increasing
    final, expected = resumed["val_dice"].iloc[-1], reference["val_dice"].iloc[-1]
    assert abs(final - expected) < 0.02
    # On the CPU the continued run is the same computation: every loss agrees bit for bit.
    assert resumed["loss"].tolist() == reference["loss"].tolist()
    assert final == expected


class TestRestoreOnEveryRank:
    """A torchrun checkpoint holds rank 0's random states; every rank restores from it."""

    @staticmethod
    def restored(rank: int, state: TrainingState):
        from types import SimpleNamespace

        from sliceseg.training.checkpoints import restore
        from sliceseg.training.distributed import DistributedContext

        model = torch.nn.Linear(2, 2)
        session = SimpleNamespace(
            averaged=None,
            model=model,
            optimizer=torch.optim.AdamW(model.parameters()),
            scaler=None,
            context=DistributedContext(rank=rank, world_size=3),
            generators={"shuffle": torch.Generator(), "augment": torch.Generator()},
        )
        checkpoint = SimpleNamespace(model=torch.nn.Linear(2, 2))
        restore(session, checkpoint, state)  # type: ignore[arg-type]
        return session.generators

    def test_rank_0_continues_and_the_other_ranks_draw_crops_of_their_own(self):
        augment = torch.Generator().manual_seed(1001)
        torch.rand(5, generator=augment)
        optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters()).state_dict()
        state = a_state(
            optimizer=optimizer,
            rng={
                "torch": torch.get_rng_state(),
                "shuffle": torch.Generator().manual_seed(1).get_state(),
                "augment": augment.get_state(),
            },
        )
        expected = torch.rand(8, generator=augment)  # what rank 0 drew next before the stop
        draws = [torch.rand(8, generator=self.restored(r, state)["augment"]) for r in range(3)]
        assert torch.equal(draws[0], expected)
        assert not torch.equal(draws[1], draws[0])
        assert not torch.equal(draws[2], draws[0])
        assert not torch.equal(draws[2], draws[1])


@pytest.mark.slow
def test_a_sigtermed_run_names_its_checkpoint_as_ctrl_c_does_and_exits_143(tiny_phantom, tmp_path):
    """SIGTERM (`kill`, SLURM at a job's time limit) ended `sliceseg train` at once: no line,
    no word of the checkpoint to resume from."""
    out = tmp_path / "m"
    command = [sys.executable, "-m", "sliceseg", "train", str(tiny_phantom / "train")]
    child = subprocess.Popen(
        [*command, "--out", str(out), *RUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 120
    while not checkpoints(out):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 143, stdout + stderr
    last = checkpoints(out)[max(checkpoints(out))]
    assert stdout.strip().splitlines()[-1] == (
        f"Interrupted: the epochs after {last.name} are lost; "
        f"`sliceseg train --resume {last}` goes on from it."
    )
    assert stderr.strip().splitlines()[-1] == (
        "terminated (SIGTERM); files already written are kept; where a checkpoint is named "
        "above, `sliceseg train --resume` with it goes on."
    )
    state = load_bundle(last).training_state
    assert state is not None and state["epoch"] == int(last.stem.split("_")[1])


def killed_write(out: Path, name: str, *, age_s: float) -> Path:
    """A temporary checkpoint file as a run killed while writing it leaves, ``age_s`` old."""
    path = out / f"{TEMP_PREFIX}{name}.k1ll3d.pt"
    path.write_bytes(b"half a checkpoint")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


@pytest.mark.slow
def test_a_resume_or_overwrite_removes_the_temporary_files_of_a_killed_write(
    tiny_phantom, tmp_path
):
    """A kill while a checkpoint was written left its hidden temporary file (as large as the
    model) in the folder for ever; one written after the run started is not a leftover."""
    out = tmp_path / "m"
    train(tiny_config(tiny_phantom / "train", out, epochs=1), log=lambda _line: None)
    stale = killed_write(out, "sliceseg_2", age_s=3600)
    being_written = killed_write(out, "sliceseg_9", age_s=-3600)  # "newer" than the run
    lines: list[str] = []
    train(resume=out / "sliceseg_1.pt", overrides={"epochs": 2}, log=lines.append)
    said = f"that a run killed while writing left in {out}."
    assert f"Removed 1 temporary file(s) ({TEMP_PREFIX}*) {said}" in lines
    assert not stale.exists() and being_written.exists()
    stale = killed_write(out, "sliceseg_1", age_s=60)
    lines.clear()
    config = tiny_config(tiny_phantom / "train", out, epochs=1, overwrite=True)
    train(config, log=lines.append)
    assert f"Removed 1 temporary file(s) ({TEMP_PREFIX}*) {said}" in lines
    assert not stale.exists() and being_written.exists()


@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_names_the_resume_that_goes_on(
    tiny_phantom, tmp_path, monkeypatch, capsys
):
    """It said "run the command again": that is refused (the folder holds checkpoints), and
    with --overwrite it starts over; the run goes on with --resume of its last checkpoint."""
    out = tmp_path / "m"
    full_disk_on_write(monkeypatch, f"{TEMP_PREFIX}sliceseg_2.")
    data = str(tiny_phantom / "train")
    argv = ["train", data, "--out", str(out), "--epochs", "3", "--input-shape", "64"]
    assert main([*argv, "--save-checkpoint", "1", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out / 'sliceseg_2.pt'}: cannot write it (No space left on device); free "
        f"space on its disk, then `sliceseg train --resume {out / 'sliceseg_1.pt'}` goes on "
        "from its last checkpoint."
    )
    assert load_bundle(out / "sliceseg_1.pt").training_state is not None


@pytest.mark.slow
def test_a_sigterm_just_after_a_checkpoint_is_written_names_that_checkpoint(
    tiny_phantom, tmp_path, monkeypatch
):
    """SIGTERM right after sliceseg_2.pt was renamed into place, before the run noted it:
    the line sent the resume to sliceseg_1.pt ("the epochs after it are lost") beside a
    whole sliceseg_2.pt, and that resume abandoned epoch 2."""
    from sliceseg.cli.exits import Terminated, sigterm_as_interrupt
    from sliceseg.training import checkpoints

    real = checkpoints.save_bundle

    def save_then_sigterm(path, *args, **kwargs):
        saved = real(path, *args, **kwargs)
        if Path(path).name == "sliceseg_2.pt":
            signal.raise_signal(signal.SIGTERM)
        return saved

    monkeypatch.setattr(checkpoints, "save_bundle", save_then_sigterm)
    out = tmp_path / "m"
    lines: list[str] = []
    config = tiny_config(tiny_phantom / "train", out, epochs=3, print_checkpoint=3)
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        train(config, log=lines.append)
    assert lines[-1] == (
        f"Interrupted: the epochs after sliceseg_2.pt are lost; "
        f"`sliceseg train --resume {out / 'sliceseg_2.pt'}` goes on from it."
    )


def stop_while_profiling(monkeypatch, stop: BaseException) -> None:
    """Make the end of a run (the best model's profile, after the last checkpoint) raise."""
    from sliceseg.training import profile

    def stopped(*_args, **_kwargs):
        raise stop

    monkeypatch.setattr(profile, "training_profile", stopped)


@pytest.mark.slow
def test_a_run_stopped_while_finishing_is_finished_by_its_resume(
    tiny_phantom, tmp_path, monkeypatch
):
    """Ctrl-C after the last checkpoint, while the best model's profile was computed: the line
    named no checkpoint, and the resume of the last one was refused ("already completed 2 of
    2 planned epochs"), so the settings file and the profile were never written."""
    out, lines = tmp_path / "m", []
    stop_while_profiling(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_phantom / "train", out, epochs=2), log=lines.append)
    last = out / "sliceseg_2.pt"
    assert lines[-1] == (
        f"Interrupted while finishing the run (epoch 2, the last, is trained and saved): "
        f"`sliceseg train --resume {last}` writes what is missing."
    )
    assert not (out / "sliceseg_settings.json").exists()
    monkeypatch.undo()
    history, weights = pd.read_csv(out / "sliceseg_history.csv"), last.read_bytes()
    lines.clear()
    result = train(resume=last, log=lines.append)
    assert (result.epochs_completed, last.read_bytes()) == (2, weights)  # nothing trained
    assert pd.read_csv(out / "sliceseg_history.csv").equals(history)
    settings = json.loads((out / "sliceseg_settings.json").read_text())
    assert (settings["epochs_completed"], settings["ended_by"]) == (2, "planned epochs: 2 of 2")
    assert load_bundle(out / "sliceseg_best.pt").metadata.familiarity is not None
    assert f"Finishing the run of {last}: its 2 planned epochs are trained; writing what it " \
        "did not (the settings file, the best model's profile)." in lines  # fmt: skip
    with pytest.raises(ConfigError, match="already completed 2 of 2 planned epochs"):
        train(resume=last, log=lines.append)  # finished now: refused as before


@pytest.mark.slow
def test_a_full_disk_while_finishing_names_the_resume_that_finishes_it(
    tiny_phantom, tmp_path, monkeypatch, capsys
):
    """It said "free space ... and run the command again": the same command is refused (the
    folder holds the run's checkpoints), and --overwrite trains the whole run again."""
    out = tmp_path / "m"
    full_disk_on_write(monkeypatch, f"{TEMP_PREFIX}sliceseg_settings.")
    argv = ["train", str(tiny_phantom / "train"), "--out", str(out), "--epochs", "1"]
    assert main([*argv, "--input-shape", "64", "--device", "cpu"]) == 2
    last = out / "sliceseg_1.pt"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {out / 'sliceseg_settings.json'}: cannot write it (No space left on device); "
        f"free space on its disk, then `sliceseg train --resume {last}` goes on from its last "
        "checkpoint."
    )
    monkeypatch.undo()
    assert main(["train", "--resume", str(last)]) == 0
    assert json.loads((out / "sliceseg_settings.json").read_text())["epochs_completed"] == 1


@pytest.mark.slow
def test_a_resume_into_a_folder_without_its_best_model_puts_the_best_epoch_back(
    tiny_phantom, tmp_path, monkeypatch
):
    """Resumed where sliceseg_best.pt was missing (removed, or only the checkpoints copied),
    with no later epoch better: the run's last epoch was saved as the best model, while the
    result, the settings and the history named epoch 1's validation Dice."""
    dice = (0.9, 0.5, 0.6, 0.7)

    def validate(session, row):
        return {**row, "val_dice": dice[int(row["epoch"]) - 1]}, None

    monkeypatch.setattr(validation, "validate", validate)
    out, lines = tmp_path / "m", []
    train(tiny_config(tiny_phantom / "train", out, epochs=3), log=lambda _line: None)
    (out / "sliceseg_best.pt").unlink()
    result = train(resume=out / "sliceseg_3.pt", overrides={"epochs": 4}, log=lines.append)
    best = load_bundle(out / "sliceseg_best.pt")
    assert (best.metadata.epoch, result.best_val_dice, result.best_epoch) == (1, 0.9, 1)
    kept = load_bundle(out / "sliceseg_1.pt").model.state_dict()
    assert all(torch.equal(v, best.model.state_dict()[k]) for k, v in kept.items())
    assert (
        f"Restored sliceseg_best.pt (missing from {out}) with epoch 1's model, the best up to "
        "epoch 3 that is still there (validation Dice 0.900)." in lines
    )
